"""When the first status of a RoleInstance or RoleInstanceSet may wait a moment.

A new instance's first pass creates its pods and, until now, wrote at once a status that said
only "not ready yet"; a second write followed as soon as the pods were Ready, usually within
seconds. The first write had no reader that acted on it: the set counts only Ready instances,
and the group only the sets' counts. So while an object is young (HOLD_SECONDS after its
creationTimestamp, which is persisted: no memory of the operator's decides this), a first status
that has nothing to say but "in progress" is not written; a later pass writes the status as it
is then, and a pass at the end of the hold writes it if nothing else did. A status with anything
else to say (Ready, a failure, a conflict) is never held, nor any status once one was written.
Pure: no I/O.
"""

from __future__ import annotations

import datetime

from .. import timestamps

HOLD_SECONDS = 5.0


def hold(body: dict, in_progress_only: bool, now: datetime.datetime) -> float | None:
    """Seconds for which the object's planned status may go unwritten, or None: write it now."""
    if not in_progress_only or "observedGeneration" in (body.get("status") or {}):
        return None
    created = timestamps.parse_or_none(body["metadata"].get("creationTimestamp"))
    if created is None:
        return None
    # creationTimestamp has whole seconds: the hold ends at most a second early, never late.
    left = HOLD_SECONDS - (now - created).total_seconds()
    return left if left > 0 else None
