"""The scaling kinds' decisions, from a snapshot: what the adapter writes into its role and
reports, and which member groups a set deletes, creates and rewrites. No cluster, no API."""

from __future__ import annotations

import datetime

from rbg_operator import kinds, naming
from rbg_operator.api.scalingadapter import RoleBasedGroupScalingAdapterSpec
from rbg_operator.api.v1alpha2 import RoleBasedGroupSetSpecV2
from rbg_operator.controller import conditions
from rbg_operator.controller.diff import contains
from rbg_operator.controller.scaling_plan import (
    AdapterSnapshot,
    GroupSetSnapshot,
    conclude_group_set,
    plan_adapter,
    plan_group_set,
    plan_rollout,
    role_replicas_path,
)
from rbg_operator.controller.store import other_owner
from rbg_operator.desired.scaling import set_member

NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)
C = [{"name": "main", "image": "app:v1"}]


def adapter(replicas: int | None, role: str = "web", **status) -> AdapterSnapshot:
    spec = {"scaleTargetRef": {"name": "g", "role": role}, **({"replicas": replicas} if replicas is not None else {})}
    body = {"metadata": {"name": "g-web", "namespace": "ns"}, "spec": spec, "status": status}
    group = {
        "metadata": {"name": "g"},
        "spec": {
            "roles": [
                {"name": "db", "replicas": 1, "standalonePattern": {"template": {"spec": {"containers": C}}}},
                {"name": "web", "replicas": 2, "standalonePattern": {"template": {"spec": {"containers": C}}}},
            ]
        },
        "status": {"roleStatuses": [{"name": "web", "replicas": 2, "readyReplicas": 1}]},
    }
    return AdapterSnapshot(body, RoleBasedGroupScalingAdapterSpec.model_validate(spec), group)


def test_an_adapter_of_a_missing_role_is_not_bound_and_writes_nothing_else():
    planned = plan_adapter(adapter(3, role="nope"), NOW)
    assert (planned.status, planned.scale, planned.seed) == ({"phase": "NotBound"}, None, None)


def test_an_adapter_without_replicas_is_seeded_once_from_its_role():
    planned = plan_adapter(adapter(None), NOW)
    assert (planned.seed, planned.scale, planned.status) == (2, None, None)


def test_an_adapter_writes_its_replicas_into_the_role_at_its_index_guarded_by_the_name():
    planned = plan_adapter(adapter(5), NOW)
    assert planned.scale.patch() == [
        {"op": "test", "path": "/spec/roles/1/name", "value": "web"},
        {"op": "replace", "path": "/spec/roles/1/replicas", "value": 5},
    ]
    assert [(e.reason, e.message) for e in planned.events] == [("Scaled", "role web of g: replicas 2 -> 5")]
    assert planned.status["lastScaleTime"] == "2026-12-05T08:00:00Z"
    assert (planned.status["phase"], planned.status["replicas"], planned.status["readyReplicas"]) == ("Bound", 2, 1)
    assert "rolebasedgroup.workloads.x-k8s.io/role=web" in planned.status["selector"]


def test_an_adapter_that_holds_its_role_at_its_replicas_writes_nothing_new():
    planned = plan_adapter(adapter(2, lastScaleTime="2026-12-05T07:00:00Z"), NOW)
    assert planned.scale is None and planned.events == ()
    assert planned.status["lastScaleTime"] == "2026-12-05T07:00:00Z", "the last scaling keeps its time"


def group_set(replicas: int = 2, image: str = "app:v1", **status) -> dict:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "fleet", "namespace": "ns", "uid": "set-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "groupTemplate": {
                "spec": {
                    "roles": [
                        {
                            "name": "web",
                            "replicas": 1,
                            "standalonePattern": {
                                "template": {"spec": {"containers": [{"name": "main", "image": image}]}}
                            },
                        }
                    ]
                }
            },
        },
        "status": status,
    }


def member(body: dict, index: int, ready: bool = True) -> dict:
    made = set_member(body, index)
    made["metadata"].update(uid=f"g-{index}", generation=1)
    made["status"] = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return made


def snapshot(
    body: dict,
    members: dict[int, dict],
    held: dict[int, str] | None = None,
    elsewhere: dict[int, frozenset] | None = None,
) -> GroupSetSnapshot:
    spec = RoleBasedGroupSetSpecV2.model_validate(body["spec"], context={"stored": True})
    return GroupSetSnapshot(body, spec, "", members, held or {}, elsewhere or {})


def run(seen: GroupSetSnapshot, found: dict[int, str] | None = None):
    """Scale, roll and conclude as if every write went through (but the names in `found`)."""
    planned = plan_group_set(seen, NOW)
    members = {i: g for i, g in seen.members.items() if i not in {d[0] for d in planned.delete}}
    held = {**planned.held, **(found or {})}
    members.update({i: {**g, "status": {}} for i, g in planned.create if i not in held})
    rewrites = plan_rollout(seen, members)
    members.update({i: {**g, "status": members[i]["status"]} for i, g in rewrites})
    return planned, rewrites, conclude_group_set(seen, members, held, NOW)


