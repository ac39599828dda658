"""Exclusive topology: a group's pods share one domain of the topology key, alone, selecting on the
label they carry (not the reference's unset one, its quirk Q1). No cluster, no API."""

from __future__ import annotations

import copy

import pytest

from rbg_operator import naming
from rbg_operator.desired.exclusive import ANNOTATION_DISABLE, ANNOTATION_TOPOLOGY, with_exclusive_topology

pytestmark = pytest.mark.unit

KEY = "kubernetes.io/hostname"
GROUP = {ANNOTATION_TOPOLOGY: KEY}


def template(**meta) -> dict:
    return {"metadata": meta, "spec": {"containers": [{"name": "m", "image": "a"}]}}


def test_every_pod_is_drawn_to_its_group_and_kept_from_every_other():
    uid = naming.group_uid("ns", "g")
    out = with_exclusive_topology(template(), "ns", "g", GROUP)
    assert out["metadata"]["labels"][naming.LABEL_V2_GROUP_UID] == uid
    assert out["metadata"]["annotations"][ANNOTATION_TOPOLOGY] == KEY
    (together,) = out["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert together == {
        "labelSelector": {"matchExpressions": [{"key": naming.LABEL_V2_GROUP_UID, "operator": "In", "values": [uid]}]},
        "topologyKey": KEY,
    }
    (apart,) = out["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert apart["labelSelector"]["matchExpressions"] == [
        {"key": naming.LABEL_V2_GROUP_UID, "operator": "Exists"},
        {"key": naming.LABEL_V2_GROUP_UID, "operator": "NotIn", "values": [uid]},
    ]
    assert apart["topologyKey"] == KEY


def test_other_groups_are_kept_out_of_the_domain_whatever_their_namespace():
    # An anti-affinity term without a namespaceSelector (or namespaces) applies to the pod's own
    # namespace only; exclusivity of a domain must hold against groups in every namespace.
    out = with_exclusive_topology(template(), "ns", "g", GROUP)
    (apart,) = out["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert apart["namespaceSelector"] == {}
    assert "namespaces" not in apart


def test_a_disabled_template_an_own_rule_over_the_key_and_no_annotation_are_left_alone():
    disabled = template(annotations={ANNOTATION_DISABLE: "true"})
    assert with_exclusive_topology(copy.deepcopy(disabled), "ns", "g", GROUP) == disabled
    own = template()
    own["spec"]["affinity"] = {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": KEY}]}
    }
    assert with_exclusive_topology(copy.deepcopy(own), "ns", "g", GROUP) == own
    assert with_exclusive_topology(template(), "ns", "g", {}) == template()


def test_a_group_with_the_annotation_builds_it_into_every_role():
    from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
    from rbg_operator.desired.instanceset import instance_components
    from rbg_operator.desired.options import BuildOptions

    group = RoleBasedGroupV2.read(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns", "annotations": GROUP},
            "spec": {
                "roles": [
                    {
                        "name": "pd",
                        "replicas": 1,
                        "leaderWorkerPattern": {
                            "size": 2,
                            "template": template(),
                            "workerTemplatePatch": {"metadata": {"annotations": {ANNOTATION_DISABLE: "true"}}},
                        },
                    }
                ]
            },
        }
    )
    leader, worker = instance_components(group, group.spec.roles[0], BuildOptions())
    assert "podAffinity" in leader["template"]["spec"]["affinity"]
    assert "affinity" not in worker["template"]["spec"]
