"""The RoleInstance pass's decisions, from a snapshot and a clock: which pods it deletes, creates
and updates in place, in which order, and the status, conditions, Events and requeue that follow.
No cluster, no API."""

from __future__ import annotations

import copy
import datetime
import json

from rbg_operator import naming
from rbg_operator.controller import conditions
from rbg_operator.controller.diff import contains
from rbg_operator.controller.roleinstance_plan import (
    Create,
    MarkGraceStart,
    Outcome,
    RoleInstanceSnapshot,
    UpdateInPlace,
    conclude,
    desired_pods,
    plan,
    pod_names,
    pod_slots,
    spec_without_images,
)
from rbg_operator.desired import component_discovery
from rbg_operator.hashing import json_digest

NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)
DEPENDS_ON = "rolebasedgroup.workloads.x-k8s.io/component-depends-on"


def template(image: str = "app:v1", **container) -> dict:
    return {"spec": {"containers": [{"name": "main", "image": image, **container}]}}


def instance(
    components: list[dict] | None = None,
    role_type: str = "Components",
    annotations: dict | None = None,
    restart: dict | None = None,
    **status,
) -> dict:
    body = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleInstance",
        "metadata": {
            "name": "i",
            "namespace": "ns",
            "uid": "inst-uid",
            "generation": 1,
            "labels": {naming.LABEL_V2_ROLE_TYPE: role_type},
            "annotations": annotations or {},
        },
        "spec": {"components": components or [{"name": "web", "size": 1, "template": template()}]},
        "status": {"observedGeneration": 1, **status},
    }
    if restart:
        body["spec"]["restartPolicyConfig"] = restart
    return body


def running(body: dict, ready: bool = True, restarts: int = 0, only: set[str] | None = None) -> dict[str, dict]:
    """The instance's pods as the cache shows them once made from `body`."""
    pods = {}
    for name, pod in desired_pods(body).items():
        if only is not None and name not in only:
            continue
        pod["metadata"]["uid"] = f"uid-{name}"
        pod["status"] = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]
            # the readiness gates of a whole ready instance were made True by an earlier pass
            + [
                {"type": g["conditionType"], "status": "True"}
                for g in pod["spec"].get("readinessGates", [])
                if ready and only is None
            ],
            "containerStatuses": [{"name": "main", "restartCount": restarts}],
        }
        pods[name] = pod
    return pods


def was_ready(body: dict) -> dict:
    body["status"]["conditions"] = [{"type": "RoleInstanceReady", "status": "True", "lastTransitionTime": "x"}]
    return body


def as_written(body: dict, planned) -> Outcome:
    """Every write went through: a new pod is not ready yet; an updated one keeps its status."""
    written = {}
    for action in planned.actions:
        if isinstance(action, Create):
            written[action.slot.name] = action.slot.pod(body)
        elif isinstance(action, UpdateInPlace):
            # the answer of the write: the new spec, the status the pod had
            written[action.slot.name] = action.slot.pod(body, like=action.like) | {"status": action.like["status"]}
    return Outcome(written)


def pass_over(
    body: dict, pods: dict[str, dict], held: dict[str, str] | None = None, now=NOW, found: dict[str, str] | None = None
):
    seen = RoleInstanceSnapshot(body, pods, held or {})
    planned = plan(seen, now)
    outcome = as_written(body, planned)
    if found:  # those names were not written
        outcome = Outcome({n: p for n, p in outcome.written.items() if n not in found}, found)
    return planned, conclude(seen, planned, outcome, now)


def steps(planned) -> list[tuple[str, str]]:
    return [(type(a).__name__, getattr(a, "name", None) or a.slot.name) for a in planned.actions]


def condition(report, kind: str) -> dict:
    return conditions.find(report.status["conditions"], kind) or {}


