"""RoleInstanceSet roles: the set built from a role, the instances planned from the set, and the
pods, updates and restarts decided for an instance. Pure functions, no cluster."""

from __future__ import annotations

import datetime
import json

from rbg_operator.api.conversion import V1, V2, convert
from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
from rbg_operator.controller.instanceset_plan import InstanceView, desired_instance, plan_instances, template_revision
from rbg_operator.controller.roleinstance_plan import component_order, desired_pods, restart_decision, update_kind
from rbg_operator.desired import role_children

C = [{"name": "main", "image": "example.com/app:v1"}]
NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)


def v2_group(role: dict) -> RoleBasedGroupV2:
    """A group written in v1alpha2, as the operator reads it."""
    return RoleBasedGroupV2.read(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u-1"},
            "spec": {"roles": [role]},
        }
    )


def instance_set(role: dict) -> dict:
    service, ris = role_children(v2_group(role), role["name"])
    ris["metadata"]["uid"] = "ris-uid"
    return ris


def pods_of(role: dict, ordinal: int = 0) -> dict[str, dict]:
    ris = instance_set(role)
    instance = desired_instance(ris, ordinal, template_revision(ris["spec"]["roleInstanceTemplate"]))
    instance["metadata"]["uid"] = "inst-uid"
    return desired_pods(instance)


