"""How far a role's workload has come: observedGeneration and counts, and readiness by the rule of
its kind (desired/workload_kinds.py). Pure: a workload object in, counts and verdicts out."""

from __future__ import annotations

import dataclasses

from ..desired.workload_kinds import WORKLOAD_KINDS


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
        return (
            self.exists
            and self.current
            and self.old_pods_gone
            and self.ready >= self.desired
            and self.updated >= self.desired
        )


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
    seen = WORKLOAD_KINDS[workload["kind"]].readiness(status, progress.current, progress.desired)
    progress.ready, progress.old_pods_gone, progress.rolling = seen.ready, seen.old_pods_gone, seen.rolling
    return progress