def test_each_pattern_gets_its_pods_named_as_the_contract_says():
    standalone = instance([{"name": "web", "size": 1, "template": template()}], role_type="PodTemplate")
    assert steps(plan(RoleInstanceSnapshot(standalone, {}), NOW)) == [("Create", "i")]
    leader_worker = instance(
        [{"name": "leader", "size": 1, "template": template()}, {"name": "worker", "size": 2, "template": template()}],
        role_type="LeaderWorkerSet",
    )
    planned = plan(RoleInstanceSnapshot(leader_worker, {}), NOW)
    assert steps(planned) == [("Create", "i-0"), ("Create", "i-1"), ("Create", "i-2")]
    worker = planned.actions[2].slot.pod(leader_worker)
    assert worker["metadata"]["labels"][naming.LABEL_V2_COMPONENT_INDEX] == "2"
    assert worker["metadata"]["ownerReferences"][0]["uid"] == "inst-uid"
    components = instance(
        [{"name": "router", "size": 1, "template": template()}, {"name": "engine", "size": 2, "template": template()}]
    )
    assert steps(plan(RoleInstanceSnapshot(components, {}), NOW)) == [
        ("Create", "i-router-0"),
        ("Create", "i-engine-0"),
        ("Create", "i-engine-1"),
    ]
    assert pod_names(components) == list(pod_slots(components))


def test_new_pods_are_counted_but_not_ready_and_a_steady_instance_writes_nothing():
    body = instance()
    planned, report = pass_over(body, {})
    assert condition(report, "RoleInstanceReady")["status"] == "False"
    assert report.status["componentStatuses"] == [
        {
            "name": "web",
            "size": 1,
            "readyReplicas": 0,
            "availableReplicas": 0,
            "updatedReplicas": 1,
            "updatedReadyReplicas": 0,
            "scheduledReplicas": 0,
        }
    ]
    pods = running(body)
    planned, report = pass_over(body, pods)
    assert planned.actions == () and report.requeue is None
    assert condition(report, "RoleInstanceReady")["status"] == "True"
    assert condition(report, "InPlaceUpdateBlocked")["status"] == "False"
    body["status"] = report.status
    _, again = pass_over(body, pods)
    assert contains(body["status"], again.status), "a pass that changes nothing must write nothing"


def test_an_image_change_updates_in_place_recording_the_restart_counts_first():
    old = instance()
    pods = running(old, restarts=3)
    new = instance([{"name": "web", "size": 1, "template": template("app:v2")}])
    planned, report = pass_over(new, pods)
    assert steps(planned) == [("UpdateInPlace", "i-web-0")]
    assert planned.actions[0].status_first["inPlaceUpdateContainerBaselines"] == {
        "i-web-0": {"main": {"restartCount": 3}}
    }
    assert report.status["inPlaceUpdateContainerBaselines"] == {"i-web-0": {"main": {"restartCount": 3}}}
    assert planned.actions[0].slot.pod(new)["spec"]["containers"][0]["image"] == "app:v2"
    assert condition(report, "RoleInstanceReady")["status"] == "True", "the updated pod counts at once"


def test_any_other_change_recreates_the_pod_and_looks_again_soon():
    pods = running(instance())
    new = instance([{"name": "web", "size": 1, "template": template("app:v1", args=["--port=9"])}])
    planned, report = pass_over(new, pods)
    assert steps(planned) == [("Delete", "i-web-0")] and planned.actions[0].uid == "uid-i-web-0"
    assert report.requeue == 1.0 and condition(report, "RoleInstanceReady")["status"] == "False"


def test_in_place_only_leaves_a_pod_it_cannot_update_and_says_why():
    pods = running(instance())
    only = instance(
        [{"name": "web", "size": 1, "template": template("app:v1", args=["--x"])}],
        annotations={"rolebasedgroup.workloads.x-k8s.io/in-place-only": "true"},
    )
    planned, report = pass_over(only, pods)
    assert planned.actions == ()
    blocked = condition(report, "InPlaceUpdateBlocked")
    assert blocked["status"] == "True" and blocked["message"].startswith("pod i-web-0 changes more than images")


def test_the_grace_period_is_marked_on_the_pod_then_waited_out_then_the_image_changes():
    pods = running(instance())
    grace = {naming.ANNOTATION_V2_GRACE_PERIOD: "4"}
    new = instance([{"name": "web", "size": 1, "template": template("app:v2")}], annotations=grace)
    revision = pod_slots(new)["i-web-0"].plan.revision
    planned, report = pass_over(new, pods)
    assert planned.actions == (MarkGraceStart("i-web-0", f"{revision}-{int(NOW.timestamp())}"),)
    assert report.requeue == 4.0
    pods["i-web-0"]["metadata"]["labels"][naming.LABEL_IN_PLACE_SINCE] = f"{revision}-{int(NOW.timestamp()) - 1}"
    planned, report = pass_over(new, pods)
    assert planned.actions == () and report.requeue == 3.0
    later = NOW + datetime.timedelta(seconds=4)
    assert steps(plan(RoleInstanceSnapshot(new, pods), later)) == [("UpdateInPlace", "i-web-0")]
    # A mark for another revision starts the period again.
    pods["i-web-0"]["metadata"]["labels"][naming.LABEL_IN_PLACE_SINCE] = f"other-{int(NOW.timestamp()) - 60}"
    assert steps(plan(RoleInstanceSnapshot(new, pods), NOW)) == [("MarkGraceStart", "i-web-0")]