def test_a_standalone_role_is_one_pod_per_instance_named_after_it():
    ris = instance_set({"name": "web", "replicas": 2, "standalonePattern": {"template": {"spec": {"containers": C}}}})
    assert (ris["apiVersion"], ris["kind"], ris["metadata"]["name"]) == (
        "workloads.x-k8s.io/v1alpha2",
        "RoleInstanceSet",
        "g-web",
    )
    assert ris["metadata"]["labels"]["rbg.workloads.x-k8s.io/role-type"] == "PodTemplate"
    assert ris["spec"]["selector"]["matchLabels"]["rbg.workloads.x-k8s.io/role-name"] == "web"
    assert ris["spec"]["roleInstanceTemplate"]["restartPolicyConfig"] == {
        "type": "None",
        "baseDelaySeconds": 30,
        "maxDelaySeconds": 600,
    }
    pods = pods_of({"name": "web", "standalonePattern": {"template": {"spec": {"containers": C}}}}, ordinal=1)
    assert list(pods) == ["g-web-1"]
    pod = pods["g-web-1"]
    assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == ("g-web-1", "s-g-web")
    labels = pod["metadata"]["labels"]
    assert labels["rbg.workloads.x-k8s.io/role-instance-name"] == "g-web-1"
    assert labels["rbg.workloads.x-k8s.io/role-instance-index"] == "1"
    assert (
        labels["rbg.workloads.x-k8s.io/group-name"] == "g" and labels["rolebasedgroup.workloads.x-k8s.io/role"] == "web"
    )
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert (
        env["RBG_ROLE_INSTANCE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['rbg.workloads.x-k8s.io/role-instance-name']"
    )


def test_a_leader_worker_role_has_a_leader_and_size_minus_one_workers():
    role = {
        "name": "pd",
        "leaderWorkerPattern": {
            "size": 3,
            "template": {"spec": {"containers": C}},
            "workerTemplatePatch": {"metadata": {"labels": {"tier": "worker"}}},
        },
    }
    ris = instance_set(role)
    assert ris["spec"]["roleInstanceTemplate"]["restartPolicyConfig"]["type"] == "RecreateRoleInstanceOnPodRestart"
    pods = pods_of(role)
    assert sorted(pods) == ["g-pd-0-0", "g-pd-0-1", "g-pd-0-2"]
    leader, worker = pods["g-pd-0-0"], pods["g-pd-0-2"]
    assert leader["metadata"]["labels"]["rbg.workloads.x-k8s.io/component-name"] == "leader"
    assert leader["metadata"]["labels"]["rbg.workloads.x-k8s.io/component-index"] == "0"
    assert worker["metadata"]["labels"]["rbg.workloads.x-k8s.io/component-index"] == "2"
    assert worker["metadata"]["labels"]["tier"] == "worker" and "tier" not in leader["metadata"]["labels"]
    assert leader["spec"]["subdomain"] == "s-g-pd" and "subdomain" not in worker["spec"]  # LeaderOnly
    env = {e["name"]: e for e in worker["spec"]["containers"][0]["env"]}
    assert env["RBG_LWP_LEADER_ADDRESS"]["value"] == "$(RBG_ROLE_INSTANCE_NAME)-0.s-g-pd.ns"
    service = role_children(v2_group(role), "pd")[0]
    assert service["spec"]["selector"]["rbg.workloads.x-k8s.io/component-name"] == "leader"


def test_custom_components_keep_their_names_sizes_and_labels():
    role = {
        "name": "mix",
        "customComponentsPattern": {
            "components": [
                {"name": "router", "size": 1, "labels": {"part": "r"}, "template": {"spec": {"containers": C}}},
                {"name": "engine", "size": 2, "template": {"spec": {"containers": C}}},
            ]
        },
    }
    pods = pods_of(role)
    assert sorted(pods) == ["g-mix-0-engine-0", "g-mix-0-engine-1", "g-mix-0-router-0"]
    assert pods["g-mix-0-router-0"]["metadata"]["labels"]["part"] == "r"
    assert not any(k.startswith("conversion.") for p in pods.values() for k in p["metadata"].get("annotations", {}))
    assert pods["g-mix-0-engine-1"]["metadata"]["labels"]["rbg.workloads.x-k8s.io/component-id"] == "1"
    assert instance_set(role)["metadata"]["labels"]["rbg.workloads.x-k8s.io/role-type"] == "Components"


def test_an_image_change_updates_in_place_and_any_other_change_recreates():
    def pod(image: str, **extra) -> dict:
        return next(
            iter(
                pods_of(
                    {
                        "name": "web",
                        "standalonePattern": {
                            "template": {"spec": {"containers": [{"name": "main", "image": image, **extra}]}}
                        },
                    }
                ).values()
            )
        )

    old = pod("example.com/app:v1")
    assert update_kind(old, pod("example.com/app:v1")) == "current"
    assert update_kind(old, pod("example.com/app:v2")) == "in-place"
    assert update_kind(old, pod("example.com/app:v2", args=["--x"])) == "recreate"


def views(*specs: tuple[int, str, bool]) -> list[InstanceView]:
    shape = (("web", 1),)
    return [InstanceView(f"s-{o}", o, rev, ready, False, shape) for o, rev, ready in specs]


SPEC = {
    "replicas": 4,
    "podManagementPolicy": "Parallel",
    "roleInstanceTemplate": {"components": [{"name": "web", "size": 1}]},
    "updateStrategy": {"partition": 1, "maxUnavailable": 1},
}


def test_instances_roll_highest_first_above_the_partition_within_max_unavailable():
    plan = plan_instances(SPEC, "new", views((0, "old", True), (1, "old", True), (2, "old", True), (3, "old", True)))
    assert (plan.create, plan.update, plan.delete) == ([], [3], [])
    # 3 is updated but not ready yet: nothing else moves.
    plan = plan_instances(SPEC, "new", views((0, "old", True), (1, "old", True), (2, "old", True), (3, "new", False)))
    assert plan.update == []
    # The partition keeps ordinal 0 on the old revision for good.
    plan = plan_instances(SPEC, "new", views((0, "old", True), (1, "old", True), (2, "new", True), (3, "new", True)))
    assert plan.update == [1]


def test_ordered_ready_creates_one_instance_after_the_other_and_scale_in_takes_the_highest():
    ordered = {**SPEC, "podManagementPolicy": "OrderedReady", "updateStrategy": {}}
    assert plan_instances(ordered, "r", []).create == [0]
    assert plan_instances(ordered, "r", views((0, "r", False))).create == []
    assert plan_instances(ordered, "r", views((0, "r", True))).create == [1]
    assert plan_instances(SPEC, "r", []).create == [0, 1, 2, 3]
    shrink = {**SPEC, "replicas": 2}
    assert plan_instances(
        shrink, "r", views((0, "r", True), (1, "r", True), (2, "r", True), (3, "r", True))
    ).delete == ["s-3", "s-2"]


def test_a_changed_component_size_recreates_unless_in_place_only():
    spec = {
        **SPEC,
        "roleInstanceTemplate": {"components": [{"name": "web", "size": 2}]},
        "updateStrategy": {"maxUnavailable": 4},
    }
    plan = plan_instances(spec, "new", views((0, "old", True), (1, "old", True), (2, "old", True), (3, "old", True)))
    assert plan.delete == ["s-3", "s-2", "s-1", "s-0"] and plan.update == []
    only = {**spec, "updateStrategy": {"maxUnavailable": 4, "type": "InPlaceOnly"}}
    plan = plan_instances(only, "new", views((0, "old", True)))
    assert plan.delete == [] and plan.update == []


def restarting_instance(restart_count: int = 0, last: str | None = None, ready: str = "True") -> dict:
    status = {"restartCount": restart_count, "conditions": [{"type": "RoleInstanceReady", "status": ready}]}
    if last:
        status["lastRestartTime"] = last
    return {
        "metadata": {"name": "i"},
        "spec": {
            "restartPolicyConfig": {
                "type": "RecreateRoleInstanceOnPodRestart",
                "baseDelaySeconds": 10,
                "maxDelaySeconds": 15,
            }
        },
        "status": status,
    }


def crashed(restarts: int = 1) -> list[dict]:
    return [
        {
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", "restartCount": restarts}]},
        }
    ]


def test_a_container_restart_recreates_the_instance_with_backoff_between_recreations():
    assert restart_decision(restarting_instance(), crashed(), True, NOW).recreate  # the first: at once
    assert not restart_decision(restarting_instance(), crashed(0), True, NOW).recreate
    assert not restart_decision(restarting_instance(ready="False"), crashed(), True, NOW).recreate
    assert not restart_decision(restarting_instance(), crashed(), False, NOW).recreate  # a rollout runs
    # The third recreation waits min(10 x 2^1, 15) = 15 s after the second.
    waiting = restart_decision(restarting_instance(2, "2026-12-02T11:59:55Z"), crashed(), True, NOW)
    assert not waiting.recreate and waiting.wait == 10
    assert restart_decision(restarting_instance(2, "2026-12-02T11:59:40Z"), crashed(), True, NOW).recreate
    # An in-place image change restarts the container once: not a crash.
    explained = restarting_instance()
    explained["status"]["inPlaceUpdateContainerBaselines"] = {"p": {"main": {"restartCount": 0}}}
    assert not restart_decision(explained, crashed(1), True, NOW).recreate
    assert restart_decision(explained, crashed(2), True, NOW).recreate
    # A pod annotated to be ignored by restart policies never triggers one.
    ignored = crashed(3)
    ignored[0]["metadata"]["annotations"] = {"rbg.workloads.x-k8s.io/restart-trigger-policy": "Ignore"}
    assert not restart_decision(restarting_instance(), ignored, True, NOW).recreate
    ignored[0]["metadata"]["annotations"] = {"rbg.workloads.x-k8s.io/restart-trigger-policy": "Inherit"}
    assert restart_decision(restarting_instance(), ignored, True, NOW).recreate


def test_the_custom_components_pattern_survives_a_v1alpha1_client():
    group = v2_group(
        {
            "name": "mix",
            "customComponentsPattern": {
                "components": [{"name": "a", "size": 2, "template": {"spec": {"containers": C}}}]
            },
        }
    )
    assert group.spec.roles[0].pattern == "customComponents"
    written_back = convert(convert({"apiVersion": V2, "kind": "RoleBasedGroup", **group.wire()}, V1), V2)
    assert RoleBasedGroupV2.read(written_back).spec.roles[0] == group.spec.roles[0]


def test_component_order_reads_start_after_and_delete_after_and_ignores_cycles():
    def component(name: str, directive: dict | str | None = None, where: str = "annotations") -> dict:
        text = directive if isinstance(directive, str) or directive is None else json.dumps(directive)
        notes = {"rolebasedgroup.workloads.x-k8s.io/component-depends-on": text} if text else {}
        return {
            "name": name,
            **(
                {"annotations": notes} if where == "annotations" else {"template": {"metadata": {"annotations": notes}}}
            ),
        }

    start, delete = component_order([component("router", {"startAfter": ["engine"]}), component("engine")])
    assert start == {"router": ["engine"], "engine": []}
    assert delete == {"router": [], "engine": ["router"]}  # the router's excess pods go first
    start, _ = component_order([component("a", {"startAfter": ["b"]}, where="template"), component("b")])
    assert start["a"] == ["b"]
    start, delete = component_order([component("a", {"startAfter": ["b"]}), component("b", {"startAfter": ["a"]})])
    assert start == {} and delete == {}, "a cycle orders nothing"
    assert component_order([component("a", "{not json"), component("b")])[0] == {"a": [], "b": []}


def test_max_surge_adds_new_instances_first_and_removes_them_when_the_rollout_is_done():
    spec = {
        "replicas": 2,
        "roleInstanceTemplate": {"components": [{"name": "web", "size": 1}]},
        "updateStrategy": {"maxSurge": 1, "maxUnavailable": 0},
    }
    plan = plan_instances(spec, "new", views((0, "old", True), (1, "old", True)))
    assert (plan.create, plan.update, plan.delete) == ([2], [], [])  # no old one may go yet
    plan = plan_instances(spec, "new", views((0, "old", True), (1, "old", True), (2, "new", False)))
    assert (plan.create, plan.update) == ([], [])
    plan = plan_instances(spec, "new", views((0, "old", True), (1, "old", True), (2, "new", True)))
    assert plan.update == [1]  # the surge instance stands in for it
    plan = plan_instances(spec, "new", views((0, "new", True), (1, "new", False), (2, "new", True)))
    assert plan.delete == []  # not before the updated ones are Ready
    plan = plan_instances(spec, "new", views((0, "new", True), (1, "new", True), (2, "new", True)))
    assert plan.delete == ["s-2"]
    steady = plan_instances(spec, "new", views((0, "new", False), (1, "new", True)))
    assert steady.create == [], "an unready instance outside a rollout is no reason to surge"


def test_zero_max_unavailable_is_kept_for_the_instance_set():
    ris = instance_set(
        {
            "name": "web",
            "standalonePattern": {"template": {"spec": {"containers": C}}},
            "rolloutStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        }
    )
    assert (ris["spec"]["updateStrategy"]["maxUnavailable"], ris["spec"]["updateStrategy"]["maxSurge"]) == (0, 1)
