"""Bounds on every amplifier (issue #39): maxSurge, pods per RoleInstance, template copies per
object, and the restart state at the pod cap. Pure functions and models, no cluster."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path

import pydantic
import pytest
import yaml

from rbg_operator import naming
from rbg_operator.api.common import MAX_FANOUT_BYTES, MAX_GROUP_PODS, MAX_ROLE_REPLICAS
from rbg_operator.api.conversion import group_to_v1
from rbg_operator.api.errors import describe
from rbg_operator.api.rolebasedgroup import RoleBasedGroup, RoleBasedGroupSpec
from rbg_operator.api.rolebasedgroupset import RoleBasedGroupSetSpec
from rbg_operator.api.roleinstance import RoleInstanceSetSpec, RoleInstanceSpec, instance_set_fanout_problem
from rbg_operator.api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleBasedGroupSpecV2
from rbg_operator.controller import restarts
from rbg_operator.controller import roleinstance_plan as roleinstance
from rbg_operator.controller.instanceset_plan import InstanceView, plan_instances
from rbg_operator.controller.restarts import GROUP_WIDE, decode_state, detect, encode_state, recreation_done, uid_key

REPO = Path(__file__).resolve().parents[2]
C = [{"name": "main", "image": "example.com/app:v1"}]
RIS = {"apiVersion": "workloads.x-k8s.io/v1alpha2", "kind": "RoleInstanceSet"}


def refusal(model: type[pydantic.BaseModel], value: dict, prefix: str = "spec") -> str:
    with pytest.raises(pydantic.ValidationError) as error:
        model.model_validate(value)
    return describe(error.value, prefix)


def instance_template(components: int = 1, size: int = 1, template: dict | None = None) -> dict:
    return {
        "components": [
            {"name": f"c{i}", "size": size, "template": template or {"spec": {"containers": C}}}
            for i in range(components)
        ]
    }


def big_template(kilobytes: int) -> dict:
    return {"spec": {"containers": [{**C[0], "env": [{"name": "BLOB", "value": "x" * (kilobytes * 1024)}]}]}}


# --- N-6: maxSurge --------------------------------------------------------------------------


@pytest.mark.parametrize("surge", [30_000_000, 5001, "9999999%", "101%"])
def test_max_surge_over_the_replicas_cap_or_100_percent_is_refused_naming_the_limit(surge):
    message = refusal(
        RoleInstanceSetSpec,
        {"replicas": 1, "roleInstanceTemplate": instance_template(), "updateStrategy": {"maxSurge": surge}},
    )
    assert "spec.updateStrategy.maxSurge" in message and "0 to 5000" in message and "100%" in message
    group = {
        "roles": [
            {
                "name": "a",
                "template": {"spec": {"containers": C}},
                "rolloutStrategy": {"rollingUpdate": {"maxSurge": surge}},
            }
        ]
    }
    assert "spec.roles[0].rolloutStrategy.rollingUpdate.maxSurge" in refusal(RoleBasedGroupSpec, group)
    v2 = {
        "roles": [
            {
                "name": "a",
                "standalonePattern": {"template": {"spec": {"containers": C}}},
                "rolloutStrategy": {"rollingUpdate": {"maxSurge": surge}},
            }
        ]
    }
    assert "5000" in refusal(RoleBasedGroupSpecV2, v2)


@pytest.mark.parametrize("surge", [0, 1, MAX_ROLE_REPLICAS, "0%", "25%", "100%"])
def test_max_surge_within_the_bounds_is_accepted(surge):
    RoleInstanceSetSpec.model_validate(
        {"roleInstanceTemplate": instance_template(), "updateStrategy": {"maxSurge": surge}}
    )


def views(replicas: int, revision: str = "old") -> list[InstanceView]:
    return [InstanceView(f"s-{o}", o, revision, True, False, (("c0", 1),)) for o in range(replicas)]


@pytest.mark.parametrize("surge", [30_000_000, "9999999%", 10**18])
def test_a_stored_hostile_max_surge_is_clamped_to_replicas_in_the_plan(surge):
    """A value stored before admission bounded it surges at most `replicas` instances, at once."""
    spec = {
        "replicas": 3,
        "roleInstanceTemplate": instance_template(),
        "updateStrategy": {"maxSurge": surge, "maxUnavailable": 0},
    }
    started = time.perf_counter()
    plan = plan_instances(spec, "new", views(3))
    assert time.perf_counter() - started < 0.5
    assert plan.create == [3, 4, 5]  # one new instance per replica, no more
    at_cap = plan_instances({**spec, "replicas": MAX_ROLE_REPLICAS}, "new", views(MAX_ROLE_REPLICAS))
    assert len(at_cap.create) == MAX_ROLE_REPLICAS


# --- N-7: pods per RoleInstance -------------------------------------------------------------


def test_an_instance_of_more_than_5000_pods_is_refused_naming_the_limit():
    message = refusal(RoleInstanceSpec, instance_template(components=64, size=256))  # the review's 16,384 pods
    assert "spec.components" in message and "16384" in message and "at most 5000" in message
    RoleInstanceSpec.model_validate(instance_template(components=20, size=250))  # exactly 5000


def test_a_set_of_more_than_5000_pods_is_refused_naming_the_limit():
    message = refusal(RoleInstanceSetSpec, {"replicas": 21, "roleInstanceTemplate": instance_template(20, 12)})
    assert "spec.replicas" in message and "5040" in message and "at most 5000" in message


def custom_role(replicas: int, components: int, size: int) -> dict:
    return {
        "name": "cc",
        "replicas": replicas,
        "customComponentsPattern": {
            "components": [
                {"name": f"c{i}", "size": size, "template": {"spec": {"containers": C}}} for i in range(components)
            ]
        },
    }


def test_the_group_pod_cap_counts_custom_components_in_both_versions():
    role = custom_role(replicas=40, components=4, size=64)  # 10,240 pods; the old count saw 40
    message = refusal(RoleBasedGroupSpecV2, {"roles": [role]})
    assert "spec.roles" in message and "10240" in message and f"at most {MAX_GROUP_PODS}" in message
    # As the operator reads it: stored in v1alpha1, the components kept in an annotation.
    stored = group_to_v1(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"roles": [role]},
        }
    )
    with pytest.raises(pydantic.ValidationError) as error:
        RoleBasedGroup.model_validate(stored)
    assert "10240" in str(error.value) and "at most 5000" in str(error.value)
    RoleBasedGroupSpecV2.model_validate({"roles": [custom_role(replicas=19, components=4, size=64)]})


def big_instance(components: int = 64, size: int = 78) -> dict:
    """About 5,000 pods from 6 KB templates: the review's measurement, at the new cap."""
    template = {
        "spec": {
            "containers": [
                {
                    "name": f"c{i}",
                    "image": "registry.k8s.io/pause:3.10",
                    "env": [{"name": f"E{j}", "value": "v" * 20} for j in range(40)],
                }
                for i in range(3)
            ]
        }
    }
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleInstance",
        "metadata": {"name": "ri", "namespace": "ns", "uid": "u", "labels": {}},
        "spec": {
            "components": [
                {"name": f"c{i}", "size": size, "template": copy.deepcopy(template)} for i in range(components)
            ]
        },
    }


