"""The port allocator on the real control plane, with an operator of its own started with
--enable-port-allocator: two groups get distinct ports in both scopes, as env in their pods'
containers and init containers and as the pods' annotations; then the operator is killed and
started again, and no allocation moves while a new group still gets ports no one else has."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rbg_operator.desired import ports
from tests.support.kubectl import Kubectl, group_ready, wait_for
from tests.support.operator import OperatorProcess

V2 = "workloads.x-k8s.io/v1alpha2"
START, RANGE = 31000, 16  # small, so that a port given twice would be likely at random


def container(name: str) -> dict:
    return {"name": name, "image": "example.com/app:v1"}


def group(name: str) -> dict:
    leader = {"allocations": [{"name": "grpc", "env": "LEADER_PORT", "scope": "RoleScoped"}]}
    worker = {
        "allocations": [{"name": "grpc", "env": "WORKER_PORT", "annotationKey": "example.com/worker-port"}],
        "references": [{"env": "LEADER_PORT", "from": "leader.grpc"}],
    }
    template = {"spec": {"initContainers": [container("init")], "containers": [container("main")]}}
    return {
        "apiVersion": V2,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {
            "roles": [
                {
                    "name": "pd",
                    "replicas": 2,
                    "customComponentsPattern": {
                        "components": [
                            {
                                "name": "leader",
                                "size": 1,
                                "annotations": {ports.DIRECTIVE: json.dumps(leader)},
                                "template": template,
                            },
                            {
                                "name": "worker",
                                "size": 2,
                                "annotations": {ports.DIRECTIVE: json.dumps(worker)},
                                "template": template,
                            },
                        ]
                    },
                }
            ]
        },
    }


def env(pod: dict, field: str = "containers") -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"][field][0].get("env") or []}


def allocations(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    """Each pod's allocated ports, as its env says: {pod/VAR: port}; checks init containers agree."""
    found = {}
    for pod in kubectl.get("pods", namespace=namespace, selector=f"rbg.workloads.x-k8s.io/group-name={name}"):
        values = {k: v for k, v in env(pod).items() if k.endswith("_PORT")}
        assert {k: v for k, v in env(pod, "initContainers").items() if k.endswith("_PORT")} == values, pod
        if "WORKER_PORT" in values:
            assert pod["metadata"]["annotations"]["example.com/worker-port"] == values["WORKER_PORT"]
        found.update({f"{pod['metadata']['name']}/{k}": v for k, v in values.items()})
    return found


def ready_with_ports(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    group_ready(kubectl, name, namespace, timeout=120)
    # 2 instances x (a leader with LEADER_PORT, 2 workers with WORKER_PORT and LEADER_PORT)
    return wait_for(
        f"{name}'s 10 port variables",
        lambda: found if len(found := allocations(kubectl, namespace, name)) == 10 else None,
        30,
    )


def sets(kubectl: Kubectl, namespace: str) -> list[dict]:
    return kubectl.get("roleinstancesets", namespace=namespace)


def distinct(found: dict[str, str]) -> set[str]:
    """The ports a group holds: one LEADER_PORT per role (shared by every pod), one WORKER_PORT per pod."""
    leader = {v for k, v in found.items() if k.endswith("/LEADER_PORT")}
    assert len(leader) == 1, found
    workers = [v for k, v in found.items() if k.endswith("/WORKER_PORT")]
    assert len(workers) == len(set(workers)) == 4, found
    return leader | set(workers)


def test_groups_get_distinct_ports_that_survive_an_operator_restart(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    flags = (
        f"--namespace={ns}",
        "--enable-port-allocator",
        f"--start-port={START}",
        f"--port-range={RANGE}",
    )
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", *flags).start()
    try:
        kubectl.apply(group("a"), ns)
        kubectl.apply(group("b"), ns)
        before = {name: ready_with_ports(kubectl, ns, name) for name in ("a", "b")}
        held = [distinct(before["a"]), distinct(before["b"])]
        assert not held[0] & held[1], before
        assert all(START <= int(p) < START + RANGE for p in held[0] | held[1])
        stored = {
            i["metadata"]["name"]: (i["metadata"].get("annotations") or {})
            for i in kubectl.get("roleinstances", namespace=ns)
        }
        assert all(ports.POD_PORTS in a and ports.ROLE_PORTS in a for a in stored.values()), stored
        role_ports = {s["metadata"]["name"]: s["metadata"]["annotations"][ports.ROLE_PORTS] for s in sets(kubectl, ns)}
        operator.proc.kill()  # no clean shutdown: nothing it kept in memory survives
        operator.proc.wait()
        operator = OperatorProcess(kubeconfig, tmp_path / "operator-again.log", *flags).start()
        kubectl.apply(group("c"), ns)
        third = distinct(ready_with_ports(kubectl, ns, "c"))
        assert not third & (held[0] | held[1])  # 15 of the 16 ports are in use now, each once
        time.sleep(2)  # the restarted operator has reconciled a and b again by now
        assert {name: allocations(kubectl, ns, name) for name in ("a", "b")} == before
        assert {
            i["metadata"]["name"]: (i["metadata"].get("annotations") or {})
            for i in kubectl.get("roleinstances", namespace=ns)
            if not i["metadata"]["name"].startswith("c-")
        } == stored
        assert {
            s["metadata"]["name"]: s["metadata"]["annotations"].get(ports.ROLE_PORTS)
            for s in sets(kubectl, ns)
            if s["metadata"]["name"] != "c-pd"
        } == role_ports
    finally:
        operator.stop()


def test_a_directive_that_is_not_json_is_reported_and_the_group_still_runs(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    body = group("bad")
    body["spec"]["roles"][0]["customComponentsPattern"]["components"][1]["annotations"][ports.DIRECTIVE] = "{oops"
    operator = OperatorProcess(
        kubeconfig, tmp_path / "operator.log", f"--namespace={ns}", "--enable-port-allocator", "--start-port=31100"
    ).start()
    try:
        kubectl.apply(body, ns)
        group_ready(kubectl, "bad", ns, timeout=120)
        event = wait_for(
            "the InvalidPortAllocator Event",
            lambda: next(
                (e for e in kubectl.get("events", namespace=ns) if e.get("reason") == "InvalidPortAllocator"), None
            ),
            30,
        )
        assert event["involvedObject"]["name"] == "bad"
        assert event["message"].startswith(f"role pd: component worker: annotation {ports.DIRECTIVE}: not JSON")
        found = allocations(kubectl, ns, "bad")  # the leader's allocation still works
        assert sorted(k.split("/")[1] for k in found) == ["LEADER_PORT", "LEADER_PORT"], found
    finally:
        operator.stop()
