"""A RoleInstanceSet's Stateless mode: random instance names, scale-in order, instances named for
deletion, the switch between modes, rollouts and lifecycle hooks. No cluster, no API."""

from __future__ import annotations

import datetime
import itertools

import pytest

from rbg_operator import naming
from rbg_operator.controller import conditions
from rbg_operator.controller import instanceset_stateless as sl
from rbg_operator.controller.instanceset_modes import plan, random_instance_id
from rbg_operator.controller.instanceset_plan import (
    InstanceSetSnapshot,
    Outcome,
    conclude,
    desired_instance,
    template_revision,
    view,
)

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)


def instance_set(replicas: int = 3, image: str = "app:v1", pattern: str = "Stateless", **spec) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleInstanceSet",
        "metadata": {
            "name": "s",
            "namespace": "ns",
            "uid": "set-uid",
            "generation": 1,
            "annotations": {naming.ANNOTATION_V2_INSTANCE_PATTERN: pattern},
        },
        "spec": {
            "replicas": replicas,
            "updateStrategy": {},
            **spec,
            "roleInstanceTemplate": {
                "components": [
                    {"name": "web", "size": 1, "template": {"spec": {"containers": [{"name": "main", "image": image}]}}}
                ]
            },
        },
    }


def made(owner: dict, instance_id: str, ready: bool = True, created: str = "2026-12-05T07:00:00Z", **meta) -> dict:
    """A Stateless instance as the cache shows it."""
    template = owner["spec"]["roleInstanceTemplate"]
    body = sl.desired_instance(owner, instance_id, template_revision(template), template)
    body["metadata"].update(uid=f"uid-{instance_id}", generation=1, creationTimestamp=created)
    for key, value in meta.items():
        body["metadata"][key] = {**body["metadata"].get(key, {}), **value} if key == "labels" else value
    body["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {"type": "RoleInstanceReady", "status": "True" if ready else "False", "lastTransitionTime": created}
        ],
    }
    return body


def ids():
    counter = itertools.count()
    return lambda: f"id{next(counter)}"


def planned_for(body: dict, instances: list[dict]):
    return plan(InstanceSetSnapshot(body, tuple(instances), tuple(view(i, "s") for i in instances)), ids())


def created(planned) -> list[str]:
    return [w["metadata"]["name"] for _, w in planned.create]


def test_scaling_up_makes_instances_with_random_ids_owned_by_the_sets_uid():
    planned = planned_for(instance_set(3), [])
    assert created(planned) == ["s-id0", "s-id1", "s-id2"]
    first = planned.create[0][1]
    assert first["metadata"]["labels"][sl.LABEL_INSTANCE_OWNER] == "set-uid"
    assert first["metadata"]["labels"][sl.LABEL_INSTANCE_ID] == "id0"
    assert first["spec"]["readinessGates"] == [{"conditionType": "RoleInstanceInPlaceUpdateReady"}]
    assert naming.LABEL_V2_INSTANCE_INDEX not in first["metadata"]["labels"]
    assert all(len(random_instance_id()) == 5 and not random_instance_id()[0].isdigit() for _ in range(50))


def test_scaling_in_takes_the_unready_first_then_the_newest():
    body = instance_set(1)
    old = made(body, "aaaaa", created="2026-12-05T07:00:00Z")
    new = made(body, "bbbbb", created="2026-12-05T07:30:00Z")
    broken = made(body, "ccccc", ready=False, created="2026-12-05T06:00:00Z")
    assert planned_for(body, [old, new, broken]).deleted == ("s-ccccc", "s-bbbbb")


def test_instances_named_for_deletion_go_and_are_replaced():
    body = instance_set(2, scaleStrategy={"roleInstanceToDelete": ["s-aaaaa"]})
    a, b = made(body, "aaaaa"), made(body, "bbbbb", labels={sl.LABEL_DELETE: "true"})
    c = made(body, "ccccc")
    planned = planned_for(body, [a, b, c])
    assert set(planned.deleted) == {"s-aaaaa", "s-bbbbb"}
    assert created(planned) == ["s-id0"]  # two replicas: c and a new one