def test_a_container_restart_recreates_every_pod_of_the_instance_then_backs_off():
    policy = {"type": "RecreateRoleInstanceOnPodRestart", "baseDelaySeconds": 4, "maxDelaySeconds": 8}
    body = was_ready(
        instance(
            [
                {"name": "leader", "size": 1, "template": template()},
                {"name": "worker", "size": 1, "template": template()},
            ],
            role_type="LeaderWorkerSet",
            restart=policy,
        )
    )
    pods = running(body)
    pods["i-1"]["status"]["containerStatuses"][0]["restartCount"] = 1
    planned, report = pass_over(body, pods)
    assert steps(planned) == [("Delete", "i-0"), ("Delete", "i-1")]
    assert (report.status["restartCount"], report.status["lastRestartTime"]) == (1, "2026-12-05T08:00:00Z")
    assert report.status["inPlaceUpdateContainerBaselines"] == {}
    assert condition(report, "Restarting")["status"] == "True"
    assert condition(report, "RoleInstanceReady")["status"] == "False"
    assert [e.reason for e in report.events] == ["ReCreateInstance"]
    assert report.status["componentStatuses"][0]["readyReplicas"] == 0, "no pod is left"
    # The second recreation waits base x 2^0 = 4 s after the first: crashed pods stay meanwhile.
    body["status"].update(restartCount=1, lastRestartTime="2026-12-05T07:59:58Z")
    planned, report = pass_over(body, pods)
    assert planned.actions == () and report.requeue == 2.0 and report.events == ()
    assert "InPlaceUpdateBlocked" not in {c["type"] for c in report.status["conditions"]}
    assert steps(plan(RoleInstanceSnapshot(body, pods), NOW + datetime.timedelta(seconds=2)))[0] == ("Delete", "i-0")


def test_a_restart_the_new_image_causes_is_no_crash_and_a_stable_instance_forgets_its_restarts():
    policy = {"type": "RecreateRoleInstanceOnPodRestart", "baseDelaySeconds": 4, "maxDelaySeconds": 8}
    body = was_ready(
        instance(
            restart=policy,
            restartCount=2,
            lastRestartTime="2026-12-05T07:00:00Z",
            inPlaceUpdateContainerBaselines={"i-web-0": {"main": {"restartCount": 0}}},
        )
    )
    planned, report = pass_over(body, running(body, restarts=1))
    assert planned.actions == ()
    assert report.status["restartCount"] == 0, "an hour without a restart starts the backoff afresh"
    body["status"]["lastRestartTime"] = "2026-12-05T07:59:00Z"
    assert pass_over(body, running(body, restarts=1))[1].status["restartCount"] == 2


def test_a_failed_pod_is_deleted_and_made_again_in_the_same_pass():
    body = instance()
    pods = running(body)
    pods["i-web-0"]["status"]["phase"] = "Failed"
    assert steps(plan(RoleInstanceSnapshot(body, pods), NOW)) == [("Delete", "i-web-0"), ("Create", "i-web-0")]


def test_extra_pods_go_after_the_components_they_are_deleted_after():
    order = {DEPENDS_ON: json.dumps({"startAfter": ["engine"]})}
    before = instance(
        [
            {"name": "router", "size": 2, "annotations": order, "template": template()},
            {"name": "engine", "size": 2, "template": template()},
        ]
    )
    pods = running(before)
    after = instance(
        [
            {"name": "router", "size": 1, "annotations": order, "template": template()},
            {"name": "engine", "size": 1, "template": template()},
        ]
    )
    assert steps(plan(RoleInstanceSnapshot(after, pods), NOW)) == [("Delete", "i-router-1")]
    del pods["i-router-1"]
    assert steps(plan(RoleInstanceSnapshot(after, pods), NOW)) == [("Delete", "i-engine-1")]


