"""Property tests over the API models: whatever the models accept (the same rules admission
applies) builds every child without raising, and what is built stays within the caps."""

from __future__ import annotations

import json
import string

import kopf
import pydantic
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rbg_operator import bounded_json
from rbg_operator.api import conversion, kept
from rbg_operator.api.common import MAX_GROUP_PODS, MAX_PATCH_DEPTH, nesting_depth
from rbg_operator.api.errors import describe
from rbg_operator.api.rolebasedgroup import RoleBasedGroup
from rbg_operator.desired import creation_layers, group_children, role_children
from rbg_operator.desired.rollout import revision_label
from tests.support.admission import validate_v1alpha1_group, validate_v1alpha1_set
from tests.support.groups import hub
from tests.support.patches import nested_patch

KINDS = [("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")]
dns_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,40}[a-z0-9])?\Z", fullmatch=True)
int_or_string = st.one_of(
    st.integers(-3, 300),
    st.from_regex(r"\A[0-9]{1,3}%\Z", fullmatch=True),
    st.sampled_from(["1.5%", "two", "%", "-5%", "50"]),
)


@st.composite
def groups(draw):
    names = draw(st.lists(dns_label, min_size=1, max_size=4, unique=True))
    roles = []
    for index, name in enumerate(names):
        api_version, kind = draw(st.sampled_from(KINDS))
        role = {
            "name": name,
            "replicas": draw(st.integers(0, 6000)),
            "workload": {"apiVersion": api_version, "kind": kind},
            "template": {"spec": {"containers": [{"name": "main", "image": "example.com/app:v1"}]}},
        }
        if kind == "LeaderWorkerSet":
            role["leaderWorkerSet"] = {"size": draw(st.integers(1, 300))}
            if draw(st.booleans()):
                role["leaderWorkerSet"]["patchWorkerTemplate"] = nested_patch(draw(st.integers(1, 30)))
        if draw(st.booleans()):  # listed with every instance in config.yaml
            role["servicePorts"] = [
                {
                    "name": draw(st.sampled_from(["", "http", "metrics-port", "grpc"])),
                    "port": draw(st.integers(1, 65535)),
                }
                for _ in range(draw(st.integers(0, 4)))
            ]
        if index and draw(st.booleans()):
            role["dependencies"] = draw(st.lists(st.sampled_from(names), max_size=2, unique=True))
        if draw(st.booleans()):
            role["rolloutStrategy"] = {
                "rollingUpdate": {
                    "maxUnavailable": draw(int_or_string),
                    "maxSurge": draw(int_or_string),
                    "partition": draw(int_or_string),
                }
            }
        if draw(st.booleans()):
            role["restartPolicy"] = draw(
                st.sampled_from(["None", "RecreateRBGOnPodRestart", "RecreateRoleInstanceOnPodRestart"])
            )
        roles.append(role)
    spec: dict = {"roles": roles}
    if draw(st.booleans()):
        spec["podGroupPolicy"] = {"kubeScheduling": {"scheduleTimeoutSeconds": 30}}
    if len(names) > 1 and draw(st.booleans()):
        spec["coordination"] = [
            {
                "name": "c",
                "roles": names[:2],
                "strategy": {"rollingUpdate": {"maxSkew": "10%"}, "scaling": {"maxSkew": "50%"}},
            }
        ]
    length = draw(st.integers(1, 70))  # drawn first, so long names are as likely as short ones
    group_name = draw(st.text(string.ascii_lowercase + string.digits, min_size=length, max_size=length))
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": group_name, "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec,
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups())
def test_every_accepted_group_builds_its_children_within_the_caps(body):
    try:
        RoleBasedGroup.model_validate(body)  # accepted in v1alpha1 ...
    except pydantic.ValidationError:
        assume(False)
        return
    group = hub(body)  # ... and so stored, and acted on
    assert sum(r.replicas * r.leader_worker_size for r in group.spec.roles) <= MAX_GROUP_PODS
    children = group_children(group)
    for layer in creation_layers(group):
        for name in layer:
            children += role_children(group, name)
    for child in children:
        meta = child["metadata"]
        # What the workload controllers derive from the name must be valid too: a StatefulSet's
        # pods carry "{name}-{10-char hash}", a LeaderWorkerSet's worker sets "{name}-{index}-{hash}".
        limit = {"StatefulSet": 52, "LeaderWorkerSet": 47, "Service": 63}.get(child["kind"], 253)
        assert len(meta["name"]) <= limit, (child["kind"], meta["name"])
        for key, value in (meta.get("labels") or {}).items():
            assert len(value) <= 63, (key, value)
            assert len(key.partition("/")[2] or key) <= 63, key
    for role in group.spec.roles:
        assert len(revision_label(role.name).partition("/")[2]) <= 63
    topology = next(c for c in children if c["kind"] == "ConfigMap")
    assert len(json.dumps(topology)) < 1024 * 1024, "the topology must fit in a ConfigMap"


