"""What survives: kill -9 of the operator at random moments, API server and etcd restarts,
409 and 429 answers, and watches that go silent. Each test runs its own operator in a
namespace the session's operator ignores, so only the operator under test acts there."""

from __future__ import annotations

import random
import time
from pathlib import Path

from localcluster import cluster
from tests.support.faultproxy import FaultProxy
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess

GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"
TRIALS = 20


def group(name: str, image: str) -> dict:
    def container() -> list[dict]:
        return [{"name": "main", "image": image}]

    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {
            "roles": [
                {"name": "a", "replicas": 2, "template": {"spec": {"containers": container()}}},
                {"name": "b", "dependencies": ["a"], "template": {"spec": {"containers": container()}}},
                {
                    "name": "c",
                    "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
                    "template": {"spec": {"containers": container()}},
                },
            ]
        },
    }


def converged(kubectl: Kubectl, namespace: str, name: str, image: str) -> bool:
    g = kubectl.get("rbg", name, namespace)
    if not g or (condition(g, "Ready") or {}).get("status") != "True":
        return False
    if g["status"].get("observedGeneration") != g["metadata"]["generation"]:
        return False
    pods = kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}={name}")
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return len(live) == 4 and all(p["spec"]["containers"][0]["image"] == image for p in live)


def assert_exact_children(kubectl: Kubectl, namespace: str, name: str) -> None:
    """Every child exactly once, owned by the group; nothing orphaned, nothing duplicated."""
    uid = kubectl.get("rbg", name, namespace)["metadata"]["uid"]
    expected = {
        "statefulsets": {f"{name}-a", f"{name}-b"},
        "deployments": {f"{name}-c"},
        "services": {f"s-{name}-a", f"s-{name}-b", f"s-{name}-c"},
        "configmaps": {name},
    }
    for kind, names in expected.items():
        found = kubectl.get(kind, namespace=namespace, selector=f"{GROUP_LABEL}={name}")
        assert sorted(o["metadata"]["name"] for o in found) == sorted(names), (kind, found)
        for obj in found:
            assert [o["uid"] for o in obj["metadata"]["ownerReferences"]] == [uid], obj["metadata"]
    pods = kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}={name}")
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 4


def test_kill_9_at_random_moments_converges_without_orphans_or_duplicates(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    rng = random.Random(20261125)
    images: dict[str, str] = {}
    for trial in range(TRIALS):
        operator = OperatorProcess(kubeconfig, tmp_path / f"operator-{trial}.log", f"--namespace={ns}").start()
        if trial % 2 == 0 or not images:  # during creation
            name = f"g{trial // 2}"
            images[name] = "example.com/app:v1"
        else:  # during a rollout
            name = rng.choice(sorted(images))
            images[name] = f"example.com/app:v{trial}"
        kubectl.apply(group(name, images[name]), ns)
        time.sleep(rng.uniform(0, 1.5))
        operator.proc.kill()
        operator.proc.wait()
    final = OperatorProcess(kubeconfig, tmp_path / "operator-final.log", f"--namespace={ns}").start()
    try:
        for name, image in images.items():
            wait_for(f"{name} converged on {image}", lambda: converged(kubectl, ns, name, image), 120)
        for name in images:
            assert_exact_children(kubectl, ns, name)
    finally:
        final.stop()


def test_operator_recovers_from_api_server_and_etcd_restarts(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", f"--namespace={ns}").start()
    try:
        kubectl.apply(group("before", "example.com/app:v1"), ns)
        wait_for("before converged", lambda: converged(kubectl, ns, "before", "example.com/app:v1"), 90)
        cluster.restart("etcd", "kube-apiserver")
        kubectl.apply(group("after", "example.com/app:v1"), ns)
        kubectl.apply(group("before", "example.com/app:v2"), ns)
        wait_for("after converged", lambda: converged(kubectl, ns, "after", "example.com/app:v1"), 120)
        wait_for("before rolled to v2", lambda: converged(kubectl, ns, "before", "example.com/app:v2"), 120)
        assert operator.proc.poll() is None, "the operator recovered without restarting"
    finally:
        operator.stop()


def test_conflicts_and_throttling_are_retried_with_backoff(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    proxy = FaultProxy(kubeconfig, cluster.state_dir() / "pki").start()
    operator = OperatorProcess(
        proxy.kubeconfig(tmp_path / "kubeconfig"), tmp_path / "operator.log", f"--namespace={isolated_namespace}"
    ).start()
    try:
        proxy.faults = [429, 409] * 4
        started = time.monotonic()
        kubectl.apply(group("stormy", "example.com/app:v1"), isolated_namespace)
        wait_for(
            "converged through injected 409s and 429s",
            lambda: converged(kubectl, isolated_namespace, "stormy", "example.com/app:v1"),
            120,
        )
        assert sorted(proxy.injected) == [409] * 4 + [429] * 4
        metrics = operator.metrics()
        assert metrics.get('rest_client_requests_total{code="429",method="PATCH"}') == 4
        assert metrics.get('rest_client_requests_total{code="409",method="PATCH"}') == 4
        assert time.monotonic() - started > 0.5, "retries back off instead of spinning"
        assert_exact_children(kubectl, isolated_namespace, "stormy")
    finally:
        operator.stop()
        proxy.stop()


def test_a_silent_watch_is_detected_and_re_established(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    proxy = FaultProxy(kubeconfig, cluster.state_dir() / "pki").start()
    operator = OperatorProcess(
        proxy.kubeconfig(tmp_path / "kubeconfig"),
        tmp_path / "operator.log",
        f"--namespace={isolated_namespace}",
        "--watch-inactivity-timeout=3",
    ).start()
    try:
        time.sleep(2)  # let the watches start
        stalled = proxy.silence_current_watches()
        assert stalled > 0
        kubectl.apply(group("quiet", "example.com/app:v1"), isolated_namespace)
        wait_for(
            "converged although every watch went silent",
            lambda: converged(kubectl, isolated_namespace, "quiet", "example.com/app:v1"),
            30,
        )
        assert proxy.watches_started > stalled, "the silent watches were re-established"
    finally:
        operator.stop()
        proxy.stop()
