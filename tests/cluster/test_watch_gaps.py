"""The watch layer on a real control plane: children deleted while the operator's watches are
frozen or the API server restarts are re-created once the watches are back, status never
says Ready for a workload that does not exist, a spec change that races a status write is
not lost, and objects the operator does not own are never listed.

Each test runs its own operator through the fault proxy, in a namespace the session's
operator ignores."""

from __future__ import annotations

import json
import time
from pathlib import Path

from localcluster import cluster
from tests.cluster.test_faults import assert_exact_children, converged, group
from tests.support.faultproxy import FaultProxy
from tests.support.kubectl import Kubectl, wait_for
from tests.support.operator import OperatorProcess

IMAGE = "example.com/app:v1"
# What the tests delete behind the operator's back: (kubectl resource, name), for group "gap".
WORKLOADS = [("statefulsets", "gap-a"), ("deployments", "gap-c")]
OTHERS = [("services", "s-gap-b"), ("configmaps", "gap")]


def uids(kubectl: Kubectl, namespace: str) -> dict[tuple[str, str], str | None]:
    found = {}
    for resource, name in WORKLOADS + OTHERS:
        obj = kubectl.get(resource, name, namespace)
        found[(resource, name)] = obj["metadata"]["uid"] if obj else None
    return found


def delete_children(kubectl: Kubectl, namespace: str) -> None:
    for resource, name in WORKLOADS + OTHERS:
        kubectl.run("delete", resource, name, "-n", namespace, "--wait=false")
    kubectl.run("delete", "pod", "gap-b-0", "-n", namespace, "--wait=false")


