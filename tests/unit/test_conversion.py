"""Conversion between v1alpha1 and v1alpha2: both round trips are the identity for objects the
models accept (README, "API versions"), and the v1alpha2 side has the reference's shape."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbg_operator.api import conversion
from rbg_operator.api.conversion import V1, V2, ConversionError, convert
from rbg_operator.api.rolebasedgroup import RoleBasedGroupSpec
from rbg_operator.api.rolebasedgroupset import RoleBasedGroupSetSpec
from rbg_operator.api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleBasedGroupSpecV2

dns_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,8}[a-z0-9])?\Z", fullmatch=True)
text = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)
small_map = st.dictionaries(st.sampled_from(["example.com/a", "example.com/b", "team"]), text, min_size=1, max_size=2)
template = st.builds(lambda image: {"spec": {"containers": [{"name": "main", "image": image}]}}, text)
patch = st.builds(lambda image: {"spec": {"containers": [{"name": "main", "image": image}]}}, text) | st.just({})
percent = st.integers(0, 100).map(lambda n: f"{n}%")
int_or_percent = st.integers(0, 9) | percent
SHAPE = {"structure_only": True}
LWS = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"}


def optional(draw, key: str, strategy, out: dict) -> None:
    if draw(st.booleans()):
        out[key] = draw(strategy)


@st.composite
def rolling_updates(draw):
    update = {}
    optional(draw, "type", st.sampled_from(["InPlaceIfPossible", "Recreate", "RecreatePod"]), update)
    optional(draw, "partition", int_or_percent, update)
    optional(draw, "maxUnavailable", int_or_percent, update)
    optional(draw, "paused", st.booleans(), update)
    return {"type": "RollingUpdate", "rollingUpdate": update}


@st.composite
def v1_roles(draw, name: str, templates: list[str]):
    role = {"name": name, "replicas": draw(st.integers(0, 4)), "workload": draw(st.sampled_from(
        [{"apiVersion": "apps/v1", "kind": "StatefulSet"}, {"apiVersion": "apps/v1", "kind": "Deployment"}, LWS]))}
    if templates and role["workload"] != LWS and draw(st.booleans()):
        role["templateRef"] = {"name": draw(st.sampled_from(templates))}
        optional(draw, "templatePatch", patch, role)
    else:
        role["template"] = draw(template)
    if role["workload"] == LWS and draw(st.booleans()):
        role["leaderWorkerSet"] = {"size": draw(st.integers(1, 4))}
        optional(draw, "patchLeaderTemplate", patch, role["leaderWorkerSet"])
        optional(draw, "patchWorkerTemplate", patch, role["leaderWorkerSet"])
    optional(draw, "restartPolicy", st.sampled_from(["None", "RecreateRBGOnPodRestart",
                                                     "RecreateRoleInstanceOnPodRestart"]), role)
    optional(draw, "labels", small_map, role)
    optional(draw, "annotations", small_map, role)
    optional(draw, "rolloutStrategy", rolling_updates(), role)
    optional(draw, "scalingAdapter", st.builds(lambda e: {"enable": e}, st.booleans()), role)
    optional(draw, "minReadySeconds", st.integers(0, 30), role)
    optional(draw, "servicePorts", st.just([{"name": "http", "port": 8000}]), role)
    return role


@st.composite
def v1_specs(draw):
    templates = draw(st.lists(dns_label, max_size=2, unique=True))
    names = draw(st.lists(dns_label, min_size=1, max_size=3, unique=True))
    spec = {"roles": [draw(v1_roles(n, templates)) for n in names]}
    if templates:
        spec["roleTemplates"] = [{"name": t, "template": draw(template)} for t in templates]
    if len(names) > 1 and draw(st.booleans()):
        spec["roles"][-1]["dependencies"] = [names[0]]
    optional(draw, "podGroupPolicy", st.sampled_from([
        {"kubeScheduling": {"scheduleTimeoutSeconds": 60}}, {"kubeScheduling": {"scheduleTimeoutSeconds": 5}},
        {"volcanoScheduling": {}}, {"volcanoScheduling": {"queue": "q", "priorityClassName": "high"}}]), spec)
    if draw(st.booleans()):
        strategy = draw(st.sampled_from([{}, {"rollingUpdate": {"maxSkew": "25%"}},
                                         {"scaling": {"maxSkew": "50%", "progression": "OrderReady"}}]))
        spec["coordination"] = [{"name": "pd", "roles": names, "strategy": strategy}]
    # As the API server stores it: what the model (and the CRD's defaults) make of it.
    return RoleBasedGroupSpec.model_validate(spec).wire()


def v1_group(spec: dict, annotations: dict | None = None) -> dict:
    metadata = {"name": "g", "namespace": "ns", "uid": "u", "generation": 3}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": V1, "kind": "RoleBasedGroup", "metadata": metadata, "spec": spec,
            "status": {"observedGeneration": 3, "roleStatuses": [{"name": "x", "replicas": 1, "readyReplicas": 1,
                                                                  "updatedReplicas": 1}]}}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(v1_specs(), st.none() | small_map | st.just({conversion.EXCLUSIVE_V1_KEY: "kubernetes.io/hostname"}))
def test_v1alpha1_to_v1alpha2_and_back_is_the_identity(spec, annotations):
    group = v1_group(spec, annotations)
    there = convert(group, V2)
    # A v1alpha2 object in shape; v1alpha1 allows what v1alpha2's admission refuses (a partition of
    # all replicas), which conversion must carry, not judge.
    RoleBasedGroupSpecV2.model_validate(there["spec"], context=SHAPE)
    assert convert(there, V1) == group


@st.composite
def v2_roles(draw, name: str):
    role: dict = {"name": name, "replicas": draw(st.integers(0, 4))}
    source = {"template": draw(template)}
    shape = draw(st.sampled_from(["standalone", "leaderWorker", "components", "none"]))
    if shape == "standalone":
        role["standalonePattern"] = source
    elif shape == "leaderWorker":
        pattern = {**source, "size": draw(st.integers(1, 4))}
        optional(draw, "workerTemplatePatch", patch, pattern)
        optional(draw, "sharedServiceSelection", st.sampled_from(["All", "LeaderOnly"]), pattern)
        optional(draw, "restartPolicy", st.sampled_from(["None", "RecreateRoleInstanceOnPodRestart"]), pattern)
        if draw(st.booleans()):
            config = {}
            optional(draw, "type", st.sampled_from(["None", "RecreateRoleInstanceOnPodRestart"]), config)
            optional(draw, "baseDelaySeconds", st.integers(0, 30), config)
            pattern["restartPolicyConfig"] = config
        role["leaderWorkerPattern"] = pattern
    elif shape == "components":
        role["customComponentsPattern"] = {"components": [
            {"name": "prefill", "size": 1, "template": draw(template), "labels": {"tier": "p"}},
            {"name": "decode", "size": 2, "template": draw(template)}]}
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["apps/v1/StatefulSet", "apps/v1/Deployment",
                                     "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"]))
        role["annotations"] = {conversion.WORKLOAD_TYPE_KEY: kind}
    optional(draw, "labels", small_map, role)
    optional(draw, "podManagementPolicy", st.sampled_from(["OrderedReady", "Parallel"]), role)
    optional(draw, "scalingAdapter", st.builds(lambda e, labels: {"enable": e, **({"labels": labels} if labels else {})},
                                               st.booleans(), st.none() | small_map), role)
    optional(draw, "rolloutStrategy", rolling_updates(), role)
    return role


@st.composite
def v2_specs(draw):
    names = draw(st.lists(dns_label, min_size=1, max_size=3, unique=True))
    return RoleBasedGroupSpecV2.model_validate({"roles": [draw(v2_roles(n)) for n in names]}, context=SHAPE).wire()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(v2_specs(), st.none() | small_map)
def test_v1alpha2_to_v1alpha1_and_back_is_the_identity(spec, annotations):
    group = {**v1_group(spec, annotations), "apiVersion": V2}
    assert convert(convert(group, V1), V2) == group


def test_the_v1alpha2_shape_follows_the_reference_mapping():
    spec = RoleBasedGroupSpec.model_validate({
        "roles": [{"name": "decode", "workload": LWS, "leaderWorkerSet": {"size": 2, "patchLeaderTemplate": {}},
                   "template": {"spec": {}}, "restartPolicy": "RecreateRoleInstanceOnPodRestart"},
                  {"name": "router", "templateRef": {"name": "base"}, "templatePatch": {"spec": {}}}],
        "roleTemplates": [{"name": "base", "template": {"spec": {}}}],
        "podGroupPolicy": {"kubeScheduling": {"scheduleTimeoutSeconds": 30}}}).wire()
    there = convert(v1_group(spec), V2)
    decode, router = there["spec"]["roles"]
    assert decode["annotations"] == {conversion.WORKLOAD_TYPE_KEY: "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"}
    assert decode["leaderWorkerPattern"] == {"template": {"spec": {}}, "size": 2, "leaderTemplatePatch": {},
                                             "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"}}
    assert router["standalonePattern"] == {"templateRef": {"name": "base", "patch": {"spec": {}}}}
    annotations = there["metadata"]["annotations"]
    assert annotations[conversion.GANG_KEY] == "true" and annotations[conversion.GANG_TIMEOUT_KEY] == "30"
    assert json.loads(annotations[conversion.POD_GROUP_POLICY_KEY]) == {"kubeScheduling": {"scheduleTimeoutSeconds": 30}}


def test_native_v1alpha2_gang_annotations_become_a_pod_group_policy():
    group = {**v1_group({"roles": [{"name": "r", "standalonePattern": {"template": {"spec": {}}}}]},
                        {conversion.GANG_KEY: "true", conversion.GANG_TIMEOUT_KEY: "90"}), "apiVersion": V2}
    back = convert(group, V1)
    assert back["spec"]["podGroupPolicy"] == {"kubeScheduling": {"scheduleTimeoutSeconds": 90}}
    assert "annotations" not in back["metadata"]


def test_bad_carried_json_names_the_annotation():
    group = {**v1_group({"roles": []}, {conversion.COORDINATION_KEY: "[{"}), "apiVersion": V2}
    with pytest.raises(ConversionError, match=r"metadata.annotations\[conversion.workloads.x-k8s.io/v1alpha1-coordination\]"):
        convert(group, V1)


def test_a_v1alpha1_edit_wins_over_fields_kept_for_v1alpha2():
    group = {**v1_group({"roles": [{"name": "r", "customComponentsPattern": {"components": [
        {"name": "a", "size": 1, "template": {"spec": {}}}]}}]}), "apiVersion": V2}
    old = convert(group, V1)
    old["spec"]["roles"][0]["template"] = {"spec": {"containers": [{"name": "c", "image": "i"}]}}
    role = convert(old, V2)["spec"]["roles"][0]
    assert role["standalonePattern"]["template"]["spec"]["containers"][0]["image"] == "i"
    assert "customComponentsPattern" not in role


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(v1_specs(), st.integers(0, 5))
def test_sets_round_trip_and_members_keep_gang_and_coordination(spec, replicas):
    group_set = {"apiVersion": V1, "kind": "RoleBasedGroupSet", "metadata": {"name": "s", "namespace": "ns"},
                 "spec": RoleBasedGroupSetSpec.model_validate({"replicas": replicas, "template": spec}).wire()}
    there = convert(group_set, V2)
    RoleBasedGroupSetSpecV2.model_validate(there["spec"], context=SHAPE)
    assert convert(there, V1) == group_set
    member = there["spec"]["groupTemplate"].get("annotations") or {}
    assert (conversion.GANG_KEY in member) == ("podGroupPolicy" in spec)
    assert (conversion.COORDINATION_KEY in member) == bool(spec.get("coordination"))
    native = {**there, "spec": {**there["spec"], "groupTemplate": {
        **there["spec"]["groupTemplate"], "labels": {"team": "a"}}}}
    assert convert(convert(native, V1), V2) == native


def test_a_conversion_review_converts_every_object_or_names_the_one_that_fails():
    from rbg_operator.webhook import review_conversion
    group = v1_group(RoleBasedGroupSpec.model_validate({"roles": [{"name": "r", "template": {}}]}).wire())
    answer = review_conversion({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                                "request": {"uid": "1", "desiredAPIVersion": V2, "objects": [group]}})
    assert answer["response"]["uid"] == "1" and answer["response"]["result"] == {"status": "Success"}
    assert answer["response"]["convertedObjects"] == [convert(group, V2)]
    broken = {**convert(group, V2), "metadata": {"name": "g", "namespace": "ns",
                                                 "annotations": {conversion.POD_GROUP_POLICY_KEY: "{"}}}
    failed = review_conversion({"request": {"uid": "2", "desiredAPIVersion": V1, "objects": [broken]}})["response"]
    assert failed["result"]["status"] == "Failure" and "RoleBasedGroup ns/g: metadata.annotations[" in \
        failed["result"]["message"] and "convertedObjects" not in failed
