"""v1alpha2 as the operator's own model: what it reads from a stored group, whichever version
wrote it, and what it refuses to act on."""

from __future__ import annotations

import kopf
import pydantic
import pytest

from rbg_operator import kubectl_plugin, naming, webhook
from rbg_operator.api import conversion, kept
from rbg_operator.api.v1alpha2 import RoleBasedGroupV2, RoleV2
from rbg_operator.controller.restarts import acted_on_policies
from rbg_operator.desired.meta import role_annotations
from tests.support.admission import validate_v1alpha1_group, written_in
from tests.support.groups import hub

C = {"spec": {"containers": [{"name": "main", "image": "example.com/app:v1"}]}}
WORKLOAD = conversion.WORKLOAD_TYPE_KEY


def v2(roles: list[dict], annotations: dict | None = None) -> dict:
    return {
        "apiVersion": conversion.V2,
        "kind": "RoleBasedGroup",
        "metadata": {"name": "g", "namespace": "ns", "uid": "u", "annotations": annotations or {}},
        "spec": {"roles": roles},
    }


def test_a_v1alpha1_group_held_back_by_its_partition_is_acted_on_but_refused_as_a_v1alpha2_write():
    role = {
        "name": "r",
        "replicas": 2,
        "template": C,
        "rolloutStrategy": {"rollingUpdate": {"partition": 2, "maxUnavailable": 1}},
    }
    validate_v1alpha1_group({"roles": [role]}, "g", [])  # admitted in v1alpha1
    stored = hub({"metadata": {"name": "g", "namespace": "ns", "uid": "u"}, "spec": {"roles": [role]}})
    assert stored.spec.roles[0].rollout_strategy.rolling_update.partition == 2
    with written_in("v1alpha2"), pytest.raises(kopf.AdmissionError, match=r"partition: 2 must be less than replicas"):
        webhook.validate_group(
            conversion.convert(
                {"apiVersion": conversion.V1, "kind": "RoleBasedGroup", "metadata": {}, "spec": {"roles": [role]}},
                conversion.V2,
            )["spec"],
            "g",
            [],
        )


@pytest.mark.parametrize(
    "workload,pattern,problem",
    [
        ("apps/v1/StatefulSet", "customComponentsPattern", "a StatefulSet cannot run customComponentsPattern"),
        ("apps/v1/Deployment", "leaderWorkerPattern", "a Deployment cannot run leaderWorkerPattern"),
    ],
)
def test_a_pattern_the_workload_cannot_run_is_refused_naming_the_annotation(workload, pattern, problem):
    body = {
        "customComponentsPattern": {"components": [{"name": "a", "size": 1, "template": C}]},
        "leaderWorkerPattern": {"size": 2, "template": C},
    }[pattern]
    group = v2([{"name": "r", "annotations": {WORKLOAD: workload}, pattern: body}])
    with pytest.raises(pydantic.ValidationError) as refused:
        RoleBasedGroupV2.read(group)
    assert f"roles[0].annotations[{WORKLOAD}]: {problem}" in str(refused.value)


def test_a_role_reads_its_workload_pattern_and_restart_policy_from_v1alpha2():
    role = RoleV2.model_validate(
        {
            "name": "r",
            "leaderWorkerPattern": {
                "size": 3,
                "template": C,
                "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
            },
        }
    )
    assert (role.workload.kind, role.pattern, role.leader_worker_size) == ("RoleInstanceSet", "leaderWorker", 3)
    assert role.restart_policy == "RecreateRoleInstanceOnPodRestart"
    # A v1alpha1 policy v1alpha2 has no place for rides in conversion's annotation, and wins.
    kept = RoleV2.model_validate(
        {
            "name": "r",
            "standalonePattern": {"template": C},
            "annotations": {WORKLOAD: "apps/v1/StatefulSet", conversion.RESTART_POLICY_KEY: "RecreateRBGOnPodRestart"},
        }
    )
    assert (kept.workload.kind, kept.restart_policy) == ("StatefulSet", "RecreateRBGOnPodRestart")
    assert RoleV2.model_validate({"name": "r", "standalonePattern": {"template": C}}).restart_policy is None


