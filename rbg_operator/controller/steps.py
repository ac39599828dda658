"""The writes a group's plan asks for, as data: plan() decides them, act() carries them out in
order. Each step is one write (and what it tells the user), so a plan can be read, compared and
tested without an API server."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Apply:
    """Server-side apply `desired`. `observed` is the object as the snapshot had it; None means
    a creation, and act looks for the name again under its creation lock first."""

    desired: dict
    observed: dict | None


@dataclasses.dataclass(frozen=True)
class RecordRevision:
    """Make `create` the group's newest ControllerRevision, or renumber the existing `renumber`
    (name, number) to be it; then delete the revisions beyond the history limit."""

    create: dict | None
    renumber: tuple[str, int] | None
    prune: tuple[dict, ...] = ()


@dataclasses.dataclass(frozen=True)
class Delete:
    """Delete a child the group no longer wants, saying why in a Deleted Event."""

    obj: dict
    why: str


@dataclasses.dataclass(frozen=True)
class Emit:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class DeletePod:
    """Delete this very pod (by UID); `announce` only if it was still there."""

    pod: dict
    announce: Emit | None = None


@dataclasses.dataclass(frozen=True)
class WriteRestartState:
    """The restart tracker's state annotation (restarts.py), written before any pod it dooms."""

    text: str


@dataclasses.dataclass(frozen=True)
class CountRecreation:
    """A group recreation begins (the metric)."""


Step = Apply | RecordRevision | Delete | Emit | DeletePod | WriteRestartState | CountRecreation