def test_switching_the_mode_deletes_the_other_modes_instances():
    stateful = instance_set(2, pattern="Stateful")
    ordinal = desired_instance(stateful, 0, template_revision(stateful["spec"]["roleInstanceTemplate"]))
    ordinal["metadata"]["uid"] = "uid-0"
    planned = planned_for(instance_set(1), [ordinal])
    assert planned.deleted == ("s-0",) and created(planned) == ["s-id0"]
    # and back: the Stateless instance is a stray of Stateful mode
    planned = planned_for(stateful, [made(instance_set(1), "ddddd")])
    assert "s-ddddd" in planned.deleted and created(planned) == ["s-0", "s-1"]


def test_a_rollout_keeps_the_partition_and_updates_the_rest_in_place_within_max_unavailable():
    old = instance_set(3)
    instances = [made(old, i) for i in ("aaaaa", "bbbbb", "ccccc")]
    new = instance_set(3, image="app:v2", updateStrategy={"partition": 1, "maxUnavailable": 1})
    planned = planned_for(new, instances)
    assert [u["metadata"]["name"] for u in planned.update] == ["s-aaaaa"]
    labels = planned.update[0]["metadata"]["labels"]
    assert labels[naming.LABEL_CONTROLLER_REVISION] == template_revision(new["spec"]["roleInstanceTemplate"])
    # one is unready already: it moves first, at no cost, and uses up the budget of one
    instances[2]["status"]["conditions"][0]["status"] = "False"
    assert [u["metadata"]["name"] for u in planned_for(new, instances).update] == ["s-ccccc"]
    # the partition of one holds the last old instance once the other two are updated
    instances = [made(new, "ccccc"), made(new, "aaaaa"), made(old, "bbbbb")]
    assert planned_for(new, instances).update == ()


def test_a_change_of_components_recreates_and_recreate_pod_always_does():
    old = instance_set(1)
    instances = [made(old, "aaaaa")]
    bigger = instance_set(1)
    bigger["spec"]["roleInstanceTemplate"]["components"][0]["size"] = 2
    planned = planned_for(bigger, instances)
    assert planned.deleted == ("s-aaaaa",) and planned.update == ()
    recreate = instance_set(1, image="app:v2", updateStrategy={"type": "RecreatePod"})
    assert planned_for(recreate, instances).deleted == ("s-aaaaa",)


def test_a_pre_delete_hook_holds_an_instance_until_its_label_goes():
    hook = {"preDelete": {"labelsHandler": {"example.com/drain": "wait"}}}
    body = instance_set(0, lifecycle=hook)
    held = made(body, "aaaaa", labels={"example.com/drain": "wait"})
    planned = planned_for(body, [held])
    assert planned.deleted == () and planned.mark == (("s-aaaaa", "PreparingDelete"),)
    held["metadata"]["labels"][sl.LABEL_LIFECYCLE_STATE] = "PreparingDelete"
    assert planned_for(body, [held]).mark == ()  # marked once
    del held["metadata"]["labels"]["example.com/drain"]  # the drain is done
    assert planned_for(body, [held]).deleted == ("s-aaaaa",)


def test_an_in_place_update_hook_holds_the_update():
    hook = {"inPlaceUpdate": {"finalizersHandler": ["example.com/drain"]}}
    old = instance_set(1, lifecycle=hook)
    held = made(old, "aaaaa", finalizers=["example.com/drain"])
    new = instance_set(1, image="app:v2", lifecycle=hook)
    planned = planned_for(new, [held])
    assert planned.update == () and planned.mark == (("s-aaaaa", "PreparingUpdate"),)
    held["metadata"]["finalizers"] = []
    assert [u["metadata"]["name"] for u in planned_for(new, [held]).update] == ["s-aaaaa"]


def test_scale_strategy_max_unavailable_bounds_new_instances():
    body = instance_set(4, scaleStrategy={"maxUnavailable": 2})
    assert len(planned_for(body, []).create) == 2
    assert len(planned_for(body, [made(body, "aaaaa", ready=False)]).create) == 1


