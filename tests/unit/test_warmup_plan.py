"""The warmup's decisions, from a snapshot and a time: which nodes, what each pod runs, retries,
pace, failure, deadline, pause and TTL. No cluster, no API."""

from __future__ import annotations

import datetime
import hashlib
import re

import pydantic
import pytest

from rbg_operator import naming
from rbg_operator.api.warmup import (
    BACKOFF_REQUIRED,
    BOTH_TARGETS,
    EITHER_TARGET,
    ONE_NODE_CHOICE,
    SOME_ACTION,
    RoleBasedGroupWarmupSpec,
)
from rbg_operator.controller import conditions
from rbg_operator.controller.warmup_plan import (
    RETRY_BASE_SECONDS,
    UNSCHEDULED_TIMEOUT_SECONDS,
    WarmupSnapshot,
    plan_warmup,
)

NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)
UID = "w-uid"


def stamp(seconds_ago: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, unschedulable: bool = False, **labels) -> dict:
    return {
        "metadata": {"name": name, "labels": {naming.LABEL_HOSTNAME: name, **labels}},
        "spec": {"unschedulable": True} if unschedulable else {},
    }


def pod(node_name: str, phase: str, age: float = 60, name: str | None = None, deleting: bool = False) -> dict:
    meta = {
        "name": name or f"w-{node_name}-{phase}-{age}",
        "uid": f"uid-{node_name}-{phase}-{age}",
        "creationTimestamp": stamp(age),
        "labels": {naming.LABEL_WARMUP_NAME: "w", naming.LABEL_WARMUP_NODE: node_name},
    }
    if deleting:
        meta["deletionTimestamp"] = stamp(0)
    return {"metadata": meta, "spec": {"nodeName": node_name}, "status": {"phase": phase}}


def group_pod(node_name: str, role: str, group: str = "g") -> dict:
    labels = {naming.LABEL_GROUP_NAME: group, naming.LABEL_V2_GROUP_NAME: group, naming.LABEL_V2_ROLE_NAME: role}
    return {"metadata": {"name": f"{group}-{role}-{node_name}", "labels": labels}, "spec": {"nodeName": node_name}}


PRELOAD = {"imagePreload": {"images": ["registry/model:v1"]}}


def snapshot(spec: dict, pods=(), nodes=(), group_pods=(), **status) -> WarmupSnapshot:
    body = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroupWarmup",
        "metadata": {"name": "w", "namespace": "ns", "uid": UID, "generation": 1},
        "spec": spec,
        "status": status,
    }
    return WarmupSnapshot(
        body,
        RoleBasedGroupWarmupSpec.model_validate(spec),
        tuple(pods),
        {n["metadata"]["name"]: n for n in nodes},
        tuple(group_pods),
    )


def named(*names: str, **policies) -> dict:
    spec: dict = {"targetNodes": {"nodeNames": list(names), **PRELOAD}}
    if policies:
        spec["policies"] = policies
    return spec


def nodes_of(pods: tuple[dict, ...]) -> list[str]:
    return [p["metadata"]["labels"][naming.LABEL_WARMUP_NODE] for p in pods]


def condition(status: dict, type_: str) -> dict:
    return conditions.find(status.get("conditions"), type_) or {}


# --- node selection ----------------------------------------------------------------------------


