"""RoleInstanceSet and RoleInstance models: the shapes of the v1alpha2 contract, its defaults, and
refusals that name the field."""

from pathlib import Path

import pydantic
import pytest
import yaml

from rbg_operator.api.errors import describe
from rbg_operator.api.roleinstance import (
    RoleInstanceSetSpec,
    RoleInstanceSetStatus,
    RoleInstanceSpec,
    RoleInstanceStatus,
)

CRDS = Path(__file__).resolve().parents[2] / "crds"
T = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
SELECTOR = {"matchLabels": {"rbg.workloads.x-k8s.io/group-name": "g", "rbg.workloads.x-k8s.io/role-name": "r"}}
STANDALONE = {
    "replicas": 2,
    "selector": SELECTOR,
    "podManagementPolicy": "OrderedReady",
    "minReadySeconds": 5,
    "roleInstanceTemplate": {
        "components": [{"name": "prefill", "size": 1, "serviceName": "s-g-prefill", "template": T}],
        "restartPolicyConfig": {"type": "None", "baseDelaySeconds": 30, "maxDelaySeconds": 600},
    },
    "updateStrategy": {
        "type": "InPlaceIfPossible",
        "partition": 0,
        "maxUnavailable": 1,
        "maxSurge": 0,
        "paused": False,
    },
}
LEADER_WORKER = {
    "replicas": 3,
    "selector": SELECTOR,
    "roleInstanceTemplate": {
        "components": [
            {"name": "leader", "size": 1, "serviceName": "s-g-decode", "template": T},
            {"name": "worker", "size": 3, "template": T},
        ],
        "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
    },
    "updateStrategy": {
        "type": "RecreatePod",
        "partition": "50%",
        "maxUnavailable": "25%",
        "maxSurge": 1,
        "paused": True,
        "inPlaceUpdateStrategy": {"gracePeriodSeconds": 5},
    },
}
CUSTOM = {
    "replicas": 1,
    "roleInstanceTemplate": {
        "components": [
            {
                "name": "router",
                "size": 1,
                "labels": {"tier": "front"},
                "annotations": {"rbg.workloads.x-k8s.io/component-depends-on": '{"startAfter": ["engine"]}'},
                "template": T,
            },
            {"name": "engine", "size": 2, "template": T},
        ],
        "readyPolicy": "None",
        "restartPolicy": "RecreateRoleInstanceOnPodRestart",
        "readinessGates": [{"conditionType": "RoleInstanceCustomReady"}],
    },
    "scaleStrategy": {"roleInstanceToDelete": ["custom-abcde"], "maxUnavailable": "10%"},
    "lifecycle": {
        "preDelete": {
            "labelsHandler": {"hold": "true"},
            "finalizersHandler": ["example.com/drain"],
            "markPodNotReady": True,
        },
        "inPlaceUpdate": {"markPodNotReady": False},
    },
    "revisionHistoryLimit": 3,
}


@pytest.mark.parametrize("manifest", [STANDALONE, LEADER_WORKER, CUSTOM], ids=["standalone", "leader-worker", "custom"])
def test_the_three_pattern_shapes_are_accepted_and_written_back_unchanged(manifest):
    parsed = RoleInstanceSetSpec.model_validate(manifest)
    written = parsed.wire()
    # Every field given comes back as given; defaults fill the rest (readyPolicy inside the template).
    assert {key: written[key] for key in manifest} == {
        **manifest,
        "roleInstanceTemplate": {"readyPolicy": "AllPodReady", **manifest["roleInstanceTemplate"]},
    }
    # A RoleInstance has the template's fields (the set's roleInstanceTemplate is inlined into it).
    assert RoleInstanceSpec.model_validate(manifest["roleInstanceTemplate"]) == parsed.role_instance_template


def test_unset_fields_get_the_contracts_defaults():
    parsed = RoleInstanceSetSpec.model_validate(
        {"roleInstanceTemplate": {"components": [{"name": "main", "template": T}]}}
    )
    assert (parsed.replicas, parsed.pod_management_policy, parsed.revision_history_limit, parsed.min_ready_seconds) == (
        1,
        "Parallel",
        10,
        0,
    )
    update = parsed.update_strategy
    assert (update.type, update.partition, update.paused, update.max_unavailable, update.max_surge) == (
        "InPlaceIfPossible",
        0,
        False,
        None,
        None,
    )
    instance = parsed.role_instance_template
    assert (instance.ready_policy, instance.components[0].size, instance.restart_policy_config) == (
        "AllPodReady",
        1,
        None,
    )


