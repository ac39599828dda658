"""Session-wide fixtures: the real control plane (started once, reused), the operator
running against it, and a fresh namespace per test.

Set RBG_TEST_KUBECONFIG to run the cluster tests against an existing cluster instead of
the local one (it must have the LeaderWorkerSet and PodGroup CRDs and schedulable nodes).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from localcluster import crds
from rbg_operator.webhook import CONVERTED_CRDS
from tests.support import canary
from tests.support.conversion import conversion_given_back
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess, free_port

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".cluster" / "test-logs"
CONVERTED_CRD = CONVERTED_CRDS[0]
TEST_NAMESPACES = "t-*"  # what the `namespace` fixture makes; the session's operator acts there only
# Restart-policy timing short enough to observe backoff and the budget within a test.
FAST_RESTARTS = (
    "--restart-backoff-base=3",
    "--restart-backoff-cap=12",
    "--restart-quiet-period=60",
    "--restart-budget=3",
    "--restart-budget-window=600",
)


def pytest_collection_modifyitems(items):
    # Tests under tests/cluster need the control plane; tests under tests/packaging build what
    # ships (the image's install steps) without a cluster; everything else is a pure unit test.
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "tests/cluster/" in path:
            item.add_marker(pytest.mark.cluster)
        elif "tests/packaging/" in path:
            item.add_marker(pytest.mark.packaging)
        else:
            item.add_marker(pytest.mark.unit)
    # Unit tests first: they take seconds, and a broken build shows there before the cluster runs.
    # `make demo` then `make test` is the README's path: the demo runs before every other cluster
    # test and is checked after all of them, so the suite always runs beside it.
    unit = [i for i in items if i.get_closest_marker("unit")]
    first = [i for i in items if i.get_closest_marker("demo_first")]
    last = [i for i in items if i.get_closest_marker("demo_last")]
    final = [i for i in items if i.get_closest_marker("cluster_last")]  # stops the cluster: after everything
    middle = [i for i in items if i not in unit + first + last + final]
    items[:] = unit + first + middle + last + final


_LOG_SIZES: dict[str, int] = {}  # component log lengths when the session's cluster was ready
_STARTED: list[bool] = []  # whether this session started the local cluster (and so may stop it)


def session_started_the_cluster() -> bool:
    return bool(_STARTED and _STARTED[0]) and not os.environ.get("RBG_KEEP_CLUSTER")


def pytest_terminal_summary(terminalreporter):
    """Crashes of control-plane components are restarted (as a kubelet would) and so never fail
    a test by themselves; they are listed here so that they are not silent either."""
    cluster = _local_cluster()
    restarts = cluster.restarts_since(_LOG_SIZES) if cluster and _LOG_SIZES else []
    if restarts:
        terminalreporter.section("control-plane components restarted during the tests")
        for line in restarts:
            terminalreporter.write_line(line)


def _local_cluster():
    """The local cluster module, or None when the tests run against another cluster."""
    if os.environ.get("RBG_TEST_KUBECONFIG"):
        return None
    from localcluster import cluster

    return cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed cluster test reports what the cluster looked like: the test namespace's pods
    and events, and any control-plane component that stopped or stalled, with its log's end.
    Such a component is restarted, so the tests after it do not fail for the same cause."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or not item.get_closest_marker("cluster"):
        return
    client = item.funcargs.get("kubectl")
    lines = []
    for key in ("namespace", "isolated_namespace", "real_namespace"):
        ns = item.funcargs.get(key)
        if client and isinstance(ns, str):
            lines += _namespace_summary(client, ns)
    operator = item.funcargs.get("operator")
    if isinstance(operator, OperatorProcess) and operator.proc and operator.proc.poll() is not None:
        lines.append(
            f"the session operator exited with {operator.proc.returncode} and was started again; "
            f"its log is {operator.log_path}"
        )
        operator.start()
    cluster = _local_cluster()
    if cluster and client:
        try:
            lines += _heal(cluster, client)
        except (AssertionError, SystemExit) as error:
            lines.append(f"the cluster could not be checked or healed: {error}")
    if lines:
        report.sections.append(("cluster state at failure", "\n".join(lines)))


def _heal(cluster, client: Kubectl) -> list[str]:
    """Restart stopped components, then any component a canary Deployment stalls at."""
    lines = []
    broken = cluster.stopped_components()
    if not broken:
        stalled = canary.stalled_component(client)
        broken = [stalled] if stalled else []
        if stalled:
            lines.append(f"a canary Deployment stalled at {stalled}: it is running but not doing its job")
    if broken:
        lines += _restart(cluster, broken)
        after = canary.stalled_component(client)
        lines.append(f"after the restart the canary {'still stalls at ' + after if after else 'reaches Ready'}")
    return lines


def _restart(cluster, names: list[str]) -> list[str]:
    """Restart components; what each one's log ended with, for the report."""
    lines = []
    for name in names:
        lines += [f"component {name} restarted; its log ended:"] + [
            "  " + line[:300] for line in cluster.log_tail(name, 12)
        ]
    cluster.restart(*names)
    return lines


