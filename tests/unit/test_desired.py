from rbg_operator.api.rolebasedgroup import RoleBasedGroup
from rbg_operator.desired import role_children


def group(**role_fields):
    return RoleBasedGroup.model_validate({
        "metadata": {"name": "g", "namespace": "ns", "uid": "u-1"},
        "spec": {"roles": [{"name": "r", "replicas": 3, "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}, **role_fields}]},
    })


def test_statefulset_role_gets_headless_service_and_statefulset():
    service, sts = role_children(group(labels={"team": "a"}), "r")
    assert service["metadata"]["name"] == "s-g-r"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"rolebasedgroup.workloads.x-k8s.io/name": "g",
                                           "rolebasedgroup.workloads.x-k8s.io/role": "r"}
    assert sts["kind"] == "StatefulSet" and sts["metadata"]["name"] == "g-r"
    assert sts["spec"]["serviceName"] == "s-g-r"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["replicas"] == 3
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "x", "team": "a", "rolebasedgroup.workloads.x-k8s.io/name": "g",
                      "rolebasedgroup.workloads.x-k8s.io/role": "r"}
    assert sts["metadata"]["ownerReferences"] == [{
        "apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "name": "g", "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}]


def test_building_does_not_modify_the_group():
    g = group()
    before = g.model_dump()
    role_children(g, "r")
    assert g.model_dump() == before
