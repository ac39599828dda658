"""Without a webhook, the controller itself refuses an invalid group, says why, and keeps
serving the other groups."""

from __future__ import annotations

from tests.support.kubectl import Kubectl, condition, wait_for

CONTAINERS = [{"name": "c", "image": "example.com/c:1"}]


def group(name: str, roles: list[dict]) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": roles},
    }


def test_cyclic_group_is_refused_and_a_valid_neighbour_still_reconciles(kubectl: Kubectl, operator, namespace: str):
    assert not [
        w for w in kubectl.get("validatingwebhookconfigurations") if w["metadata"]["name"].startswith("rbg-")
    ], "this test needs no webhook installed"
    cyclic = group(
        "cyclic",
        [
            {"name": "a", "dependencies": ["b"], "template": {"spec": {"containers": CONTAINERS}}},
            {"name": "b", "dependencies": ["a"], "template": {"spec": {"containers": CONTAINERS}}},
        ],
    )
    valid = group("valid", [{"name": "web", "template": {"spec": {"containers": CONTAINERS}}}])
    kubectl.apply([cyclic, valid], namespace)

    refused = wait_for(
        "cyclic group Ready=False",
        lambda: (
            (g := kubectl.get("rbg", "cyclic", namespace))
            and (condition(g, "Ready") or {}).get("status") == "False"
            and g
        ),
        30,
    )
    ready = condition(refused, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.roles: dependency cycle a -> b -> a" in ready["message"]
    events = wait_for(
        "InvalidSpec event",
        lambda: [
            e
            for e in kubectl.get("events", namespace=namespace)
            if e["involvedObject"]["name"] == "cyclic" and e["reason"] == "InvalidSpec"
        ],
        30,
    )
    assert events[0]["type"] == "Warning" and "dependency cycle" in events[0]["message"]
    assert (
        kubectl.get("statefulsets", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=cyclic") == []
    )

    wait_for(
        "valid neighbour Ready",
        lambda: (condition(kubectl.get("rbg", "valid", namespace), "Ready") or {}).get("status") == "True",
        60,
    )
