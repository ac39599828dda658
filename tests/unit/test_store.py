import contextlib

from rbg_operator import kinds, naming
from rbg_operator.controller.store import Seen, Store, other_owner, writer


@contextlib.contextmanager
def written_by(key):
    """Store as the reconcile `key` would, from inside its pass."""
    token = writer.set(key)
    try:
        yield
    finally:
        writer.reset(token)


# A group's child: kept whole (what no kind of ours controls is kept as metadata only).
GROUP = [{"apiVersion": kinds.API_VERSION, "kind": "RoleBasedGroup", "name": "g", "uid": "g", "controller": True}]


def revision(name: str, owner_kind: str, number: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "revision": number,
        "data": {"big": "x" * 1000},
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": name,
            "resourceVersion": "1",
            "labels": {naming.LABEL_GROUP_NAME: "g"},
            "ownerReferences": [{"kind": owner_kind, "name": "g", "controller": True}],
        },
    }


def test_keeps_the_groups_revisions_without_their_data_and_skips_the_statefulsets():
    store = Store()
    store.upsert(revision("g-abc", "RoleBasedGroup", 3))
    store.upsert(revision("g-prefill-123", "StatefulSet", 1))
    kept = store.owned_by_group("apps/v1", "ControllerRevision", "ns", "g")
    assert [(r["metadata"]["name"], r["revision"]) for r in kept] == [("g-abc", 3)]
    assert "data" not in kept[0]


def test_an_older_watch_event_does_not_overwrite_a_fresher_write():
    store = Store()
    fresh = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u", "resourceVersion": "20", "ownerReferences": GROUP},
        "spec": {"a": 2},
    }
    store.upsert(fresh)
    store.upsert({**fresh, "metadata": {**fresh["metadata"], "resourceVersion": "10"}, "spec": {"a": 1}})
    assert store.get("v1", "Service", "ns", "s")["spec"] == {"a": 2}


def test_only_a_newer_version_is_news_and_an_echo_names_its_writer():
    """The watch echo of a reconcile's own write must not wake that reconcile, but may wake others."""
    store = Store()
    written = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns", "uid": "u", "resourceVersion": "20"},
        "spec": {"a": 2},
    }
    with written_by(("rolebasedgroup", "ns", "g")):
        assert store.upsert(written) == Seen(True)
    assert store.upsert(written) == Seen(False, ("rolebasedgroup", "ns", "g"))
    older = {**written, "metadata": {**written["metadata"], "resourceVersion": "19"}}
    assert store.upsert(older) == Seen(False, None)
    assert store.upsert({**written, "metadata": {**written["metadata"], "resourceVersion": "21"}}) == Seen(True)
    assert store.upsert({**written, "metadata": {**written["metadata"], "resourceVersion": "21"}}) == Seen(False, None)
    recreated = {**written, "metadata": {**written["metadata"], "uid": "v", "resourceVersion": "5"}}
    assert store.upsert(recreated) == Seen(True)
    assert store.get("v1", "Service", "ns", "s")["metadata"]["uid"] == "v"


def service(uid: str, rv: str, generation: int = 1) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "spec": {},
        "metadata": {
            "name": "s",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": rv,
            "generation": generation,
            "ownerReferences": GROUP,
        },
    }


def test_a_write_answer_that_arrives_after_the_delete_event_does_not_bring_the_object_back():
    store = Store()
    store.upsert(service("u", "10"))
    store.remove("v1", "Service", "ns", "s", "u")  # the DELETED event
    assert store.upsert(service("u", "11")) == Seen(False)  # the answer of a write sent before it
    assert store.get("v1", "Service", "ns", "s") is None
    assert store.upsert(service("v", "12")) == Seen(True)  # a new object under the same name is welcome
    assert store.get("v1", "Service", "ns", "s")["metadata"]["uid"] == "v"


def test_forgetting_by_name_also_refuses_the_forgotten_uid_later():
    store = Store()
    store.upsert(service("u", "10"))
    store.remove("v1", "Service", "ns", "s")  # a 404 on delete, with no UID at hand
    assert store.upsert(service("u", "10")) == Seen(False)


def test_the_echo_of_a_write_that_carried_a_newer_generation_wakes_the_writer_too():
    """A spec change that landed between a reconcile's read and its status write: the answer
    holds the new generation, and its echo must not be suppressed."""
    store = Store()
    store.upsert(service("u", "10", generation=1))
    with written_by(("rolebasedgroup", "ns", "s")):
        store.upsert(service("u", "12", generation=2), read_generation=1)
    assert store.upsert(service("u", "11", generation=2)) == Seen(False)  # the spec change's own event: older
    assert store.upsert(service("u", "12", generation=2)) == Seen(True)  # the echo: news to everyone


