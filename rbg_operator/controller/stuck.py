"""Pods a StatefulSet rollout will wait on for ever: on an old revision and never Ready.

A StatefulSet rolling update stops at an unhealthy pod until it recovers, so a template fix for
pods that cannot start would never roll out. Such pods serve nothing and replacing them costs no
availability. A pod that was Ready once and is failing its probe now is left alone: it may be
serving, and it may recover. Pure: pods in, the ones to replace and when to look again out.
"""

from __future__ import annotations

import dataclasses
import datetime

from .. import naming
from ..timestamps import parse
from .conditions import is_ready

STUCK_AFTER_SECONDS = 60
# The kubelet stamps a pod's startTime and its first Ready=False in the same status update; a
# transition later than this after the start means Ready changed since (it was True once).
SAME_UPDATE_SECONDS = 2


def _conditions(pod: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (pod.get("status") or {}).get("conditions", [])}


def unschedulable(pod: dict) -> bool:
    return _conditions(pod).get("PodScheduled", {}).get("reason") == "Unschedulable"


def never_ready(pod: dict) -> bool:
    """Ready has never been true: the pod never started, or its Ready condition has not moved
    since the pod started."""
    if is_ready(pod):
        return False
    ready = _conditions(pod).get("Ready")
    started = (pod.get("status") or {}).get("startTime")
    if unschedulable(pod) or not started or ready is None or not ready.get("lastTransitionTime"):
        return True
    return (parse(ready["lastTransitionTime"]) - parse(started)).total_seconds() <= SAME_UPDATE_SECONDS


@dataclasses.dataclass
class Unstick:
    replace: list[dict]
    requeue_after: float | None  # when a pod not stuck yet would become so


def stuck_pods(
    pods: list[dict],
    update_revision: str,
    partition: int,
    budget: int,
    now: datetime.datetime,
    stuck_after: float = STUCK_AFTER_SECONDS,
) -> Unstick:
    """Pods to replace: at or above the partition, on an older revision than `update_revision`,
    never Ready, and either unschedulable or a minute old; no more than `budget` (the rollout's
    maxUnavailable) less the pods already on their way out."""
    leaving = sum(1 for p in pods if p["metadata"].get("deletionTimestamp"))
    candidates, wake = [], []
    for pod in pods:
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        if (
            meta.get("deletionTimestamp")
            or int(labels.get(naming.STATEFULSET_POD_INDEX, -1)) < partition
            or labels.get("controller-revision-hash") == update_revision
            or not never_ready(pod)
        ):
            continue
        age = (now - parse(meta["creationTimestamp"])).total_seconds()
        if unschedulable(pod) or age > stuck_after:
            candidates.append(pod)
        else:
            wake.append(stuck_after - age)
    # Highest ordinals first, as the StatefulSet itself updates.
    candidates.sort(key=lambda p: -int(p["metadata"]["labels"].get(naming.STATEFULSET_POD_INDEX, -1)))
    # Pods held back by the budget are looked at again when a leaving pod is gone (its event).
    return Unstick(candidates[: max(0, budget - leaving)], min(wake, default=None))
