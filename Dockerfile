# rbg-operator image: install the package into a virtualenv in a build stage, copy only that
# virtualenv into a fresh copy of the same base, and run it as a numeric non-root user.
#
# One base for both stages, pinned by tag (readable) and by the digest of its multi-arch index
# (immutable), so a rebuild starts from the same bytes and the two stages cannot drift apart: the
# virtualenv's python is a symlink to the base's interpreter, so it must be the same interpreter.
# To refresh, pick the new tag and put the index digest it prints next to it (tag and digest change
# together, never one alone):
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   (the "Digest:" line)
ARG BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${BASE_IMAGE} AS build
# Where the virtualenv lives; the runtime stage copies exactly this directory. An ARG, so
# tests/packaging/test_dockerfile.py can run the same steps into a scratch directory.
ARG VENV=/opt/rbg
# No wheel cache to carry around in a layer, and no "new pip available" chatter in build logs.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package build reads: its metadata, the pinned versions, the readme it declares, the code.
COPY pyproject.toml constraints.txt README.md ./
COPY rbg_operator ./rbg_operator
# A virtualenv without pip (nor setuptools/wheel): nothing in the shipped image can install packages.
RUN python -m venv --without-pip "$VENV"
# The base image's own pip installs into that virtualenv (--python), with every dependency held
# to constraints.txt; setuptools is fetched only into pip's temporary build environment.
RUN python -m pip --python "$VENV/bin/python" install --constraint constraints.txt .
# Fail the build here, not at the first pod start, if the entry point cannot even parse its flags.
RUN "$VENV/bin/rbg-operator" run --help > /dev/null

FROM ${BASE_IMAGE}
ARG VENV=/opt/rbg
LABEL org.opencontainers.image.title="rbg-operator" \
      org.opencontainers.image.description="Kubernetes operator for RoleBasedGroup (workloads.x-k8s.io)" \
      org.opencontainers.image.licenses="Apache-2.0"
# The runtime stage installs nothing: it takes the finished virtualenv and no build tools.
COPY --from=build ${VENV} ${VENV}
# The virtualenv's scripts first on PATH (rbg-operator, kubectl-rbg); logs unbuffered so they reach
# `kubectl logs` as they are written.
ENV PATH=${VENV}/bin:$PATH PYTHONUNBUFFERED=1
# A numeric user, so Kubernetes can verify runAsNonRoot without a user database.
USER 65532:65532
# Metrics, health probes and the admission webhook (metrics.port, healthPort, webhook.port in the chart).
EXPOSE 8080 8081 9443
# The program is the entry point and its sub-command the default arguments, as controller images do:
# Kubernetes' `args` replace CMD, so the chart's `args: [run, ...]` run `rbg-operator run ...`, and a
# bare `docker run IMAGE` still runs the operator.
ENTRYPOINT ["rbg-operator"]
CMD ["run"]
