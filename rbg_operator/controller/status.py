"""The one status writer of every kind the operator reports on."""

from __future__ import annotations

from collections.abc import Iterable

from ..events import EventRecorder
from ..kube import Kube
from .diff import contains
from .store import Store


async def write_status(kube: Kube, store: Store, body: dict, status: dict, manager: str | None = None) -> bool:
    """Apply `status` (as `manager`, default the client's own) unless the stored object already
    shows it; returns whether it wrote."""
    if contains(body.get("status") or {}, status):
        return False
    meta = body["metadata"]
    result = await kube.apply(
        {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "status": status,
        },
        subresource="status",
        manager=manager,
    )
    # A spec change that landed after the reconcile read the object comes back in the answer:
    # then the echo of this write must wake that reconcile again.
    store.upsert(result, read_generation=meta.get("generation"))
    return True


async def report(
    kube: Kube, store: Store, recorder: EventRecorder, body: dict, status: dict, events: Iterable, manager: str
) -> None:
    """A pass's report: its Events, then its status, then the Events that say what the status
    records (`after_status`), so a reader of either never sees an Event ahead of its cause."""
    events = tuple(events)
    for event in events:
        if not event.after_status:
            await recorder.emit(body, event.type, event.reason, event.message)
    if status is not None:  # None: the plan holds it back (first_status.py)
        await write_status(kube, store, body, status, manager)
    for event in events:
        if event.after_status:
            await recorder.emit(body, event.type, event.reason, event.message)