def test_named_nodes_each_get_one_pod_on_that_node_owned_by_the_warmup():
    planned = plan_warmup(snapshot(named("n2", "n1"), nodes=[node("n1"), node("n2", **{"x": "y"})]), NOW)
    assert nodes_of(planned.create) == ["n1", "n2"]
    made = planned.create[0]
    assert made["metadata"]["generateName"] == "w-"
    assert made["metadata"]["labels"] == {
        naming.LABEL_WARMUP_NAME: "w",
        naming.LABEL_WARMUP_UID: UID,
        naming.LABEL_WARMUP_NODE: "n1",
    }
    owner = made["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("RoleBasedGroupWarmup", UID, True)
    assert made["spec"]["restartPolicy"] == "Never"
    assert made["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "n1"}
    assert made["spec"]["containers"] == [
        {
            "name": "image-preload-0",
            "image": "registry/model:v1",
            "command": ["sh", "-c", "exit 0"],
            "imagePullPolicy": "IfNotPresent",
        }
    ]
    assert (planned.status["phase"], planned.status["desired"], planned.status["active"]) == ("Running", 2, 2)
    assert planned.status["startTime"] == stamp(0)


def test_a_node_whose_hostname_label_differs_from_its_name_is_selected_by_that_label():
    odd = {"metadata": {"name": "ip-10-0-0-1.internal", "labels": {naming.LABEL_HOSTNAME: "ip-10-0-0-1"}}}
    planned = plan_warmup(snapshot(named("ip-10-0-0-1.internal"), nodes=[odd]), NOW)
    assert planned.create[0]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "ip-10-0-0-1"}
    # A node the cache does not know is selected by its name.
    planned = plan_warmup(snapshot(named("unknown")), NOW)
    assert planned.create[0]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "unknown"}


def test_a_node_selector_picks_the_matching_schedulable_nodes():
    spec = {"targetNodes": {"nodeSelector": {"pool": "gpu"}, **PRELOAD}, "tolerations": [{"operator": "Exists"}]}
    nodes = [node("a", pool="gpu"), node("b", pool="cpu"), node("c", pool="gpu", unschedulable=True), node("d")]
    planned = plan_warmup(snapshot(spec, nodes=nodes), NOW)
    assert nodes_of(planned.create) == ["a"]
    assert planned.create[0]["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_a_group_target_warms_the_nodes_of_its_scheduled_pods_merging_the_roles_on_a_node():
    vol = {"name": "models", "hostPath": {"path": "/models"}}
    spec = {
        "targetRoleBasedGroup": {
            "name": "g",
            "roles": {
                "prefill": {
                    "imagePreload": {"images": ["sglang:v1", "router:v1"], "pullSecrets": [{"name": "reg"}]},
                    "customizedAction": {
                        "containers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
                        "volumes": [vol],
                    },
                },
                "decode": {
                    "imagePreload": {"images": ["sglang:v1"], "pullSecrets": [{"name": "reg"}]},
                    "customizedAction": {
                        "containers": [{"name": "other-name", "image": "busybox", "command": ["true"]}],
                        "volumes": [vol],
                    },
                },
            },
        }
    }
    pods = [
        group_pod("n1", "prefill"),
        group_pod("n1", "decode"),
        group_pod("n2", "decode"),
        group_pod("n3", "router"),  # a role without actions
        {**group_pod("n4", "prefill"), "spec": {}},  # not scheduled yet
        group_pod("n5", "prefill", group="other"),  # observe reads the group's pods only; here: by label too
    ][:5]
    planned = plan_warmup(snapshot(spec, group_pods=pods), NOW)
    assert nodes_of(planned.create) == ["n1", "n2"]
    n1 = planned.create[0]["spec"]
    assert [(c["name"], c["image"]) for c in n1["containers"]] == [
        ("image-preload-0", "sglang:v1"),
        ("image-preload-1", "router:v1"),
        ("custom-0", "busybox"),  # the same container under two names runs once
    ]
    assert n1["volumes"] == [vol] and n1["imagePullSecrets"] == [{"name": "reg"}]
    assert [c["image"] for c in planned.create[1]["spec"]["containers"]] == ["sglang:v1", "busybox"]
    assert "VolumeConflict" not in {c["type"] for c in planned.status.get("conditions") or []}


def test_volumes_of_one_name_defined_two_ways_keep_the_first_and_report_the_conflict_once():
    def actions(path: str) -> dict:
        return {
            "customizedAction": {
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "models", "hostPath": {"path": path}}],
            }
        }

    spec = {"targetRoleBasedGroup": {"name": "g", "roles": {"a": actions("/a"), "b": actions("/b")}}}
    pods = [group_pod("n1", "a"), group_pod("n1", "b")]
    planned = plan_warmup(snapshot(spec, group_pods=pods), NOW)
    assert planned.create[0]["spec"]["volumes"] == [{"name": "models", "hostPath": {"path": "/a"}}]
    conflict = condition(planned.status, "VolumeConflict")
    assert (conflict["status"], conflict["reason"]) == ("True", "ConflictingVolumeDefinitions")
    assert "models" in conflict["message"]
    assert [(e.type, e.reason) for e in planned.events] == [("Warning", "VolumeConflict")]
    # The next pass, with the condition recorded, says it again in the status but not as an Event.
    again = plan_warmup(snapshot(spec, group_pods=pods, **planned.status), NOW)
    assert again.events == () and condition(again.status, "VolumeConflict")["status"] == "True"