def test_a_component_starts_only_once_every_pod_it_starts_after_is_ready():
    order = {DEPENDS_ON: json.dumps({"startAfter": ["engine"]})}
    body = instance(
        [
            {"name": "router", "size": 1, "annotations": order, "template": template()},
            {"name": "engine", "size": 2, "template": template()},
        ]
    )
    assert steps(plan(RoleInstanceSnapshot(body, {}), NOW)) == [("Create", "i-engine-0"), ("Create", "i-engine-1")]
    pods = running(body, only={"i-engine-0", "i-engine-1"})
    pods["i-engine-1"]["status"]["conditions"][0]["status"] = "False"
    assert steps(plan(RoleInstanceSnapshot(body, pods), NOW)) == []
    pods["i-engine-1"]["status"]["conditions"][0]["status"] = "True"
    assert steps(plan(RoleInstanceSnapshot(body, pods), NOW)) == [("Create", "i-router-0")]


def test_a_pod_name_held_by_a_bare_pod_is_never_written_and_the_instance_says_so():
    body = instance()
    message = "Pod i-web-0 already exists and has no controller; RoleInstance i leaves it alone"
    planned, report = pass_over(body, {}, held={"i-web-0": message})
    assert planned.actions == ()
    ready = condition(report, "RoleInstanceReady")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ChildConflict", message)
    assert [(e.type, e.reason) for e in report.events] == [("Warning", "ChildConflict")]
    assert report.requeue == 30
    body["status"] = report.status
    _, again = pass_over(body, {}, held={"i-web-0": message})
    assert again.events == (), "the same conflict is told once"


def test_a_pod_name_found_held_only_at_write_time_is_a_conflict_too():
    body = instance()
    planned, report = pass_over(body, {}, found={"i-web-0": "Pod i-web-0 is someone else's"})
    assert steps(planned) == [("Create", "i-web-0")]  # the cache did not show it
    assert condition(report, "RoleInstanceReady")["message"] == "Pod i-web-0 is someone else's"
    assert report.status["componentStatuses"][0]["updatedReplicas"] == 0


def test_the_pass_at_the_pod_cap_plans_in_well_under_a_second():
    import time

    body = instance(
        [
            {
                "name": f"c{i}",
                "size": 78,
                "template": template(env=[{"name": f"E{j}", "value": "v" * 20} for j in range(120)]),
            }
            for i in range(64)
        ]
    )
    started = time.perf_counter()
    seen = RoleInstanceSnapshot(body, {})
    planned = plan(seen, NOW)
    conclude(seen, planned, Outcome(), NOW)
    assert len(planned.actions) == 64 * 78
    assert time.perf_counter() - started < 0.5


def test_all_pod_ready_says_which_pods_hold_the_instance_back_and_none_is_ready_at_once():
    body = instance([{"name": "web", "size": 2, "template": template()}])
    pods = running(body, only={"i-web-0"})
    _, report = pass_over(body, pods)
    assert condition(report, "RoleInstanceReady")["status"] == "False"
    waiting = condition(report, "RoleInstanceAllPodsReady")
    assert (waiting["status"], waiting["reason"]) == ("False", "AtLeastOnePodNotReady")
    assert "i-web-1" in waiting["message"] and "i-web-0" not in waiting["message"]
    _, report = pass_over(body, running(body))
    assert (
        condition(report, "RoleInstanceAllPodsReady")["reason"],
        condition(report, "RoleInstanceReady")["reason"],
    ) == (
        "PodsReady",
        "Ready",
    )
    at_once = instance([{"name": "web", "size": 2, "template": template()}])
    at_once["spec"]["readyPolicy"] = "None"
    _, report = pass_over(at_once, {})
    assert condition(report, "RoleInstanceReady")["status"] == "True"  # no pods yet, and ready
    assert condition(report, "RoleInstanceAllPodsReady") == {}


GRACE = {naming.ANNOTATION_V2_GRACE_PERIOD: "30"}


def gates(pod: dict) -> list[str]:
    return [g["conditionType"] for g in pod["spec"].get("readinessGates", [])]


def gate_writes(planned) -> dict[str, dict[str, str]]:
    return {
        a.name: {c["type"]: c["status"] for c in a.conditions}
        for a in planned.actions
        if type(a).__name__ == "SetPodConditions"
    }


