"""Drain-aware updates (docs/drain.md) on the real control plane, with kwok's pods: their
addresses answer nothing, so the router is unreachable. The admission of the drain annotation; an
in-place update that waits for the drain timeout with the group's Draining condition saying why,
then goes on; and an operator killed in the middle of that drain, whose successor continues it
from the persisted start and updates the pod once. The drain through the real router, with real
servers, is tests/cluster/test_drain_real_node.py and tests/test_drain_router.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rbg_operator.api import drain
from rbg_operator.controller import drain_plan
from rbg_operator.timestamps import parse
from tests.support.kubectl import Kubectl, condition, group_ready, wait_for
from tests.support.operator import OperatorProcess

V2 = "workloads.x-k8s.io/v1alpha2"
TIMEOUT = 12  # the drain timeout of these groups, seconds


def template(image: str) -> dict:
    return {"spec": {"containers": [{"name": "main", "image": image}]}}


def group(name: str, image: str = "example.com/decode:v1", directive: dict | str | None = None) -> dict:
    if directive is None:
        directive = {"router": "router", "roles": ["decode"], "timeoutSeconds": TIMEOUT}
    text = directive if isinstance(directive, str) else json.dumps(directive)
    return {
        "apiVersion": V2,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, "annotations": {drain.ANNOTATION: text}},
        "spec": {
            "roles": [
                {"name": "router", "replicas": 1, "standalonePattern": {"template": template("example.com/router:v1")}},
                {"name": "decode", "replicas": 1, "standalonePattern": {"template": template(image)}},
            ]
        },
    }


def test_admission_refuses_a_bad_drain_annotation_naming_it(kubectl: Kubectl, admission_webhook, namespace: str):
    where = f"metadata.annotations[{drain.ANNOTATION}]"
    kubectl.refuses(group("bad", directive="{"), namespace, [where, "not JSON"], "a drain annotation that is not JSON")
    kubectl.refuses(
        group("bad", directive={"router": "nope", "roles": ["decode"]}),
        namespace,
        [where, "'nope', which is not a role of the group"],
        "a drain annotation naming no role",
    )
    v1 = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "bad1", "annotations": {drain.ANNOTATION: '{"router": "router", "roles": []}'}},
        "spec": {
            "roles": [
                {"name": "router", "replicas": 1, "template": template("example.com/router:v1")},
                {"name": "decode", "replicas": 1, "template": template("example.com/decode:v1")},
            ]
        },
    }
    kubectl.refuses(v1, namespace, [where, "roles must name at least one worker role"], "a v1alpha1 drain annotation")
    v1["metadata"]["annotations"][drain.ANNOTATION] = '{"router": "router", "roles": ["decode"]}'
    kubectl.refuses(
        v1, namespace, [where, "roles.decode: role 'decode' runs as a StatefulSet"], "a drained StatefulSet role"
    )
    result = kubectl.run(
        "create", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(group("good"))
    )
    assert result.returncode == 0


def decode_pod(kubectl: Kubectl, ns: str) -> dict:
    return kubectl.get("pod", "dr-decode-0", ns)


def state_of(pod: dict | None) -> drain_plan.DrainState | None:
    return drain_plan.DrainState.of(pod) if pod else None


def events(kubectl: Kubectl, ns: str, reason: str) -> list[dict]:
    return [e for e in kubectl.get("events", namespace=ns) if e["reason"] == reason]


def test_an_unreachable_router_holds_an_update_for_the_timeout_across_a_failover(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    operator = OperatorProcess(kubeconfig, tmp_path / "operator-1.log", f"--namespace={ns}").start()
    try:
        kubectl.apply(group("dr"), ns)
        group_ready(kubectl, "dr", ns)
        before = decode_pod(kubectl, ns)
        kubectl.apply(group("dr", image="example.com/decode:v2"), ns)
        # The drain starts, persisted on the pod, and the group says why it waits.
        draining = wait_for(
            "the decode pod draining, the router unreachable",
            lambda: (s := state_of(decode_pod(kubectl, ns))) and s.phase == "Draining" and s.why and s,
            30,
        )
        assert draining.why.startswith("router unreachable"), draining
        cond = wait_for(
            "Draining=True on the group",
            lambda: (c := condition(kubectl.get("rbg", "dr", ns), "Draining")) and c["status"] == "True" and c,
            30,
        )
        assert cond["reason"] == "RouterUnreachable" and "role decode: draining dr-decode-0" in cond["message"]
        assert decode_pod(kubectl, ns)["spec"]["containers"][0]["image"] == "example.com/decode:v1"
        # The leader dies mid-drain; its successor continues from the persisted start.
        operator.proc.kill()
        operator.proc.wait()
        operator = OperatorProcess(kubeconfig, tmp_path / "operator-2.log", f"--namespace={ns}").start()
        updated = wait_for(
            "the decode pod updated in place after the drain timeout",
            lambda: (
                (p := decode_pod(kubectl, ns)) and p["spec"]["containers"][0]["image"] == "example.com/decode:v2" and p
            ),
            TIMEOUT + 40,
        )
        state = state_of(updated)
        assert state.phase == "Drained" and state.outcome == "RouterUnreachable" and state.started == draining.started
        finished = (parse(state.finished) - parse(state.started)).total_seconds()
        assert TIMEOUT <= finished < TIMEOUT + 10, state
        assert updated["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place, never deleted
        assert len(events(kubectl, ns, "DrainStarted")) == 1  # one drain, not begun again by the new leader
        cut = events(kubectl, ns, "DrainCutShort")
        assert len(cut) == 1 and "router unreachable" in cut[0]["message"]
        group_ready(kubectl, "dr", ns, timeout=60)
        wait_for(
            "Draining=False once the pod is drained",
            lambda: (c := condition(kubectl.get("rbg", "dr", ns), "Draining")) and c["status"] == "False",
            30,
        )
        assert operator.metrics().get('rbg_operator_drains_cut_short_total{outcome="RouterUnreachable"}') == 1
    finally:
        operator.stop()


def test_a_group_without_the_annotation_updates_at_once(kubectl: Kubectl, operator, namespace: str):
    plain = group("plain")
    del plain["metadata"]["annotations"]
    kubectl.apply(plain, namespace)
    group_ready(kubectl, "plain", namespace)
    plain["spec"]["roles"][1]["standalonePattern"]["template"] = template("example.com/decode:v2")
    started = time.monotonic()
    kubectl.apply(plain, namespace)
    wait_for(
        "the update without a drain",
        lambda: (
            kubectl.get("pod", "plain-decode-0", namespace)["spec"]["containers"][0]["image"] == "example.com/decode:v2"
        ),
        30,
    )
    assert time.monotonic() - started < TIMEOUT
    assert state_of(kubectl.get("pod", "plain-decode-0", namespace)) is None