# --- pace and retries --------------------------------------------------------------------------


def test_parallelism_bounds_the_pods_at_work_at_once():
    spec = named("n1", "n2", "n3", "n4", parallelism=2)
    assert nodes_of(plan_warmup(snapshot(spec), NOW).create) == ["n1", "n2"]
    planned = plan_warmup(snapshot(spec, pods=[pod("n1", "Running"), pod("n2", "Succeeded")]), NOW)
    assert nodes_of(planned.create) == ["n3"]
    assert (planned.status["active"], planned.status["succeeded"], planned.status["desired"]) == (2, 1, 4)


def test_a_failed_node_is_retried_after_a_backoff_until_its_limit_then_counts_as_failed():
    spec = named("n1", "n2", backoffLimitPerNode=1, maxFailedNodes=1)
    done = pod("n2", "Succeeded")
    # Just failed: the retry waits for its backoff, and the pass says when to look again.
    planned = plan_warmup(snapshot(spec, pods=[pod("n1", "Failed", age=2), done]), NOW)
    assert planned.create == () and planned.requeue == pytest.approx(RETRY_BASE_SECONDS - 2)
    assert planned.status["phase"] == "Running"
    # The backoff has passed: one retry.
    planned = plan_warmup(snapshot(spec, pods=[pod("n1", "Failed", age=60), done]), NOW)
    assert nodes_of(planned.create) == ["n1"]
    # The retry failed too: the node is out of retries, which one tolerated node allows.
    planned = plan_warmup(snapshot(spec, pods=[pod("n1", "Failed", 120), pod("n1", "Failed", 60), done]), NOW)
    assert planned.create == ()
    assert (planned.status["phase"], planned.status["failed"], planned.status["succeeded"]) == ("Completed", 1, 1)


def test_no_backoff_limit_retries_for_ever_keeping_only_the_newest_failed_pods():
    failures = [pod("n1", "Failed", age=1000 + i) for i in range(8)]
    planned = plan_warmup(snapshot(named("n1"), pods=failures), NOW)
    assert nodes_of(planned.create) == ["n1"] and planned.status["failed"] == 0
    assert {name for name, _ in planned.delete} == {p["metadata"]["name"] for p in failures[-2:]}  # the oldest two


def test_a_backoff_limit_of_zero_means_no_retry_and_max_failed_nodes_unset_tolerates_none():
    planned = plan_warmup(snapshot(named("n1", "n2", backoffLimitPerNode=0), pods=[pod("n1", "Failed")]), NOW)
    assert planned.create == ()
    assert planned.status["phase"] == "Failed"
    assert condition(planned.status, "Failed")["reason"] == "MaxFailedNodesExceeded"


def test_more_failed_nodes_than_tolerated_fail_the_warmup_and_stop_its_pods():
    spec = named("n1", "n2", "n3", backoffLimitPerNode=0, maxFailedNodes=1)
    running = pod("n3", "Running")
    pods = [pod("n1", "Failed"), pod("n2", "Failed"), running]
    planned = plan_warmup(snapshot(spec, pods=pods), NOW)
    assert planned.status["phase"] == "Failed" and planned.status["failed"] == 2
    failed = condition(planned.status, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "MaxFailedNodesExceeded")
    assert planned.delete == ((running["metadata"]["name"], running["metadata"]["uid"]),)
    assert planned.status["completionTime"] == stamp(0)
    assert [(e.type, e.reason, e.after_status) for e in planned.events] == [("Warning", "WarmupFailed", True)]


