"""Operator settings, and cluster-wide objects read from the cache, that shape the desired
objects (scheduler names, engine runtime profiles)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    # The scheduler profile that runs the scheduler-plugins Coscheduling plugin.
    coscheduling_scheduler: str = "scheduler-plugins-scheduler"
    # Volcano's scheduler name; pods of a Volcano gang must be scheduled by it.
    volcano_scheduler: str = "volcano"
    # Whether the API server serves CompositePodGroup (per-role gang minimums; desired/gang.py).
    composite_pod_groups: bool = True
    # ClusterEngineRuntimeProfiles by name, those the group's roles name (see desired/engineruntime.py).
    engine_profiles: Mapping[str, dict] = dataclasses.field(default_factory=dict, hash=False, compare=False)


DEFAULT = BuildOptions()