def test_the_crds_apply_the_same_defaults_and_serve_the_contracts_columns():
    ris = yaml.safe_load((CRDS / "workloads.x-k8s.io_roleinstancesets.yaml").read_text())["spec"]
    (version,) = ris["versions"]
    assert (ris["names"]["shortNames"], ris["scope"], version["name"], version["storage"]) == (
        ["ris"],
        "Namespaced",
        "v1alpha2",
        True,
    )
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.labelSelector",
    }
    assert [(c["name"], c.get("priority", 0)) for c in version["additionalPrinterColumns"]] == [
        ("DESIRED", 0),
        ("UPDATED", 0),
        ("UPDATED_READY", 0),
        ("READY", 0),
        ("TOTAL", 0),
        ("AGE", 0),
        ("SELECTOR", 1),
    ]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    update = spec["updateStrategy"]
    assert (
        update["default"],
        update["properties"]["type"]["default"],
        update["properties"]["partition"]["default"],
    ) == ({}, "InPlaceIfPossible", 0)
    assert (spec["replicas"]["default"], spec["revisionHistoryLimit"]["minimum"]) == (1, 0)
    rins = yaml.safe_load((CRDS / "workloads.x-k8s.io_roleinstances.yaml").read_text())["spec"]
    assert rins["names"]["shortNames"] == ["rins"] and "scale" not in rins["versions"][0]["subresources"]
    components = rins["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["components"]
    assert components["x-kubernetes-list-map-keys"] == ["name"]


def test_statuses_in_the_contracts_shape():
    RoleInstanceSetStatus.model_validate(
        {
            "observedGeneration": 2,
            "replicas": 3,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "currentReplicas": 1,
            "updatedReplicas": 2,
            "updatedReadyReplicas": 2,
            "expectedUpdatedReplicas": 3,
            "updateRevision": "r-2",
            "currentRevision": "r-1",
            "collisionCount": 0,
            "labelSelector": "a=b",
            "conditions": [
                {
                    "type": "FailedScale",
                    "status": "True",
                    "reason": "CreateFailed",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    )
    status = RoleInstanceStatus.model_validate(
        {
            "componentStatuses": [
                {
                    "name": "leader",
                    "size": 1,
                    "readyReplicas": 1,
                    "updatedReplicas": 1,
                    "scheduledReplicas": 1,
                    "availableReplicas": 1,
                    "updatedReadyReplicas": 1,
                }
            ],
            "inPlaceUpdateContainerBaselines": {"g-r-0-0": {"c": {"restartCount": 2, "imageID": "sha256:abc"}}},
            "restartCount": 1,
            "lastRestartTime": "2026-01-01T00:00:00Z",
        }
    )
    baseline = status.wire()["inPlaceUpdateContainerBaselines"]["g-r-0-0"]["c"]
    assert baseline == {"restartCount": 2, "imageID": "sha256:abc"}
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleInstanceSetStatus.model_validate({"replicas": 1})
    assert "status.readyReplicas: Field required" in describe(raised.value, "status")


def _set_with(**changes) -> dict:
    return {**STANDALONE, **changes}


def _instance_with(**changes) -> dict:
    return _set_with(roleInstanceTemplate={**STANDALONE["roleInstanceTemplate"], **changes})


@pytest.mark.parametrize(
    "manifest, message",
    [
        (
            _set_with(podManagementPolicy="Sideways"),
            "spec.podManagementPolicy: Input should be 'OrderedReady' or 'Parallel'",
        ),
        (_set_with(revisionHistoryLimit=-1), "spec.revisionHistoryLimit: Input should be greater than or equal to 0"),
        (_set_with(replicas=-1), "spec.replicas: Input should be greater than or equal to 0"),
        (
            _instance_with(components=[{"size": 1, "template": T}]),
            "spec.roleInstanceTemplate.components[0].name: Field required",
        ),
        (
            _instance_with(components=[{"name": "x", "template": T}, {"name": "x", "template": T}]),
            "spec.roleInstanceTemplate.components[1].name: 'x' is used more than once",
        ),
        (_instance_with(components=[]), "spec.roleInstanceTemplate.components: List should have at least 1 item"),
        (
            _instance_with(components=[{"name": "x"}]),
            "spec.roleInstanceTemplate.components[0].template: Field required",
        ),
        (
            _instance_with(readyPolicy="Sometimes"),
            "spec.roleInstanceTemplate.readyPolicy: Input should be 'AllPodReady' or 'None'",
        ),
        (_set_with(updateStrategy={"type": "Recreate"}), "spec.updateStrategy.type: Input should be 'RecreatePod'"),
        (_set_with(updateStrategy={"partition": "1.5%"}), "spec.updateStrategy.partition: '1.5%' is neither"),
        (_set_with(roleInstanceTemplate=None), "spec.roleInstanceTemplate: Input should be a valid dictionary"),
        (
            _set_with(scaleStrategy={"roleInstancesToDelete": []}),
            "spec.scaleStrategy.roleInstancesToDelete: Extra inputs",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(manifest, message):
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleInstanceSetSpec.model_validate(manifest)
    assert message in describe(raised.value, "spec")
