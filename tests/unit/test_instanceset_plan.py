"""The RoleInstanceSet pass's decisions, from a snapshot: which instances it creates, rewrites
and deletes, and the status, conditions, Events and requeue that follow. No cluster, no API."""

from __future__ import annotations

import datetime

from rbg_operator import naming
from rbg_operator.controller import conditions
from rbg_operator.controller.diff import contains
from rbg_operator.controller.instanceset_plan import (
    InstanceSetSnapshot,
    Outcome,
    conclude,
    desired_instance,
    template_revision,
    view,
)
from rbg_operator.controller.instanceset_plan import (
    plan_stateful as plan,
)

NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)
LONG_AGO = "2026-12-05T07:00:00Z"


def instance_set(replicas: int = 3, image: str = "app:v1", strategy: dict | None = None, **spec) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleInstanceSet",
        "metadata": {"name": "s", "namespace": "ns", "uid": "set-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "updateStrategy": strategy or {},
            **spec,
            "roleInstanceTemplate": {
                "components": [
                    {"name": "web", "size": 1, "template": {"spec": {"containers": [{"name": "main", "image": image}]}}}
                ]
            },
        },
    }


def instance(owner: dict, ordinal: int, ready: bool = True, since: str = LONG_AGO, **status) -> dict:
    """Instance `ordinal` as the cache shows it: made from `owner`'s template, ready or not."""
    made = desired_instance(owner, ordinal, template_revision(owner["spec"]["roleInstanceTemplate"]))
    made["metadata"].update(uid=f"i-{ordinal}", generation=1)
    made["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {"type": "RoleInstanceReady", "status": "True" if ready else "False", "lastTransitionTime": since}
        ],
        **status,
    }
    return made


def snapshot(body: dict, instances: list[dict], held: dict[str, str] | None = None) -> InstanceSetSnapshot:
    return InstanceSetSnapshot(body, tuple(instances), tuple(view(i, "s") for i in instances), held or {})


def as_written(planned) -> Outcome:
    """Every write went through: the answers are what was applied, the instances not yet ready."""
    return Outcome(
        tuple(
            {**want, "metadata": {**want["metadata"], "uid": "new"}}
            for want in [w for _, w in planned.create] + list(planned.update)
        )
    )


def pass_over(body: dict, instances: list[dict], held: dict[str, str] | None = None, found: dict | None = None):
    seen = snapshot(body, instances, held)
    planned = plan(seen)
    outcome = as_written(planned)
    if found:  # those names were not written
        taken = {f"s-{o}" for o in found}
        outcome = Outcome(tuple(w for w in outcome.written if w["metadata"]["name"] not in taken), found)
    return planned, conclude(seen, planned, outcome, NOW)


def names(planned) -> tuple[list[str], list[str], list[str]]:
    return (
        [w["metadata"]["name"] for _, w in planned.create],
        [w["metadata"]["name"] for w in planned.update],
        [n for n, _ in planned.delete],
    )


def condition(report, kind: str) -> dict:
    return conditions.find(report.status["conditions"], kind) or {}


def test_a_steady_set_plans_no_write_and_its_stored_status_already_says_it_all():
    body = instance_set()
    instances = [instance(body, o) for o in range(3)]
    planned, report = pass_over(body, instances)
    assert names(planned) == ([], [], [])
    assert report.events == () and report.requeue is None
    body["status"] = report.status
    planned, again = pass_over(body, instances)
    assert contains(body["status"], again.status), "a pass that changes nothing must write nothing"


def test_scale_up_creates_the_missing_ordinals_and_counts_them_in_the_status():
    body = instance_set(replicas=4)
    planned, report = pass_over(body, [instance(body, 0), instance(body, 2)])
    assert names(planned) == (["s-1", "s-3"], [], [])
    created = planned.create[0][1]
    assert created["metadata"]["labels"]["rbg.workloads.x-k8s.io/role-instance-index"] == "1"
    assert created["metadata"]["ownerReferences"][0]["uid"] == "set-uid"
    assert [(e.reason, e.message) for e in report.events] == [
        ("SuccessfulUpdate", "created instance s-1, created instance s-3")
    ]
    assert (report.status["replicas"], report.status["readyReplicas"], report.status["updatedReplicas"]) == (4, 2, 4)


def test_ordered_ready_waits_for_each_instance_before_the_next():
    body = instance_set(replicas=3, podManagementPolicy="OrderedReady")
    assert names(plan(snapshot(body, [instance(body, 0, ready=False)])))[0] == []
    assert names(plan(snapshot(body, [instance(body, 0)])))[0] == ["s-1"]


def test_scale_in_deletes_the_highest_ordinals_and_strays_with_their_uids():
    body = instance_set(replicas=1)
    stray = instance(body, 0)
    stray["metadata"].update(name="s-x", uid="stray")
    planned, report = pass_over(body, [instance(body, o) for o in range(3)] + [stray])
    assert planned.delete == (("s-1", "i-1"), ("s-2", "i-2"), ("s-x", "stray"))  # the cache's order
    assert report.events[0].message == "deleted instance s-x, deleted instance s-2, deleted instance s-1"