def test_pods_carry_the_readiness_gates_that_have_work_to_do():
    two = [{"name": "leader", "size": 1, "template": template()}, {"name": "worker", "size": 1, "template": template()}]
    assert gates(desired_pods(instance(two))["i-leader-0"]) == ["InstancePodReady"]
    assert gates(desired_pods(instance(two, annotations=GRACE))["i-worker-0"]) == [
        "InPlaceUpdateReady",
        "InstancePodReady",
    ]
    single = instance()
    assert gates(desired_pods(single)["i-web-0"]) == []  # its own readiness is the instance's
    none_policy = instance(two)
    none_policy["spec"]["readyPolicy"] = "None"
    assert gates(desired_pods(none_policy)["i-leader-0"]) == []


def test_instance_pod_ready_turns_true_on_every_pod_only_once_all_of_them_run():
    two = instance(
        [{"name": "leader", "size": 1, "template": template()}, {"name": "worker", "size": 1, "template": template()}]
    )
    pods = running(two, only={"i-leader-0", "i-worker-0"})  # containers ready, gates not yet written
    pods["i-worker-0"]["status"]["conditions"] = [{"type": "ContainersReady", "status": "False"}]
    assert gate_writes(plan(RoleInstanceSnapshot(two, pods), NOW)) == {}  # absent already counts as False
    pods["i-worker-0"]["status"]["conditions"] = [{"type": "ContainersReady", "status": "True"}]
    assert gate_writes(plan(RoleInstanceSnapshot(two, pods), NOW)) == {
        "i-leader-0": {"InstancePodReady": "True"},
        "i-worker-0": {"InstancePodReady": "True"},
    }
    # one pod's containers stop being ready: every pod of the instance leaves its endpoints
    whole = running(two)
    whole["i-worker-0"]["status"]["conditions"].append({"type": "ContainersReady", "status": "False"})
    assert gate_writes(plan(RoleInstanceSnapshot(two, whole), NOW)) == {
        "i-leader-0": {"InstancePodReady": "False"},
        "i-worker-0": {"InstancePodReady": "False"},
    }


def test_a_component_started_after_another_waits_for_its_containers_not_its_gated_ready():
    order = {DEPENDS_ON: json.dumps({"startAfter": ["engine"]})}
    body = instance(
        [
            {"name": "engine", "size": 1, "template": template()},
            {"name": "router", "size": 1, "annotations": order, "template": template()},
        ]
    )
    pods = running(body, only={"i-engine-0"})
    # Ready stays False until InstancePodReady, which waits for the router: only the containers count
    pods["i-engine-0"]["status"]["conditions"] = [
        {"type": "ContainersReady", "status": "True"},
        {"type": "Ready", "status": "False"},
    ]
    assert steps(plan(RoleInstanceSnapshot(body, pods), NOW)) == [("Create", "i-router-0")]


def test_in_place_update_ready_is_false_through_the_grace_period_and_true_once_the_new_image_runs():
    body = instance(annotations=GRACE)
    pods = running(body)
    assert gates(pods["i-web-0"]) == ["InPlaceUpdateReady"]
    changed = instance([{"name": "web", "size": 1, "template": template("app:v2")}], annotations=GRACE)
    planned = plan(RoleInstanceSnapshot(changed, pods), NOW)
    assert steps(planned) == [("MarkGraceStart", "i-web-0"), ("SetPodConditions", "i-web-0")]
    assert gate_writes(planned) == {"i-web-0": {"InPlaceUpdateReady": "False"}}
    # the grace period is over: the images change, and the gate stays False meanwhile
    pods["i-web-0"]["metadata"]["labels"][naming.LABEL_IN_PLACE_SINCE] = planned.actions[0].since
    pods["i-web-0"]["status"]["conditions"][1]["status"] = "False"
    later = NOW + datetime.timedelta(seconds=31)
    planned = plan(RoleInstanceSnapshot(changed, pods), later)
    assert steps(planned) == [("UpdateInPlace", "i-web-0")]
    _, report = pass_over(changed, pods, now=later)
    assert condition(report, "RoleInstanceInPlaceUpdateReady")["status"] == "False"
    assert condition(report, "RoleInstanceReady")["reason"] == "InplaceUpdateNotReady"
    # the pod is at the new revision; the gate waits for a container to restart on the new image
    updated = running(changed)
    updated["i-web-0"]["status"]["conditions"][1]["status"] = "False"
    changed["status"]["inPlaceUpdateContainerBaselines"] = {"i-web-0": {"main": {"restartCount": 0}}}
    assert gate_writes(plan(RoleInstanceSnapshot(changed, updated), later)) == {}
    updated["i-web-0"]["status"]["containerStatuses"][0]["restartCount"] = 1
    assert gate_writes(plan(RoleInstanceSnapshot(changed, updated), later)) == {
        "i-web-0": {"InPlaceUpdateReady": "True"}
    }


