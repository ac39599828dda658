from rbg_operator import naming
from rbg_operator.controller.store import Seen, Store, writer


def revision(name: str, owner_kind: str, number: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "revision": number, "data": {"big": "x" * 1000},
            "metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": "1",
                         "labels": {naming.LABEL_GROUP_NAME: "g"},
                         "ownerReferences": [{"kind": owner_kind, "name": "g", "controller": True}]}}


def test_keeps_the_groups_revisions_without_their_data_and_skips_the_statefulsets():
    store = Store()
    store.upsert(revision("g-abc", "RoleBasedGroup", 3))
    store.upsert(revision("g-prefill-123", "StatefulSet", 1))
    kept = store.owned_by_group("apps/v1", "ControllerRevision", "ns", "g")
    assert [(r["metadata"]["name"], r["revision"]) for r in kept] == [("g-abc", 3)]
    assert "data" not in kept[0]


def test_an_older_watch_event_does_not_overwrite_a_fresher_write():
    store = Store()
    fresh = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns", "uid": "u",
                                                                 "resourceVersion": "20"}, "spec": {"a": 2}}
    store.upsert(fresh)
    store.upsert({**fresh, "metadata": {**fresh["metadata"], "resourceVersion": "10"}, "spec": {"a": 1}})
    assert store.get("v1", "Service", "ns", "s")["spec"] == {"a": 2}


def test_only_a_newer_version_is_news_and_an_echo_names_its_writer():
    """The watch echo of a reconcile's own write must not wake that reconcile, but may wake others."""
    store = Store()
    written = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns", "uid": "u",
                                                                   "resourceVersion": "20"}, "spec": {"a": 2}}
    token = writer.set(("rolebasedgroup", "ns", "g"))
    try:
        assert store.upsert(written) == Seen(True)
    finally:
        writer.reset(token)
    assert store.upsert(written) == Seen(False, ("rolebasedgroup", "ns", "g"))
    older = {**written, "metadata": {**written["metadata"], "resourceVersion": "19"}}
    assert store.upsert(older) == Seen(False, None)
    assert store.upsert({**written, "metadata": {**written["metadata"], "resourceVersion": "21"}}) == Seen(True)
    assert store.upsert({**written, "metadata": {**written["metadata"], "resourceVersion": "21"}}) == Seen(False, None)
    recreated = {**written, "metadata": {**written["metadata"], "uid": "v", "resourceVersion": "5"}}
    assert store.upsert(recreated) == Seen(True)
    assert store.get("v1", "Service", "ns", "s")["metadata"]["uid"] == "v"
