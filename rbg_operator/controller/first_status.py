"""When the first status of a RoleInstance or RoleInstanceSet may wait a moment.

A new instance's first pass creates its pods and, until now, wrote at once a status that said
only "not ready yet"; a second write followed as soon as the pods were Ready, usually within
seconds of their creation. The first write had no reader that acted on it: the set counts only
Ready instances, and the group only the sets' counts. So a first status that has nothing to say
but "in progress" is not written while the object's children are young: HOLD_SECONDS after the
newest child's creationTimestamp (or the object's own, before it has any), and for a set, while
an instance younger than UNREPORTED_SECONDS has reported no status of its own yet (it is still
making its pods: under load that takes longer than its pods take to start). Every time read is
persisted; no memory of the operator's decides this. A later pass writes the status as it is
then, and the pass at the end of the hold (its requeue) writes it if nothing else did. A status
with anything else to say (Ready, a failure, a conflict) is never held, nor any status once one
was written. Pure: no I/O.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from .. import timestamps

HOLD_SECONDS = 5.0
UNREPORTED_SECONDS = 30.0


def _age(obj: dict, now: datetime.datetime) -> float | None:
    created = timestamps.parse_or_none(obj["metadata"].get("creationTimestamp"))
    return None if created is None else (now - created).total_seconds()


def hold(
    body: dict, in_progress_only: bool, now: datetime.datetime, children: Iterable[dict] = (), unreported=()
) -> float | None:
    """Seconds for which the object's planned status may go unwritten, or None: write it now.
    `children`: what it made (their creation restarts the hold); `unreported`: those of them that
    have written no status of their own yet."""
    if not in_progress_only or "observedGeneration" in (body.get("status") or {}):
        return None
    ages = [a for a in (_age(c, now) for c in children) if a is not None]
    own = _age(body, now)
    youngest = min(ages) if ages else own
    if youngest is None:
        return None
    # creationTimestamp has whole seconds: a hold ends at most a second early, never late.
    left = HOLD_SECONDS - youngest
    for child in unreported:
        age = _age(child, now)
        if age is not None:
            left = max(left, UNREPORTED_SECONDS - age)
    return left if left > 0 else None