def _namespace_summary(client: Kubectl, namespace: str) -> list[str]:
    try:
        pods = client.get("pods", namespace=namespace)
        events = client.get("events", namespace=namespace)
    except AssertionError as error:
        return [f"namespace {namespace}: unreadable ({error})"]
    lines = [f"pods in {namespace}:"]
    for pod in pods:
        ready = (condition(pod, "Ready") or {}).get("status", "-")
        lines.append(
            f"  {pod['metadata']['name']:<32} {pod['status'].get('phase', '-'):<10} "
            f"node={pod['spec'].get('nodeName', '-')} ready={ready}"
        )
    lines.append(f"last events in {namespace}:")
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    for event in events[-25:]:
        lines.append(
            f"  {event['involvedObject'].get('kind')}/{event['involvedObject'].get('name')} "
            f"{event.get('reason')}: {(event.get('message') or '')[:200]}"
        )
    return lines


@pytest.fixture(autouse=True)
def control_plane_survives(request):
    """Fail the test during which a control-plane component stopped, and start it again so
    the tests after it run on a whole cluster instead of failing for the same cause."""
    yield
    cluster = _local_cluster() if request.node.get_closest_marker("cluster") else None
    stopped = cluster.stopped_components() if cluster else []
    if stopped:
        report = "\n".join(_restart(cluster, stopped))
        pytest.fail(f"control-plane components stopped during this test: {stopped}\n{report}")


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    existing = os.environ.get("RBG_TEST_KUBECONFIG")
    if existing:
        yield existing
        return
    from localcluster import cluster

    started = not cluster.is_up()
    _STARTED.append(started)
    if started:
        cluster.up()
    _LOG_SIZES.update(cluster.log_sizes())
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
    crds.install(client.run, REPO / "crds")
    # The probe is a v1alpha1 write, converted to the stored v1alpha2: the webhook must be up first.
    with _conversion_webhook(client, kubeconfig):
        _nobody_else_acts_on_test_namespaces(client)
        yield client


@contextlib.contextmanager
def _conversion_webhook(client: Kubectl, kubeconfig: str):
    """An operator process that serves the CRDs' version conversion for the session (kubectl reads
    v1alpha2 by default, and v1alpha2 reads go through it), as the chart's operator does. It
    reconciles nothing: it watches a namespace that does not exist. Afterwards the conversion goes
    back to whoever had it before (the demo's operator), unless someone registered since."""
    with conversion_given_back(client) as registered:
        before = crds.conversion_client_config(client.run, CONVERTED_CRD)
        process = OperatorProcess(
            kubeconfig,
            LOG_DIR / "conversion-operator.log",
            "--namespace=rbg-conversion-only",
            f"--webhook-bind-address=127.0.0.1:{free_port()}",
            "--register-conversion",
        ).start()
        try:
            wait_for(
                "the conversion webhook registered",
                lambda: crds.conversion_client_config(client.run, CONVERTED_CRD) not in (before, None),
                30,
            )
            registered()
            yield
        finally:
            process.stop()