def test_a_pod_held_by_its_in_place_update_never_triggers_the_restart_policy():
    policy = {"type": "RecreateRoleInstanceOnPodRestart"}
    body = was_ready(instance(annotations=GRACE, restart=policy))
    pods = running(body, restarts=3)
    pods["i-web-0"]["status"]["conditions"][1]["status"] = "False"  # InPlaceUpdateReady
    assert not plan(RoleInstanceSnapshot(body, pods), NOW).decision.recreate
    pods["i-web-0"]["status"]["conditions"][1]["status"] = "True"
    assert plan(RoleInstanceSnapshot(body, pods), NOW).decision.recreate


def test_an_in_place_update_keeps_the_gates_and_affinity_the_pod_was_made_with():
    body = instance(annotations=GRACE)
    live = running(body)["i-web-0"]
    changed = instance([{"name": "web", "size": 1, "template": template("app:v2")}])  # grace gone since
    slot = pod_slots(changed)["i-web-0"]
    assert gates(slot.pod(changed)) == []
    assert gates(slot.pod(changed, like=live)) == ["InPlaceUpdateReady"]


def test_a_pod_in_its_in_place_update_holds_instance_pod_ready_on_every_pod():
    two = instance(
        [{"name": "leader", "size": 1, "template": template()}, {"name": "worker", "size": 1, "template": template()}],
        annotations=GRACE,
    )
    pods = running(two)  # gates True, containers ready
    pods["i-worker-0"]["status"]["conditions"] = [
        {"type": "ContainersReady", "status": "True"},
        {"type": "InPlaceUpdateReady", "status": "False"},
        {"type": "InstancePodReady", "status": "True"},
    ]
    writes = gate_writes(plan(RoleInstanceSnapshot(two, pods), NOW))
    # every gate goes in each write: an apply that left one out would remove it
    assert writes["i-leader-0"] == {"InPlaceUpdateReady": "True", "InstancePodReady": "False"}


def test_a_pod_made_under_another_service_name_is_recreated_for_its_new_network_identity():
    body = instance([{"name": "worker", "size": 1, "template": template()}])
    named = instance([{"name": "worker", "size": 1, "serviceName": "s-g-pd", "template": template()}])
    assert steps(plan(RoleInstanceSnapshot(named, running(body)), NOW)) == [("Delete", "i-worker-0")]
    assert steps(plan(RoleInstanceSnapshot(body, running(named)), NOW)) == [("Delete", "i-worker-0")]
    assert desired_pods(named)["i-worker-0"]["spec"]["subdomain"] == "s-g-pd"


def test_an_instances_own_readiness_gates_hold_its_ready_condition():
    body = instance()
    body["spec"]["readinessGates"] = [
        {"conditionType": "RoleInstanceInPlaceUpdateReady"},
        {"conditionType": "example.com/Warm"},
    ]
    _, report = pass_over(body, running(body))
    ready = condition(report, "RoleInstanceReady")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == "readiness gates not True: example.com/Warm"
    body["status"]["conditions"] = [{"type": "example.com/Warm", "status": "True", "lastTransitionTime": "x"}]
    _, report = pass_over(body, running(body))
    assert condition(report, "RoleInstanceReady")["status"] == "True"


def test_component_discovery_gives_a_pod_its_siblings_addresses_and_ports():
    directive = json.dumps(
        {
            "addressRefs": [{"env": "ENGINE_ADDR", "component": "engine", "index": 1}, {"env": "X", "component": "no"}],
            "portRefs": [{"env": "ENGINE_PORT", "component": "engine", "portName": "http"}],
        }
    )
    router = template(env=[{"name": "ENGINE_PORT", "value": "mine"}])
    router["spec"]["initContainers"] = [{"name": "wait", "image": "busybox"}]
    engine = template(ports=[{"name": "http", "containerPort": 8000}])
    body = instance(
        [
            {
                "name": "router",
                "size": 1,
                "serviceName": "s-g-mix",
                "annotations": {"rolebasedgroup.workloads.x-k8s.io/component-discovery": directive},
                "template": router,
            },
            {"name": "engine", "size": 2, "serviceName": "s-g-mix", "template": engine},
        ]
    )
    pod = desired_pods(body)["i-router-0"]
    (main,) = pod["spec"]["containers"]
    assert main["env"] == [
        {"name": "ENGINE_ADDR", "value": "i-engine-1.s-g-mix.ns.svc.cluster.local"},
        {"name": "ENGINE_PORT", "value": "mine"},  # the user's own wins
    ]
    assert pod["spec"]["initContainers"][0]["env"][1] == {"name": "ENGINE_PORT", "value": "8000"}
    assert "rolebasedgroup.workloads.x-k8s.io/component-discovery" not in pod["metadata"].get("annotations", {})
    assert "env" not in desired_pods(body)["i-engine-0"]["spec"]["containers"][0]


