"""The wake table: which reconciles an event of each watched kind wakes, and how soon."""

from __future__ import annotations

import dataclasses

import pytest

from rbg_operator import kinds, naming
from rbg_operator.controller import wakes
from rbg_operator.controller.store import Store
from rbg_operator.controller.wakes import ADAPTER, GROUP, GROUP_SET, INSTANCE_SET, ROLE_INSTANCE, woken

pytestmark = pytest.mark.unit
COALESCE = 0.5


@dataclasses.dataclass
class Cache:
    """The mappers' reads: a real store, and which groups have a restart policy."""

    store: Store = dataclasses.field(default_factory=Store)
    groups_reading_pods: set[tuple[str, str]] = dataclasses.field(default_factory=set)

    def reads_pods(self, namespace: str, group: str) -> bool:
        return (namespace, group) in self.groups_reading_pods


def obj(
    key: kinds.Key,
    name: str,
    *,
    labels: dict | None = None,
    owners: list[dict] | None = None,
    spec: dict | None = None,
    namespace: str | None = "ns",
) -> dict:
    meta = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "1",
        "labels": labels or {},
        "ownerReferences": owners or [],
    }
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": key[0], "kind": key[1], "metadata": meta, "spec": spec or {}}


def controlled_by(key: kinds.Key, name: str) -> dict:
    return {"apiVersion": key[0], "kind": key[1], "name": name, "uid": f"uid-{name}", "controller": True}


def test_a_group_wakes_itself_its_adapters_and_its_set_at_once():
    cache = Cache()
    cache.store.upsert(obj(kinds.SCALING_ADAPTER, "g-prefill", spec={"scaleTargetRef": {"name": "g", "role": "p"}}))
    cache.store.upsert(obj(kinds.SCALING_ADAPTER, "other", spec={"scaleTargetRef": {"name": "h", "role": "p"}}))
    group = obj(kinds.ROLE_BASED_GROUP, "g", labels={naming.LABEL_SET_NAME: "s"})
    assert woken(cache, group, COALESCE) == [
        ((GROUP, "ns", "g"), 0.0),
        ((ADAPTER, "ns", "g-prefill"), 0.0),
        ((GROUP_SET, "ns", "s"), 0.0),
    ]
    assert woken(cache, obj(kinds.ROLE_BASED_GROUP, "lone"), COALESCE) == [((GROUP, "ns", "lone"), 0.0)]


def test_a_child_wakes_the_group_that_controls_it_after_the_coalescing_delay():
    sts = obj(kinds.STATEFUL_SET, "g-r", owners=[controlled_by(kinds.ROLE_BASED_GROUP, "g")])
    assert woken(Cache(), sts, COALESCE) == [((GROUP, "ns", "g"), COALESCE)]
    # A child made while groups were stored in v1alpha1 names that version: still the group's.
    old = obj(kinds.DEPLOYMENT, "g-r", owners=[controlled_by((kinds.API_VERSION_V1ALPHA1, "RoleBasedGroup"), "g")])
    assert woken(Cache(), old, 2.0) == [((GROUP, "ns", "g"), 2.0)]
    # No owner yet (just created, or orphaned): the group label says whose it is.
    labelled = obj(kinds.SERVICE, "s-g-r", labels={naming.LABEL_GROUP_NAME: "g"})
    assert woken(Cache(), labelled, COALESCE) == [((GROUP, "ns", "g"), COALESCE)]


def test_a_child_another_kind_controls_or_nobody_claims_wakes_nothing():
    foreign = obj(
        kinds.STATEFUL_SET,
        "x",
        owners=[{"apiVersion": "example.com/v1", "kind": "RoleBasedGroup", "name": "g", "controller": True}],
    )
    assert woken(Cache(), foreign, COALESCE) == []
    not_controller = obj(
        kinds.CONFIG_MAP, "x", owners=[{**controlled_by(kinds.ROLE_BASED_GROUP, "g"), "controller": False}]
    )
    assert woken(Cache(), not_controller, COALESCE) == []