def test_an_image_change_rolls_highest_first_above_the_partition_within_max_unavailable():
    old = instance_set(replicas=3)
    instances = [instance(old, o) for o in range(3)]
    new = instance_set(replicas=3, image="app:v2", strategy={"partition": 1, "maxUnavailable": 1})
    new["status"] = {"currentRevision": template_revision(old["spec"]["roleInstanceTemplate"])}
    planned, report = pass_over(new, instances)
    assert names(planned) == ([], ["s-2"], [])
    assert planned.update[0]["metadata"]["labels"][naming.LABEL_CONTROLLER_REVISION] == template_revision(
        new["spec"]["roleInstanceTemplate"]
    )
    assert report.status["expectedUpdatedReplicas"] == 2 and report.status["updatedReplicas"] == 1
    # s-2 is on the new revision but not Ready: nothing else moves, and ordinal 0 never does.
    instances[2] = instance(new, 2, ready=False)
    assert names(plan(snapshot(new, instances))) == ([], [], [])
    instances[2] = instance(new, 2)
    assert names(plan(snapshot(new, instances))) == ([], ["s-1"], [])
    instances[1] = instance(new, 1)
    planned, report = pass_over(new, instances)
    assert names(planned) == ([], [], [])
    assert report.status["currentRevision"] != report.status["updateRevision"], "the partition holds s-0 back"


def test_the_current_revision_moves_once_every_instance_is_updated_and_ready():
    new = instance_set(replicas=2, image="app:v2")
    new["status"] = {"currentRevision": "old"}
    _, report = pass_over(new, [instance(new, 0), instance(new, 1, ready=False)])
    assert report.status["currentRevision"] == "old"
    _, report = pass_over(new, [instance(new, 0), instance(new, 1)])
    assert report.status["currentRevision"] == report.status["updateRevision"]


def test_recreate_pod_deletes_the_outdated_instance_instead_of_rewriting_it():
    old = instance_set(replicas=2)
    new = instance_set(replicas=2, image="app:v2", strategy={"type": "RecreatePod", "maxUnavailable": 1})
    assert names(plan(snapshot(new, [instance(old, 0), instance(old, 1)]))) == ([], [], ["s-1"])


def test_max_surge_makes_a_new_instance_before_any_old_one_goes():
    old = instance_set(replicas=2)
    new = instance_set(replicas=2, image="app:v2", strategy={"type": "RecreatePod", "maxSurge": 1, "maxUnavailable": 0})
    assert names(plan(snapshot(new, [instance(old, 0), instance(old, 1)]))) == (["s-2"], [], [])
    assert names(plan(snapshot(new, [instance(new, 0), instance(new, 1), instance(new, 2)]))) == ([], [], ["s-2"])


def test_in_place_only_refuses_a_change_of_component_sizes_and_says_why():
    old = instance_set(replicas=1)
    new = instance_set(replicas=1, strategy={"type": "InPlaceOnly"})
    new["spec"]["roleInstanceTemplate"]["components"][0]["size"] = 2
    planned, report = pass_over(new, [instance(old, 0)])
    assert names(planned) == ([], [], [])
    failed = condition(report, "FailedUpdate")
    assert failed["status"] == "True" and "s-0: its components' names or sizes change" in failed["message"]
    assert "InPlaceIfPossible" in failed["message"]


def test_an_instance_that_cannot_change_its_pods_in_place_fails_the_update_of_an_in_place_only_set():
    body = instance_set(replicas=1, strategy={"type": "InPlaceOnly"})
    blocked = instance(body, 0)
    blocked["status"]["conditions"].append(
        {"type": "InPlaceUpdateBlocked", "status": "True", "message": "pod s-0 changes more than images"}
    )
    _, report = pass_over(body, [blocked])
    assert "s-0: pod s-0 changes more than images" in condition(report, "FailedUpdate")["message"]
    _, report = pass_over(body, [instance(body, 0)])
    assert condition(report, "FailedUpdate")["status"] == "False"


def test_a_name_held_by_another_owner_is_never_created_and_the_set_says_so():
    body = instance_set(replicas=2)
    message = "RoleInstance s-0 already exists and has no controller; RoleInstanceSet s leaves it alone"
    planned, report = pass_over(body, [], held={"s-0": message})
    assert names(planned)[0] == ["s-1"]
    failed = condition(report, "FailedCreate")
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", "ChildConflict", message)
    assert [(e.reason, e.after_status) for e in report.events] == [("SuccessfulUpdate", False), ("ChildConflict", True)]
    assert report.events[0].message == "created instance s-1"
    assert report.requeue == 30
    # The same conflict again: no new Event.
    body["status"] = report.status
    _, again = pass_over(body, [instance(body, 1)], held={"s-0": message})
    assert [e.reason for e in again.events] == []
    # It went: the condition clears.
    _, cleared = pass_over(body, [instance(body, 0), instance(body, 1)])
    assert condition(cleared, "FailedCreate")["status"] == "False" and cleared.requeue is None