def test_the_echo_of_a_write_of_the_generation_read_is_suppressed_for_its_writer():
    store = Store()
    store.upsert(service("u", "10", generation=3))
    with written_by(("rolebasedgroup", "ns", "s")):
        store.upsert(service("u", "11", generation=3), read_generation=3)
    assert store.upsert(service("u", "11", generation=3)) == Seen(False, ("rolebasedgroup", "ns", "s"))


def test_keys_of_one_namespace():
    store = Store()
    store.upsert(service("u", "1"))
    other = service("w", "1")
    other["metadata"]["namespace"] = "other"
    store.upsert(other)
    assert store.keys("v1", "Service", "ns") == [("ns", "s")]
    assert sorted(store.keys("v1", "Service")) == [("ns", "s"), ("other", "s")]


def test_other_owner_names_a_manager_outside_ours_that_owns_the_field():
    managed = {
        "metadata": {
            "managedFields": [
                {"manager": "rbg-operator", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {
                    "manager": "rbg-operator-scalingadapter",
                    "fieldsV1": {"f:spec": {"f:roles": {'k:{"name":"a"}': {"f:replicas": {}}}}},
                },
            ]
        }
    }
    assert other_owner(managed, ("f:spec", "f:replicas"), {"rbg-operator"}) is None
    assert other_owner(managed, ("f:spec", "f:replicas"), set()) == "rbg-operator"
    role_a = ("f:spec", "f:roles", 'k:{"name":"a"}', "f:replicas")
    assert other_owner(managed, role_a, {"rbg-operator"}) == "rbg-operator-scalingadapter"
    assert other_owner(managed, role_a, {"rbg-operator-scalingadapter"}) is None
    assert other_owner(managed, ("f:spec", "f:roles", 'k:{"name":"b"}', "f:replicas"), set()) is None


def test_json_bytes_follow_what_the_cache_holds():
    """The size the operator reports for its cache: replaced and removed objects no longer count."""
    store = Store()
    store.upsert(service("u", "1"))
    one = store.json_bytes
    assert one > 0
    store.upsert({**service("u", "2"), "spec": {"ports": [{"port": 8000}] * 10}})
    assert store.json_bytes > one
    store.upsert(service("v", "1") | {"metadata": {**service("v", "1")["metadata"], "name": "t"}})
    store.remove("v1", "Service", "ns", "s", "u")
    assert store.json_bytes == one
    store.remove("v1", "Service", "ns", "t", "v")
    assert store.json_bytes == 0


def test_the_cache_costs_about_its_json_not_the_encoders_buffers():
    """At 1000 groups the cache holds ~13 000 objects: what each costs in memory is what the
    operator's peak RSS is made of."""
    import tracemalloc

    def pod(i: int) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {"nodeName": "kwok-node-0"},
            "metadata": {
                "name": f"g-prefill-{i}",
                "namespace": "ns",
                "uid": f"uid-{i}",
                "resourceVersion": "7",
                "labels": {naming.LABEL_GROUP_NAME: "g", naming.LABEL_ROLE: "prefill"},
            },
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }

    store = Store()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            store.upsert(pod(i))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2.5 * store.json_bytes, f"{held / 2000:.0f} B per pod for {store.json_bytes / 2000:.0f} B of JSON"


def test_an_object_that_left_the_label_selector_is_cached_again_when_a_newer_version_comes_back():
    """A selector watch says DELETED (at version 15) when the group label is removed; the
    operator restores the label, and the answer (version 16) must be cached, not ignored for good."""
    store = Store()
    store.upsert(service("u", "10"))
    store.remove("v1", "Service", "ns", "s", "u", seen_at=15)
    assert store.upsert(service("u", "14")) == Seen(False), "a version from before it left"
    assert store.upsert(service("u", "15")) == Seen(False)
    assert store.upsert(service("u", "16")) == Seen(True)
    assert store.get("v1", "Service", "ns", "s")["metadata"]["resourceVersion"] == "16"
    store.remove("v1", "Service", "ns", "s", "u", seen_at=20)  # and it can leave again
    assert store.get("v1", "Service", "ns", "s") is None


def test_forget_drops_the_copy_without_refusing_the_object_later():
    store = Store()
    store.upsert(service("u", "10"))
    store.forget("v1", "Service", "ns", "s")
    assert store.get("v1", "Service", "ns", "s") is None and store.json_bytes == 0
    assert store.upsert(service("u", "10")) == Seen(True)


