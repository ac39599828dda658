"""How far a role's workload has come, read by the rule its own tooling uses: `kubectl rollout
status` for Deployments and StatefulSets, LeaderWorkerSet's own observedGeneration and conditions.
Pure: a workload object in, counts and verdicts out."""

from __future__ import annotations

import dataclasses

from . import conditions


@dataclasses.dataclass
class RoleProgress:
    name: str
    desired: int
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    exists: bool = False
    current: bool = False  # the workload controller has seen our latest spec
    old_pods_gone: bool = True  # no pod of an older revision still counts (a Deployment's surge)
    rolling: bool = False  # replacing pods of an older revision (not a creation or a scale-up)
    paused: bool = False  # the role's rollout is held (rolloutStrategy.rollingUpdate.paused)

    @property
    def is_ready(self) -> bool:
        return (self.exists and self.current and self.old_pods_gone
                and self.ready >= self.desired and self.updated >= self.desired)


def workload_progress(name: str, desired: int, workload: dict | None) -> RoleProgress:
    progress = RoleProgress(name, desired)
    if workload is None:
        return progress
    status = workload.get("status") or {}
    generation = workload["metadata"].get("generation", 0)
    progress.exists = True
    # Every kind reports observedGeneration once its controller has looked (LeaderWorkerSet since
    # v0.5); absent means not yet, so a fresh spec never counts as done on the old status.
    progress.current = status.get("observedGeneration", 0) >= generation
    progress.desired = (workload.get("spec") or {}).get("replicas", desired)
    progress.replicas = status.get("replicas", 0)
    progress.updated = status.get("updatedReplicas", 0)
    kind = workload["kind"]
    if kind == "Deployment":
        # As `kubectl rollout status`: available pods, and no old ReplicaSet's pod left (maxSurge
        # keeps old ready pods around, which must not count for the new revision).
        progress.ready = status.get("availableReplicas", 0)
        progress.old_pods_gone = progress.replicas <= progress.updated
        progress.rolling = progress.current and progress.replicas > progress.updated
    elif kind == "StatefulSet":
        progress.ready = status.get("readyReplicas", 0)
        update, current = status.get("updateRevision"), status.get("currentRevision")
        progress.rolling = bool(progress.current and update and current and update != current)
    elif kind == "RoleInstanceSet":  # instances, each ready when all its pods are
        progress.ready = status.get("readyReplicas", 0)
        update, current = status.get("updateRevision"), status.get("currentRevision")
        progress.rolling = bool(progress.current and update and current and update != current)
        progress.old_pods_gone = progress.replicas <= progress.desired
    else:  # LeaderWorkerSet: groups, each ready when all its pods are
        progress.ready = status.get("readyReplicas", 0)
        updating = conditions.find(status.get("conditions"), "UpdateInProgress") or {}
        progress.rolling = progress.current and updating.get("status") == "True"
        progress.old_pods_gone = not progress.rolling
    return progress