def test_a_second_pod_of_a_node_is_deleted_and_a_succeeded_node_gets_no_more():
    first, second = pod("n1", "Running", age=30), pod("n1", "Pending", age=5)
    planned = plan_warmup(snapshot(named("n1", "n2"), pods=[second, first, pod("n2", "Succeeded")]), NOW)
    assert planned.create == ()
    assert planned.delete == ((second["metadata"]["name"], second["metadata"]["uid"]),)
    assert planned.status["active"] == 1


# --- phases ------------------------------------------------------------------------------------


def test_every_node_succeeded_completes_once():
    pods = [pod("n1", "Succeeded"), pod("n2", "Succeeded")]
    planned = plan_warmup(snapshot(named("n1", "n2"), pods=pods, phase="Running", startTime=stamp(60)), NOW)
    assert planned.status["phase"] == "Completed"
    assert (planned.status["succeeded"], planned.status["active"], planned.status["startTime"]) == (2, 0, stamp(60))
    complete = condition(planned.status, "Complete")
    assert (complete["status"], complete["reason"]) == ("True", "WarmupCompleted")
    assert [(e.type, e.reason) for e in planned.events] == [("Normal", "WarmupCompleted")]
    # Once Completed, it is final: nothing more is written, created or announced.
    final = plan_warmup(snapshot(named("n1", "n2", "n3"), pods=pods, **planned.status), NOW)
    assert (final.create, final.status, final.events, final.delete_warmup) == ((), None, (), False)


def test_no_matching_node_completes_at_once():
    spec = {"targetNodes": {"nodeSelector": {"pool": "none"}, **PRELOAD}}
    planned = plan_warmup(snapshot(spec, nodes=[node("a", pool="gpu")]), NOW)
    assert planned.create == () and planned.status["phase"] == "Completed" and planned.status["desired"] == 0
    assert condition(planned.status, "Complete")["reason"] == "NoNodesMatched"
    group = {"targetRoleBasedGroup": {"name": "g", "roles": {"r": PRELOAD}}}
    assert condition(plan_warmup(snapshot(group), NOW).status, "Complete")["reason"] == "NoNodesMatched"


def test_the_global_timeout_counts_from_the_start_time_and_fails_the_warmup_stopping_its_pods():
    spec = named("n1", "n2", globalTimeoutSeconds=100)
    running = pod("n1", "Running")
    early = plan_warmup(snapshot(spec, pods=[running], phase="Running", startTime=stamp(40)), NOW)
    assert early.status["phase"] == "Running" and early.requeue == pytest.approx(60)
    late = plan_warmup(snapshot(spec, pods=[running], phase="Running", startTime=stamp(100)), NOW)
    assert late.create == () and late.status["phase"] == "Failed"
    assert condition(late.status, "Failed")["reason"] == "GlobalTimeoutExceeded"
    assert late.delete == ((running["metadata"]["name"], running["metadata"]["uid"]),)
    assert [e.reason for e in late.events] == ["WarmupFailed"]


def test_paused_creates_no_pod_leaves_running_ones_and_does_not_start_the_clock():
    spec = {**named("n1", "n2", globalTimeoutSeconds=10), "paused": True}
    planned = plan_warmup(snapshot(spec), NOW)
    assert planned.create == () and planned.delete == ()
    assert planned.status["phase"] == "Paused" and "startTime" not in planned.status and planned.requeue is None
    planned = plan_warmup(snapshot(spec, pods=[pod("n1", "Running")], startTime=stamp(5)), NOW)
    assert (planned.create, planned.delete, planned.status["phase"], planned.status["active"]) == ((), (), "Paused", 1)
    # Unpaused: it goes on where it was.
    planned = plan_warmup(snapshot({**spec, "paused": False}, pods=[pod("n1", "Running")], startTime=stamp(5)), NOW)
    assert nodes_of(planned.create) == ["n2"] and planned.status["phase"] == "Running"