def test_a_gang_instance_recreates_all_its_pods_when_one_cannot_change_in_place():
    gang = {naming.ANNOTATION_INSTANCE_GANG: "true"}
    two = [{"name": "a", "size": 1, "template": template()}, {"name": "b", "size": 1, "template": template()}]
    body = instance(two, annotations=gang)
    changed = instance([two[0], {"name": "b", "size": 1, "template": template(args=["--new"])}], annotations=gang)
    assert steps(plan(RoleInstanceSnapshot(changed, running(body)), NOW)) == [("Delete", "i-a-0"), ("Delete", "i-b-0")]
    image_only = instance([two[0], {"name": "b", "size": 1, "template": template("app:v2")}], annotations=gang)
    moves = [s for s in steps(plan(RoleInstanceSnapshot(image_only, running(body)), NOW)) if s[0] != "SetPodConditions"]
    assert moves == [("UpdateInPlace", "i-b-0")]
    alone = instance([two[0], {"name": "b", "size": 1, "template": template(args=["--new"])}])
    moves = [s for s in steps(plan(RoleInstanceSnapshot(alone, running(instance(two))), NOW)) if s[0] == "Delete"]
    assert moves == [("Delete", "i-b-0")]  # not a gang: the other pod stays


def test_a_port_ref_takes_the_port_the_allocator_gave_the_sibling_pod():
    directive = json.dumps({"portRefs": [{"env": "ENGINE_PORT", "component": "engine", "portName": "rpc", "index": 1}]})
    engine = template(ports=[{"name": "rpc", "containerPort": 8000}])
    body = instance(
        [
            {
                "name": "router",
                "size": 1,
                "annotations": {"rolebasedgroup.workloads.x-k8s.io/component-discovery": directive},
                "template": template(),
            },
            {"name": "engine", "size": 2, "template": engine},
        ],
        annotations={"rbg.workloads.x-k8s.io/pod-port-allocations": json.dumps({"i-engine-1": {"rpc": 31007}})},
    )
    (main,) = desired_pods(body)["i-router-0"]["spec"]["containers"]
    assert main["env"] == [{"name": "ENGINE_PORT", "value": "31007"}]


def test_an_in_place_update_carries_exactly_the_gates_the_pod_has_even_when_the_template_names_them():
    own = template()
    own["spec"]["readinessGates"] = [{"conditionType": "example.com/Warm"}, {"conditionType": "InPlaceUpdateReady"}]
    body = instance([{"name": "web", "size": 1, "template": own}], annotations=GRACE)
    live = running(body)["i-web-0"]
    assert gates(live) == ["example.com/Warm", "InPlaceUpdateReady"], "a gate the template names is not added twice"
    changed = copy.deepcopy(body)
    changed["spec"]["components"][0]["template"]["spec"]["containers"][0]["image"] = "app:v2"
    assert gates(pod_slots(changed)["i-web-0"].pod(changed, like=live)) == gates(live)


def test_a_change_of_the_discovered_env_recreates_the_pod_as_env_cannot_change_in_place():
    directive = json.dumps({"portRefs": [{"env": "ENGINE_PORT", "component": "engine", "portName": "http"}]})
    router = {"name": "router", "size": 1, "annotations": {component_discovery.ANNOTATION: directive}}

    def body(port: int, image: str) -> dict:
        engine = template(ports=[{"name": "http", "containerPort": port}])
        return instance([{**router, "template": template(image)}, {"name": "engine", "size": 1, "template": engine}])

    def moves(new: dict) -> list[tuple[str, str]]:
        return [s for s in steps(plan(RoleInstanceSnapshot(new, pods), NOW)) if s[0] != "SetPodConditions"]

    pods = running(body(8000, "app:v1"))
    assert moves(body(9000, "app:v2")) == [("Delete", "i-router-0"), ("Delete", "i-engine-0")]
    assert moves(body(8000, "app:v2")) == [("UpdateInPlace", "i-router-0")]