def test_a_pod_wakes_its_role_instance_and_only_a_group_that_reads_pods():
    instance_pod = obj(
        kinds.POD,
        "g-r-0-0",
        labels={naming.LABEL_GROUP_NAME: "g"},
        owners=[controlled_by(kinds.ROLE_INSTANCE, "g-r-0")],
    )
    assert woken(Cache(), instance_pod, COALESCE) == [((ROLE_INSTANCE, "ns", "g-r-0"), COALESCE)]
    restarting = Cache(groups_reading_pods={("ns", "g")})
    assert woken(restarting, instance_pod, COALESCE) == [
        ((ROLE_INSTANCE, "ns", "g-r-0"), COALESCE),
        ((GROUP, "ns", "g"), COALESCE),
    ]
    sts_pod = obj(
        kinds.POD, "g-r-0", labels={naming.LABEL_GROUP_NAME: "g"}, owners=[controlled_by(kinds.STATEFUL_SET, "g-r")]
    )
    assert woken(Cache(), sts_pod, COALESCE) == []
    assert woken(restarting, sts_pod, COALESCE) == [((GROUP, "ns", "g"), COALESCE)]


def test_role_instance_sets_and_instances_wake_themselves_at_once_and_their_owner_later():
    ris = obj(kinds.ROLE_INSTANCE_SET, "g-r", owners=[controlled_by(kinds.ROLE_BASED_GROUP, "g")])
    assert woken(Cache(), ris, COALESCE) == [((INSTANCE_SET, "ns", "g-r"), 0.0), ((GROUP, "ns", "g"), COALESCE)]
    made_directly = obj(kinds.ROLE_INSTANCE_SET, "mine")
    assert woken(Cache(), made_directly, COALESCE) == [((INSTANCE_SET, "ns", "mine"), 0.0)]
    instance = obj(kinds.ROLE_INSTANCE, "g-r-0", owners=[controlled_by(kinds.ROLE_INSTANCE_SET, "g-r")])
    assert woken(Cache(), instance, COALESCE) == [
        ((ROLE_INSTANCE, "ns", "g-r-0"), 0.0),
        ((INSTANCE_SET, "ns", "g-r"), COALESCE),
    ]


def test_an_adapter_wakes_itself_and_the_group_it_belongs_to():
    adapter = obj(kinds.SCALING_ADAPTER, "g-r", owners=[controlled_by(kinds.ROLE_BASED_GROUP, "g")])
    assert woken(Cache(), adapter, COALESCE) == [((ADAPTER, "ns", "g-r"), 0.0), ((GROUP, "ns", "g"), COALESCE)]


def test_a_policy_wakes_the_group_of_its_name_and_a_profile_the_groups_naming_it():
    assert woken(Cache(), obj(kinds.COORDINATED_POLICY, "g"), COALESCE) == [((GROUP, "ns", "g"), 0.0)]
    cache = Cache()
    naming_it = {"roles": [{"name": "r", "engineRuntimes": [{"profileName": "sglang"}]}]}
    cache.store.upsert(obj(kinds.ROLE_BASED_GROUP, "uses", spec=naming_it))
    cache.store.upsert(obj(kinds.ROLE_BASED_GROUP, "uses", spec=naming_it, namespace="other"))
    cache.store.upsert(obj(kinds.ROLE_BASED_GROUP, "not", spec={"roles": [{"name": "r"}]}))
    profile = obj(kinds.ENGINE_RUNTIME_PROFILE, "sglang", namespace=None)
    assert sorted(woken(cache, profile, COALESCE)) == [
        ((GROUP, "ns", "uses"), COALESCE),
        ((GROUP, "other", "uses"), COALESCE),
    ]


def test_every_kind_is_watched_once_and_a_kind_watched_twice_has_disjoint_selectors():
    watched = [w.kind for w in wakes.WATCHES]
    assert len(watched) == len(set(watched))
    assert set(wakes.KIND_OF_CONTROLLER.values()) <= set(watched)  # every reconciled kind wakes itself
    for watch in wakes.WATCHES:
        if len(watch.selectors) > 1:
            samples = [
                {naming.LABEL_GROUP_NAME: "g"},
                {naming.LABEL_V2_INSTANCE_NAME: "i"},
                {naming.LABEL_GROUP_NAME: "g", naming.LABEL_V2_INSTANCE_NAME: "i"},
            ]
            for labels in samples:
                assert sum(wakes.selector_matches(s, labels) for s in watch.selectors) <= 1, (watch.kind, labels)


