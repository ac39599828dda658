"""Standard conditions whose lastTransitionTime moves only when the status really changes."""

from __future__ import annotations

from ..timestamps import now  # noqa: F401 - conditions.now(), as callers read it


def merge(
    previous: list[dict] | None,
    desired: list[dict],
    generation: int,
    restamp: set[str] | frozenset = frozenset(),
    at: str | None = None,
) -> list[dict]:
    """Desired conditions (type, status, reason, message) stamped with times and generation.
    Types in `restamp` get a new lastTransitionTime even when their status stays (Progressing
    restarts its clock on progress, as a Deployment's does). `at`: the time to stamp (default now)."""
    old = {c["type"]: c for c in previous or []}
    merged = []
    for condition in desired:
        before = old.get(condition["type"])
        changed = before is None or before.get("status") != condition["status"] or condition["type"] in restamp
        merged.append(
            {
                **condition,
                "lastTransitionTime": (at or now()) if changed else before["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    # Condition types this reconcile does not speak about keep their last value.
    spoken = {c["type"] for c in desired}
    merged += [c for t, c in old.items() if t not in spoken]
    return sorted(merged, key=lambda c: c["type"])


def find(conditions: list[dict] | None, type_: str) -> dict | None:
    return next((c for c in conditions or [] if c["type"] == type_), None)


def is_true(conditions: list[dict] | None, type_: str) -> bool:
    """Whether condition `type_` of a status's `conditions` is True (absent is not)."""
    return (find(conditions, type_) or {}).get("status") == "True"


def is_ready(obj: dict) -> bool:
    """Whether the object's (a pod's, a group's) Ready condition is True."""
    return is_true((obj.get("status") or {}).get("conditions"), "Ready")
