# rbg-operator image: build a wheel, install it into a clean virtualenv, run as non-root.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY rbg_operator ./rbg_operator
RUN python -m venv /opt/rbg \
 && /opt/rbg/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11.14-slim-bookworm
COPY --from=build /opt/rbg /opt/rbg
ENV PATH=/opt/rbg/bin:$PATH PYTHONUNBUFFERED=1
# A numeric user, so Kubernetes can verify runAsNonRoot without a user database.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["rbg-operator", "run"]