def test_a_warmup_pod_wakes_its_warmup_and_a_group_pod_on_a_node_wakes_the_warmups_aimed_at_its_group():
    cache = Cache()
    aimed = {"targetRoleBasedGroup": {"name": "g", "roles": {"r": {}}}}
    cache.store.upsert(obj(kinds.WARMUP, "w", spec=aimed))
    cache.store.upsert(obj(kinds.WARMUP, "elsewhere", spec={"targetRoleBasedGroup": {"name": "h", "roles": {}}}))
    done = obj(kinds.WARMUP, "done", spec=aimed)
    cache.store.upsert({**done, "status": {"phase": "Completed"}})
    warmup_pod = obj(
        kinds.POD, "w-abcde", labels={naming.LABEL_WARMUP_NAME: "w"}, owners=[controlled_by(kinds.WARMUP, "w")]
    )
    assert woken(cache, warmup_pod, COALESCE) == [((wakes.WARMUP, "ns", "w"), COALESCE)]
    group_pod = obj(kinds.POD, "g-r-0", labels={naming.LABEL_GROUP_NAME: "g"})
    assert woken(cache, group_pod, COALESCE) == []  # not scheduled: no node to warm
    group_pod["spec"] = {"nodeName": "n1"}
    assert woken(cache, group_pod, COALESCE) == [((wakes.WARMUP, "ns", "w"), COALESCE)]


def test_a_node_wakes_the_warmups_still_at_work_only():
    cache = Cache()
    cache.store.upsert(obj(kinds.WARMUP, "w", spec={}))
    cache.store.upsert({**obj(kinds.WARMUP, "done", spec={}), "status": {"phase": "Failed"}})
    assert woken(cache, obj(kinds.NODE, "n1", namespace=None), COALESCE) == [((wakes.WARMUP, "ns", "w"), COALESCE)]
    assert woken(cache, obj(kinds.WARMUP, "w"), COALESCE) == [((wakes.WARMUP, "ns", "w"), 0.0)]


def test_a_ready_pod_wakes_its_instance_and_a_ready_instance_its_set_at_once():
    """What a parent waits for to say Ready does not sit out the coalescing delay at each level;
    a restarting group still reads its pods after the delay."""
    pod = obj(
        kinds.POD, "g-r-0", labels={naming.LABEL_GROUP_NAME: "g"}, owners=[controlled_by(kinds.ROLE_INSTANCE, "g-r-0")]
    )
    pod["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    restarting = Cache(groups_reading_pods={("ns", "g")})
    assert woken(restarting, pod, COALESCE) == [((ROLE_INSTANCE, "ns", "g-r-0"), 0.0), ((GROUP, "ns", "g"), COALESCE)]
    pod["status"]["conditions"][0]["status"] = "False"
    assert woken(Cache(), pod, COALESCE) == [((ROLE_INSTANCE, "ns", "g-r-0"), COALESCE)]
    instance = obj(kinds.ROLE_INSTANCE, "g-r-0", owners=[controlled_by(kinds.ROLE_INSTANCE_SET, "g-r")])
    instance["metadata"]["generation"] = 2
    instance["status"] = {"observedGeneration": 2, "conditions": [{"type": "RoleInstanceReady", "status": "True"}]}
    assert woken(Cache(), instance, COALESCE) == [
        ((ROLE_INSTANCE, "ns", "g-r-0"), 0.0),
        ((INSTANCE_SET, "ns", "g-r"), 0.0),
    ]
    instance["metadata"]["generation"] = 3  # Ready for a spec it has not seen yet: not news to the set
    assert woken(Cache(), instance, COALESCE)[1] == ((INSTANCE_SET, "ns", "g-r"), COALESCE)
