"""Operator settings that shape the desired objects (scheduler names and the like)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    # The scheduler profile that runs the scheduler-plugins Coscheduling plugin.
    coscheduling_scheduler: str = "scheduler-plugins-scheduler"
    # Volcano's scheduler name; pods of a Volcano gang must be scheduled by it.
    volcano_scheduler: str = "volcano"


DEFAULT = BuildOptions()