def test_a_name_found_held_only_at_write_time_counts_as_a_conflict_too():
    body = instance_set(replicas=2)
    planned, report = pass_over(body, [instance(body, 0)], found={1: "RoleInstance s-1 is someone else's"})
    assert names(planned)[0] == ["s-1"]  # the cache did not show it
    assert condition(report, "FailedCreate")["message"] == "RoleInstance s-1 is someone else's"
    assert [e.reason for e in report.events] == ["ChildConflict"], "nothing was created"


def test_a_set_whose_copies_pass_the_bound_creates_and_rewrites_nothing_but_still_scales_in():
    body = instance_set(replicas=1000)
    body["spec"]["roleInstanceTemplate"]["components"][0]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "BIG", "value": "x" * 100_000}
    ]
    stray = instance(instance_set(), 0)
    stray["metadata"].update(name="s-x", uid="stray")
    planned, report = pass_over(body, [stray])
    assert names(planned) == ([], [], ["s-x"])
    scale = condition(report, "FailedScale")
    assert scale["status"] == "True" and scale["message"].startswith("spec.replicas")
    assert "TemplateCopiesTooLarge" in [e.reason for e in report.events]
    body["status"] = report.status
    _, again = pass_over(body, [])
    assert "TemplateCopiesTooLarge" not in [e.reason for e in again.events], "the Event is sent once"


def test_an_instance_ready_for_less_than_min_ready_seconds_is_not_available_yet():
    body = instance_set(replicas=1, minReadySeconds=10)
    _, report = pass_over(body, [instance(body, 0, since="2026-12-05T07:59:55Z")])
    assert (report.status["readyReplicas"], report.status["availableReplicas"]) == (1, 0)
    assert report.requeue == 10
    _, report = pass_over(body, [instance(body, 0)])
    assert report.status["availableReplicas"] == 1 and report.requeue is None


def test_an_outdated_instance_is_rewritten_whole_with_the_sets_labels():
    new = instance_set(replicas=1, image="app:v2")
    outdated = instance(instance_set(replicas=1), 0)
    planned = plan(snapshot(new, [outdated]))
    assert names(planned)[1] == ["s-0"]
    want = planned.update[0]
    assert want["spec"]["components"][0]["template"]["spec"]["containers"][0]["image"] == "app:v2"
    assert want["metadata"]["labels"][naming.LABEL_CONTROLLER_REVISION] == planned.revision
    assert names(plan(snapshot(new, [instance(new, 0)])))[1] == []


def test_an_instance_counts_as_ready_only_when_its_status_speaks_of_its_current_spec():
    body = instance_set(replicas=1)
    stale = instance(body, 0)
    stale["metadata"]["generation"] = 2  # its spec changed; its controller has not reported on it yet
    _, report = pass_over(body, [stale])
    assert report.status["readyReplicas"] == 0 and report.status["availableReplicas"] == 0
    _, report = pass_over(body, [instance(body, 0, ready=False)])
    assert report.status["readyReplicas"] == 0
    _, report = pass_over(body, [instance(body, 0)])
    assert report.status["readyReplicas"] == 1


def young(body: dict, seconds_ago: float) -> dict:
    created = (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**body, "metadata": {**body["metadata"], "creationTimestamp": created}}


def test_a_young_sets_first_status_waits_for_its_instances_to_be_ready_and_is_never_held_after():
    body = young(instance_set(replicas=2), 1)
    planned, report = pass_over(body, [])
    assert names(planned)[0] == ["s-0", "s-1"]
    assert report.status is None, "a first status that says only 'instances coming up' was written"
    assert [e.reason for e in report.events] == ["SuccessfulUpdate"]  # the Event is not held
    assert report.requeue is not None and 0 < report.requeue <= 4
    ready = [instance(body, 0), instance(body, 1)]
    _, report = pass_over(body, ready)
    assert report.status["readyReplicas"] == 2 and report.status["observedGeneration"] == 1
    # Past the hold, or once a status was written, a status in progress is written at once.
    _, report = pass_over(young(instance_set(replicas=2), 6), [])
    assert report.status is not None and report.status["readyReplicas"] == 0
    written = {**body, "status": {"observedGeneration": 1, "replicas": 2}}
    _, report = pass_over(written, [instance(body, 0), instance(body, 1, ready=False)])
    assert report.status is not None and report.status["readyReplicas"] == 1


def test_a_young_sets_first_status_with_a_failure_to_report_is_not_held():
    body = young(instance_set(replicas=2), 1)
    _, report = pass_over(body, [], held={"s-0": "instance s-0 is not this set's"})
    assert condition(report, "FailedCreate")["status"] == "True"


def test_a_sets_first_status_waits_while_an_instance_has_not_reported_yet_within_a_bound():
    body = young(instance_set(replicas=1), 20)
    made = instance(body, 0, ready=False)
    del made["status"]  # its first pass has not written a status yet
    made["metadata"]["creationTimestamp"] = (NOW - datetime.timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, report = pass_over(body, [made])
    assert report.status is None and 19 <= report.requeue <= 20
    made["metadata"]["creationTimestamp"] = (NOW - datetime.timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, report = pass_over(body, [made])
    assert report.status is not None and report.status["readyReplicas"] == 0