def ready_written_while_missing(writes, since: float) -> list[str]:
    """Status writes after `since` that said Ready=True before the operator had applied every
    deleted workload again: each one reported Ready for a workload that did not exist."""
    reapplied: set[str] = set()
    lies = []
    for at, method, path, body, _ in writes:
        if at < since:
            continue
        if method == "PATCH" and not path.endswith("/status"):
            reapplied.update(
                f"{resource}/{name}" for resource, name in WORKLOADS if path.endswith(f"/{resource}/{name}")
            )
        if method == "PATCH" and path.endswith("/rolebasedgroups/gap/status"):
            ready = next(
                (c for c in ((body or {}).get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {}
            )
            missing = [f"{r}/{n}" for r, n in WORKLOADS if f"{r}/{n}" not in reapplied]
            if ready.get("status") == "True" and missing:
                lies.append(f"Ready=True written while {missing} did not exist")
    return lies


def recreated(kubectl: Kubectl, namespace: str, before: dict) -> bool:
    now = uids(kubectl, namespace)
    return all(uid is not None and uid != before[key] for key, uid in now.items())


def run_gap(kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path: Path, during_gap) -> None:
    proxy = FaultProxy(kubeconfig, cluster.state_dir() / "pki").start()
    operator = OperatorProcess(
        proxy.kubeconfig(tmp_path / "kubeconfig"), tmp_path / "operator.log", f"--namespace={namespace}"
    ).start()
    try:
        kubectl.apply(group("gap", IMAGE), namespace)
        wait_for("gap converged", lambda: converged(kubectl, namespace, "gap", IMAGE), 120)
        before = uids(kubectl, namespace)
        proxy.freeze_watches()
        time.sleep(1)  # events already on their way are out of the streams
        deleted_at = time.monotonic()
        delete_children(kubectl, namespace)
        wait_for("the deletions done", lambda: all(uid is None for uid in uids(kubectl, namespace).values()), 30)
        time.sleep(2)
        assert all(uid is None for uid in uids(kubectl, namespace).values()), (
            "the operator re-created children while its watches were frozen: the gap was not a gap"
        )
        during_gap(proxy)
        back = time.monotonic()
        wait_for(
            "every deleted child re-created within 10 s of the watches coming back",
            lambda: recreated(kubectl, namespace, before),
            10,
        )
        print(f"re-created {time.monotonic() - back:.1f} s after the watches came back")
        wait_for("gap converged again", lambda: converged(kubectl, namespace, "gap", IMAGE), 120)
        assert_exact_children(kubectl, namespace, "gap")
        assert ready_written_while_missing(proxy.writes, deleted_at) == []
    finally:
        operator.stop()
        proxy.stop()


def test_children_deleted_while_the_watches_are_frozen_are_re_created_when_they_come_back(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    # The watches come back with 410 Gone, as after a long gap: only a new list shows the deletions.
    run_gap(kubectl, kubeconfig, isolated_namespace, tmp_path, lambda proxy: proxy.thaw_watches(expire=True))


def test_children_deleted_while_the_api_server_restarts_are_re_created(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    def restart_api_server(proxy: FaultProxy) -> None:
        cluster.restart("kube-apiserver")
        proxy.thaw_watches(expire=False)  # the held watches reach the restarted API server

    run_gap(kubectl, kubeconfig, isolated_namespace, tmp_path, restart_api_server)


def test_a_spec_change_that_lands_during_the_status_write_is_reconciled_at_once(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    """The user's change reaches the API server between the reconcile's read and its status
    write; the write's answer (with the new generation) reaches the operator before the
    change's own watch event. The change must not wait for the next resync."""
    ns = isolated_namespace
    proxy = FaultProxy(kubeconfig, cluster.state_dir() / "pki").start()
    operator = OperatorProcess(
        proxy.kubeconfig(tmp_path / "kubeconfig"), tmp_path / "operator.log", f"--namespace={ns}"
    ).start()
    body = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "race"},
        "spec": {
            "roles": [
                {"name": "a", "replicas": 1, "template": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}}}
            ]
        },
    }

    def replicas(n: int) -> None:
        kubectl.run(
            "patch",
            "rbg",
            "race",
            "-n",
            ns,
            "--type=json",
            "-p",
            json.dumps([{"op": "replace", "path": "/spec/roles/0/replicas", "value": n}]),
        )

    try:
        kubectl.apply(body, ns)
        wait_for(
            "race Ready",
            lambda: (kubectl.get("rbg", "race", ns) or {}).get("status", {}).get("observedGeneration") == 1,
            60,
        )
        # Group events arrive late: after the answers to the operator's own writes.
        proxy.watch_delay, proxy.watch_delay_on = 3.0, "/rolebasedgroups"
        proxy.hold_status_writes = True
        replicas(2)
        wait_for("the status write of generation 2 held", lambda: proxy.held_status_writes >= 1, 20)
        replicas(3)
        generation = kubectl.get("rbg", "race", ns)["metadata"]["generation"]
        proxy.release_status_writes()
        wait_for(
            f"generation {generation} reconciled within 2 s",
            lambda: (
                kubectl.get("rbg", "race", ns)["status"].get("observedGeneration") == generation
                and kubectl.get("statefulset", "race-a", ns)["spec"]["replicas"] == 3
            ),
            2,
        )
    finally:
        operator.stop()
        proxy.stop()


def unrelated_objects(count: int) -> dict:
    """ConfigMaps of 8 KB and gated pods with 20 variables each, none of them a group's."""
    env = [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(20)]
    items = []
    for i in range(count):
        items.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"noise-{i}"}, "data": {"blob": "y" * 8192}}
        )
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"noise-{i}", "labels": {"app": "noise"}},
                "spec": {
                    "schedulingGates": [{"name": "example.com/never"}],
                    "containers": [{"name": "main", "image": "example.com/noise:v1", "env": env}],
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


def test_an_operator_on_a_busy_namespace_lists_and_watches_none_of_the_unrelated_objects(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    noise = tmp_path / "noise.json"
    noise.write_text(json.dumps(unrelated_objects(200)))
    kubectl.run("apply", "--server-side", "-n", ns, "-f", str(noise))
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", f"--namespace={ns}").start()
    try:
        kubectl.apply(group("busy", IMAGE), ns)
        wait_for("busy converged", lambda: converged(kubectl, ns, "busy", IMAGE), 120)
        metrics = operator.metrics()

        def received(verb: str, resource: str) -> float:
            return metrics.get(f'rbg_operator_api_response_bytes_total{{resource="{resource}",verb="{verb}"}}', 0.0)

        def requests(verb: str, resource: str) -> float:
            return metrics.get(f'rbg_operator_api_requests_total{{resource="{resource}",verb="{verb}"}}', 0.0)

        # 200 unrelated ConfigMaps are 1.6 MB and 200 unrelated pods about 0.5 MB: what the
        # operator received of each kind is a small fraction, its own objects' share.
        # Pods have three disjoint watches (wakes.py): a group's, those of RoleInstances made
        # without a group, and warmup pods.
        for resource, watches in (("pods", 3), ("configmaps", 1)):
            assert requests("list", resource) == watches, f"one initial list of {resource} per watch"
            assert received("list", resource) < 4096, f"the list of {resource} carried unrelated objects"
        assert received("watch", "configmaps") < 64 * 1024, "the ConfigMap watch carried unrelated objects"
        assert received("watch", "pods") < 256 * 1024, "the pod watch carried unrelated objects"
    finally:
        operator.stop()
