# rbg-operator: the two commands a new machine needs are `make demo` and `make test`.
# Everything else here is what those two are made of.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A broken operator fails every cluster test slowly; stop after 20 so CI reports it in time.
PYTEST_ARGS ?= --maxfail=20

.PHONY: help venv demo test lint unit-test cluster-test build cluster-up cluster-down cluster-status crds argocd-cm bench clean

help:
	@echo "make demo          local cluster + operator + SGLang example, then its status"
	@echo "make test          the linter, unit tests and tests against the real local control plane"
	@echo "make lint          the formatter's check and the linter (ruff)"
	@echo "make cluster-up    start the local control plane (no-op when up); kubeconfig in .cluster/kubeconfig"
	@echo "make cluster-down  stop it; no process or port is left behind"
	@echo "make crds          regenerate crds/ from the pydantic models"

# The Python environment, pinned by constraints.txt; rebuilt when the pins change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

venv: $(STAMP)

# Go-built control plane binaries, cached in ~/.cache/rbg-operator (RBG_CACHE_DIR).
build: $(STAMP)
	$(PY) -m localcluster build

cluster-up: build
	$(PY) -m localcluster up

cluster-down: $(STAMP)
	$(PY) -m localcluster down

cluster-status: $(STAMP)
	$(PY) -m localcluster status

crds: $(STAMP)
	$(PY) -m rbg_operator.api.crdgen --k8s-openapi "$$($(PY) -m localcluster openapi)" --out crds --out charts/ack-rbgs/crds

# The argocd-cm entries of argocd/health/*.lua, to merge into Argo CD's ConfigMap.
argocd-cm:
	@echo "data:"
	@for kind in RoleBasedGroup RoleBasedGroupSet RoleBasedGroupScalingAdapter; do \
	  echo "  resource.customizations.health.workloads.x-k8s.io_$$kind: |"; \
	  sed 's/^/    /' "argocd/health/$$(echo $$kind | tr A-Z a-z).lua"; \
	done

demo: build
	$(PY) -m localcluster.demo

test: lint build
	$(PY) -m pytest $(PYTEST_ARGS)

# The formatter and the linter (settings in pyproject.toml). `ruff format .` and `ruff check --fix .`
# put most findings right.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check --diff .
	$(VENV)/bin/ruff check .

unit-test: $(STAMP)
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

cluster-test: build
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

# Scale benchmark (BENCH_GROUPS, default 100): table, benchmarks/results/latest.json and a plot.
bench: build
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(PY) -m benchmarks.bench

clean: cluster-down
	rm -rf .cluster $(VENV)
