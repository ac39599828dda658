"""Restart incidents are differences between observed pods and a persisted baseline."""

from rbg_operator import naming
from rbg_operator.controller.restarts import (
    GROUP_WIDE,
    PER_INSTANCE,
    Baseline,
    Incident,
    detect,
    recreation_done,
    uid_key,
)


def entry(uid: str, restarts: int, revision: str, role: str) -> Baseline:
    """The baseline entry of a pod with this UID."""
    return Baseline(uid_key(uid), restarts, revision, role)


def pod(
    name: str,
    uid: str,
    role: str,
    restarts: int = 0,
    revision: str = "r1",
    node: str | None = "n1",
    deleting: bool = False,
) -> dict:
    meta = {
        "name": name,
        "namespace": "ns",
        "uid": uid,
        "labels": {naming.LABEL_ROLE: role, "controller-revision-hash": revision},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node} if node else {},
        "status": {"containerStatuses": [{"name": "main", "restartCount": restarts}]},
    }


def sts(replicas: int, update_revision: str = "r1") -> dict:
    return {"metadata": {"name": "g-a"}, "spec": {"replicas": replicas}, "status": {"updateRevision": update_revision}}


POLICIES = {"a": GROUP_WIDE, "b": PER_INSTANCE, "c": None}


def test_a_restart_count_above_the_baseline_is_an_incident_once_accepted_it_is_not():
    baseline = {"g-a-0": entry("u0", 0, "r1", "a")}
    pods = [pod("g-a-0", "u0", "a", restarts=1)]
    incidents, accepted = detect(baseline, pods, POLICIES, {"a": sts(1)})
    assert incidents == [Incident("g-a-0", uid_key("u0"), "a", "restarted")]
    assert detect(accepted, pods, POLICIES, {"a": sts(1)})[0] == []  # a new operator would not replay it


def test_a_pod_gone_or_replaced_at_the_current_revision_was_lost():
    baseline = {"g-a-0": entry("u0", 0, "r1", "a"), "g-a-1": entry("u1", 0, "r1", "a")}
    pods = [pod("g-a-0", "u0-new", "a")]  # 0 replaced by the StatefulSet, 1 not yet
    incidents, _ = detect(baseline, pods, POLICIES, {"a": sts(2)})
    assert [i.pod for i in incidents] == ["g-a-0", "g-a-1"]
    assert {i.what for i in incidents} == {"was lost"}


def test_a_rolling_update_a_scale_down_and_a_deleted_statefulset_lose_nothing():
    baseline = {"g-a-0": entry("u0", 0, "r0", "a"), "g-a-1": entry("u1", 0, "r1", "a")}
    pods = [pod("g-a-0", "u0-new", "a", revision="r1")]
    assert detect(baseline, pods, POLICIES, {"a": sts(1)})[0] == []  # 0: new revision; 1: scaled away
    gone = sts(2)
    gone["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    assert detect({"g-a-1": entry("u1", 0, "r1", "a")}, [], POLICIES, {"a": gone})[0] == []


def test_losses_count_for_the_group_wide_policy_only_and_roles_without_a_policy_are_not_tracked():
    baseline = {"g-b-0": entry("v0", 0, "r1", "b")}
    incidents, accepted = detect(baseline, [pod("g-c-0", "w0", "c", restarts=5)], POLICIES, {"b": sts(1)})
    assert incidents == [] and accepted == {}


def test_only_bound_live_pods_enter_the_baseline():
    pods = [pod("g-a-0", "u0", "a"), pod("g-a-1", "u1", "a", node=None), pod("g-a-2", "u2", "a", deleting=True)]
    _, accepted = detect({}, pods, POLICIES, {"a": sts(3)})
    assert list(accepted) == ["g-a-0"]


def test_a_recreation_is_done_when_the_deleted_uids_are_gone_and_replacements_exist():
    recreating = {"uids": [uid_key("u0"), uid_key("u1")]}
    assert not recreation_done(recreating, [pod("g-a-0", "u0", "a", deleting=True), pod("g-a-1", "x1", "a")], 2)
    assert not recreation_done(recreating, [pod("g-a-1", "x1", "a")], 2)  # one replacement so far
    assert recreation_done(recreating, [pod("g-a-0", "x0", "a"), pod("g-a-1", "x1", "a")], 2)
    # The spec shrank to one pod meanwhile: one replacement is all there will be.
    assert recreation_done(recreating, [pod("g-a-0", "x0", "a")], 1)


def test_a_pod_annotated_to_be_ignored_never_enters_the_baseline_so_it_never_triggers_a_restart():
    ignored = pod("g-a-0", "u0", "a")
    ignored["metadata"]["annotations"] = {naming.ANNOTATION_RESTART_TRIGGER: "Ignore"}
    assert detect({}, [ignored], POLICIES, {"a": sts(1)})[1] == {}
    ignored["status"]["containerStatuses"][0]["restartCount"] = 4
    assert detect({}, [ignored], POLICIES, {"a": sts(1)}) == ([], {})
    inherit = pod("g-a-0", "u0", "a")
    inherit["metadata"]["annotations"] = {naming.ANNOTATION_RESTART_TRIGGER: "Inherit"}
    assert list(detect({}, [inherit], POLICIES, {"a": sts(1)})[1]) == ["g-a-0"]
