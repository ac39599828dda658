"""In-place scheduling: the nodes an instance's pods ran on are recorded on the instance before any
pod goes, and a recreated pod is sent back there (preferred or required), away from nodes to avoid.
No cluster, no API."""

from __future__ import annotations

import datetime
import json

import pytest

from rbg_operator import naming
from rbg_operator.api.v1alpha2 import RoleBasedGroupV2, fields_not_acted_on, spec_problems
from rbg_operator.controller.roleinstance import observe
from rbg_operator.controller.roleinstance_plan import RoleInstanceSnapshot, desired_pods, plan, pod_slots
from rbg_operator.controller.store import Store
from rbg_operator.desired import inplace_scheduling as ips

pytestmark = pytest.mark.unit

NOW = datetime.datetime(2026, 12, 5, 8, 0, tzinfo=datetime.UTC)


def instance(mode="Preferred", *, granularity=None, avoid=None, nodes=None, stateful=True, sizes=(1,)) -> dict:
    annotations = {ips.ANNOTATION_MODE: mode} if mode else {}
    if granularity:
        annotations[ips.ANNOTATION_GRANULARITY] = granularity
    if avoid:
        annotations[ips.ANNOTATION_AVOID] = avoid
    if nodes:
        annotations[ips.ANNOTATION_NODES] = json.dumps(nodes)
    labels = {naming.LABEL_V2_ROLE_TYPE: "Components"}
    if stateful:
        labels[naming.LABEL_V2_INSTANCE_INDEX] = "0"
    components = [
        {"name": f"c{i}", "size": size, "template": {"spec": {"containers": [{"name": "m", "image": "a"}]}}}
        for i, size in enumerate(sizes)
    ]
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleInstance",
        "metadata": {
            "name": "i",
            "namespace": "ns",
            "uid": "u",
            "generation": 1,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"components": components},
        "status": {"observedGeneration": 1},
    }


def scheduled(body: dict, where: dict[str, str]) -> dict[str, dict]:
    pods = desired_pods(body)
    for name, pod in pods.items():
        pod["metadata"]["uid"] = f"uid-{name}"
        if name in where:
            pod["spec"]["nodeName"] = where[name]
        pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return pods


def test_the_nodes_pods_run_on_are_recorded_and_kept_while_a_pod_is_away():
    body = instance(sizes=(2,))
    pods = scheduled(body, {"i-c0-0": "n1", "i-c0-1": "n2"})
    record = ips.recorded(body, pods, list(pod_slots(body)))
    assert json.loads(record) == {"i-c0-0": "n1", "i-c0-1": "n2"}
    body = instance(sizes=(1,), nodes=json.loads(record))  # scaled to one pod: the other is forgotten
    assert json.loads(ips.recorded(body, {}, list(pod_slots(body)))) == {"i-c0-0": "n1"}
    body = instance(sizes=(1,), nodes={"i-c0-0": "n1"})
    assert ips.recorded(body, {}, list(pod_slots(body))) is None  # the pod is away: its node stays
    assert ips.recorded(instance(mode=None), pods, list(pod_slots(body))) is None  # off: nothing written


def test_a_recreated_pod_prefers_or_requires_the_node_it_ran_on():
    preferred = desired_pods(instance(nodes={"i-c0-0": "n1"}))["i-c0-0"]
    terms = preferred["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms == [
        {"weight": 100, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}}
    ]
    required = desired_pods(instance("Required", nodes={"i-c0-0": "n1"}, avoid="maintenance, gpu-broken"))["i-c0-0"]
    term = required["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == [
        {
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
            "matchExpressions": [
                {"key": "maintenance", "operator": "DoesNotExist"},
                {"key": "gpu-broken", "operator": "DoesNotExist"},
            ],
        }
    ]
    assert ips.Placement.from_pod(required) == ips.Placement("Required", ("n1",), ("maintenance", "gpu-broken"))


def test_a_required_rule_joins_every_term_the_user_wrote():
    spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    ]
                }
            }
        }
    }
    out = ips.with_affinity(spec, ips.Placement("Required", ("n1",)))
    terms = out["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert all(t["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["n1"]}] for t in terms)
    assert [t["matchExpressions"][0]["values"] for t in terms] == [["a"], ["b"]]
    assert (
        "matchFields"
        not in spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][
            0
        ]
    )  # the template is not changed