def test_a_finished_warmup_is_deleted_once_its_ttl_has_passed():
    spec = named("n1", ttlSecondsAfterFinished=30)
    finished = {"phase": "Completed", "completionTime": stamp(10)}
    waiting = plan_warmup(snapshot(spec, pods=[pod("n1", "Succeeded")], **finished), NOW)
    assert not waiting.delete_warmup and waiting.requeue == pytest.approx(20)
    due = plan_warmup(snapshot(spec, **{**finished, "completionTime": stamp(30)}), NOW)
    assert due.delete_warmup
    # Without a TTL it stays; a warmup that completes with a TTL of 0 goes in the same pass.
    assert not plan_warmup(snapshot(named("n1"), **{**finished, "completionTime": stamp(9999)}), NOW).delete_warmup
    assert plan_warmup(
        snapshot(named("n1", ttlSecondsAfterFinished=0), pods=[pod("n1", "Succeeded")]), NOW
    ).delete_warmup


def test_a_failed_warmup_still_stops_a_pod_a_cut_short_pass_left_running():
    running = pod("n1", "Running")
    planned = plan_warmup(snapshot(named("n1"), pods=[running], phase="Failed", completionTime=stamp(1)), NOW)
    assert planned.delete == ((running["metadata"]["name"], running["metadata"]["uid"]),) and planned.status is None


def test_a_pass_over_an_unchanged_warmup_plans_the_same_status():
    first = plan_warmup(snapshot(named("n1")), NOW)
    pods = [
        {
            **first.create[0],
            "metadata": {**first.create[0]["metadata"], "name": "w-x", "uid": "u", "creationTimestamp": stamp(0)},
            "status": {"phase": "Running"},
        }
    ]
    second = plan_warmup(snapshot(named("n1"), pods=pods, **first.status), NOW + datetime.timedelta(seconds=5))
    assert second.create == () and second.status == first.status


# --- the model's rules (the CRD's CEL rules, with the same messages) ---------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, EITHER_TARGET),
        (
            {
                "targetNodes": {"nodeNames": ["a"], **PRELOAD},
                "targetRoleBasedGroup": {"name": "g", "roles": {"r": PRELOAD}},
            },
            BOTH_TARGETS,
        ),
        ({"targetNodes": {**PRELOAD}}, ONE_NODE_CHOICE),
        ({"targetNodes": {"nodeNames": ["a"], "nodeSelector": {"k": "v"}, **PRELOAD}}, ONE_NODE_CHOICE),
        ({"targetNodes": {"nodeNames": ["a"]}}, SOME_ACTION),
        ({"targetRoleBasedGroup": {"name": "g", "roles": {"r": {}}}}, SOME_ACTION),
        ({**named("a"), "policies": {"maxFailedNodes": 1}}, BACKOFF_REQUIRED),
    ],
)
def test_the_model_refuses_what_the_crd_rules_refuse_with_the_same_message(spec: dict, message: str):
    with pytest.raises(pydantic.ValidationError) as error:
        RoleBasedGroupWarmupSpec.model_validate(spec)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "spec",
    [
        {"targetNodes": {"nodeNames": [], **PRELOAD}},
        {"targetNodes": {"nodeSelector": {}, **PRELOAD}},
        {"targetNodes": {"nodeNames": ["a"], "imagePreload": {"images": []}}},
        {"targetNodes": {"nodeNames": ["a"], "customizedAction": {"containers": []}}},
        {"targetRoleBasedGroup": {"name": "", "roles": {"r": PRELOAD}}},
        {"targetRoleBasedGroup": {"name": "g", "roles": {}}},
        {**named("a"), "policies": {"parallelism": 0}},
        {**named("a"), "policies": {"globalTimeoutSeconds": 0}},
    ],
)
def test_the_bounds_of_the_contract(spec: dict):
    with pytest.raises(pydantic.ValidationError):
        RoleBasedGroupWarmupSpec.model_validate(spec)