def test_a_reconciles_pod_plan_hashes_each_component_once_not_each_pod(monkeypatch):
    instance = big_instance()
    hashed = []
    real = roleinstance.json_digest
    monkeypatch.setattr(roleinstance, "json_digest", lambda value: hashed.append(1) or real(value))
    started = time.perf_counter()
    slots = roleinstance.pod_slots(instance)
    pods = {}  # none exist yet: every slot is checked, and counted in the status
    current = all(n in pods and roleinstance.update_kind(pods[n], s) == "current" for n, s in slots.items())
    statuses = roleinstance.component_statuses(instance, pods, slots)
    elapsed = time.perf_counter() - started
    assert len(slots) == 64 * 78 and not current and sum(s["size"] for s in statuses) == 64 * 78
    assert len(hashed) == 2 * 64, "two hashes per component, none per pod"
    assert elapsed < 1.0, f"{elapsed:.2f}s for the pure part of one reconcile at the pod cap"


def test_a_pod_built_from_a_slot_is_the_pod_desired_pod_builds():
    instance = big_instance(components=2, size=3)
    slots = roleinstance.pod_slots(instance)
    for slot in slots.values():
        component = next(c for c in instance["spec"]["components"] if c["name"] == slot.component)
        assert slot.pod(instance) == roleinstance.desired_pod(instance, component, slot.index)
    pod = next(iter(slots.values())).pod(instance)
    assert roleinstance.update_kind(pod, next(iter(slots.values()))) == "current"