def test_only_what_the_operator_itself_acts_on_is_a_restart_policy_of_the_group():
    roles = RoleBasedGroupV2.read(
        v2(
            [
                {
                    "name": "sts",
                    "annotations": {
                        WORKLOAD: "apps/v1/StatefulSet",
                        conversion.RESTART_POLICY_KEY: "RecreateRoleInstanceOnPodRestart",
                    },
                    "standalonePattern": {"template": C},
                },
                {
                    "name": "ris",
                    "leaderWorkerPattern": {
                        "size": 2,
                        "template": C,
                        "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
                    },
                },
                {
                    "name": "lws",
                    "annotations": {
                        WORKLOAD: "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet",
                        conversion.RESTART_POLICY_KEY: "RecreateRBGOnPodRestart",
                    },
                    "leaderWorkerPattern": {"size": 2, "template": C},
                },
            ]
        )
    ).spec.roles
    # The RoleInstanceSet recreates its own instances; a group-wide policy is always the operator's.
    assert acted_on_policies(roles) == {
        "sts": "RecreateRoleInstanceOnPodRestart",
        "ris": None,
        "lws": "RecreateRBGOnPodRestart",
    }


def test_pods_carry_neither_the_workload_choice_nor_conversions_bookkeeping():
    role = RoleV2.model_validate(
        {
            "name": "r",
            "standalonePattern": {"template": C},
            "annotations": {
                WORKLOAD: "apps/v1/StatefulSet",
                conversion.RESTART_POLICY_KEY: "None",
                "team.example.com/owner": "a",
            },
        }
    )
    assert role_annotations(role) == {"team.example.com/owner": "a"}


def test_gang_and_coordination_are_read_from_the_group_annotations():
    volcano = hub(
        {
            "metadata": {"name": "g", "namespace": "ns", "uid": "u"},
            "spec": {
                "roles": [{"name": "a", "template": C}, {"name": "b", "template": C}],
                "podGroupPolicy": {"volcanoScheduling": {}},
                "coordination": [{"name": "c", "roles": ["a", "b"], "strategy": {"rollingUpdate": {"maxSkew": "10%"}}}],
            },
        }
    )
    # An empty volcanoScheduling has no annotation of its own: the kept v1alpha1 policy says which.
    assert volcano.pod_group_policy.volcano_scheduling is not None
    assert [(c.name, c.roles) for c in volcano.coordination] == [("c", ["a", "b"])]
    native = RoleBasedGroupV2.read(
        v2([{"name": "a", "standalonePattern": {"template": C}}], {kept.GANG_KEY: "true", kept.GANG_TIMEOUT_KEY: "90"})
    )
    assert native.pod_group_policy.kube_scheduling.schedule_timeout_seconds == 90 and native.coordination == []
    unknown = v2(
        [{"name": "a", "standalonePattern": {"template": C}}],
        {kept.COORDINATION_KEY: '[{"name": "c", "roles": ["a", "gone"]}]'},
    )
    with pytest.raises(pydantic.ValidationError, match=r"spec.coordination\[0\].roles: unknown role 'gone'"):
        RoleBasedGroupV2.read(unknown)


def test_undo_restores_a_revision_recorded_in_either_version_onto_the_v1alpha2_role():
    current = {
        "name": "r",
        "replicas": 5,
        "annotations": {WORKLOAD: "apps/v1/StatefulSet"},
        "standalonePattern": {"template": {"spec": {"containers": [{"name": "main", "image": "new"}]}}},
    }
    old_template = {"spec": {"containers": [{"name": "main", "image": "old"}]}}
    v1_fields = ("template", "templateRef", "templatePatch", "leaderWorkerSet", "labels", "annotations")
    restored = kubectl_plugin._restored(current, {"template": old_template}, v1_fields)
    assert restored == {**current, "standalonePattern": {"template": old_template}}
    recorded = {"standalonePattern": {"template": old_template}, "annotations": {WORKLOAD: "apps/v1/StatefulSet"}}
    assert kubectl_plugin._restored(current, recorded, naming.ROLE_TEMPLATE_FIELDS) == {
        **current,
        "standalonePattern": {"template": old_template},
    }
