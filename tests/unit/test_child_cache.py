"""What the store keeps of an object of a child kind that no kind of ours controls (forged
labels cost nothing), and the two disjoint pod watches that let RoleInstances made without a
group see their pods."""

from rbg_operator import kinds, naming, operator
from rbg_operator.controller import store as store_module
from rbg_operator.controller import wakes
from rbg_operator.controller.control import controller_of
from rbg_operator.controller.store import Store
from tests.support.owned import child, ref


def test_a_forged_configmap_is_kept_as_a_few_hundred_bytes():
    store = Store()
    big = "y" * 900_000
    forged = child(
        "cm-1",
        kind="ConfigMap",
        labels={naming.LABEL_GROUP_NAME: "x", **{f"k{i}": "v" for i in range(100)}},
        data={"b": big},
    )
    forged["metadata"]["annotations"] = {"a": big}
    store.upsert(forged)
    kept = store.get("v1", "ConfigMap", "ns", "cm-1")
    assert store.json_bytes < 500
    assert "data" not in kept and "annotations" not in kept["metadata"]
    assert kept["metadata"]["labels"] == {naming.LABEL_GROUP_NAME: "x"}  # still indexed, still wakes
    assert store.owned_by_group("v1", "ConfigMap", "ns", "x")[0]["metadata"]["name"] == "cm-1"


def test_a_configmap_is_kept_whole_only_as_its_groups_topology():
    store = Store()
    topology = child("g", ref("RoleBasedGroup", "g", "uid-g"), kind="ConfigMap", data={"topology.yaml": "roles: []"})
    store.upsert(topology)
    assert store.get("v1", "ConfigMap", "ns", "g")["data"] == {"topology.yaml": "roles: []"}
    # Controlled by the tenant's own group, but no name the operator gives: metadata only.
    extra = child("g-extra", ref("RoleBasedGroup", "g", "uid-g"), kind="ConfigMap", data={"b": "y" * 10_000})
    store.upsert(extra)
    assert "data" not in store.get("v1", "ConfigMap", "ns", "g-extra")


def test_children_of_our_kinds_are_kept_whole_and_others_as_metadata():
    ours = child("s-g-r", ref("RoleBasedGroup", "g", "uid-g"), spec={"clusterIP": "None", "selector": {"a": "b"}})
    foreign = child(
        "s-g-x",
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u", "controller": True},
        spec={"clusterIP": "None"},
    )
    slim = store_module.SLIMMERS[("v1", "Service")]
    assert slim(ours)["spec"] == ours["spec"]
    kept = slim(foreign)
    assert "spec" not in kept and controller_of(kept)["name"] == "d"


def test_the_store_slims_every_child_kind_the_operator_watches_by_the_group_label():
    by_group_label = {kind for kind, selector in wakes.WATCHED if selector == wakes.CHILD_SELECTOR}
    assert set(store_module.CHILD_KINDS) == by_group_label - {kinds.POD, kinds.CONTROLLER_REVISION}


def test_the_three_pod_watches_are_disjoint():
    group_pod = {naming.LABEL_GROUP_NAME: "g", naming.LABEL_V2_INSTANCE_NAME: "g-r-0"}
    direct_pod = {naming.LABEL_V2_INSTANCE_NAME: "p-0"}
    warmup_pod = {naming.LABEL_WARMUP_NAME: "w", naming.LABEL_WARMUP_NODE: "n"}
    pod_selectors = [s for kind, s in wakes.WATCHED if kind == kinds.POD]
    assert [wakes.selector_matches(s, group_pod) for s in pod_selectors] == [True, False, False]
    assert [wakes.selector_matches(s, direct_pod) for s in pod_selectors] == [False, True, False]
    assert [wakes.selector_matches(s, warmup_pod) for s in pod_selectors] == [False, False, True]
    # A warmup label on a group's or an instance's pod does not bring it in twice.
    for labels in (group_pod, direct_pod):
        assert sum(wakes.selector_matches(s, {**labels, naming.LABEL_WARMUP_NAME: "w"}) for s in pod_selectors) == 1
    assert not any(wakes.selector_matches(s, {"app": "x"}) for s in pod_selectors)


def test_a_relist_of_one_pod_watch_does_not_delete_what_the_other_brought():
    store, delivered = Store(), []
    group_pod = child("g-r-0", kind="Pod", labels={naming.LABEL_GROUP_NAME: "g"})
    direct_pod = child("p-0", kind="Pod", labels={naming.LABEL_V2_INSTANCE_NAME: "p-0"})
    for pod in (group_pod, direct_pod):
        store.upsert(pod)
    by_group = operator._within(wakes.CHILD_SELECTOR, store, lambda *e: delivered.append(e))
    by_instance = operator._within(wakes.INSTANCE_POD_SELECTOR, store, lambda *e: delivered.append(e))
    by_group("DELETED", store.get("v1", "Pod", "ns", "p-0"))  # not in its list: not its to delete
    by_instance("DELETED", store.get("v1", "Pod", "ns", "g-r-0"))
    assert delivered == []
    by_instance("DELETED", store.get("v1", "Pod", "ns", "p-0"))
    # A pod that left the group watch's selector: judged by the copy stored, which was its.
    stripped = child("g-r-0", kind="Pod", labels={})
    by_group("DELETED", stripped)
    assert [e[1]["metadata"]["name"] for e in delivered] == ["p-0", "g-r-0"]