@given(st.integers(1, 60))
def test_patches_deeper_than_the_limit_are_refused(depth):
    patch = nested_patch(depth)
    body = {
        "metadata": {"name": "g"},
        "spec": {
            "roles": [
                {
                    "name": "a",
                    "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
                    "leaderWorkerSet": {"size": 2, "patchLeaderTemplate": patch},
                    "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}},
                }
            ]
        },
    }
    accepted = True
    try:
        RoleBasedGroup.model_validate(body)
    except pydantic.ValidationError as error:
        accepted = False
        assert "spec.roles[0].leaderWorkerSet.patchLeaderTemplate: nested" in describe(error, "")
    assert accepted == (nesting_depth(patch) <= MAX_PATCH_DEPTH)


# --- what admission sees through the webhook: hostile kept annotations, any nesting depth ---------

KEPT_VALUES = st.sampled_from(
    [
        "[]",
        "null",
        "1",
        '"x"',
        "{",
        "{}",
        '{"labels": {"a": 1}}',
        '{"noPattern": "yes"}',
        '[{"name": "c", "roles": []}]',
        '{"kubeScheduling": {"scheduleTimeoutSeconds": 0}}',
        "[" * 3000 + "]" * 3000,
    ]
) | st.text(max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [kept.POD_GROUP_POLICY_KEY, kept.COORDINATION_KEY, conversion.GROUP_TEMPLATE_KEY, kept.GANG_TIMEOUT_KEY]
        ),
        KEPT_VALUES,
        max_size=3,
    ),
    st.dictionaries(
        st.sampled_from([conversion.V2_FIELDS_KEY, conversion.RESTART_POLICY_KEY]), KEPT_VALUES, max_size=2
    ),
    st.booleans(),
)
def test_hostile_kept_annotations_are_refused_naming_them_or_accepted_and_usable(
    group_annotations, role_annotations, as_set
):
    role = {
        "name": "a",
        "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}},
        "annotations": role_annotations,
    }
    try:
        if as_set:
            validate_v1alpha1_set({"replicas": 1, "template": {"roles": [role]}}, "s", [], group_annotations)
        else:
            validate_v1alpha1_group({"roles": [role]}, "g", [], group_annotations)
    except kopf.AdmissionError as refused:
        message = str(refused)
        assert refused.code == 422 and ("annotations[" in message or message.startswith("spec")), message
        return
    # Accepted: then every kept annotation it carries is one conversion uses, not drops.
    keys = [kept.POD_GROUP_POLICY_KEY, kept.COORDINATION_KEY] + ([conversion.GROUP_TEMPLATE_KEY] if as_set else [])
    for key in keys:
        if key in group_annotations:
            assert conversion._kept(group_annotations, key) is not None, key
    if conversion.V2_FIELDS_KEY in role_annotations:
        assert conversion._kept(role_annotations, conversion.V2_FIELDS_KEY) is not None


@settings(max_examples=40, deadline=None)
@given(st.integers(MAX_PATCH_DEPTH + 1, 3000))
def test_a_patch_of_any_depth_is_refused_with_its_depth(depth):
    patch = '{"n":' * (depth - 1) + "{}" + "}" * (depth - 1)
    spec = bounded_json.loads(
        '{"request":{"object":{"spec":{"roles":[{"name":"a","workload":{"apiVersion":'
        '"leaderworkerset.x-k8s.io/v1","kind":"LeaderWorkerSet"},"leaderWorkerSet":{"size":2,'
        '"patchLeaderTemplate":%s},"template":{"spec":{"containers":[{"name":"m","image":"x"}]}}}'
        "]}}}}" % patch
    )["request"]["object"]["spec"]
    try:
        validate_v1alpha1_group(spec, "g", [])
    except kopf.AdmissionError as refused:
        assert str(refused).startswith(
            f"spec.roles[0].leaderWorkerSet.patchLeaderTemplate: nested {depth} levels deep, at most {MAX_PATCH_DEPTH}"
        ), str(refused)
    else:
        raise AssertionError(f"a patch {depth} levels deep was admitted")
