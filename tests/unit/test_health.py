"""Role progress by each workload kind's own rule, and the group's kstatus conditions with the
progress deadline, decided from the persisted status alone."""

import datetime

from rbg_operator import naming
from rbg_operator.controller.health import DEADLINE_EXCEEDED, group_health, pod_blockers, progress_deadline
from rbg_operator.controller.progress import RoleProgress, workload_progress

NOW = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)


def workload(kind: str, wanted: int, generation: int = 2, **status) -> dict:
    return {"kind": kind, "metadata": {"generation": generation}, "spec": {"replicas": wanted}, "status": status}


def test_a_deployment_surging_is_not_ready_on_old_pods():
    # maxSurge: 3 pods ready, but one is of the old ReplicaSet.
    surging = workload(
        "Deployment", 3, observedGeneration=2, replicas=4, updatedReplicas=3, readyReplicas=4, availableReplicas=3
    )
    progress = workload_progress("web", 3, surging)
    assert not progress.is_ready and progress.rolling
    done = workload("Deployment", 3, observedGeneration=2, replicas=3, updatedReplicas=3, availableReplicas=3)
    assert workload_progress("web", 3, done).is_ready


def test_a_leaderworkerset_not_yet_seen_by_its_controller_is_not_current():
    stale = workload(
        "LeaderWorkerSet", 2, generation=3, observedGeneration=2, replicas=2, readyReplicas=2, updatedReplicas=2
    )
    assert not workload_progress("lws", 2, stale).is_ready
    unreported = workload("LeaderWorkerSet", 2, replicas=2, readyReplicas=2, updatedReplicas=2)
    assert not workload_progress("lws", 2, unreported).is_ready
    seen = workload(
        "LeaderWorkerSet",
        2,
        observedGeneration=2,
        replicas=2,
        readyReplicas=2,
        updatedReplicas=2,
        conditions=[{"type": "UpdateInProgress", "status": "False"}],
    )
    assert workload_progress("lws", 2, seen).is_ready
    updating = {**seen, "status": {**seen["status"], "conditions": [{"type": "UpdateInProgress", "status": "True"}]}}
    assert workload_progress("lws", 2, updating).rolling


def test_rolling_means_a_revision_change_not_a_creation_or_scale_up():
    creating = workload(
        "StatefulSet",
        3,
        observedGeneration=2,
        replicas=1,
        updatedReplicas=1,
        readyReplicas=0,
        currentRevision="r1",
        updateRevision="r1",
    )
    assert not workload_progress("s", 3, creating).rolling
    updating = workload(
        "StatefulSet",
        3,
        observedGeneration=2,
        replicas=3,
        updatedReplicas=1,
        readyReplicas=3,
        currentRevision="r1",
        updateRevision="r2",
    )
    assert workload_progress("s", 3, updating).rolling
    scaling_up = workload("Deployment", 5, observedGeneration=2, replicas=3, updatedReplicas=3, availableReplicas=3)
    assert not workload_progress("d", 5, scaling_up).rolling


def conditions_of(health) -> dict:
    return {c["type"]: c for c in health.conditions}


def stuck_role() -> RoleProgress:
    return RoleProgress("decode", 2, replicas=2, ready=1, updated=2, exists=True, current=True)


def status(progressing: dict, ready: int = 1, generation: int = 4) -> dict:
    return {
        "observedGeneration": generation,
        "conditions": [
            {
                "observedGeneration": generation,
                "lastTransitionTime": "2026-12-01T11:50:00Z",
                "type": "Progressing",
                **progressing,
            }
        ],
        "roleStatuses": [{"name": "decode", "replicas": 2, "readyReplicas": ready, "updatedReplicas": 2}],
    }


def health(previous: dict, roles=None, deadline: float = 300, **kwargs):
    return group_health(
        previous,
        4,
        roles or [stuck_role()],
        kwargs.get("waiting", {}),
        {"decode": "pod d-1 Unschedulable: 0/6 nodes are available"},
        None,
        deadline,
        NOW,
    )


