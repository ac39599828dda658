"""The group reconcile's decisions, made by plan() from a snapshot, without an API server: start
order, rollouts, restarts, stuck pods, who owns replicas, the progress deadline, invalid specs.
Each test builds the store a pass would see, observes it and asserts what the plan decides."""

from __future__ import annotations

import datetime

from rbg_operator import naming, timestamps
from rbg_operator.api.conversion import V1, V2, convert
from rbg_operator.controller import conditions
from rbg_operator.controller.group_plan import GroupOptions, GroupPlan, plan
from rbg_operator.controller.group_snapshot import GroupSnapshot, observe
from rbg_operator.controller.restarts import encode_state, uid_key
from rbg_operator.controller.steps import (
    Apply,
    CountRecreation,
    Delete,
    DeletePod,
    Emit,
    RecordRevision,
    WriteRestartState,
)
from rbg_operator.controller.store import Store

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)
OPTIONS = GroupOptions()
C = [{"name": "main", "image": "i:1"}]
STS = {"apiVersion": "apps/v1", "kind": "StatefulSet"}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment"}


def role(name: str, replicas: int = 2, workload: dict = STS, image: str = "i:1", **fields) -> dict:
    return {
        "name": name,
        "replicas": replicas,
        "workload": workload,
        "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
        **fields,
    }


def group_body(
    *roles: dict, generation: int = 1, status: dict | None = None, annotations: dict | None = None, **spec
) -> dict:
    body = convert(
        {
            "apiVersion": V1,
            "kind": "RoleBasedGroup",
            "metadata": {
                "name": "g",
                "namespace": "ns",
                "uid": "u-g",
                "generation": generation,
                "resourceVersion": "1",
                "annotations": annotations or {},
            },
            "spec": {"roles": list(roles), **spec},
        },
        V2,
    )
    if status is not None:
        body["status"] = status
    return body


def observed(body: dict, *objects: dict) -> GroupSnapshot:
    store = Store()
    for obj in [body, *objects]:
        store.upsert(obj)
    return observe(store, "ns", "g", OPTIONS.build)


def pod(
    name: str,
    role_name: str,
    *,
    ready: bool = True,
    node: str | None = "n1",
    restarts: int = 0,
    revision: str = "r1",
    age: float = 3600,
    uid: str | None = None,
    unschedulable: bool = False,
) -> dict:
    created = NOW - datetime.timedelta(seconds=age)
    status: dict = {
        "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": timestamps.stamp(created)}
        ],
        "startTime": timestamps.stamp(created),
        "containerStatuses": [{"name": "main", "restartCount": restarts, "ready": ready}],
    }
    if unschedulable:
        status = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid or f"uid-{name}",
            "resourceVersion": "1",
            "creationTimestamp": timestamps.stamp(created),
            "labels": {
                naming.LABEL_GROUP_NAME: "g",
                naming.LABEL_ROLE: role_name,
                "controller-revision-hash": revision,
                naming.STATEFULSET_POD_INDEX: name.rsplit("-", 1)[-1],
            },
        },
        "spec": {"nodeName": node} if node else {},
        "status": status,
    }


def running(obj: dict, ready: bool = True, **status) -> dict:
    """An applied object as its controller reports it at its first generation."""
    obj = {
        **obj,
        "metadata": {
            **obj["metadata"],
            "uid": f"uid-{obj['metadata']['name']}",
            "generation": 1,
            "resourceVersion": "1",
        },
    }
    replicas = obj.get("spec", {}).get("replicas", 0)
    done = replicas if ready else 0
    if obj["kind"] in ("StatefulSet", "Deployment", "LeaderWorkerSet", "RoleInstanceSet"):
        obj["status"] = {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": done,
            "availableReplicas": done,
            "updatedReplicas": replicas,
            "currentRevision": "r1",
            "updateRevision": "r1",
            **status,
        }
    return obj


def settled(body: dict, first: GroupPlan, ready: bool = True, **status) -> list[dict]:
    """What the store holds once a plan's writes are done and its workloads report."""
    objects = [running(d, ready, **status) for d in first.applied()]
    for step in first.steps:
        if isinstance(step, RecordRevision) and step.create is not None:
            objects.append(
                {**step.create, "metadata": {**step.create["metadata"], "uid": "uid-rev", "resourceVersion": "1"}}
            )
    return objects