def test_the_crd_carries_the_same_rules_with_the_contracts_messages():
    from pathlib import Path

    import yaml

    crd = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "crds" / "workloads.x-k8s.io_rolebasedgroupwarmups.yaml").read_text()
    )
    (version,) = crd["spec"]["versions"]
    assert crd["spec"]["names"]["shortNames"] == ["rbgwarmup"] and version["subresources"] == {"status": {}}
    messages = []

    def walk(schema: dict) -> None:
        messages.extend(v["message"] for v in schema.get("x-kubernetes-validations") or [])
        for child in (schema.get("properties") or {}).values():
            walk(child)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"])

    walk(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    assert sorted(set(messages)) == sorted(
        {EITHER_TARGET, BOTH_TARGETS, BACKOFF_REQUIRED, ONE_NODE_CHOICE, SOME_ACTION}
    )
    assert EITHER_TARGET == "either targetNodes or targetRoleBasedGroup must be specified"
    assert BOTH_TARGETS == "targetNodes and targetRoleBasedGroup are mutually exclusive"
    assert BACKOFF_REQUIRED == "backoffLimitPerNode must be set when maxFailedNodes is specified"


def test_the_roles_on_a_node_merge_in_role_name_order_whatever_the_order_of_the_map():
    roles = {
        "prefill": {"imagePreload": {"images": ["p:v1", "s:v1"]}},
        "decode": {"imagePreload": {"images": ["s:v1", "d:v1"]}},
    }
    pods = [group_pod("n1", "prefill"), group_pod("n1", "decode")]
    made = []
    for ordered in (roles, dict(reversed(list(roles.items())))):
        spec = {"targetRoleBasedGroup": {"name": "g", "roles": ordered}}
        (pod,) = plan_warmup(snapshot(spec, group_pods=pods), NOW).create
        made.append([c["image"] for c in pod["spec"]["containers"]])
    assert made == [["s:v1", "d:v1", "p:v1"]] * 2


# --- long node names and pods that are never scheduled -----------------------------------------

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def as_stored(made: dict, name: str, age: float, phase: str = "Pending", node_name: str | None = None) -> dict:
    """A created warmup pod as the cache shows it `age` seconds later."""
    meta = {**made["metadata"], "name": name, "uid": f"uid-{name}", "creationTimestamp": stamp(age)}
    spec = {"nodeName": node_name} if node_name else {}
    return {**made, "metadata": meta, "spec": spec, "status": {"phase": phase}}


def test_a_node_name_longer_than_a_label_value_is_shortened_and_its_pod_still_counts_for_it():
    long_a = ("a" * 53 + "." + ".".join(["b" * 63] * 4))[:253]  # the cut at 54 falls after a "."
    long_b = long_a[:-1] + "c"  # the same first 252 characters
    assert len(long_a) == 253
    planned = plan_warmup(snapshot(named(long_a, long_b, "short")), NOW)
    labels = nodes_of(planned.create)
    assert labels[2] == "short"  # a name that fits is the value itself
    assert labels[0] != labels[1]
    for value in labels:
        assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert labels[0] == naming.warmup_node_label(long_a)
    # Unknown to the cache, a long name cannot be a nodeSelector value: the pod is pinned by name.
    assert "nodeSelector" not in planned.create[0]["spec"]
    terms = planned.create[0]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [long_a]}]}]
    }
    known = {"metadata": {"name": long_a, "labels": {naming.LABEL_HOSTNAME: "gpu-1"}}}
    (by_hostname,) = plan_warmup(snapshot(named(long_a), nodes=[known]), NOW).create
    assert by_hostname["spec"]["nodeSelector"] == {naming.LABEL_HOSTNAME: "gpu-1"}
    # The next pass finds each node's pod by its label: none is made again, and the node is active.
    pods = [as_stored(p, f"w-{n}", age=5, node_name="x") for n, p in enumerate(planned.create)]
    again = plan_warmup(snapshot(named(long_a, long_b, "short"), pods=pods, **planned.status), NOW)
    assert again.create == () and again.delete == ()
    assert (again.status["desired"], again.status["active"]) == (3, 3)
    done = [as_stored(p, f"w-{n}", age=5, phase="Succeeded") for n, p in enumerate(planned.create)]
    finished = plan_warmup(snapshot(named(long_a, long_b, "short"), pods=done, **planned.status), NOW)
    assert (finished.status["phase"], finished.status["succeeded"]) == ("Completed", 3)


