"""Ownership on the real control plane: every object the operator writes is checked to be absent
or controlled by its owner first, whether the cache shows it or not; labels anyone can set
neither hand an object over nor fill the operator's memory; and RoleInstanceSets and
RoleInstances made without a group see their pods."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess

V1 = "workloads.x-k8s.io/v1alpha1"
V2 = "workloads.x-k8s.io/v1alpha2"
GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"


def template(image: str = "example.com/app:v1") -> dict:
    return {"spec": {"containers": [{"name": "main", "image": image}]}}


def group(name: str, role: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": V1,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": [{"name": role, "replicas": replicas, "template": template()}]},
    }


def ready(kubectl: Kubectl, kind: str, name: str, namespace: str, timeout: float = 90) -> dict:
    return wait_for(
        f"{kind} {name} Ready",
        lambda: (
            (o := kubectl.get(kind, name, namespace)) and (condition(o, "Ready") or {}).get("status") == "True" and o
        ),
        timeout,
    )


def controllers(obj: dict) -> list[str]:
    return [f"{o['kind']}/{o['name']}" for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")]


def warnings(kubectl: Kubectl, namespace: str, name: str, reason: str) -> list[str]:
    return [
        e["message"]
        for e in kubectl.get("events", namespace=namespace)
        if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def test_a_child_name_two_groups_want_stays_with_the_first(kubectl: Kubectl, operator, namespace: str):
    """Group `a` role `b-c` and group `a-b` role `c` both want Service s-a-b-c and StatefulSet a-b-c."""
    kubectl.apply(group("a", "b-c"), namespace)
    ready(kubectl, "rbg", "a", namespace)
    kubectl.apply(group("a-b", "c"), namespace)
    wait_for("a-b reconciled", lambda: condition(kubectl.get("rbg", "a-b", namespace), "Ready"), 60)
    time.sleep(2)
    service = kubectl.get("service", "s-a-b-c", namespace)
    assert controllers(service) == ["RoleBasedGroup/a"], "group a-b took the Service of group a"
    assert service["spec"]["selector"][GROUP_LABEL] == "a"
    second = wait_for(
        "a-b reports the conflict",
        lambda: (
            (g := kubectl.get("rbg", "a-b", namespace))
            and (condition(g, "Ready") or {}).get("reason") == "ChildConflict"
            and g
        ),
        60,
    )
    message = condition(second, "Ready")["message"]
    assert "s-a-b-c" in message and "RoleBasedGroup a" in message, message
    assert condition(second, "Stalled")["status"] == "True"
    wait_for("a ChildConflict Event on a-b", lambda: warnings(kubectl, namespace, "a-b", "ChildConflict"), 30)

    # Later reconciles of both change nothing: the first owner keeps both objects, for good.
    for round_ in range(3):
        kubectl.run("annotate", "--overwrite", f"--namespace={namespace}", "rbg/a-b", f"poke={round_}")
        kubectl.run("annotate", "--overwrite", f"--namespace={namespace}", "rbg/a", f"poke={round_}")
        time.sleep(2)
        service = kubectl.get("service", "s-a-b-c", namespace)
        assert controllers(service) == ["RoleBasedGroup/a"]
        assert service["spec"]["selector"][GROUP_LABEL] == "a"
        assert service["spec"]["selector"]["rolebasedgroup.workloads.x-k8s.io/role"] == "b-c"
        assert controllers(kubectl.get("statefulset", "a-b-c", namespace)) == ["RoleBasedGroup/a"]
    assert (condition(kubectl.get("rbg", "a", namespace), "Ready") or {}).get("status") == "True"
    assert condition(kubectl.get("rbg", "a-b", namespace), "Ready")["reason"] == "ChildConflict"

    # Once the first group is gone, the name is free: the second creates its own.
    kubectl.run("delete", "rbg", "a", f"--namespace={namespace}", "--cascade=foreground", "--timeout=60s")
    ready(kubectl, "rbg", "a-b", namespace, timeout=120)
    assert controllers(kubectl.get("service", "s-a-b-c", namespace)) == ["RoleBasedGroup/a-b"]


def test_a_set_never_adopts_a_group_of_its_members_name(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(group("web-0", "keep", replicas=0), namespace)
    kubectl.apply(
        {
            "apiVersion": V1,
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"roles": [{"name": "srv", "replicas": 0, "template": template()}]}},
        },
        namespace,
    )
    wait_for("the set reconciled", lambda: condition(kubectl.get("rbgs", "web", namespace), "Ready"), 60)
    wait_for("the member it may make", lambda: kubectl.get("rbg", "web-1", namespace), 30)
    assert controllers(kubectl.get("rbg", "web-0", namespace)) == [], "the set adopted web-0"
    found = wait_for(
        "the set reports the conflict",
        lambda: (
            (s := kubectl.get("rbgs", "web", namespace))
            and (condition(s, "Ready") or {}).get("reason") == "ChildConflict"
            and s
        ),
        60,
    )
    assert "RoleBasedGroup web-0 already exists" in condition(found, "Ready")["message"]
    wait_for("a ChildConflict Event on the set", lambda: warnings(kubectl, namespace, "web", "ChildConflict"), 30)
    wait_for("the member it may make", lambda: kubectl.get("rbg", "web-1", namespace), 30)
    untouched = kubectl.get("rbg", "web-0", namespace)
    assert controllers(untouched) == []
    assert [r["name"] for r in untouched["spec"]["roles"]] == ["keep"]

    kubectl.run("delete", "rbgs", "web", f"--namespace={namespace}", "--cascade=foreground", "--timeout=60s")
    wait_for("the set's own member gone", lambda: kubectl.get("rbg", "web-1", namespace) is None, 60)
    assert kubectl.get("rbg", "web-0", namespace) is not None  # never the set's to take away


def test_a_role_instance_never_writes_over_a_bare_pod(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ri-main-0", "labels": {"app": "victim"}},
            "spec": {"containers": [{"name": "main", "image": "example.com/victim:v1"}]},
        },
        namespace,
    )
    kubectl.apply(
        {
            "apiVersion": V2,
            "kind": "RoleInstance",
            "metadata": {"name": "ri"},
            "spec": {"components": [{"name": "main", "size": 1, "template": template("example.com/attacker:v1")}]},
        },
        namespace,
    )
    wait_for(
        "the instance reconciled",
        lambda: condition(kubectl.get("roleinstances", "ri", namespace), "RoleInstanceReady"),
        60,
    )
    time.sleep(2)
    pod = kubectl.get("pod", "ri-main-0", namespace)
    assert pod["spec"]["containers"][0]["image"] == "example.com/victim:v1", "the instance wrote over the bare pod"
    assert controllers(pod) == []
    instance = wait_for(
        "the instance reports the conflict",
        lambda: (
            (i := kubectl.get("roleinstances", "ri", namespace))
            and (condition(i, "RoleInstanceReady") or {}).get("reason") == "ChildConflict"
            and i
        ),
        60,
    )
    assert "Pod ri-main-0 already exists and has no controller" in condition(instance, "RoleInstanceReady")["message"]
    wait_for("a ChildConflict Event on the instance", lambda: warnings(kubectl, namespace, "ri", "ChildConflict"), 30)
    time.sleep(3)  # a later pass changes nothing either
    pod = kubectl.get("pod", "ri-main-0", namespace)
    assert pod["spec"]["containers"][0]["image"] == "example.com/victim:v1"
    assert controllers(pod) == []
    assert "rbg.workloads.x-k8s.io/role-instance-name" not in pod["metadata"]["labels"]


def test_a_directly_created_instance_set_sees_its_pods(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        {
            "apiVersion": V2,
            "kind": "RoleInstanceSet",
            "metadata": {"name": "p"},
            "spec": {
                "replicas": 1,
                "roleInstanceTemplate": {"components": [{"name": "main", "size": 1, "template": template()}]},
            },
        },
        namespace,
    )
    first = wait_for(
        "pod p-0-main-0 Ready",
        lambda: (
            (p := kubectl.get("pod", "p-0-main-0", namespace))
            and (condition(p, "Ready") or {}).get("status") == "True"
            and p
        ),
        60,
    )
    wait_for(
        "the set counts it ready",
        lambda: (
            (s := kubectl.get("roleinstancesets", "p", namespace)) and (s.get("status") or {}).get("readyReplicas") == 1
        ),
        30,
    )
    instance = kubectl.get("roleinstances", "p-0", namespace)
    assert (condition(instance, "RoleInstanceReady") or {}).get("status") == "True"

    kubectl.run("delete", "pod", "p-0-main-0", f"--namespace={namespace}", "--wait=false")
    wait_for(
        "the pod made again within seconds",
        lambda: (
            (p := kubectl.get("pod", "p-0-main-0", namespace))
            and p["metadata"]["uid"] != first["metadata"]["uid"]
            and not p["metadata"].get("deletionTimestamp")
        ),
        30,
    )
    wait_for(
        "the set ready again",
        lambda: (
            (s := kubectl.get("roleinstancesets", "p", namespace)) and (s.get("status") or {}).get("readyReplicas") == 1
        ),
        30,
    )


def test_forged_group_labels_cost_the_cache_nothing(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    """A tenant's ConfigMaps labelled with a group's name are not cached whole, and the group beside
    them, whose reconciles they wake, still reads its own topology ConfigMap and writes nothing."""
    ns = isolated_namespace
    process = OperatorProcess(kubeconfig, tmp_path / "operator.log", f"--namespace={ns}").start()
    try:
        kubectl.apply(group("g", "r"), ns)
        ready(kubectl, "rbg", "g", ns)
        time.sleep(3)  # the last status echoes settle
        before = process.metrics()["rbg_operator_cache_bytes"]
        for i in range(20):
            kubectl.run(
                "create",
                f"--namespace={ns}",
                "-f",
                "-",
                stdin=json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"cm-{i}", "labels": {GROUP_LABEL: "g"}},
                        "data": {"b": "y" * 900_000},
                    }
                ),
            )
        # The operator has them once it has the next object: a group made after them is reconciled.
        kubectl.apply(group("after", "r"), ns)
        ready(kubectl, "rbg", "after", ns)
        grown = process.metrics()["rbg_operator_cache_bytes"] - before
        assert grown < 1_000_000, f"the cache grew by {grown:.0f} bytes for 18 MB of forged ConfigMaps"
        assert controllers(kubectl.get("configmap", "cm-0", ns)) == []

        # Each forged ConfigMap wakes g, which still finds its own topology ConfigMap whole in the
        # cache and its Service in place: it writes nothing.
        time.sleep(3)
        writes = process.write_requests()
        for i in range(3):
            kubectl.run("label", "--overwrite", f"--namespace={ns}", f"configmap/cm-{i}", f"poke={i}")
        time.sleep(4)
        assert process.write_requests() == writes
        assert (condition(kubectl.get("rbg", "g", ns), "Ready") or {}).get("status") == "True"
    finally:
        process.stop()


def test_an_instance_set_never_takes_an_instance_it_does_not_control(kubectl: Kubectl, operator, namespace: str):
    component = {"name": "main", "size": 1, "template": template("example.com/mine:v1")}
    kubectl.apply(
        {"apiVersion": V2, "kind": "RoleInstance", "metadata": {"name": "q-0"}, "spec": {"components": [component]}},
        namespace,
    )
    kubectl.apply(
        {
            "apiVersion": V2,
            "kind": "RoleInstanceSet",
            "metadata": {"name": "q"},
            "spec": {
                "replicas": 2,
                "roleInstanceTemplate": {"components": [{**component, "template": template("example.com/set:v1")}]},
            },
        },
        namespace,
    )
    wait_for("the instance it may make", lambda: kubectl.get("roleinstances", "q-1", namespace), 60)
    time.sleep(2)
    mine = kubectl.get("roleinstances", "q-0", namespace)
    assert controllers(mine) == [], "the set took q-0"
    assert mine["spec"]["components"][0]["template"]["spec"]["containers"][0]["image"] == "example.com/mine:v1"
    found = wait_for(
        "the set reports the conflict",
        lambda: (
            (s := kubectl.get("roleinstancesets", "q", namespace))
            and (condition(s, "FailedCreate") or {}).get("reason") == "ChildConflict"
            and s
        ),
        60,
    )
    assert "RoleInstance q-0 already exists and has no controller" in condition(found, "FailedCreate")["message"]
    wait_for("a ChildConflict Event on the set", lambda: warnings(kubectl, namespace, "q", "ChildConflict"), 30)
