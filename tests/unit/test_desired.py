import hashlib

from rbg_operator.desired import role_children
from rbg_operator.desired.meta import pods_get_v2_keys
from rbg_operator.desired.rollout import revision_label
from tests.support.groups import hub


def group(**role_fields):
    return hub(
        {
            "metadata": {"name": "g", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "roles": [
                    {
                        "name": "r",
                        "replicas": 3,
                        "template": {
                            "metadata": {"labels": {"app": "x"}},
                            "spec": {"containers": [{"name": "c", "image": "i"}]},
                        },
                        **role_fields,
                    }
                ]
            },
        }
    )


def test_statefulset_role_gets_headless_service_and_statefulset():
    service, sts = role_children(group(labels={"team": "a"}), "r")
    assert service["metadata"]["name"] == "s-g-r"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {
        "rolebasedgroup.workloads.x-k8s.io/name": "g",
        "rolebasedgroup.workloads.x-k8s.io/role": "r",
    }
    assert sts["kind"] == "StatefulSet" and sts["metadata"]["name"] == "g-r"
    assert sts["spec"]["serviceName"] == "s-g-r"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["replicas"] == 3
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "app": "x",
        "team": "a",
        "rolebasedgroup.workloads.x-k8s.io/name": "g",
        "rolebasedgroup.workloads.x-k8s.io/role": "r",
        "rbg.workloads.x-k8s.io/group-name": "g",
        "rbg.workloads.x-k8s.io/role-name": "r",
        "rbg.workloads.x-k8s.io/group-uid": hashlib.sha1(b"ns/g").hexdigest(),
    }
    assert service["metadata"]["labels"]["rbg.workloads.x-k8s.io/role-name"] == "r"
    assert sts["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "name": "g",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_building_does_not_modify_the_group():
    g = group()
    before = g.model_dump()
    role_children(g, "r")
    assert g.model_dump() == before


def test_pods_of_an_existing_workload_get_the_v2_keys_only_with_their_next_revision():
    g = group()
    sts = role_children(g, "r")[-1]
    key = revision_label("r")
    revision = sts["metadata"]["labels"][key]
    assert pods_get_v2_keys(None, key, revision)  # a new workload
    assert pods_get_v2_keys(sts, key, revision)  # a template that has them keeps them
    old = role_children(g, "r", v2_pod_keys=False)[-1]
    assert "rbg.workloads.x-k8s.io/group-name" not in old["spec"]["template"]["metadata"]["labels"]
    # Made before the keys existed: the same revision, and it stays without them ...
    assert old["metadata"]["labels"][key] == revision
    assert not pods_get_v2_keys(old, key, revision)
    # ... until the pods are replaced anyway.
    changed = role_children(group(template={"spec": {"containers": [{"name": "c", "image": "j"}]}}), "r")[-1]
    assert changed["metadata"]["labels"][key] != revision
    assert pods_get_v2_keys(old, key, changed["metadata"]["labels"][key])


def test_leaderworkerset_pods_follow_the_same_rule():
    g = group(
        workload={"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
        leaderWorkerSet={"size": 2, "patchLeaderTemplate": {"metadata": {"labels": {"leader": "y"}}}},
    )
    new, old = role_children(g, "r")[-1], role_children(g, "r", v2_pod_keys=False)[-1]
    key = revision_label("r")
    assert new["metadata"]["labels"][key] == old["metadata"]["labels"][key]
    template = old["spec"]["leaderWorkerTemplate"]
    assert "rbg.workloads.x-k8s.io/role-name" not in template["workerTemplate"]["metadata"]["labels"]
    assert "rbg.workloads.x-k8s.io/role-name" not in template["leaderTemplate"]["metadata"]["labels"]
    assert not pods_get_v2_keys(old, key, new["metadata"]["labels"][key])
    assert (
        new["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["metadata"]["labels"]["rbg.workloads.x-k8s.io/role-name"]
        == "r"
    )