def test_an_unknown_mode_plans_nothing_and_says_so():
    body = instance_set(2, pattern="Sometimes")
    seen = InstanceSetSnapshot(body, (), ())
    planned = plan(seen, ids())
    assert (planned.create, planned.delete) == ((), ())
    report = conclude(seen, planned, Outcome(), NOW)
    failed = conditions.find(report.status["conditions"], "FailedScale")
    assert (failed["status"], failed["reason"]) == ("True", "UnknownRoleInstancePattern")
    assert [e.reason for e in report.events] == ["UnknownRoleInstancePattern"]


def test_a_group_role_with_an_unknown_mode_is_refused_and_a_stateless_role_lists_no_instances():
    from rbg_operator.api.v1alpha2 import RoleBasedGroupV2, spec_problems
    from rbg_operator.desired.discovery import topology

    def group(pattern: str) -> RoleBasedGroupV2:
        return RoleBasedGroupV2.read(
            {
                "apiVersion": "workloads.x-k8s.io/v1alpha2",
                "kind": "RoleBasedGroup",
                "metadata": {"name": "g", "namespace": "ns"},
                "spec": {
                    "roles": [
                        {
                            "name": "web",
                            "replicas": 2,
                            "annotations": {naming.ANNOTATION_V2_INSTANCE_PATTERN: pattern},
                            "standalonePattern": {"template": {"spec": {"containers": [{"name": "m", "image": "a"}]}}},
                        }
                    ]
                },
            }
        )

    assert spec_problems(group("Sometimes").spec) == [
        f"roles[0].annotations[{naming.ANNOTATION_V2_INSTANCE_PATTERN}]: 'Sometimes' is not one of Stateful, Stateless"
    ]
    assert "instances" not in topology(group("Stateless"))["roles"][0]
    assert len(topology(group("Stateful"))["roles"][0]["instances"]) == 2


def test_a_gang_scheduled_group_makes_its_instances_gangs_and_refuses_both_annotations():
    from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
    from rbg_operator.desired.options import BuildOptions
    from rbg_operator.desired.workload_kinds import role_workload

    def group(annotations: dict) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u", "annotations": annotations},
            "spec": {
                "roles": [
                    {
                        "name": "web",
                        "replicas": 1,
                        "standalonePattern": {"template": {"spec": {"containers": [{"name": "m", "image": "a"}]}}},
                    }
                ]
            },
        }

    ganged = RoleBasedGroupV2.read(group({naming.ANNOTATION_GROUP_GANG: "true"}))
    ris = role_workload(ganged, ganged.spec.roles[0], BuildOptions())
    assert ris["metadata"]["annotations"][naming.ANNOTATION_INSTANCE_GANG] == "true"
    both = group({naming.ANNOTATION_GROUP_GANG: "true", naming.ANNOTATION_INSTANCE_GANG: "true"})
    with pytest.raises(ValueError, match="cannot both be set on a group"):
        RoleBasedGroupV2.model_validate(both)


def test_both_modes_build_an_instance_the_same_way_but_for_its_name_and_identity():
    from rbg_operator.controller.instanceset_plan import ANNOTATION_IN_PLACE_ONLY, COPIED_ANNOTATIONS
    from rbg_operator.desired.ports import ROLE_PORTS

    copied = {
        naming.ANNOTATION_V2_GRACE_PERIOD: "30",
        naming.ANNOTATION_INSTANCE_GANG: "true",
        ROLE_PORTS: '{"http": 30001}',
        naming.ANNOTATION_INPLACE_SCHEDULING: "Preferred",
    }
    assert set(copied) <= set(COPIED_ANNOTATIONS)
    body = instance_set(2, updateStrategy={"type": "InPlaceOnly"})
    body["metadata"]["labels"] = {"team": "a"}
    body["metadata"]["annotations"].update(copied, **{"not-copied": "x"})
    revision = template_revision(body["spec"]["roleInstanceTemplate"])
    stateless = sl.desired_instance(body, "bcdfg", revision, body["spec"]["roleInstanceTemplate"])
    stateful = desired_instance(body, 0, revision)
    assert stateless["metadata"]["annotations"] == {**copied, ANNOTATION_IN_PLACE_ONLY: "true"}

    def without_identity(instance: dict, identity: set[str]) -> dict:
        meta = dict(instance["metadata"], name="", labels={})
        meta["labels"] = {k: v for k, v in instance["metadata"]["labels"].items() if k not in identity}
        spec = dict(instance["spec"], readinessGates=[])
        spec["components"] = [
            {**c, "template": {**c["template"], "metadata": {}}} for c in instance["spec"]["components"]
        ]
        return {**instance, "metadata": meta, "spec": spec}

    stateful_identity = {naming.LABEL_V2_INSTANCE_INDEX, naming.STATEFULSET_POD_NAME}
    stateless_identity = {sl.LABEL_INSTANCE_ID, sl.LABEL_INSTANCE_OWNER}
    assert without_identity(stateless, stateless_identity) == without_identity(stateful, stateful_identity)
    assert stateless["metadata"]["labels"]["team"] == "a"
    # The set's own template is never changed by building an instance from it.
    assert "readinessGates" not in body["spec"]["roleInstanceTemplate"]