def test_the_shared_shortening_keeps_role_revision_keys_as_they_were():
    from rbg_operator.desired.rollout import revision_label

    role = "r" * 70
    name = revision_label(role).partition("/")[2]
    digest = hashlib.sha256(role.encode()).hexdigest()[:8]
    assert name == f"{(naming.LABEL_REVISION_PREFIX.partition('/')[2] + role)[:54]}-{digest}"


def test_a_pod_never_scheduled_within_the_bound_makes_its_node_fail_and_is_reported():
    spec = named("n1", "n2", backoffLimitPerNode=3, maxFailedNodes=1)
    first = plan_warmup(snapshot(spec), NOW)
    started = {**first.status, "startTime": stamp(UNSCHEDULED_TIMEOUT_SECONDS + 60)}
    stuck_young = as_stored(first.create[0], "w-a", age=UNSCHEDULED_TIMEOUT_SECONDS - 100)
    pulling = as_stored(first.create[1], "w-b", age=UNSCHEDULED_TIMEOUT_SECONDS + 50, node_name="n2")
    # Within the bound: still active, and the pass looks again when the bound runs out.
    planned = plan_warmup(snapshot(spec, pods=[stuck_young, pulling], **started), NOW)
    assert planned.create == () and (planned.status["active"], planned.status["failed"]) == (2, 0)
    assert planned.requeue == pytest.approx(100)
    # Past it: the node counts as failed, is not retried, and the event says which node, once.
    stuck = as_stored(first.create[0], "w-a", age=UNSCHEDULED_TIMEOUT_SECONDS + 1)
    planned = plan_warmup(snapshot(spec, pods=[stuck, pulling], **started), NOW)
    assert planned.create == () and planned.delete == ()  # the pulling pod, bound to a node, is not bounded
    assert (planned.status["phase"], planned.status["active"], planned.status["failed"]) == ("Running", 1, 1)
    assert [(e.type, e.reason) for e in planned.events] == [("Warning", "WarmupNodeUnschedulable")]
    assert "n1" in planned.events[0].message
    assert plan_warmup(snapshot(spec, pods=[stuck, pulling], **planned.status), NOW).events == ()
    # The other node done: the warmup completes, names the node, and the stuck pod goes.
    done = as_stored(first.create[1], "w-b", age=30, phase="Succeeded", node_name="n2")
    planned = plan_warmup(snapshot(spec, pods=[stuck, done], **planned.status), NOW)
    assert (planned.status["phase"], planned.status["failed"], planned.status["succeeded"]) == ("Completed", 1, 1)
    assert "not scheduled" in condition(planned.status, "Complete")["message"]
    assert "n1" in condition(planned.status, "Complete")["message"]
    assert planned.delete == (("w-a", "uid-w-a"),)
    # A pass cut short before that delete: the finished warmup still removes it.
    final = plan_warmup(snapshot(spec, pods=[stuck, done], **planned.status), NOW)
    assert final.delete == (("w-a", "uid-w-a"),) and final.status is None


def test_an_unschedulable_node_beyond_the_tolerated_fails_the_warmup_even_with_unlimited_retries():
    first = plan_warmup(snapshot(named("n1")), NOW)
    stuck = as_stored(first.create[0], "w-a", age=UNSCHEDULED_TIMEOUT_SECONDS)
    planned = plan_warmup(snapshot(named("n1"), pods=[stuck], **first.status), NOW)
    assert planned.create == () and planned.status["phase"] == "Failed"
    failed = condition(planned.status, "Failed")
    assert failed["reason"] == "MaxFailedNodesExceeded" and "n1" in failed["message"]
    assert planned.delete == (("w-a", "uid-w-a"),)
