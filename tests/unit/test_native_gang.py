"""Native gang scheduling of Kubernetes 1.37 (desired/gang.py): the Workload, PodGroups and
CompositePodGroup a group needs, how its pods join them, and the per-role minimums."""

import json

import pydantic
import pytest

from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
from rbg_operator.desired import group_children, role_children
from rbg_operator.desired.gang import role_minimums_conditions
from rbg_operator.desired.options import BuildOptions
from tests.support.groups import hub

pytestmark = pytest.mark.unit
MINIMUMS = "rolebasedgroup.workloads.x-k8s.io/gang-role-minimums"
CONTAINERS = {"spec": {"containers": [{"name": "m", "image": "i"}]}}


def group(minimums: dict | str | None = None, native: bool = True, **replicas) -> RoleBasedGroupV2:
    annotations = {"rolebasedgroup.workloads.x-k8s.io/gang-scheduler": "kubernetes"} if native else {}
    if minimums is not None:
        annotations[MINIMUMS] = minimums if isinstance(minimums, str) else json.dumps(minimums)
    roles = [
        {"name": name, "replicas": count, "template": CONTAINERS}
        for name, count in (replicas or {"prefill": 4, "decode": 2}).items()
    ]
    return hub(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "uid": "u", "annotations": annotations},
            "spec": {"podGroupPolicy": {"kubeScheduling": {}}, "roles": roles},
        }
    )


def gang_objects(g: RoleBasedGroupV2, options: BuildOptions = BuildOptions(), **kwargs) -> dict[tuple[str, str], dict]:
    return {
        (c["kind"], c["metadata"]["name"]): c
        for c in group_children(g, options=options, **kwargs)
        if c["kind"] != "ConfigMap"
    }


def pod_group_of(g: RoleBasedGroupV2, role: str, options: BuildOptions = BuildOptions()) -> str:
    workload = role_children(g, role, options)[-1]
    return workload["spec"]["template"]["spec"]["schedulingGroup"]["podGroupName"]


def test_whole_group_gang_is_a_workload_and_one_pod_group_of_every_pod():
    objects = gang_objects(group())
    assert set(objects) == {("Workload", "g"), ("PodGroup", "g")}
    workload, pod_group = objects[("Workload", "g")], objects[("PodGroup", "g")]
    assert workload["apiVersion"] == pod_group["apiVersion"] == "scheduling.k8s.io/v1beta1"
    assert workload["spec"]["podGroupTemplates"] == [{"name": "all", "schedulingPolicy": {"gang": {"minCount": 6}}}]
    assert workload["spec"]["controllerRef"] == {
        "apiGroup": "workloads.x-k8s.io",
        "kind": "RoleBasedGroup",
        "name": "g",
    }
    assert pod_group["spec"] == {
        "workloadRef": {"workloadName": "g", "templateName": "all"},
        "schedulingPolicy": {"gang": {"minCount": 6}},
    }
    assert pod_group["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert pod_group_of(group(), "prefill") == pod_group_of(group(), "decode") == "g"


def test_per_role_minimums_are_pod_groups_under_a_composite_that_needs_every_role():
    g = group({"prefill": 2, "decode": "50%"})
    objects = gang_objects(g)
    assert set(objects) == {
        ("Workload", "g"),
        ("CompositePodGroup", "g"),
        ("PodGroup", "g-prefill"),
        ("PodGroup", "g-decode"),
    }
    assert objects[("CompositePodGroup", "g")]["apiVersion"] == "scheduling.k8s.io/v1alpha3"
    assert objects[("CompositePodGroup", "g")]["spec"]["schedulingPolicy"] == {"gang": {"minGroupCount": 2}}
    assert objects[("PodGroup", "g-prefill")]["spec"] == {
        "parentCompositePodGroupName": "g",
        "workloadRef": {"workloadName": "g", "templateName": "prefill"},
        "schedulingPolicy": {"gang": {"minCount": 2}},
    }
    assert objects[("PodGroup", "g-decode")]["spec"]["schedulingPolicy"] == {"gang": {"minCount": 1}}
    (template,) = objects[("Workload", "g")]["spec"]["compositePodGroupTemplates"]
    assert "podGroupTemplates" not in objects[("Workload", "g")]["spec"]
    assert template["podGroupTemplates"] == [
        {"name": "prefill", "schedulingPolicy": {"gang": {"minCount": 2}}},
        {"name": "decode", "schedulingPolicy": {"gang": {"minCount": 1}}},
    ]
    assert pod_group_of(g, "prefill") == "g-prefill" and pod_group_of(g, "decode") == "g-decode"
    assert role_minimums_conditions(g, BuildOptions(), [])[0]["status"] == "True"


def test_minimums_follow_scaling_and_never_exceed_a_role():
    g = group({"prefill": "50%", "decode": 5}, prefill=6, decode=2)
    objects = gang_objects(g)
    assert objects[("PodGroup", "g-prefill")]["spec"]["schedulingPolicy"]["gang"]["minCount"] == 3
    assert objects[("PodGroup", "g-decode")]["spec"]["schedulingPolicy"]["gang"]["minCount"] == 2
    scaled = gang_objects(g, applied={"prefill": 3})  # replicas applied so far, e.g. by coordinated scaling
    assert scaled[("PodGroup", "g-prefill")]["spec"]["schedulingPolicy"]["gang"]["minCount"] == 2
    # A role not named needs all its pods; a role with no pods has no pod group.
    g = group({"prefill": 1}, prefill=3, decode=2, router=0)
    objects = gang_objects(g)
    assert objects[("PodGroup", "g-decode")]["spec"]["schedulingPolicy"]["gang"]["minCount"] == 2
    assert ("PodGroup", "g-router") not in objects
    assert objects[("CompositePodGroup", "g")]["spec"]["schedulingPolicy"]["gang"]["minGroupCount"] == 2


def test_without_composite_pod_groups_the_whole_group_gang_stands_and_a_condition_says_why():
    g = group({"prefill": 2})
    off = BuildOptions(composite_pod_groups=False)
    assert set(gang_objects(g, off)) == {("Workload", "g"), ("PodGroup", "g")}
    assert pod_group_of(g, "prefill", off) == "g"
    (condition,) = role_minimums_conditions(g, off, [])
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "GangRoleMinimumsApplied",
        "False",
        "CompositePodGroupNotServed",
    )
    assert "CompositePodGroup feature gate" in condition["message"]
    # Other backends ignore the minimums, and say so; without the annotation there is nothing to say.
    (condition,) = role_minimums_conditions(group({"prefill": 2}, native=False), BuildOptions(), [])
    assert condition["reason"] == "NativeGangOnly" and MINIMUMS in condition["message"]
    assert role_minimums_conditions(group(), BuildOptions(), []) == []
    assert (
        role_minimums_conditions(group(), BuildOptions(), [{"type": "GangRoleMinimumsApplied"}])[0]["reason"]
        == "NotRequested"
    )


@pytest.mark.parametrize(
    "minimums, complaint",
    [
        ("not json", "must be a JSON object"),
        ("{}", "must be a JSON object"),
        ({"router": 1}, "'router' is not a role of this group"),
        ({"prefill": 0}, "at least 1"),
        ({"prefill": "150%"}, "1% to 100%"),
        ({"prefill": True}, "at least 1"),
    ],
)
def test_bad_minimums_are_refused_naming_the_field(minimums, complaint):
    with pytest.raises(pydantic.ValidationError) as error:
        group(minimums)
    assert f"metadata.annotations[{MINIMUMS}]" in str(error.value) and complaint in str(error.value)