def test_progress_restarts_the_clock_and_none_reaches_the_deadline():
    first = health({})
    c = conditions_of(first)
    assert c["Progressing"]["status"] == "True" and c["Reconciling"]["status"] == "True"
    assert c["Stalled"]["status"] == "False" and "Progressing" in first.restamp and first.requeue_after == 300
    # Ten minutes without progress, against a deadline of five: Stalled, naming the role and its pod.
    stalled = health(status({"status": "True", "reason": "RolesProgressing", "message": "m"}))
    c = conditions_of(stalled)
    assert c["Stalled"]["status"] == "True" and c["Stalled"]["reason"] == DEADLINE_EXCEEDED
    assert c["Progressing"]["status"] == "False"
    assert c["Reconciling"]["status"] == "False" and c["Ready"]["reason"] == DEADLINE_EXCEEDED
    assert "role decode: 1/2 ready (pod d-1 Unschedulable" in c["Stalled"]["message"]
    # Within the deadline: still progressing, looked at again when it would pass.
    waiting = health(status({"status": "True", "reason": "RolesProgressing", "message": "m"}), deadline=900)
    assert conditions_of(waiting)["Stalled"]["status"] == "False" and waiting.requeue_after == 300
    assert not waiting.restamp


def test_a_stall_holds_until_progress_and_a_new_spec_or_a_ready_pod_lifts_it():
    stalled = status({"status": "False", "reason": DEADLINE_EXCEEDED, "message": "the words of the stall"})
    again = conditions_of(health(stalled))
    assert again["Stalled"]["status"] == "True" and again["Stalled"]["message"] == "the words of the stall"
    more_ready = health(
        stalled, roles=[RoleProgress("decode", 3, replicas=3, ready=2, updated=3, exists=True, current=True)]
    )
    assert conditions_of(more_ready)["Progressing"]["status"] == "True" and "Progressing" in more_ready.restamp
    new_spec = health(status({"status": "False", "reason": DEADLINE_EXCEEDED, "message": "x"}, generation=3))
    assert conditions_of(new_spec)["Stalled"]["status"] == "False"


def test_a_pod_lost_long_after_ready_starts_a_new_clock():
    was_ready = status({"status": "False", "reason": "AllRolesReady", "message": "all roles are ready"}, ready=2)
    c = conditions_of(health(was_ready))
    assert c["Stalled"]["status"] == "False" and c["Progressing"]["status"] == "True"


def test_ready_clears_reconciling_and_stalled():
    ready = RoleProgress("decode", 2, replicas=2, ready=2, updated=2, exists=True, current=True)
    c = conditions_of(health(status({"status": "False", "reason": DEADLINE_EXCEEDED, "message": "x"}), roles=[ready]))
    assert (c["Ready"]["status"], c["Reconciling"]["status"], c["Stalled"]["status"]) == ("True", "False", "False")
    assert c["RollingUpdateInProgress"]["status"] == "False"


def test_the_deadline_annotation_overrides_and_a_bad_value_is_named():
    assert progress_deadline({naming.ANNOTATION_PROGRESS_DEADLINE: "120"}, 600) == (120.0, None)
    value, complaint = progress_deadline({naming.ANNOTATION_PROGRESS_DEADLINE: "2m"}, 600)
    assert value == 600 and naming.ANNOTATION_PROGRESS_DEADLINE in complaint and "'2m'" in complaint
    assert progress_deadline(None, 600) == (600, None)


def test_a_deadline_that_str_isdigit_accepts_but_int_refuses_is_named_not_raised():
    for raw in ("\u00b2", "\u0661\u0662", "9" * 5000, "0", "1234567890"):
        value, complaint = progress_deadline({naming.ANNOTATION_PROGRESS_DEADLINE: raw}, 600)
        assert value == 600 and naming.ANNOTATION_PROGRESS_DEADLINE in complaint and len(complaint) < 300, raw
    assert progress_deadline({naming.ANNOTATION_PROGRESS_DEADLINE: "999999999"}, 600) == (999999999.0, None)


def test_blockers_name_unschedulable_and_waiting_pods():
    pods = [
        {
            "metadata": {"name": "p-0"},
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/6 nodes"}
                ]
            },
        },
        {
            "metadata": {"name": "p-1"},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}],
            },
        },
        {"metadata": {"name": "p-2"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
    ]
    assert pod_blockers(pods) == "pod p-0 Unschedulable: 0/6 nodes; pod p-1 ImagePullBackOff"


def test_a_paused_rollout_is_neither_progressing_nor_stalled():
    held = RoleProgress("decode", 2, replicas=2, ready=2, updated=0, exists=True, current=True, paused=True)
    c = conditions_of(health(status({"status": "True", "reason": "RollingUpdate", "message": "m"}), roles=[held]))
    assert c["Ready"]["reason"] == "RolloutPaused" and c["Progressing"]["status"] == "False"
    assert c["Stalled"]["status"] == "False" and c["Reconciling"]["status"] == "False"
