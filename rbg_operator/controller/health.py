"""The group's conditions, in the form kstatus (Flux, kpt, cli-utils) and Argo CD read: `Ready`,
`Progressing`, and the abnormal-true `Reconciling` and `Stalled`, plus the progress deadline.

Pure: decided from the roles' observed progress and the status persisted on the group (the
Progressing condition's lastTransitionTime is when progress was last seen, and the stored role
counts are what progress is measured against), so a restarted or newly elected operator decides
exactly as the old one would have."""

from __future__ import annotations

import dataclasses
import datetime

from .. import naming, timestamps
from . import conditions
from .progress import RoleProgress

DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
MAX_DEADLINE_DIGITS = 9  # about 31 years


@dataclasses.dataclass
class Health:
    conditions: list[dict]
    restamp: set[str]  # condition types whose clock restarts although their status stays
    requeue_after: float | None = None  # when the deadline passes, if nothing happens before


def progress_deadline(annotations: dict | None, default: float) -> tuple[float, str | None]:
    """The group's deadline in seconds, and a complaint naming the annotation when its value is unusable."""
    raw = (annotations or {}).get(naming.ANNOTATION_PROGRESS_DEADLINE)
    if raw is None:
        return default, None
    # ASCII digits only ("²" is a digit to str.isdigit but not to int()), and few of them: int()
    # refuses strings of more than 4,300 digits, and no deadline needs more than 9.
    if raw.isascii() and raw.isdigit() and len(raw) <= MAX_DEADLINE_DIGITS and int(raw) > 0:
        return float(raw), None
    shown = raw if len(raw) <= 40 else f"{raw[:40]}... ({len(raw)} characters)"
    return default, (
        f"annotation {naming.ANNOTATION_PROGRESS_DEADLINE}={shown!r} is not a whole number of "
        f"seconds from 1 to {10**MAX_DEADLINE_DIGITS - 1}; using the operator's {default:g}s"
    )


def _condition(type_: str, status: bool, reason: str, message: str) -> dict:
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message}


def _progressed(previous: dict, roles: list[RoleProgress], generation: int, reason: str) -> bool:
    """Anything that counts as progress since the last status: a new spec, a new phase (a dependency
    became ready, a rollout began), or more pods ready or updated in some role."""
    progressing = conditions.find(previous.get("conditions"), "Progressing")
    if progressing is None or progressing.get("observedGeneration") != generation:
        return True
    if progressing["status"] == "True" and progressing["reason"] != reason:
        return True
    if progressing["status"] == "False" and progressing["reason"] != DEADLINE_EXCEEDED:
        return True  # work begins anew (a pod lost after Ready, a budget reset): the clock starts now
    stored = {r["name"]: r for r in previous.get("roleStatuses") or []}
    return any(
        p.ready > stored.get(p.name, {}).get("readyReplicas", 0)
        or p.updated > stored.get(p.name, {}).get("updatedReplicas", 0)
        for p in roles
    )


