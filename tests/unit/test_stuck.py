import datetime

from rbg_operator.controller.stuck import never_ready, stuck_pods

NOW = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.UTC)


def at(seconds_ago: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    index: int,
    revision: str = "old",
    created: float = 120,
    ready: str = "False",
    ready_changed: float | None = None,
    started: float | None = None,
    unschedulable: bool = False,
    leaving: bool = False,
) -> dict:
    conditions = (
        [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
        if unschedulable
        else [
            {
                "type": "Ready",
                "status": ready,
                "lastTransitionTime": at(created if ready_changed is None else ready_changed),
            }
        ]
    )
    meta = {
        "name": f"p-{index}",
        "creationTimestamp": at(created),
        "labels": {"apps.kubernetes.io/pod-index": str(index), "controller-revision-hash": revision},
    }
    if leaving:
        meta["deletionTimestamp"] = at(0)
    status = {"conditions": conditions}
    if not unschedulable:
        status["startTime"] = at(created if started is None else started)
    return {"metadata": meta, "status": status}


def test_never_ready_tells_a_pod_that_never_started_from_one_that_failed_later():
    assert never_ready(pod(0))  # Ready=False since it started
    assert never_ready(pod(0, unschedulable=True))
    assert not never_ready(pod(0, ready="True"))
    assert not never_ready(pod(0, ready_changed=30))  # Ready moved a minute and a half after the start


def test_only_old_never_ready_pods_above_the_partition_within_the_budget():
    pods = [pod(0), pod(1), pod(2), pod(3, revision="new"), pod(4, ready_changed=10)]
    found = stuck_pods(pods, "new", partition=1, budget=1, now=NOW)
    assert [p["metadata"]["name"] for p in found.replace] == ["p-2"]  # highest ordinal first, one
    assert [p["metadata"]["name"] for p in stuck_pods(pods, "new", 1, 5, NOW).replace] == ["p-2", "p-1"]
    # A pod already on its way out uses the budget.
    assert stuck_pods(pods + [pod(5, leaving=True)], "new", 0, 1, NOW).replace == []


def test_a_young_pod_is_looked_at_again_when_it_would_count_as_stuck():
    found = stuck_pods([pod(0, created=20), pod(1, created=50)], "new", 0, 2, NOW)
    assert found.replace == [] and found.requeue_after == 10
    # The scheduler said no: no need to wait.
    assert len(stuck_pods([pod(0, created=5, unschedulable=True)], "new", 0, 1, NOW).replace) == 1
