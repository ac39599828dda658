"""Session-wide fixtures: the real control plane (started once, reused), the operator
running against it, and a fresh namespace per test.

Set RBG_TEST_KUBECONFIG to run the cluster tests against an existing cluster instead of
the local one (it must have the LeaderWorkerSet and PodGroup CRDs and schedulable nodes).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest

from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess, free_port

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".cluster" / "test-logs"
# Restart-policy timing short enough to observe backoff and the budget within a test.
FAST_RESTARTS = ("--restart-backoff-base=3", "--restart-backoff-cap=12", "--restart-quiet-period=60",
                 "--restart-budget=3", "--restart-budget-window=600")


def pytest_collection_modifyitems(items):
    # Tests under tests/cluster need the control plane; everything else is a pure unit test.
    for item in items:
        if "tests/cluster/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.cluster)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    existing = os.environ.get("RBG_TEST_KUBECONFIG")
    if existing:
        yield existing
        return
    from localcluster import cluster

    started = not cluster.is_up()
    if started:
        cluster.up()
    try:
        yield str(cluster.kubeconfig_path())
    finally:
        if started and not os.environ.get("RBG_KEEP_CLUSTER"):
            cluster.down()


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    local = REPO / ".cluster" / "bin" / "kubectl"
    binary = str(local) if local.exists() and not os.environ.get("RBG_TEST_KUBECONFIG") else shutil.which("kubectl")
    assert binary, "kubectl not found"
    client = Kubectl(binary, kubeconfig)
    client.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for crd in client.get("crds"):
        if crd["spec"]["group"] == "workloads.x-k8s.io":
            name = crd["metadata"]["name"]
            wait_for(f"CRD {name} established",
                     lambda: (condition(client.get("crd", name), "Established") or {}).get("status") == "True", 60)
    return client


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl, kubeconfig: str):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    # Namespaces named iso-* belong to operators a test runs itself (fault tests).
    process = OperatorProcess(kubeconfig, LOG_DIR / "operator.log", *FAST_RESTARTS, "--ignore-namespace=iso-*").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admission_webhook(kubectl: Kubectl, kubeconfig: str):
    """A second operator process that only serves the validating webhook and registers it.

    It watches a namespace that does not exist, so it never reconciles; the session's
    operator runs without a webhook, which lets other tests exercise the controller's own
    refusal of invalid groups.
    """
    name = f"rbg-test-{secrets.token_hex(3)}.workloads.x-k8s.io"
    port = free_port()
    process = OperatorProcess(kubeconfig, LOG_DIR / "webhook-operator.log", "--namespace=rbg-webhook-only",
                              f"--webhook-bind-address=127.0.0.1:{port}", f"--webhook-configuration={name}").start()
    wait_for(f"ValidatingWebhookConfiguration {name}",
             lambda: kubectl.get("validatingwebhookconfiguration", name), 30)
    yield name
    process.stop()
    kubectl.delete("validatingwebhookconfiguration", name)


@pytest.fixture
def isolated_namespace(kubectl: Kubectl) -> str:
    """A namespace the session operator ignores, for a test that runs (and kills) its own."""
    name = f"iso-{secrets.token_hex(4)}"
    kubectl.run("create", "namespace", name)
    wait_for(f"default ServiceAccount in {name}", lambda: kubectl.get("serviceaccount", "default", name), 30)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")


@pytest.fixture
def namespace(kubectl: Kubectl, request) -> str:
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{secrets.token_hex(3)}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    kubectl.run("create", "namespace", name)
    wait_for(f"default ServiceAccount in {name}", lambda: kubectl.get("serviceaccount", "default", name), 30)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")
