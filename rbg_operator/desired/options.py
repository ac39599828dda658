"""Operator settings, and cluster-wide objects read from the cache, that shape the desired
objects (scheduler names, engine runtime profiles)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class PortSettings:
    """The port allocator (the contract's §4.1): off unless enabled; ports come from
    [start, start + range), chosen at random or lowest first ("static")."""

    enabled: bool = False
    strategy: str = "random"
    start: int = 30000
    range: int = 5000


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
    # The port allocator's settings (desired/ports.py, controller/ports.py).
    ports: PortSettings = PortSettings()


DEFAULT = BuildOptions()