def status_after(body: dict, decided: GroupPlan) -> dict:
    return {**body, "status": decided.status or body.get("status")}


def condition(decided: GroupPlan, type_: str) -> dict:
    return conditions.find(decided.status["conditions"], type_)


def workloads(decided: GroupPlan) -> dict[str, dict]:
    return {
        d["metadata"]["labels"][naming.LABEL_ROLE]: d
        for d in decided.applied()
        if d["kind"] in ("StatefulSet", "Deployment", "LeaderWorkerSet", "RoleInstanceSet")
    }


# -- start order ---------------------------------------------------------------------------------


def test_a_role_waits_for_its_dependency_to_be_ready_before_its_workload_is_created():
    body = group_body(role("router", 1, DEPLOYMENT, dependencies=["backend"]), role("backend", 2))
    first = plan(observed(body), OPTIONS, NOW)
    assert set(workloads(first)) == {"backend"}
    assert first.waiting == {"router": "backend"}
    assert condition(first, "Ready")["reason"] == "WaitingForDependencies"
    # The backend's Service comes before its workload, in one lane.
    lane = next(
        lane
        for batch in first.batches
        for lane in batch
        if any(isinstance(s, Apply) and s.desired["kind"] == "StatefulSet" for s in lane)
    )
    assert [s.desired["kind"] for s in lane] == ["Service", "StatefulSet"]

    started = settled(body, first, ready=False)
    assert set(workloads(plan(observed(status_after(body, first), *started), OPTIONS, NOW))) == set()

    ready = settled(body, first)
    second = plan(observed(status_after(body, first), *ready), OPTIONS, NOW)
    assert set(workloads(second)) == {"router"} and second.waiting == {}


def test_a_dependency_whose_spec_changes_this_pass_does_not_count_as_ready():
    body = group_body(role("router", 1, DEPLOYMENT, dependencies=["backend"]), role("backend", 2))
    ready = settled(body, plan(observed(body), OPTIONS, NOW))
    changed = group_body(
        role("router", 1, DEPLOYMENT, dependencies=["backend"]), role("backend", 2, image="i:2"), generation=2
    )
    decided = plan(observed(changed, *ready), OPTIONS, NOW)
    assert set(workloads(decided)) == {"backend"}
    assert decided.waiting == {"router": "backend"}


def test_a_dependency_whose_pod_template_loses_a_field_does_not_count_as_ready():
    labelled = {"spec": {"containers": C}, "metadata": {"labels": {"tier": "a"}}}
    body = group_body(
        role("router", 1, DEPLOYMENT, dependencies=["backend"]), {**role("backend", 2), "template": labelled}
    )
    ready = settled(body, plan(observed(body), OPTIONS, NOW))
    changed = group_body(role("router", 1, DEPLOYMENT, dependencies=["backend"]), role("backend", 2), generation=2)
    decided = plan(observed(changed, *ready), OPTIONS, NOW)
    assert decided.waiting == {"router": "backend"}
    assert not decided.progress["backend"].current


def test_a_pass_over_a_settled_group_writes_nothing():
    body = group_body(role("router", 1, DEPLOYMENT, dependencies=["backend"]), role("backend", 2))
    first = plan(observed(body), OPTIONS, NOW)
    children = settled(body, first)
    second = plan(observed(body := status_after(body, first), *children), OPTIONS, NOW)
    children += settled(body, second)
    assert condition(second, "Ready")["status"] == "False"  # the router only now created
    third = plan(observed(body := status_after(body, second), *children), OPTIONS, NOW)
    assert third.steps == [] and condition(third, "Ready")["status"] == "True"
    assert [e.reason for e in third.events] == ["AllRolesReady"]
    fourth = plan(observed(status_after(body, third), *children), OPTIONS, NOW)
    assert fourth.steps == [] and fourth.status is None and fourth.events == () and fourth.requeue_after is None


def test_a_role_that_left_the_spec_has_its_children_deleted():
    body = group_body(role("a"), role("b"))
    children = settled(body, plan(observed(body), OPTIONS, NOW))
    decided = plan(observed(group_body(role("a"), generation=2), *children), OPTIONS, NOW)
    deleted = {(s.obj["kind"], s.obj["metadata"]["name"]) for s in decided.steps if isinstance(s, Delete)}
    assert deleted == {("Service", "s-g-b"), ("StatefulSet", "g-b")}