def test_a_set_scales_out_with_the_missing_indices_and_in_from_the_highest():
    body = group_set(replicas=3)
    planned, _, report = run(snapshot(body, {0: member(body, 0)}))
    assert [i for i, _ in planned.create] == [1, 2] and planned.delete == ()
    assert planned.create[0][1]["metadata"]["labels"][naming.LABEL_SET_INDEX] == "1"
    assert (report.status["replicas"], report.status["readyReplicas"]) == (3, 1)
    small = group_set(replicas=1)
    planned, _, report = run(snapshot(small, {i: member(small, i) for i in range(3)}))
    assert planned.delete == ((2, "fleet-2", "g-2"), (1, "fleet-1", "g-1"))
    ready = conditions.find(report.status["conditions"], "Ready")
    assert (report.status["replicas"], ready["status"], ready["message"]) == (1, "True", "1/1 groups ready")


def test_a_steady_set_writes_nothing():
    body = group_set()
    members = {i: member(body, i) for i in range(2)}
    planned, rewrites, report = run(snapshot(body, members))
    assert (planned.create, planned.delete, rewrites) == ((), (), ())
    body["status"] = report.status
    assert contains(body["status"], run(snapshot(body, members))[2].status)


def test_a_template_change_rolls_one_ready_group_at_a_time():
    old = group_set(replicas=3)
    new = group_set(replicas=3, image="app:v2")
    members = {i: member(old, i) for i in range(3)}
    _, rewrites, report = run(snapshot(new, members))
    assert [i for i, _ in rewrites] == [0]
    assert conditions.find(report.status["conditions"], "Ready")["message"] == "2/3 groups ready, 2 to update"
    members[0] = member(new, 0, ready=False)
    assert run(snapshot(new, members))[1] == (), "not while a group is not Ready"
    members[0] = member(new, 0)
    assert [i for i, _ in run(snapshot(new, members))[1]] == [1]


def test_outdated_groups_that_are_not_ready_are_all_replaced_at_once():
    old = group_set(replicas=3)
    new = group_set(replicas=3, image="app:v2")
    members = {0: member(old, 0), 1: member(old, 1, ready=False), 2: member(old, 2, ready=False)}
    assert [i for i, _ in run(snapshot(new, members))[1]] == [1, 2]


def test_a_group_made_in_this_pass_holds_the_rollout_back():
    old = group_set(replicas=2)
    new = group_set(replicas=2, image="app:v2")
    assert run(snapshot(new, {0: member(old, 0)}))[1] == ()


def test_a_rewrite_leaves_out_the_role_replicas_another_writer_owns():
    old = group_set(replicas=1)
    new = group_set(replicas=1, image="app:v2")
    _, rewrites, _ = run(snapshot(new, {0: member(old, 0)}, elsewhere={0: frozenset({"web"})}))
    assert "replicas" not in rewrites[0][1]["spec"]["roles"][0]
    _, rewrites, _ = run(snapshot(new, {0: member(old, 0)}))
    assert rewrites[0][1]["spec"]["roles"][0]["replicas"] == 1


def test_the_replicas_path_is_where_managed_fields_name_the_adapter():
    group = {
        "metadata": {
            "managedFields": [
                {
                    "manager": naming.FIELD_MANAGER_SCALING_ADAPTER,
                    "fieldsV1": {"f:spec": {"f:roles": {'k:{"name":"web"}': {"f:replicas": {}}}}},
                }
            ]
        }
    }
    assert other_owner(group, role_replicas_path("web"), ()) == naming.FIELD_MANAGER_SCALING_ADAPTER
    assert other_owner(group, role_replicas_path("db"), ()) is None


def test_a_member_name_held_by_another_group_is_never_adopted_and_the_set_says_so():
    body = group_set(replicas=2)
    message = "RoleBasedGroup fleet-1 already exists and has no controller"
    planned, _, report = run(snapshot(body, {0: member(body, 0)}, held={1: message}))
    assert planned.create == ()
    ready = conditions.find(report.status["conditions"], "Ready")
    assert (ready["reason"], ready["message"]) == ("ChildConflict", message)
    assert [(e.reason, e.after_status) for e in report.events] == [("ChildConflict", True)]
    assert report.requeue == 30
    body["status"] = report.status
    assert run(snapshot(body, {0: member(body, 0)}, held={1: message}))[2].events == ()
    _, _, found = run(snapshot(group_set(replicas=2), {0: member(body, 0)}), found={1: message})
    assert conditions.find(found.status["conditions"], "Ready")["reason"] == "ChildConflict"


def test_an_invalid_set_says_why_once():
    body = group_set()
    seen = GroupSetSnapshot(body, None, "spec.replicas: too many", {})
    planned = plan_group_set(seen, NOW)
    ready = conditions.find(planned.invalid_status["conditions"], "Ready")
    assert (ready["reason"], ready["message"]) == ("InvalidSpec", "invalid RoleBasedGroupSet: spec.replicas: too many")
    assert [e.reason for e in planned.events] == ["InvalidSpec"]
    body["status"] = planned.invalid_status
    assert plan_group_set(seen, NOW).events == ()