def _nobody_else_acts_on_test_namespaces(client: Kubectl) -> None:
    """Before the session's operator starts, a group in a test namespace must stay untouched:
    if another RoleBasedGroup controller acts on it, two operators would act on every test's
    groups (restarts recreated twice, rollouts raced), so stop here and say who it is."""
    probe = f"t-probe-{secrets.token_hex(3)}"
    client.run("create", "namespace", probe)
    try:
        client.apply(
            {
                "apiVersion": "workloads.x-k8s.io/v1alpha1",
                "kind": "RoleBasedGroup",
                "metadata": {"name": "probe"},
                "spec": {
                    "roles": [
                        {
                            "name": "web",
                            "template": {"spec": {"containers": [{"name": "web", "image": "example.com/probe:v1"}]}},
                        }
                    ]
                },
            },
            probe,
        )
        deadline = time.monotonic() + 5  # a running controller answers a new group within a second
        while time.monotonic() < deadline:
            group = client.get("rbg", "probe", probe) or {}
            children = client.get("statefulsets", namespace=probe)
            if group.get("status") or children:
                writers = sorted(
                    {
                        f["manager"]
                        for obj in [group, *children]
                        for f in obj["metadata"].get("managedFields", [])
                        if not f["manager"].startswith("kubectl")
                    }
                )
                pytest.exit(
                    f"another RoleBasedGroup controller acts on the test namespaces ({TEST_NAMESPACES}); "
                    f"its field managers: {writers}. The tests need to be the only ones acting there: stop it "
                    "(`make cluster-down` stops the demo's), or start it with "
                    "--ignore-namespace='t-*' --ignore-namespace='iso-*' as `make demo` does.",
                    returncode=3,
                )
            time.sleep(0.5)
    finally:
        client.run("delete", "namespace", probe, "--wait=false")


@pytest.fixture(scope="session")
def operator(kubectl: Kubectl, kubeconfig: str):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    # Only the namespaces the `namespace` fixture makes: iso-* belong to operators a test runs
    # itself (fault tests), and everything else to whoever else uses the cluster (the demo).
    process = OperatorProcess(
        kubeconfig, LOG_DIR / "operator.log", *FAST_RESTARTS, f"--namespace={TEST_NAMESPACES}"
    ).start()
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
    process = OperatorProcess(
        kubeconfig,
        LOG_DIR / "webhook-operator.log",
        "--namespace=rbg-webhook-only",
        f"--webhook-bind-address=127.0.0.1:{port}",
        f"--webhook-configuration={name}",
    ).start()
    wait_for(f"ValidatingWebhookConfiguration {name}", lambda: kubectl.get("validatingwebhookconfiguration", name), 30)
    yield name
    process.stop()
    kubectl.delete("validatingwebhookconfiguration", name)
    kubectl.delete("mutatingwebhookconfiguration", name)  # kopf registers an empty one of the same name


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


@pytest.fixture
def real_namespace(kubectl: Kubectl, request) -> str:
    """A test namespace whose pods run on the local cluster's real node (localcluster/node.py):
    real containers from the locally built images, real probes, DNS and restarts."""
    from localcluster import cluster, node

    if os.environ.get("RBG_TEST_KUBECONFIG") or not cluster.real_node_wanted():
        pytest.skip("the real node runs in the local cluster only (and RBG_REAL_NODE=0 leaves it out)")
    name = f"t-real-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{secrets.token_hex(3)}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **node.namespace_defaults()}})
    wait_for(f"default ServiceAccount in {name}", lambda: kubectl.get("serviceaccount", "default", name), 30)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")