def test_a_child_name_held_by_another_owner_stops_the_pass_with_a_conflict():
    body = group_body(role("a"))
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "s-g-a",
            "namespace": "ns",
            "uid": "other",
            "resourceVersion": "1",
            "labels": {naming.LABEL_GROUP_NAME: "g", naming.LABEL_ROLE: "a"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "x", "controller": True}],
        },
    }
    decided = plan(observed(body, foreign), OPTIONS, NOW)
    assert decided.problem[0] == "ChildConflict" and "s-g-a" in decided.problem[1]
    assert not [d for d in decided.applied() if d["metadata"]["name"] == "s-g-a"]
    assert decided.requeue_after == 30


# -- rollouts ------------------------------------------------------------------------------------


def test_role_rollout_knobs_reach_the_workloads():
    body = group_body(
        role("sts", 4, rolloutStrategy={"rollingUpdate": {"maxUnavailable": 2, "partition": 1}}),
        role("surge", 3, DEPLOYMENT, rolloutStrategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        role("held", 3, rolloutStrategy={"rollingUpdate": {"paused": True}}),
        role("held-deploy", 2, DEPLOYMENT, rolloutStrategy={"rollingUpdate": {"paused": True}}),
    )
    found = workloads(plan(observed(body), OPTIONS, NOW))
    assert found["sts"]["spec"]["updateStrategy"]["rollingUpdate"] == {"partition": 1, "maxUnavailable": 2}
    assert found["surge"]["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert found["held"]["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 3  # every pod held
    assert found["held-deploy"]["spec"]["paused"] is True


def test_a_paused_rollout_is_held_neither_progressing_nor_stalled():
    paused = {"rollingUpdate": {"paused": True}}
    body = group_body(role("held", 2, rolloutStrategy=paused))
    first = plan(observed(body), OPTIONS, NOW)
    running_old = settled(body, first, updatedReplicas=0, updateRevision="r2")
    decided = plan(observed(status_after(body, first), *running_old), OPTIONS, NOW)
    assert condition(decided, "Ready")["reason"] == "RolloutPaused"
    assert condition(decided, "Stalled")["status"] == "False"
    assert condition(decided, "Progressing")["status"] == "False"


def coordinated(image: str, generation: int = 1, max_skew: str = "25%") -> dict:
    return group_body(
        role("prefill", 4, image=image),
        role("decode", 4, image=image),
        generation=generation,
        coordination=[
            {"name": "pd", "roles": ["prefill", "decode"], "strategy": {"rollingUpdate": {"maxSkew": max_skew}}}
        ],
    )


def test_a_coordinated_rollout_lets_each_role_move_only_max_skew_ahead():
    body = coordinated("i:1")
    old = settled(body, plan(observed(body), OPTIONS, NOW))
    decided = plan(observed(coordinated("i:2", 2), *old), OPTIONS, NOW)
    # A new revision: nothing is updated and ready yet, so each role may move 25% of 4 pods.
    assert decided.role_plans["prefill"].partition == 3 and decided.role_plans["decode"].partition == 3
    for sts in workloads(decided).values():
        assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 3


def test_a_coordinated_rollout_follows_the_slowest_role():
    body = coordinated("i:2", 2)
    first = plan(observed(coordinated("i:1")), OPTIONS, NOW)
    new_revision = plan(observed(body, *settled(body, first)), OPTIONS, NOW)
    objects = []
    for d in new_revision.applied("StatefulSet"):
        objects.append(running(d, updateRevision="r2", currentRevision="r1"))
    prefill = [pod(f"g-prefill-{i}", "prefill", revision="r2" if i >= 2 else "r1") for i in range(4)]

    def decode(updated: int) -> list[dict]:
        return [pod(f"g-decode-{i}", "decode", revision="r2" if i >= 4 - updated else "r1") for i in range(4)]

    # prefill has 2 pods updated and ready, decode none: prefill may not run further ahead.
    decided = plan(observed(body, *objects, *prefill, *decode(0)), OPTIONS, NOW)
    assert decided.role_plans["prefill"].partition == 3 and decided.role_plans["decode"].partition == 3
    # decode catches up by one pod: both may now have 2 pods on the new revision.
    decided = plan(observed(body, *objects, *prefill, *decode(1)), OPTIONS, NOW)
    assert decided.role_plans["prefill"].partition == 2 and decided.role_plans["decode"].partition == 2


def test_coordinated_scaling_raises_replicas_in_paced_steps():
    body = group_body(
        role("prefill", 4),
        role("decode", 4),
        coordination=[{"name": "grow", "roles": ["prefill", "decode"], "strategy": {"scaling": {"maxSkew": "25%"}}}],
    )
    decided = plan(observed(body), OPTIONS, NOW)
    found = workloads(decided)
    assert found["prefill"]["spec"]["replicas"] == 1 and found["decode"]["spec"]["replicas"] == 1
    assert decided.progress["prefill"].desired == 4  # not there yet: still growing


# -- restarts ------------------------------------------------------------------------------------


def restart_group(state: dict | None = None, generation: int = 1) -> dict:
    annotations = {naming.ANNOTATION_RESTART_STATE: encode_state(state)} if state else {}
    return group_body(
        role("prefill", 2, restartPolicy="RecreateRBGOnPodRestart"), annotations=annotations, generation=generation
    )


def baseline(*pods: dict, generation: int = 1, **state) -> dict:
    return {
        "generation": generation,
        "reset": "",
        "recreations": [],
        "pods": {p["metadata"]["name"]: [uid_key(p["metadata"]["uid"]), 0, "r1", "prefill"] for p in pods},
        **state,
    }


def test_a_container_restart_recreates_the_group_with_the_intent_written_first():
    pods = [pod("g-prefill-0", "prefill"), pod("g-prefill-1", "prefill")]
    body = restart_group(baseline(*pods))
    children = settled(body, plan(observed(restart_group()), OPTIONS, NOW))
    pods[1] = pod("g-prefill-1", "prefill", restarts=1)
    decided = plan(observed(body, *children, *pods), OPTIONS, NOW)
    assert isinstance(decided.steps[0], WriteRestartState)  # before any other write, deletes included
    steps = [s for s in decided.steps if isinstance(s, (WriteRestartState, DeletePod, CountRecreation, Emit))]
    assert {s.pod["metadata"]["name"] for s in steps if isinstance(s, DeletePod)} == {"g-prefill-0", "g-prefill-1"}
    assert any(isinstance(s, CountRecreation) for s in steps)
    assert condition(decided, "RestartInProgress")["reason"] == "RecreatingGroup"


def test_the_restart_intent_is_written_before_any_delete_of_the_pass():
    pods = [pod("g-prefill-0", "prefill"), pod("g-prefill-1", "prefill", restarts=1)]
    body = restart_group(baseline(pods[0], {**pods[1], "status": {}}))
    with_old_role = group_body(role("prefill", 2, restartPolicy="RecreateRBGOnPodRestart"), role("old", 1))
    children = settled(with_old_role, plan(observed(with_old_role), OPTIONS, NOW))
    decided = plan(observed(body, *children, *pods), OPTIONS, NOW)
    kinds = [type(s).__name__ for s in decided.steps]
    assert kinds[0] == "WriteRestartState" and "Delete" in kinds and "DeletePod" in kinds


def test_no_recreation_once_the_budget_is_spent():
    pods = [pod("g-prefill-0", "prefill"), pod("g-prefill-1", "prefill", restarts=1)]
    recent = [timestamps.stamp(NOW - datetime.timedelta(seconds=60 * i)) for i in range(5, 0, -1)]
    body = restart_group(baseline(*pods, recreations=recent))
    children = settled(body, plan(observed(restart_group()), OPTIONS, NOW))
    decided = plan(observed(body, *children, *pods), OPTIONS, NOW)
    assert not [s for s in decided.steps if isinstance(s, DeletePod)]
    assert condition(decided, "Ready")["reason"] == "RestartBudgetExhausted"
    assert condition(decided, "Stalled")["status"] == "True"
    assert Emit("Warning", "RestartBudgetExhausted", decided.restarts.budget_exhausted) in decided.steps


def test_a_second_recreation_in_a_row_waits_for_its_backoff():
    pods = [pod("g-prefill-0", "prefill"), pod("g-prefill-1", "prefill", restarts=1)]
    body = restart_group(baseline(*pods, recreations=[timestamps.stamp(NOW - datetime.timedelta(seconds=4))]))
    children = settled(body, plan(observed(restart_group()), OPTIONS, NOW))
    decided = plan(observed(body, *children, *pods), OPTIONS, NOW)
    assert not [s for s in decided.steps if isinstance(s, DeletePod)]
    assert decided.requeue_after == 6.0  # 10s after the last one


# -- stuck pods ----------------------------------------------------------------------------------


def test_pods_stuck_on_the_old_revision_are_replaced_within_max_unavailable():
    body = group_body(role("s", 3))
    first = plan(observed(body), OPTIONS, NOW)
    sts = [running(d, ready=False, updateRevision="r2", currentRevision="r1") for d in first.applied("StatefulSet")]
    others = [running(d) for d in first.applied() if d["kind"] != "StatefulSet"]
    pods = [
        pod("g-s-0", "s", ready=False, age=120),
        pod("g-s-1", "s", ready=False, age=120),
        pod("g-s-2", "s", ready=False, age=20),
    ]
    decided = plan(observed(body, *sts, *others, *pods), OPTIONS, NOW)
    replaced = [s for s in decided.steps if isinstance(s, DeletePod)]
    # maxUnavailable 1: the highest stuck ordinal first; the young one is looked at when it would be stuck.
    assert [s.pod["metadata"]["name"] for s in replaced] == ["g-s-1"]
    assert replaced[0].announce.reason == "ReplacedStuckPod"
    assert decided.requeue_after == 40


# -- replicas ownership --------------------------------------------------------------------------


def test_replicas_another_writer_set_stand_until_the_role_changes():
    body = group_body(role("s", 2))
    sts = running(plan(observed(body), OPTIONS, NOW).applied("StatefulSet")[0])
    sts["spec"]["replicas"] = 5
    sts["metadata"]["managedFields"] = [
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]
    decided = plan(observed(body, sts), OPTIONS, NOW)
    assert "replicas" not in workloads(decided)["s"]["spec"]
    assert workloads(decided)["s"]["metadata"]["annotations"][naming.ANNOTATION_YIELDED_REPLICAS] == "2"
    assert condition(decided, "ReplicasOverridden")["status"] == "True"
    assert Emit("Normal", "ReplicasOverridden", condition(decided, "ReplicasOverridden")["message"]) in decided.events

    sts["metadata"]["annotations"] = {**sts["metadata"].get("annotations", {}), naming.ANNOTATION_YIELDED_REPLICAS: "2"}
    changed = plan(observed(group_body(role("s", 3), generation=2), sts), OPTIONS, NOW)
    assert workloads(changed)["s"]["spec"]["replicas"] == 3


def test_a_scaling_adapter_owns_the_replicas_it_is_given_not_the_group():
    body = group_body(role("s", 2, scalingAdapter={"enable": True}))
    decided = plan(observed(body), OPTIONS, NOW)
    adapter = decided.applied("RoleBasedGroupScalingAdapter")[0]
    assert "replicas" not in adapter["spec"]  # its scalers set them; the adapter controller seeds them once
    assert adapter["spec"]["scaleTargetRef"] == {"name": "g", "role": "s"}
    children = settled(body, decided)
    off = plan(observed(group_body(role("s", 2), generation=2), *children), OPTIONS, NOW)
    assert [s.obj["kind"] for s in off.steps if isinstance(s, Delete)] == ["RoleBasedGroupScalingAdapter"]


# -- progress deadline and invalid specs -----------------------------------------------------------


def test_no_progress_past_the_deadline_stalls_the_group():
    body = group_body(role("s", 2))
    first = plan(observed(body), OPTIONS, NOW)
    stuck = settled(body, first, ready=False)
    waiting = plan(observed(status_after(body, first), *stuck), OPTIONS, NOW)
    assert condition(waiting, "Progressing")["status"] == "True"
    # The same counts, ten minutes later than the Progressing clock started.
    later = NOW + datetime.timedelta(seconds=OPTIONS.progress_deadline + 1)
    decided = plan(observed(status_after(status_after(body, first), waiting), *stuck), OPTIONS, later)
    assert condition(decided, "Ready")["reason"] == "ProgressDeadlineExceeded"
    assert condition(decided, "Stalled")["status"] == "True"
    assert any(e.type == "Warning" and e.reason == "ProgressDeadlineExceeded" for e in decided.events)
    # Before it passes, the plan says when to look again.
    early = plan(
        observed(status_after(status_after(body, first), waiting), *stuck),
        OPTIONS,
        NOW + datetime.timedelta(seconds=100),
    )
    assert early.status is None and early.requeue_after == OPTIONS.progress_deadline - 100


def test_an_invalid_spec_is_reported_and_nothing_is_written():
    body = group_body(role("s", 2))
    body["spec"]["roles"][0]["replicas"] = -1
    decided = plan(observed(body), OPTIONS, NOW)
    assert decided.steps == [] and decided.refused
    assert condition(decided, "Ready")["status"] == "False"
    assert condition(decided, "Ready")["reason"] == "InvalidSpec"
    assert condition(decided, "Stalled")["status"] == "True"
    assert [e.reason for e in decided.events] == ["InvalidSpec"]
    again = plan(observed(status_after(body, decided)), OPTIONS, NOW)
    assert again.status is None and again.events == ()


def test_a_missing_engine_runtime_profile_stalls_the_group():
    body = group_body(role("s", 2, engineRuntimes=[{"profileName": "sglang"}]))
    decided = plan(observed(body), OPTIONS, NOW)
    assert decided.steps == [] and decided.refused
    assert condition(decided, "Ready")["reason"] == "EngineRuntimeProfileNotFound"
    assert condition(decided, "Stalled")["status"] == "True"


# -- revisions, gangs, policies, notes -------------------------------------------------------------


def revision_steps(decided: GroupPlan) -> list[RecordRevision]:
    return [s for s in decided.steps if isinstance(s, RecordRevision)]


def test_every_revision_is_recorded_newest_highest_and_an_undo_renumbers_the_old_one():
    first_body = group_body(role("s", 2))
    first = plan(observed(first_body), OPTIONS, NOW)
    [record] = revision_steps(first)
    assert record.create["revision"] == 1 and record.renumber is None
    children = settled(first_body, first)
    changed = plan(observed(group_body(role("s", 2, image="i:2"), generation=2), *children), OPTIONS, NOW)
    [record] = revision_steps(changed)
    assert record.create["revision"] == 2
    second = {**record.create, "metadata": {**record.create["metadata"], "uid": "uid-rev-2", "resourceVersion": "1"}}
    undo = plan(observed(group_body(role("s", 2), generation=3), *children, second), OPTIONS, NOW)
    [record] = revision_steps(undo)
    assert record.create is None and record.renumber == (children[-1]["metadata"]["name"], 3)
    settled_again = plan(observed(first_body, *children), OPTIONS, NOW)
    assert revision_steps(settled_again) == []


def test_revisions_beyond_the_history_limit_are_pruned_oldest_first():
    body = group_body(role("s", 2))
    first = plan(observed(body), OPTIONS, NOW)
    [record] = revision_steps(first)
    old = [
        {
            **record.create,
            "revision": n,
            "metadata": {**record.create["metadata"], "name": f"g-old{n}", "uid": f"uid-{n}", "resourceVersion": "1"},
        }
        for n in range(1, 11)
    ]
    [record] = revision_steps(plan(observed(body, *old), OPTIONS, NOW))
    assert record.create["revision"] == 11
    assert [r["metadata"]["name"] for r in record.prune] == ["g-old1"]


def test_gang_objects_follow_the_policy_and_go_with_it():
    gang = group_body(role("s", 2), podGroupPolicy={"kubeScheduling": {"scheduleTimeoutSeconds": 30}})
    first = plan(observed(gang), OPTIONS, NOW)
    [pod_group] = first.applied("PodGroup")
    assert pod_group["spec"]["minMember"] == 2
    off = plan(observed(group_body(role("s", 2), generation=2), *settled(gang, first)), OPTIONS, NOW)
    assert [(s.obj["kind"], s.obj["metadata"]["name"]) for s in off.steps if isinstance(s, Delete)] == [
        ("PodGroup", "g")
    ]


def test_a_coordinated_policy_named_like_the_group_paces_its_roles_and_says_so():
    body = coordinated("i:1")
    body["spec"].pop("coordination", None)
    old = settled(body, plan(observed(body), OPTIONS, NOW))
    changed = group_body(role("prefill", 4, image="i:2"), role("decode", 4, image="i:2"), generation=2)
    policy = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "CoordinatedPolicy",
        "metadata": {"name": "g", "namespace": "ns", "uid": "uid-p", "resourceVersion": "1"},
        "spec": {
            "policies": [
                {"name": "pd", "roles": ["prefill", "decode"], "strategy": {"rollingUpdate": {"maxSkew": "25%"}}}
            ]
        },
    }
    decided = plan(observed(changed, policy, *old), OPTIONS, NOW)
    assert decided.role_plans["prefill"].partition == 3
    assert condition(decided, "CoordinatedPolicyApplied")["status"] == "True"
    policy["spec"]["policies"][0]["roles"] = ["prefil"]
    broken = plan(observed(changed, policy, *old), OPTIONS, NOW)
    assert "prefill" not in broken.role_plans
    assert condition(broken, "CoordinatedPolicyApplied")["reason"] == "InvalidCoordinatedPolicy"
    assert any(e.reason == "InvalidCoordinatedPolicy" for e in broken.events)


def test_notes_and_complaints_are_said_once_per_generation():
    body = group_body(role("s", 2), annotations={naming.ANNOTATION_PROGRESS_DEADLINE: "soon"})
    first = plan(observed(body), OPTIONS, NOW)
    assert [e.reason for e in first.events if e.reason == "InvalidAnnotation"] == ["InvalidAnnotation"]
    again = plan(observed(status_after(body, first)), OPTIONS, NOW)
    assert not [e for e in again.events if e.reason == "InvalidAnnotation"]


RIS = {"apiVersion": "workloads.x-k8s.io/v1alpha2", "kind": "RoleInstanceSet"}


def ris_coordinated(image: str, generation: int = 1) -> dict:
    return group_body(
        role("prefill", 4, workload=RIS, image=image),
        role("decode", 4, workload=RIS, image=image),
        generation=generation,
        coordination=[
            {
                "name": "pd",
                "roles": ["prefill", "decode"],
                "strategy": {"rollingUpdate": {"maxSkew": "25%", "partition": "50%", "maxUnavailable": "50%"}},
            }
        ],
    )


def test_role_instance_set_roles_follow_a_coordinated_partition_max_unavailable_and_skew():
    body = ris_coordinated("i:2", 2)
    first = plan(observed(ris_coordinated("i:1")), OPTIONS, NOW)
    new_revision = plan(observed(body, *settled(body, first)), OPTIONS, NOW)
    assert {d["kind"] for d in new_revision.applied()} >= {"RoleInstanceSet"}

    def instance_sets(updated_ready: dict[str, int]) -> list[dict]:
        role_of = "rolebasedgroup.workloads.x-k8s.io/role"
        return [
            running(
                d,
                updateRevision="r2",
                currentRevision="r1",
                updatedReadyReplicas=updated_ready[d["metadata"]["labels"][role_of]],
            )
            for d in new_revision.applied("RoleInstanceSet")
        ]

    # Nothing updated yet: each role may move 25% of 4 instances, so ordinals 0-2 hold.
    decided = plan(observed(body, *instance_sets({"prefill": 0, "decode": 0})), OPTIONS, NOW)
    assert decided.role_plans["prefill"].partition == 3 and decided.role_plans["decode"].partition == 3
    for ris in workloads(decided).values():
        assert (
            ris["spec"]["updateStrategy"]["partition"] == 3 and ris["spec"]["updateStrategy"]["maxUnavailable"] == "50%"
        )
    # Both caught up as far as the policy's partition allows: ordinals 0 and 1 stay on the old revision.
    decided = plan(observed(body, *instance_sets({"prefill": 2, "decode": 2})), OPTIONS, NOW)
    assert decided.role_plans["prefill"].partition == 2 and decided.role_plans["decode"].partition == 2
