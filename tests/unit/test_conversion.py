"""Conversion between v1alpha1 and v1alpha2: both round trips are the identity for objects the
models accept (docs/api-versions.md), and the v1alpha2 side has the reference's shape."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbg_operator.api import conversion, kept
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
    role = {
        "name": name,
        "replicas": draw(st.integers(0, 4)),
        "workload": draw(
            st.sampled_from(
                [{"apiVersion": "apps/v1", "kind": "StatefulSet"}, {"apiVersion": "apps/v1", "kind": "Deployment"}, LWS]
            )
        ),
    }
    if templates and role["workload"] != LWS and draw(st.booleans()):
        role["templateRef"] = {"name": draw(st.sampled_from(templates))}
        optional(draw, "templatePatch", patch, role)
    else:
        role["template"] = draw(template)
    if role["workload"] == LWS and draw(st.booleans()):
        role["leaderWorkerSet"] = {"size": draw(st.integers(1, 4))}
        optional(draw, "patchLeaderTemplate", patch, role["leaderWorkerSet"])
        optional(draw, "patchWorkerTemplate", patch, role["leaderWorkerSet"])
    optional(
        draw,
        "restartPolicy",
        st.sampled_from(["None", "RecreateRBGOnPodRestart", "RecreateRoleInstanceOnPodRestart"]),
        role,
    )
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
    optional(
        draw,
        "podGroupPolicy",
        st.sampled_from(
            [
                {"kubeScheduling": {"scheduleTimeoutSeconds": 60}},
                {"kubeScheduling": {"scheduleTimeoutSeconds": 5}},
                {"volcanoScheduling": {}},
                {"volcanoScheduling": {"queue": "q", "priorityClassName": "high"}},
            ]
        ),
        spec,
    )
    if draw(st.booleans()):
        strategy = draw(
            st.sampled_from(
                [
                    {},
                    {"rollingUpdate": {"maxSkew": "25%"}},
                    {"scaling": {"maxSkew": "50%", "progression": "OrderReady"}},
                ]
            )
        )
        spec["coordination"] = [{"name": "pd", "roles": names, "strategy": strategy}]
    # As the API server stores it: what the model (and the CRD's defaults) make of it.
    return RoleBasedGroupSpec.model_validate(spec).wire()


def v1_group(spec: dict, annotations: dict | None = None) -> dict:
    metadata = {"name": "g", "namespace": "ns", "uid": "u", "generation": 3}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": V1,
        "kind": "RoleBasedGroup",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "observedGeneration": 3,
            "roleStatuses": [{"name": "x", "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}],
        },
    }


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
        role["customComponentsPattern"] = {
            "components": [
                {"name": "prefill", "size": 1, "template": draw(template), "labels": {"tier": "p"}},
                {"name": "decode", "size": 2, "template": draw(template)},
            ]
        }
    if draw(st.booleans()):
        kind = draw(
            st.sampled_from(
                ["apps/v1/StatefulSet", "apps/v1/Deployment", "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"]
            )
        )
        role["annotations"] = {conversion.WORKLOAD_TYPE_KEY: kind}
    optional(draw, "labels", small_map, role)
    optional(draw, "podManagementPolicy", st.sampled_from(["OrderedReady", "Parallel"]), role)
    optional(
        draw,
        "scalingAdapter",
        st.builds(
            lambda e, labels: {"enable": e, **({"labels": labels} if labels else {})},
            st.booleans(),
            st.none() | small_map,
        ),
        role,
    )
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
    spec = RoleBasedGroupSpec.model_validate(
        {
            "roles": [
                {
                    "name": "decode",
                    "workload": LWS,
                    "leaderWorkerSet": {"size": 2, "patchLeaderTemplate": {}},
                    "template": {"spec": {}},
                    "restartPolicy": "RecreateRoleInstanceOnPodRestart",
                },
                {"name": "router", "templateRef": {"name": "base"}, "templatePatch": {"spec": {}}},
            ],
            "roleTemplates": [{"name": "base", "template": {"spec": {}}}],
            "podGroupPolicy": {"kubeScheduling": {"scheduleTimeoutSeconds": 30}},
        }
    ).wire()
    there = convert(v1_group(spec), V2)
    decode, router = there["spec"]["roles"]
    assert decode["annotations"] == {conversion.WORKLOAD_TYPE_KEY: "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"}
    assert decode["leaderWorkerPattern"] == {
        "template": {"spec": {}},
        "size": 2,
        "leaderTemplatePatch": {},
        "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
    }
    assert router["standalonePattern"] == {"templateRef": {"name": "base", "patch": {"spec": {}}}}
    annotations = there["metadata"]["annotations"]
    assert annotations[kept.GANG_KEY] == "true" and annotations[kept.GANG_TIMEOUT_KEY] == "30"
    assert json.loads(annotations[kept.POD_GROUP_POLICY_KEY]) == {"kubeScheduling": {"scheduleTimeoutSeconds": 30}}


def test_native_v1alpha2_gang_annotations_become_a_pod_group_policy():
    group = {
        **v1_group(
            {"roles": [{"name": "r", "standalonePattern": {"template": {"spec": {}}}}]},
            {kept.GANG_KEY: "true", kept.GANG_TIMEOUT_KEY: "90"},
        ),
        "apiVersion": V2,
    }
    back = convert(group, V1)
    assert back["spec"]["podGroupPolicy"] == {"kubeScheduling": {"scheduleTimeoutSeconds": 90}}
    assert "annotations" not in back["metadata"]


def test_a_v1alpha1_edit_wins_over_fields_kept_for_v1alpha2():
    group = {
        **v1_group(
            {
                "roles": [
                    {
                        "name": "r",
                        "customComponentsPattern": {"components": [{"name": "a", "size": 1, "template": {"spec": {}}}]},
                    }
                ]
            }
        ),
        "apiVersion": V2,
    }
    old = convert(group, V1)
    old["spec"]["roles"][0]["template"] = {"spec": {"containers": [{"name": "c", "image": "i"}]}}
    role = convert(old, V2)["spec"]["roles"][0]
    assert role["standalonePattern"]["template"]["spec"]["containers"][0]["image"] == "i"
    assert "customComponentsPattern" not in role


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(v1_specs(), st.integers(0, 5))
def test_sets_round_trip_and_members_keep_gang_and_coordination(spec, replicas):
    group_set = {
        "apiVersion": V1,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": RoleBasedGroupSetSpec.model_validate({"replicas": replicas, "template": spec}).wire(),
    }
    there = convert(group_set, V2)
    RoleBasedGroupSetSpecV2.model_validate(there["spec"], context=SHAPE)
    assert convert(there, V1) == group_set
    member = there["spec"]["groupTemplate"].get("annotations") or {}
    assert (kept.GANG_KEY in member) == ("podGroupPolicy" in spec)
    assert (kept.COORDINATION_KEY in member) == bool(spec.get("coordination"))
    native = {
        **there,
        "spec": {**there["spec"], "groupTemplate": {**there["spec"]["groupTemplate"], "labels": {"team": "a"}}},
    }
    assert convert(convert(native, V1), V2) == native


def test_a_conversion_review_converts_every_object_or_names_the_one_that_fails():
    from rbg_operator.webhook import review_conversion

    group = v1_group(RoleBasedGroupSpec.model_validate({"roles": [{"name": "r", "template": {}}]}).wire())
    answer = review_conversion(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": "1", "desiredAPIVersion": V2, "objects": [group]},
        }
    )
    assert answer["response"]["uid"] == "1" and answer["response"]["result"] == {"status": "Success"}
    assert answer["response"]["convertedObjects"] == [convert(group, V2)]
    # Towards v1alpha1: what v1alpha1 has no room for fails the review, naming object and field.
    stored = convert(group, V2)
    role = stored["spec"]["roles"][0]
    broken = {**stored, "spec": {"roles": [{**role, "leaderWorkerPattern": role["standalonePattern"]}]}}
    failed = review_conversion({"request": {"uid": "2", "desiredAPIVersion": V1, "objects": [broken]}})["response"]
    assert (
        failed["result"]["status"] == "Failure"
        and "RoleBasedGroup ns/g: role 'r'" in failed["result"]["message"]
        and "convertedObjects" not in failed
    )
    # A gang timeout that is not a number (stored without admission) reads as the default.
    odd = {
        **stored,
        "metadata": {**stored["metadata"], "annotations": {kept.GANG_KEY: "true", kept.GANG_TIMEOUT_KEY: "soon"}},
    }
    assert convert(odd, V1)["spec"]["podGroupPolicy"] == {"kubeScheduling": {}}


def test_an_object_that_cannot_be_read_in_v1alpha2_spares_the_rest_of_the_page_and_cannot_be_written_back():
    from rbg_operator.webhook import review_conversion

    good = v1_group(RoleBasedGroupSpec.model_validate({"roles": [{"name": "r", "template": {}}]}).wire())
    bad = {**good, "metadata": {**good["metadata"], "name": "bad"}, "spec": {"roles": ["not a role"]}}
    answer = review_conversion({"request": {"uid": "3", "desiredAPIVersion": V2, "objects": [good, bad]}})["response"]
    assert answer["result"] == {"status": "Success"}
    first, second = answer["convertedObjects"]
    assert first == convert(good, V2)
    assert second["apiVersion"] == V2 and second["spec"] == {} and second["status"] == bad["status"]
    assert "AttributeError" in second["metadata"]["annotations"][conversion.FAILED_KEY]
    back = review_conversion({"request": {"uid": "4", "desiredAPIVersion": V1, "objects": [second]}})["response"]
    assert back["result"]["status"] == "Failure" and conversion.FAILED_KEY in back["result"]["message"]


# --- hostile kept annotations (N-5) and v1alpha2 edits (N-9) -------------------------------------

HOSTILE = st.sampled_from(
    [
        "[]",
        "null",
        "1",
        '"x"',
        "{",
        "{}",
        "true",
        '{"labels": 1}',
        '{"labels": {"a": 1}}',
        '{"customComponentsPattern": "x"}',
        '{"leaderWorkerPattern": []}',
        '{"kubeScheduling": []}',
        '[{"name": 1}]',
        "[" * 2000 + "]" * 2000,
        '{"a":' * 60 + "1" + "}" * 60,
        r'"\ud800"',
        "1e999",
    ]
) | st.text(max_size=20)
GROUP_KEYS = [
    kept.POD_GROUP_POLICY_KEY,
    kept.COORDINATION_KEY,
    conversion.GROUP_TEMPLATE_KEY,
    kept.GANG_KEY,
    kept.GANG_TIMEOUT_KEY,
    conversion.EXCLUSIVE_V1_KEY,
    conversion.EXCLUSIVE_V2_KEY,
]
ROLE_KEYS = [conversion.V2_FIELDS_KEY, conversion.RESTART_POLICY_KEY, conversion.WORKLOAD_TYPE_KEY]


def hostile_objects(draw, spec: dict, kind: str) -> dict:
    annotations = draw(st.dictionaries(st.sampled_from(GROUP_KEYS), HOSTILE, max_size=3))
    spec = json.loads(json.dumps(spec))
    roles = spec["template"]["roles"] if kind == "RoleBasedGroupSet" else spec["roles"]
    for role in roles:
        role.setdefault("annotations", {}).update(
            draw(st.dictionaries(st.sampled_from(ROLE_KEYS), HOSTILE, max_size=2))
        )
    return {
        "apiVersion": V1,
        "kind": kind,
        "metadata": {"name": "h", "namespace": "ns", "annotations": annotations},
        "spec": spec,
    }


@st.composite
def hostile_stored_objects(draw):
    spec = draw(v1_specs())
    if draw(st.booleans()):
        return hostile_objects(draw, {"replicas": 1, "template": spec}, "RoleBasedGroupSet")
    return hostile_objects(draw, spec, "RoleBasedGroup")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_stored_objects())
def test_hostile_kept_annotations_never_fail_a_read_and_are_refused_at_admission(obj):
    from rbg_operator import bounded_json
    from rbg_operator.webhook import review_conversion

    answer = review_conversion({"request": {"uid": "h", "desiredAPIVersion": V2, "objects": [obj]}})["response"]
    assert answer["result"] == {"status": "Success"}
    (there,) = answer["convertedObjects"]
    assert conversion.FAILED_KEY not in there["metadata"].get("annotations", {}), there["metadata"]["annotations"]
    bounded_json.dumps(there)  # encodable: nothing kept made it too deep
    # A write back in v1alpha2 either converts or is refused with the field named; never raises otherwise.
    try:
        convert(there, V1)
    except ConversionError as error:
        assert "metadata.annotations[" in str(error)
    # Admission names every kept annotation that conversion had to drop.
    group_set = obj["kind"] == "RoleBasedGroupSet"
    spec = obj["spec"]["template"] if group_set else obj["spec"]
    problems = conversion.kept_annotation_problems(obj["metadata"]["annotations"], spec, group_set=group_set)
    for key in (kept.POD_GROUP_POLICY_KEY, kept.COORDINATION_KEY) + (
        (conversion.GROUP_TEMPLATE_KEY,) if group_set else ()
    ):
        if key in obj["metadata"]["annotations"] and conversion._kept(obj["metadata"]["annotations"], key) is None:
            assert any(p.startswith(f"metadata.annotations[{key}]: ") for p in problems), (key, problems)
    for i, role in enumerate(spec["roles"]):
        if (
            conversion.V2_FIELDS_KEY in role["annotations"]
            and conversion._kept(role["annotations"], conversion.V2_FIELDS_KEY) is None
        ):
            assert any(p.startswith(f"spec.roles[{i}].annotations[{conversion.V2_FIELDS_KEY}]") for p in problems)


@pytest.mark.parametrize("value", ["[]", "null", "1", '"x"', "{"])
def test_a_set_whose_group_template_annotation_is_not_an_object_still_converts(value):
    group_set = {
        "apiVersion": V1,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "s", "namespace": "ns", "annotations": {conversion.GROUP_TEMPLATE_KEY: value}},
        "spec": {"replicas": 1, "template": {"roles": [{"name": "a", "template": {}}]}},
    }
    there = convert(group_set, V2)
    # Kept as written, for admission to refuse naming it (a v1alpha1 write reaches it converted).
    assert set(there["spec"]["groupTemplate"]) == {"spec"}
    assert there["metadata"]["annotations"] == {conversion.GROUP_TEMPLATE_KEY: value}
    problems = conversion.kept_annotation_problems(group_set["metadata"]["annotations"], {}, group_set=True)
    assert problems and problems[0].startswith(f"metadata.annotations[{conversion.GROUP_TEMPLATE_KEY}]: ")


def test_a_role_fields_annotation_that_is_not_an_object_is_kept_for_admission_to_refuse():
    group = v1_group({"roles": [{"name": "a", "template": {}, "annotations": {conversion.V2_FIELDS_KEY: "[]"}}]})
    stored = convert(group, V2)
    role = stored["spec"]["roles"][0]
    assert role["standalonePattern"] == {"template": {}} and role["annotations"][conversion.V2_FIELDS_KEY] == "[]"
    problems = conversion.kept_annotation_problems({}, stored["spec"], group_set=False)
    assert problems and problems[0].startswith(f"spec.roles[0].annotations[{conversion.V2_FIELDS_KEY}]: ")
    assert conversion.V2_FIELDS_KEY not in convert(stored, V1)["spec"]["roles"][0].get("annotations", {})


GANG_EDITS = st.dictionaries(
    st.sampled_from(list(kept.GANG_KEYS)), st.sampled_from(["true", "false", "30", "120", "q"]), max_size=4
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(v1_specs(), GANG_EDITS)
def test_a_gang_edit_made_in_v1alpha2_wins_over_the_kept_policy(spec, edit):
    there = convert(v1_group(spec), V2)
    annotations = {k: v for k, v in there["metadata"].get("annotations", {}).items() if k not in kept.GANG_KEYS}
    there["metadata"]["annotations"] = {**annotations, **edit}
    try:
        back = convert(there, V1)
    except ConversionError as error:  # a timeout that is not a number: refused, naming it
        assert kept.GANG_TIMEOUT_KEY in str(error) and edit.get(kept.GANG_KEY) == "true"
        return
    said = kept.gang_policy_from_annotations(edit)
    policy = spec.get("podGroupPolicy")
    untouched = (
        policy is not None
        and {k: v for k, v in kept.pod_group_policy_annotations(policy).items() if k != kept.POD_GROUP_POLICY_KEY}
        == edit
    )
    assert back["spec"].get("podGroupPolicy") == (policy if untouched else said)


def test_turning_gang_off_or_changing_its_timeout_in_v1alpha2_sticks():
    spec = RoleBasedGroupSpec.model_validate(
        {"roles": [{"name": "a", "template": {}}], "podGroupPolicy": {"kubeScheduling": {"scheduleTimeoutSeconds": 60}}}
    ).wire()
    there = convert(v1_group(spec), V2)
    off = json.loads(json.dumps(there))
    del off["metadata"]["annotations"][kept.GANG_KEY]
    assert "podGroupPolicy" not in convert(off, V1)["spec"]
    longer = json.loads(json.dumps(there))
    longer["metadata"]["annotations"][kept.GANG_TIMEOUT_KEY] = "120"
    assert convert(longer, V1)["spec"]["podGroupPolicy"] == {"kubeScheduling": {"scheduleTimeoutSeconds": 120}}
    assert convert(there, V1)["spec"]["podGroupPolicy"] == {"kubeScheduling": {"scheduleTimeoutSeconds": 60}}


def test_exclusive_topology_survives_both_round_trips_and_a_v1alpha2_edit():
    v2 = {
        **v1_group(
            {"roles": [{"name": "r", "standalonePattern": {"template": {}}}]},
            {conversion.EXCLUSIVE_V2_KEY: "kubernetes.io/hostname"},
        ),
        "apiVersion": V2,
    }
    stored = convert(v2, V1)
    assert stored["metadata"]["annotations"] == {conversion.EXCLUSIVE_V1_KEY: "kubernetes.io/hostname"}
    assert convert(stored, V2) == v2
    edited = json.loads(json.dumps(v2))
    edited["metadata"]["annotations"][conversion.EXCLUSIVE_V2_KEY] = "topology.kubernetes.io/zone"
    assert convert(edited, V1)["metadata"]["annotations"][conversion.EXCLUSIVE_V1_KEY] == "topology.kubernetes.io/zone"
    del edited["metadata"]["annotations"]
    assert "annotations" not in convert(edited, V1)["metadata"]


def test_two_patterns_on_one_role_are_refused_naming_the_role():
    group = {
        **v1_group(
            {
                "roles": [
                    {
                        "name": "web",
                        "standalonePattern": {"template": {}},
                        "customComponentsPattern": {"components": []},
                    }
                ]
            }
        ),
        "apiVersion": V2,
    }
    with pytest.raises(ConversionError, match="role 'web': set only one of"):
        convert(group, V1)


@pytest.mark.parametrize("levels", [200, 500, 1100])  # past orjson's encoder (255), past its decoder (1024)
def test_a_deep_stored_object_converts_both_ways_without_decoding_its_deep_part(levels):
    from rbg_operator import bounded_json
    from rbg_operator.webhook import review_conversion

    deep = '{"a":' * levels + "{}" + "}" * levels
    text = (
        '{"request":{"uid":"d","desiredAPIVersion":"%s","objects":[{"apiVersion":"%s","kind":"RoleBasedGroup",'
        '"metadata":{"name":"deep","namespace":"ns"},"spec":{"roleTemplates":[{"name":"t","template":{}}],'
        '"roles":[{"name":"r","templateRef":{"name":"t"},"templatePatch":%s}]}}]}}'
    ) % (V2, V1, deep)
    answer = bounded_json.loads(bounded_json.dumps(review_conversion(bounded_json.loads(text))))
    (there,) = answer["response"]["convertedObjects"]
    patch = there["spec"]["roles"][0]["standalonePattern"]["templateRef"]["patch"]
    ((path, raw),) = bounded_json.raw_subtrees(patch)
    assert len(path) + raw.depth == levels + 1 and raw.raw.count(b"{") == levels + 1 - len(path)
    back = review_conversion({"request": {"uid": "e", "desiredAPIVersion": V1, "objects": [there]}})
    assert (
        bounded_json.dumps(back["response"]["convertedObjects"][0]["spec"]["roles"][0]["templatePatch"])
        == deep.encode()
    )


def test_group_template_metadata_as_the_references_examples_write_it_survives_v1alpha1_and_reaches_members():
    from rbg_operator.desired.scaling import set_member

    roles = [{"name": "web", "standalonePattern": {"template": {"spec": {"containers": [{"name": "main"}]}}}}]
    group_set = {
        "apiVersion": V2,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u1"},
        "spec": {
            "replicas": 2,
            "groupTemplate": {
                "metadata": {"labels": {"app": "sglang", "team": "x"}, "annotations": {"note": "kept"}},
                "labels": {"team": "direct"},
                "spec": {"roles": roles},
            },
        },
    }
    RoleBasedGroupSetSpecV2.model_validate(group_set["spec"], context=SHAPE)
    assert convert(convert(group_set, V1), V2) == group_set
    member = set_member(group_set, 1)["metadata"]
    assert member["labels"]["app"] == "sglang" and member["labels"]["team"] == "direct"  # the direct field wins
    assert member["annotations"]["note"] == "kept"