def test_an_in_place_only_set_marks_its_stateless_instances_in_place_only():
    from rbg_operator.controller.instanceset_plan import ANNOTATION_IN_PLACE_ONLY

    old = instance_set(1)
    new = instance_set(1, image="app:v2", updateStrategy={"type": "InPlaceOnly"})
    created_one = planned_for(new, []).create[0][1]
    updated = planned_for(new, [made(old, "aaaaa")]).update[0]
    for instance in (created_one, updated):
        assert instance["metadata"]["annotations"][ANNOTATION_IN_PLACE_ONLY] == "true"


def test_a_cancelled_scale_in_sets_the_lifecycle_state_back_to_normal_once():
    hook = {"preDelete": {"labelsHandler": {"example.com/drain": "wait"}}}
    held_labels = {"example.com/drain": "wait", sl.LABEL_LIFECYCLE_STATE: "PreparingDelete"}
    body = instance_set(2, lifecycle=hook)  # scaled back up from 1: nothing is to go
    instances = [made(body, "aaaaa", labels=held_labels), made(body, "bbbbb")]
    planned = planned_for(body, instances)
    assert planned.mark == (("s-aaaaa", "Normal"),) and planned.deleted == () and planned.create == ()
    report = conclude(InstanceSetSnapshot(body, (), ()), planned, Outcome(), NOW)
    assert "LifecycleHookHolds" not in [e.reason for e in report.events]
    instances[0]["metadata"]["labels"][sl.LABEL_LIFECYCLE_STATE] = "Normal"
    assert planned_for(body, instances).mark == ()  # once
    # The same for an update the hook let through: it goes ahead and the state ends.
    update_hook = {"inPlaceUpdate": {"finalizersHandler": ["example.com/drain"]}}
    old = instance_set(1, lifecycle=update_hook)
    released = made(old, "ccccc", labels={sl.LABEL_LIFECYCLE_STATE: "PreparingUpdate"})
    planned = planned_for(instance_set(1, image="app:v2", lifecycle=update_hook), [released])
    assert [u["metadata"]["name"] for u in planned.update] == ["s-ccccc"]
    assert planned.mark == (("s-ccccc", "Normal"),)


def test_a_scale_in_takes_the_instance_already_preparing_delete_first():
    hook = {"preDelete": {"labelsHandler": {"example.com/drain": "wait"}}}
    body = instance_set(1, lifecycle=hook)
    draining = made(
        body,
        "aaaaa",
        created="2026-12-05T06:00:00Z",  # the older: by age alone the other would go
        labels={"example.com/drain": "wait", sl.LABEL_LIFECYCLE_STATE: "PreparingDelete"},
    )
    other = made(body, "bbbbb", created="2026-12-05T07:30:00Z", labels={"example.com/drain": "wait"})
    planned = planned_for(body, [draining, other])
    assert (planned.deleted, planned.mark) == ((), ())  # still draining; the other is left alone
    del draining["metadata"]["labels"]["example.com/drain"]
    assert planned_for(body, [draining, other]).deleted == ("s-aaaaa",)