# --- N-8a: template copies per object -------------------------------------------------------


def test_a_role_instance_set_role_whose_copies_pass_32_mib_is_refused_in_both_versions():
    """The review's fan-out: 1,000 RoleInstances of a 100 KB template."""
    role = {"name": "r", "replicas": 1000, "standalonePattern": {"template": big_template(100)}}
    message = refusal(RoleBasedGroupSpecV2, {"roles": [role]})
    assert "spec.roles" in message and f"at most {MAX_FANOUT_BYTES} bytes (32 MiB)" in message
    assert "roles[0] (r): 1000 x" in message
    stored = group_to_v1(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"roles": [role]},
        }
    )
    with pytest.raises(pydantic.ValidationError) as error:
        RoleBasedGroup.model_validate(stored)
    assert f"at most {MAX_FANOUT_BYTES} bytes" in str(error.value)
    # The same role as a StatefulSet makes one copy: no bound but the pod quota.
    RoleBasedGroupSpec.model_validate({"roles": [{"name": "r", "replicas": 1000, "template": big_template(100)}]})
    # And as a RoleInstanceSet with fewer replicas it fits.
    RoleBasedGroupSpecV2.model_validate({"roles": [{**role, "replicas": 300}]})


def test_a_set_whose_member_copies_pass_32_mib_is_refused_in_both_versions():
    template = {"roles": [{"name": "r", "template": big_template(40)}]}
    message = refusal(RoleBasedGroupSetSpec, {"replicas": 1000, "template": template})
    assert "spec.replicas" in message and "the group template: 1000 x" in message and "32 MiB" in message
    RoleBasedGroupSetSpec.model_validate({"replicas": 500, "template": template})
    v2 = {
        "replicas": 1000,
        "groupTemplate": {"spec": {"roles": [{"name": "r", "standalonePattern": {"template": big_template(40)}}]}},
    }
    assert "32 MiB" in refusal(RoleBasedGroupSetSpecV2, v2)
    # Members' own RoleInstances count too: 100 members x 100 instances x 5 KB.
    nested = {
        "replicas": 100,
        "groupTemplate": {
            "spec": {"roles": [{"name": "r", "replicas": 100, "standalonePattern": {"template": big_template(5)}}]}
        },
    }
    assert "template.roles[0] (r): 10000 x" in refusal(RoleBasedGroupSetSpecV2, nested)


def test_a_role_instance_set_made_directly_is_measured_the_same_way():
    spec = {"replicas": 1000, "roleInstanceTemplate": instance_template(template=big_template(100))}
    problem = instance_set_fanout_problem(spec)
    assert problem and problem.startswith("replicas:") and "32 MiB" in problem
    assert instance_set_fanout_problem({**spec, "replicas": 300}) is None
    assert "32 MiB" in refusal(RoleInstanceSetSpec, spec)


def test_the_sglang_example_scaled_to_the_pod_cap_stays_far_below_the_copy_bound():
    group = next(
        d
        for d in yaml.safe_load_all((REPO / "examples" / "sglang_pd.yaml").read_text())
        if d["kind"] == "RoleBasedGroup"
    )
    roles = group["spec"]["roles"]
    for role in roles:  # every role a RoleInstanceSet, together at the group's pod cap
        role["workload"] = dict(RIS)
        role["replicas"] = MAX_GROUP_PODS // len(roles)
    RoleBasedGroupSpec.model_validate(group["spec"])
    copies = sum(r["replicas"] * len(json.dumps(r)) for r in roles)
    assert copies * 2 < MAX_FANOUT_BYTES, copies


# --- N-13: the restart state at the pod cap -------------------------------------------------


ANNOTATION_LIMIT = 256 * 1024


def cap_pods(count: int = MAX_GROUP_PODS, revision: str = "5d8f9c7b6a") -> list[dict]:
    """Pods of a group at the pod cap with long names, real UIDs and varied restart counts."""
    pods = []
    for i in range(count):
        role = f"decode-role-{i % 4}"
        pods.append(
            {
                "metadata": {
                    "name": f"a-rather-long-group-name-for-sglang-{role}-{i // 4}",
                    "uid": str(uuid.uuid4()),
                    "labels": {naming.LABEL_ROLE: role, "controller-revision-hash": revision},
                },
                "spec": {"nodeName": f"node-{i % 300}"},
                "status": {"containerStatuses": [{"name": "main", "restartCount": (i * 7919) % 1500}]},
            }
        )
    return pods