def test_a_reconcile_that_reads_its_object_clears_the_unread_mark_of_its_last_write():
    """Else a pass that writes nothing (the object is being deleted) would be requeued for ever."""
    key = ("rolebasedgroup", "ns", "s")
    store = Store()
    store.upsert(service("u", "10", generation=1))
    with written_by(key):
        store.upsert(service("u", "12", generation=2), read_generation=1)
    assert store.changed_under_writer("v1", "Service", "ns", "s")
    with written_by(key):
        store.mark_read("v1", "Service", "ns", "s")
    assert not store.changed_under_writer("v1", "Service", "ns", "s")
    assert store.upsert(service("u", "12", generation=2)) == Seen(False, key), "its echo: read already"
    store.mark_read("v1", "Service", "ns", "nothing-here")  # no object: nothing to clear


def test_mark_read_keeps_the_group_index_in_step():
    key = ("rolebasedgroup", "ns", "g")
    store = Store()
    child = {
        **service("u", "10"),
        "metadata": {**service("u", "10")["metadata"], "labels": {naming.LABEL_GROUP_NAME: "g"}},
    }
    with written_by(key):
        store.upsert(child, read_generation=0)
        store.mark_read("v1", "Service", "ns", "s")
    assert [o["metadata"]["name"] for o in store.owned_by_group("v1", "Service", "ns", "g")] == ["s"]
    store.remove("v1", "Service", "ns", "s")
    assert store.owned_by_group("v1", "Service", "ns", "g") == []


def test_a_slim_pod_keeps_the_annotations_a_reconcile_reads_and_only_those():
    store = Store()
    annotations = {naming.ANNOTATION_RESTART_TRIGGER: "Ignore", "big": "x" * 1000}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "1", "annotations": annotations},
    }
    store.upsert(pod)
    kept = store.get("v1", "Pod", "ns", "p")
    assert kept["metadata"]["annotations"] == {naming.ANNOTATION_RESTART_TRIGGER: "Ignore"}


def test_a_slim_pod_keeps_what_a_drain_reads_its_state_address_and_names():
    store = Store()
    state = '{"phase":"Draining"}'
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
        "spec": {"hostname": "p", "subdomain": "s", "containers": [{"name": "c", "image": "i", "env": []}]},
        "status": {"phase": "Running", "podIP": "10.0.0.7", "hostIP": "10.1.0.1"},
    }
    pod["metadata"]["annotations"] = {naming.ANNOTATION_DRAIN_STATE: state}
    store.upsert(pod)
    kept = store.get("v1", "Pod", "ns", "p")
    assert kept["metadata"]["annotations"] == {naming.ANNOTATION_DRAIN_STATE: state}
    assert kept["status"] == {"phase": "Running", "podIP": "10.0.0.7"}
    assert kept["spec"] == {"hostname": "p", "subdomain": "s", "containers": [{"name": "c", "image": "i"}]}


def test_warmup_pods_are_indexed_by_their_warmup_and_leave_the_index_with_their_label():
    store = Store()
    labels = {naming.LABEL_WARMUP_NAME: "w", naming.LABEL_WARMUP_NODE: "n1"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "w-x", "namespace": "ns", "uid": "u", "resourceVersion": "1", "labels": labels},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        "status": {"phase": "Succeeded"},
    }
    store.upsert(pod)
    (cached,) = store.warmup_pods("ns", "w")
    assert cached["metadata"]["labels"] == labels and cached["status"]["phase"] == "Succeeded"
    assert store.warmup_pods("other", "w") == [] and store.warmup_pods("ns", "v") == []
    relabelled = {**pod, "metadata": {**pod["metadata"], "resourceVersion": "2", "labels": {}}}
    store.upsert(relabelled)
    assert store.warmup_pods("ns", "w") == []
    store.upsert({**pod, "metadata": {**pod["metadata"], "resourceVersion": "3"}})
    store.remove("v1", "Pod", "ns", "w-x", "u")
    assert store.warmup_pods("ns", "w") == []


def test_nodes_keep_their_name_labels_and_whether_they_take_pods_only():
    store = Store()
    store.upsert(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "n1",
                "uid": "u",
                "resourceVersion": "1",
                "labels": {"pool": "gpu"},
                "annotations": {"a": "b"},
            },
            "spec": {"unschedulable": True, "podCIDR": "10.0.0.0/24"},
            "status": {"images": [{"names": ["x"] * 50}]},
        }
    )
    assert store.get("v1", "Node", "", "n1") == {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "uid": "u", "resourceVersion": "1", "labels": {"pool": "gpu"}},
        "spec": {"unschedulable": True},
    }