def test_the_revision_of_a_pod_without_directives_is_the_digest_of_its_template_as_before():
    # Pods made before the directives existed must stay current after an upgrade, not be recreated.
    plain = instance([{"name": "worker", "size": 1, "serviceName": "s-g-pd", "template": template()}])
    slot = pod_slots(plain)["i-worker-0"]
    assert slot.plan.revision == json_digest(template())
    assert slot.plan.spec_hash == json_digest(spec_without_images(template()["spec"]))


def test_an_in_place_update_that_changes_no_image_waits_for_no_container_restart():
    body = instance(annotations=GRACE)
    pods = running(body, restarts=2)
    labelled = copy.deepcopy(body)
    labelled["spec"]["components"][0]["template"]["metadata"] = {"labels": {"tier": "gold"}}
    later = NOW + datetime.timedelta(seconds=31)
    pods["i-web-0"]["metadata"]["labels"][naming.LABEL_IN_PLACE_SINCE] = (
        f"{pod_slots(labelled)['i-web-0'].plan.revision}-{int(NOW.timestamp())}"
    )
    planned = plan(RoleInstanceSnapshot(labelled, pods), later)
    (update,) = [a for a in planned.actions if isinstance(a, UpdateInPlace)]
    assert update.status_first["inPlaceUpdateContainerBaselines"] == {"i-web-0": {}}
    # once at the new revision, the gate turns True with no restart
    updated = running(labelled, restarts=2)
    updated["i-web-0"]["status"]["conditions"][1]["status"] = "False"
    labelled["status"]["inPlaceUpdateContainerBaselines"] = {"i-web-0": {}}
    assert gate_writes(plan(RoleInstanceSnapshot(labelled, updated), later)) == {
        "i-web-0": {"InPlaceUpdateReady": "True"}
    }


def young(body: dict, seconds_ago: float) -> dict:
    """`body` as just created: no status written yet, created `seconds_ago` before NOW."""
    created = (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**body, "metadata": {**body["metadata"], "creationTimestamp": created}, "status": {}}


def test_a_young_instances_first_status_that_says_only_not_ready_yet_is_held_until_its_pods_are_ready():
    body = young(instance(), 1)
    planned, report = pass_over(body, {})
    assert [type(a).__name__ for a in planned.actions] == ["Create"]
    assert report.status is None, "a first status that says only 'not ready yet' was written"
    assert report.requeue is not None and 0 < report.requeue <= 4, report.requeue  # written at the hold's end
    # Its pods Ready: the first status says so at once.
    _, report = pass_over(body, running(body))
    assert condition(report, "RoleInstanceReady")["status"] == "True"
    assert report.status["observedGeneration"] == 1


def test_a_first_status_is_written_once_the_hold_is_over_and_any_later_one_at_once():
    _, report = pass_over(young(instance(), 6), {})
    assert condition(report, "RoleInstanceReady")["reason"] == "PodsNotReady"
    _, report = pass_over(instance(), running(instance(), ready=False))  # one was written before
    assert report.status is not None and condition(report, "RoleInstanceReady")["status"] == "False"


def test_a_young_instances_first_status_with_something_to_say_is_not_held():
    body = young(instance(), 1)
    _, report = pass_over(body, {}, found={"i-web-0": "pod i-web-0 is not this instance's"})
    assert condition(report, "RoleInstanceReady")["reason"] == "ChildConflict"


def test_an_instance_whose_pods_were_made_late_holds_its_first_status_from_their_creation():
    """Under load an instance's pass comes long after its creation: the hold counts from its pods'."""
    body = young(instance(), 20)
    pods = running(body, ready=False)
    for pod in pods.values():
        pod["metadata"]["creationTimestamp"] = (NOW - datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, report = pass_over(body, pods)
    assert report.status is None and 0 < report.requeue <= 4
    for pod in pods.values():
        pod["metadata"]["creationTimestamp"] = (NOW - datetime.timedelta(seconds=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, report = pass_over(body, pods)
    assert report.status is not None and condition(report, "RoleInstanceReady")["reason"] == "PodsNotReady"