def test_the_restart_state_at_the_pod_cap_fits_the_annotation_limit_with_room_to_spare():
    pods = cap_pods()
    policies = {f"decode-role-{r}": GROUP_WIDE for r in range(4)}
    _, accepted = detect({}, pods, policies, {})
    state = {
        "generation": 7,
        "reset": "",
        "recreations": ["2026-12-04T10:00:00Z"] * 5,
        "pods": {name: entry.encode() for name, entry in accepted.items()},
    }
    text = encode_state(state)
    assert len(accepted) == MAX_GROUP_PODS
    assert len(text) < ANNOTATION_LIMIT // 2, f"{len(text)} bytes"
    old_format = json.dumps(
        {
            **state,
            "pods": {p["metadata"]["name"]: [p["metadata"]["uid"], 0, "5d8f9c7b6a", "decode-role-0"] for p in pods},
        }
    )
    assert len(old_format) > ANNOTATION_LIMIT, "the form this replaces did not fit"
    # A recreation of all of them: the intent lists every pod.
    recreating = {
        **state,
        "pods": {},
        "recreating": {
            "since": "2026-12-04T10:00:00Z",
            "pod": "p",
            "what": "restarted",
            "uids": sorted(uid_key(p["metadata"]["uid"]) for p in pods),
        },
    }
    assert len(encode_state(recreating)) < ANNOTATION_LIMIT // 2


def test_a_new_leader_reading_the_state_decides_what_the_old_one_would_have():
    pods = cap_pods()
    policies = {f"decode-role-{r}": GROUP_WIDE for r in range(4)}
    _, accepted = detect({}, pods, policies, {})
    state = {
        "generation": 1,
        "reset": "",
        "recreations": [],
        "recreating": None,
        "pods": {name: entry.encode() for name, entry in accepted.items()},
    }
    read = decode_state(encode_state(state))
    assert read == state
    baseline = {n: restarts.Baseline.decode(raw) for n, raw in read["pods"].items()}
    pods[4321]["status"]["containerStatuses"][0]["restartCount"] += 1  # one container restarted
    incidents, _ = detect(baseline, pods, policies, {})
    assert [i.pod for i in incidents] == [pods[4321]["metadata"]["name"]]
    assert incidents == detect(accepted, pods, policies, {})[0]
    # A recreation's intent survives too: done only once the deleted pods are gone.
    recreating = {"uids": sorted(uid_key(p["metadata"]["uid"]) for p in pods)}
    carried = decode_state(encode_state({**state, "pods": {}, "recreating": recreating}))["recreating"]
    assert not recreation_done(carried, pods, len(pods))
    replacements = [{**p, "metadata": {**p["metadata"], "uid": str(uuid.uuid4())}} for p in pods]
    assert recreation_done(carried, replacements, len(pods))


def test_the_uncompressed_state_of_earlier_releases_is_read_with_its_uids():
    old = {
        "generation": 2,
        "recreations": ["2026-12-04T10:00:00Z"],
        "pods": {"g-a-0": ["uid-0", 3, "r1", "a"]},
        "recreating": {"since": "x", "pod": "g-a-0", "what": "restarted", "uids": ["uid-0"]},
    }
    read = decode_state(json.dumps(old))
    assert read["pods"] == {"g-a-0": [uid_key("uid-0"), 3, "r1", "a"]}
    assert read["recreating"]["uids"] == [uid_key("uid-0")] and read["recreations"] == old["recreations"]


@pytest.mark.parametrize("text", ["z1:not base64!", "z1:" + "QUJD", "{not json", "[]"])
def test_an_unreadable_state_is_no_state(text):
    assert decode_state(text).get("pods", {}) == {}


def test_a_compressed_bomb_in_the_annotation_is_not_inflated():
    import base64
    import zlib

    bomb = "z1:" + base64.b64encode(zlib.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}", 9)).decode()
    assert len(bomb) < 256 * 1024
    started = time.perf_counter()
    assert decode_state(bomb) == {}
    assert time.perf_counter() - started < 1.0
