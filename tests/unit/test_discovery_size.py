"""The discovery ConfigMap lists every instance twice (topology.yaml and config.yaml): admission
refuses a group whose ConfigMap could pass the API server's 1 MiB, naming the cause, and every
group it accepts builds one that fits."""

from __future__ import annotations

import json

import pydantic
import pytest

from rbg_operator.api.discovery_size import CONFIGMAP_LIMIT
from rbg_operator.api.errors import describe
from rbg_operator.api.rolebasedgroup import RoleBasedGroup
from rbg_operator.api.v1alpha2 import RoleBasedGroupV2
from rbg_operator.desired.discovery import topology_configmap
from tests.support.groups import hub

pytestmark = pytest.mark.unit

T = {"spec": {"containers": [{"name": "main", "image": "x"}]}}
PORTS = [{"name": f"http-port-{i}", "port": 8000 + i} for i in range(4)]


def v1(name: str, role: str, replicas: int, kind: str = "StatefulSet", **extra) -> dict:
    api = "leaderworkerset.x-k8s.io/v1" if kind == "LeaderWorkerSet" else "apps/v1"
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, "namespace": "ns", "uid": "u"},
        "spec": {
            "roles": [
                {"name": role, "replicas": replicas, "workload": {"apiVersion": api, "kind": kind}, "template": T}
                | extra
            ]
        },
    }


def v2(name: str, role: str, replicas: int, **pattern) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, "namespace": "n" * 63, "uid": "u"},
        "spec": {"roles": [{"name": role, "replicas": replicas, **pattern}]},
    }


def accepted(body: dict) -> bool:
    model = RoleBasedGroup if body["apiVersion"].endswith("v1alpha1") else RoleBasedGroupV2
    try:
        model.model_validate(body)
    except pydantic.ValidationError:
        return False
    return True


def configmap_bytes(body: dict) -> int:
    group = hub(body) if body["apiVersion"].endswith("v1alpha1") else RoleBasedGroupV2.read(body)
    return len(json.dumps(topology_configmap(group)))


def test_a_group_whose_configmap_would_pass_the_limit_is_refused_naming_the_cause():
    body = v1("g" * 40, "r" * 11, 5000)
    assert configmap_bytes(body) > CONFIGMAP_LIMIT  # what the API server would refuse on every pass
    with pytest.raises(pydantic.ValidationError) as raised:
        RoleBasedGroup.model_validate(body)
    message = describe(raised.value, "")
    assert f"spec.roles: the discovery ConfigMap {'g' * 40} lists every instance's address" in message
    assert "roles[0] (rrrrrrrrrrr): 5000 instances" in message
    assert "lower the replicas, shorten the group or role names, or list fewer servicePorts" in message


def test_short_names_still_reach_the_replicas_cap_and_roles_without_addresses_cost_nothing():
    assert accepted(v1("g" * 10, "r" * 8, 5000))
    # A Deployment's pods have no stable names: nothing is listed, whatever the names.
    assert accepted(v1("g" * 40, "r" * 20, 5000, kind="Deployment"))
    stateless = {"annotations": {"rbg.workloads.x-k8s.io/role-instance-pattern": "Stateless"}}
    assert accepted(v2("g" * 30, "r" * 20, 5000, standalonePattern={"template": T}, **stateless))


SHAPES = [
    lambda n: v1("g" * 40, "r" * 11, n),
    lambda n: v1("g" * 30, "r" * 16, n, kind="LeaderWorkerSet", leaderWorkerSet={"size": 1}),
    lambda n: v1("g" * 20, "r" * 20, n, servicePorts=PORTS),
    lambda n: v2("g" * 25, "r" * 20, n, standalonePattern={"template": T}, servicePorts=PORTS),
    lambda n: v2("g" * 25, "r" * 25, n, leaderWorkerPattern={"size": 1, "template": T}),
    lambda n: v2(
        "g" * 12,
        "r" * 10,
        n,
        customComponentsPattern={"components": [{"name": "c" * 20, "size": 1, "serviceName": "s" * 63, "template": T}]},
    ),
]


@pytest.mark.parametrize("shape", range(len(SHAPES)))
def test_the_most_replicas_admission_accepts_build_a_configmap_within_the_limit(shape):
    build = SHAPES[shape]
    low, high = 1, 5000  # the replicas cap
    assert accepted(build(low))
    while low < high:  # the largest accepted replicas
        middle = (low + high + 1) // 2
        low, high = (middle, high) if accepted(build(middle)) else (low, middle - 1)
    assert low < 5000, "these names at the cap would not fit: admission must refuse somewhere below it"
    assert configmap_bytes(build(low)) < CONFIGMAP_LIMIT
    # ... and the bound is not far off: the refused group just above would be at least 90% of it.
    assert configmap_bytes(build(low + 1)) > 0.9 * CONFIGMAP_LIMIT