def test_granularity_component_sends_a_pod_to_any_node_its_component_ran_on():
    body = instance(stateful=False, sizes=(2,), nodes={"i-c0-0": "n1", "i-c0-1": "n2"})
    pod = desired_pods(body)["i-c0-1"]
    assert ips.Placement.from_pod(pod).nodes == ("n1", "n2")
    by_pod = instance(stateful=False, granularity="Pod", sizes=(2,), nodes={"i-c0-0": "n1"})
    assert "affinity" not in desired_pods(by_pod)["i-c0-1"]["spec"]  # its own node is not known


def test_first_creation_and_exclusive_topology_get_no_affinity():
    assert "affinity" not in desired_pods(instance())["i-c0-0"]["spec"]
    body = instance(nodes={"i-c0-0": "n1"})
    body["spec"]["components"][0]["template"]["metadata"] = {"annotations": {ips.EXCLUSIVE_TOPOLOGY: "zone"}}
    assert "affinity" not in desired_pods(body)["i-c0-0"]["spec"]


def test_the_restart_policy_records_where_pods_ran_before_it_deletes_them():
    body = instance()
    body["spec"]["restartPolicyConfig"] = {"type": "RecreateRoleInstanceOnPodRestart"}
    body["status"]["conditions"] = [{"type": "RoleInstanceReady", "status": "True", "lastTransitionTime": "x"}]
    pods = scheduled(body, {"i-c0-0": "n3"})
    pods["i-c0-0"]["status"]["phase"] = "Failed"
    actions = plan(RoleInstanceSnapshot(body, pods), NOW).actions
    assert [type(a).__name__ for a in actions] == ["RecordPlacement", "Delete"]
    assert json.loads(actions[0].nodes) == {"i-c0-0": "n3"}


def group_with_role_annotations(annotations: dict) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "g", "namespace": "ns"},
        "spec": {
            "roles": [
                {
                    "name": "decode",
                    "replicas": 1,
                    "annotations": annotations,
                    "standalonePattern": {"template": {"spec": {"containers": [{"name": "m", "image": "a"}]}}},
                }
            ]
        },
    }


def test_bad_annotations_are_named_at_admission():
    group = group_with_role_annotations({ips.ANNOTATION_MODE: "Sometimes", ips.ANNOTATION_GRANULARITY: "Pod"})
    spec = RoleBasedGroupV2.read(group).spec
    assert spec_problems(spec) == [
        f"roles[0].annotations[{ips.ANNOTATION_MODE}]: 'Sometimes' is not one of Preferred, Required"
    ]
    group["spec"]["roles"][0]["annotations"][ips.ANNOTATION_MODE] = "Required"
    assert spec_problems(RoleBasedGroupV2.read(group).spec) == []


def test_a_role_of_another_workload_kind_is_warned_that_the_annotation_does_nothing():
    group = group_with_role_annotations(
        {ips.ANNOTATION_MODE: "Required", "rbg.workloads.x-k8s.io/role-workload-type": "apps/v1/StatefulSet"}
    )
    assert fields_not_acted_on(RoleBasedGroupV2.read(group)) == [
        f"spec.roles[0].annotations[{ips.ANNOTATION_MODE}]: acts on RoleInstanceSet roles only; "
        "role decode runs as a StatefulSet"
    ]


def node(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "1"},
    }


def test_a_binding_to_a_node_that_is_gone_is_not_required_of_the_new_pod():
    store = Store()
    body = instance("Required", nodes={"i-c0-0": "gone", "i-c0-1": "n2"}, sizes=(2,))
    body["metadata"]["resourceVersion"] = "1"
    store.upsert(body)
    assert observe(store, "ns", "i").body["metadata"]["annotations"] == body["metadata"]["annotations"], (
        "with no node known (no node watch), bindings stay"
    )
    store.upsert(node("n2"))
    seen = observe(store, "ns", "i")
    assert ips.bindings(seen.body) == {"i-c0-1": "n2"}
    pods = {a.slot.name: a.slot.pod(seen.body) for a in plan(seen, NOW).actions if type(a).__name__ == "Create"}
    assert "affinity" not in pods["i-c0-0"]["spec"], "a Required rule toward a deleted node never schedules"
    assert ips.Placement.from_pod(pods["i-c0-1"]) == ips.Placement("Required", ("n2",))
