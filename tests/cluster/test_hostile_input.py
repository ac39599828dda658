"""Bad and hostile input on the real control plane: refused at admission with a message that
names the field and the limit, or (where admission cannot see it) reported in the group's
status and Events, while a healthy group beside it keeps reconciling and the operator's
memory stays flat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.patches import nested_patch

C = [{"name": "main", "image": "example.com/app:v1"}]


def group(name: str, roles: list[dict], **spec) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": roles, **spec},
    }


def role(name: str = "a", **fields) -> dict:
    return {"name": name, "template": {"spec": {"containers": C}}, **fields}


REJECTED = {
    "replicas over the per-role cap": (group("huge", [role(replicas=50_000_000)]), ["spec.roles[0].replicas", "5000"]),
    "pods over the group cap": (
        group("wide", [role("a", replicas=3000), role("b", replicas=3000)]),
        ["spec.roles", "at most 5000"],
    ),
    "leader-worker size over its cap": (
        group(
            "tall",
            [
                {
                    "name": "a",
                    "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
                    "leaderWorkerSet": {"size": 1000},
                    "template": {"spec": {"containers": C}},
                }
            ],
        ),
        ["leaderWorkerSet.size", "256"],
    ),
    "a group name longer than a label value": (group("g" * 69, [role()]), ["metadata.name", "63"]),
    "a StatefulSet workload name its pods cannot carry": (
        group("g" * 30, [role("r" * 30)]),
        ["{rbg}-{role}", "52 characters for StatefulSet"],
    ),
    "a percentage that is not whole": (
        group("pct", [role(rolloutStrategy={"rollingUpdate": {"maxUnavailable": "1.5%"}})]),
        ["maxUnavailable", "whole percentage"],
    ),
    "a set with too many members": (
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "many"},
            "spec": {"replicas": 5000, "template": {"roles": [role()]}},
        },
        ["spec.replicas", "1000"],
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_admission_refuses_naming_the_field_and_the_limit(kubectl: Kubectl, namespace: str, case: str):
    """CEL and schema bounds: no webhook needed."""
    manifest, words = REJECTED[case]
    kubectl.refuses(manifest, namespace, words, case, verb="apply")


def test_the_webhook_refuses_deep_patches_and_warns_about_fields_not_acted_on(
    kubectl: Kubectl, admission_webhook, namespace: str
):
    lws = {
        "name": "a",
        "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
        "template": {"spec": {"containers": C}},
    }
    too_deep = group("deep", [{**lws, "leaderWorkerSet": {"size": 2, "patchWorkerTemplate": nested_patch(40)}}])
    result = kubectl.run(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(too_deep), check=False
    )
    assert result.returncode != 0
    assert "spec.roles[0].leaderWorkerSet.patchWorkerTemplate: nested 40 levels deep, at most 24" in result.stderr

    unused = group(
        "unused",
        [role("a", rolloutStrategy={"rollingUpdate": {"type": "InPlaceIfPossible"}}), {**lws, "name": "b"}],
        coordination=[{"name": "c", "roles": ["a", "b"], "strategy": {"rollingUpdate": {"maxSkew": "10%"}}}],
    )
    result = kubectl.run("apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(unused))
    for field in (
        "spec.roles[0].rolloutStrategy.rollingUpdate.type",
        "spec.coordination[0].strategy.rollingUpdate: paces StatefulSet roles only; role b",
    ):
        assert f"Warning: {field}" in result.stderr, (field, result.stderr)


def events(kubectl: Kubectl, namespace: str, reason: str) -> list[str]:
    return [e["message"] for e in kubectl.get("events", namespace=namespace) if e["reason"] == reason]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def test_what_admission_cannot_see_reaches_status_and_events_and_spares_the_rest(
    kubectl: Kubectl, operator, namespace: str
):
    before = rss_mb(operator.proc.pid)
    # A ConfigMap of the name the group's topology needs, made by someone else.
    kubectl.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "clash"}, "data": {"mine": "yes"}}, namespace
    )
    kubectl.apply(group("clash", [role()]), namespace)
    # A container name the API server refuses only when the StatefulSet is written.
    kubectl.apply(
        group(
            "refused",
            [
                {
                    "name": "a",
                    "template": {"spec": {"containers": [{"name": "Not_A_DNS_Label", "image": "example.com/app:v1"}]}},
                }
            ],
        ),
        namespace,
    )
    # A field accepted but not acted on, and a profile that does not exist.
    kubectl.apply(group("unused", [role(rolloutStrategy={"rollingUpdate": {"type": "InPlaceIfPossible"}})]), namespace)
    kubectl.apply(group("noprofile", [role(engineRuntimes=[{"profileName": "no-such-profile"}])]), namespace)
    kubectl.apply(group("fine", [role(replicas=2)]), namespace)

    def ready(name: str) -> dict:
        return condition(kubectl.get("rbg", name, namespace), "Ready") or {}

    wait_for("the healthy group Ready beside the bad ones", lambda: ready("fine").get("status") == "True", 60)
    clash = wait_for(
        "the conflict reported", lambda: ready("clash").get("reason") == "ChildConflict" and ready("clash"), 30
    )
    assert "ConfigMap clash already exists" in clash["message"] and clash["status"] == "False"
    wait_for(
        "a Warning Event naming the ConfigMap",
        lambda: any("ConfigMap clash" in m for m in events(kubectl, namespace, "ChildConflict")),
        30,
    )
    untouched = kubectl.get("configmap", "clash", namespace)
    assert untouched["data"] == {"mine": "yes"} and not untouched["metadata"].get("ownerReferences"), (
        "the ConfigMap was adopted or overwritten"
    )

    refused = wait_for(
        "the API server's refusal reported",
        lambda: ready("refused").get("reason") == "ReconcileError" and ready("refused"),
        60,
    )
    assert "Not_A_DNS_Label" in refused["message"] and "422" in refused["message"], refused
    wait_for(
        "a Warning Event with the API server's message",
        lambda: any("Not_A_DNS_Label" in m for m in events(kubectl, namespace, "ReconcileError")),
        30,
    )

    wait_for(
        "an Event for the field not acted on",
        lambda: any(
            "spec.roles[0].rolloutStrategy.rollingUpdate.type" in m
            for m in events(kubectl, namespace, "FieldNotActedOn")
        ),
        30,
    )
    assert ready("unused").get("status") == "True"
    missing = wait_for(
        "the missing profile reported",
        lambda: ready("noprofile").get("reason") == "EngineRuntimeProfileNotFound" and ready("noprofile"),
        30,
    )
    assert "spec.roles[0].engineRuntimes[0].profileName" in missing["message"]

    # Removing the obstacle lets the group through.
    kubectl.delete("configmap", "clash", namespace)
    wait_for("the group Ready once its name is free", lambda: ready("clash").get("status") == "True", 90)
    assert rss_mb(operator.proc.pid) - before < 25, "the operator's memory grew with the bad input"