def group_health(
    previous: dict,
    generation: int,
    roles: list[RoleProgress],
    waiting: dict[str, str],
    blockers: dict[str, str],
    budget_exhausted: str | None,
    deadline: float,
    now: datetime.datetime,
) -> Health:
    """`previous` is the stored status; `waiting` maps a role not yet created to the dependency it
    waits for; `blockers` says, per role not ready, which pods hold it and why."""
    not_ready = [p for p in roles if not p.is_ready]
    rolling = [p for p in roles if p.rolling]
    update = (
        _condition(
            "RollingUpdateInProgress",
            True,
            "RollingUpdate",
            "updating " + ", ".join(f"{p.name} ({p.updated}/{p.desired} updated)" for p in rolling),
        )
        if rolling
        else _condition("RollingUpdateInProgress", False, "UpdateComplete", "every role runs its current revision")
    )

    def verdict(
        ready: dict, progressing: dict, reconciling: bool, stalled: bool, restamp=frozenset(), requeue_after=None
    ) -> Health:
        reason, message = progressing["reason"], progressing["message"]
        return Health(
            [
                ready,
                progressing,
                _condition(
                    "Reconciling",
                    reconciling,
                    reason if reconciling else "Idle",
                    message if reconciling else "the operator is not working towards a change",
                ),
                _condition(
                    "Stalled",
                    stalled,
                    reason if stalled else "Idle",
                    message if stalled else "nothing blocks the group",
                ),
                update,
            ],
            set(restamp),
            requeue_after,
        )

    if budget_exhausted:
        return verdict(
            _condition("Ready", False, "RestartBudgetExhausted", budget_exhausted),
            _condition("Progressing", False, "RestartBudgetExhausted", budget_exhausted),
            reconciling=False,
            stalled=True,
        )
    if not not_ready:
        done = "all roles are ready"
        return verdict(
            _condition("Ready", True, "AllRolesReady", done),
            _condition("Progressing", False, "AllRolesReady", done),
            reconciling=False,
            stalled=False,
        )

    if all(p.paused and p.updated < p.desired for p in not_ready):
        # Held on purpose, like a paused Deployment: neither progressing nor stalled, and no deadline.
        held = "rollout paused: " + ", ".join(f"role {p.name} ({p.updated}/{p.desired} updated)" for p in not_ready)
        return verdict(
            _condition("Ready", False, "RolloutPaused", held),
            _condition("Progressing", False, "RolloutPaused", held),
            reconciling=False,
            stalled=False,
        )
    if waiting and not rolling:
        reason = "WaitingForDependencies"
        message = "; ".join(f"role {r} waits for role {d} to be ready" for r, d in waiting.items())
    elif rolling:
        reason, message = "RollingUpdate", update["message"]
    else:
        reason = "RolesProgressing"
        message = "roles not ready: " + ", ".join(f"{p.name} ({p.ready}/{p.desired} ready)" for p in not_ready)
    ready = _condition("Ready", False, "RolesNotReady" if reason == "RolesProgressing" else reason, message)

    stored = conditions.find(previous.get("conditions"), "Progressing")
    if _progressed(previous, roles, generation, reason):
        return verdict(
            ready,
            _condition("Progressing", True, reason, message),
            reconciling=True,
            stalled=False,
            restamp={"Progressing"},
            requeue_after=deadline,
        )
    since = timestamps.parse(stored["lastTransitionTime"])
    waited = (now - since).total_seconds()
    if stored["reason"] == DEADLINE_EXCEEDED or waited >= deadline:
        stuck = "; ".join(
            f"role {p.name}: {p.ready}/{p.desired} ready" + (f" ({blockers[p.name]})" if blockers.get(p.name) else "")
            for p in not_ready
        )
        text = f"no progress for {deadline:g}s (since {stored['lastTransitionTime']}): {stuck}"
        if stored["reason"] == DEADLINE_EXCEEDED:
            text = stored["message"]  # the same stall: keep its words, so status stays unwritten
        return verdict(
            _condition("Ready", False, DEADLINE_EXCEEDED, text),
            _condition("Progressing", False, DEADLINE_EXCEEDED, text),
            reconciling=False,
            stalled=True,
        )
    return verdict(
        ready,
        _condition("Progressing", True, reason, message),
        reconciling=True,
        stalled=False,
        requeue_after=deadline - waited,
    )


def pod_blockers(pods: list[dict], limit: int = 3) -> str:
    """The pods that keep a role from being ready, and why, as one short phrase."""
    held = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        by_type = {c["type"]: c for c in status.get("conditions") or []}
        if by_type.get("Ready", {}).get("status") == "True":
            continue
        scheduled = by_type.get("PodScheduled", {})
        waiting = next(
            (
                c["state"]["waiting"]
                for c in status.get("containerStatuses") or []
                if (c.get("state") or {}).get("waiting")
            ),
            None,
        )
        if scheduled.get("status") == "False":
            why = f"{scheduled.get('reason', 'Unscheduled')}: {scheduled.get('message', '')}".strip(": ")
        elif waiting:
            why = waiting.get("reason", "Waiting")
        else:
            why = "not ready"
        held.append(f"pod {pod['metadata']['name']} {why[:160]}")
    more = f" and {len(held) - limit} more" if len(held) > limit else ""
    return "; ".join(held[:limit]) + more
