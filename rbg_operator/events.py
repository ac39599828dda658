"""Kubernetes Events for the operator's decisions, attached to the group they concern.

Posted in the background, as client-go's recorder does: an Event is a record of a decision,
not a step of it, so a reconcile does not wait for the API server to store it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from .controller.conditions import now
from .kube import Kube, namespace_terminating

log = logging.getLogger(__name__)
COMPONENT = "rbg-operator"


class EventRecorder:
    def __init__(self, kube: Kube, concurrency: int = 8):
        self.kube = kube
        self._slots = asyncio.Semaphore(concurrency)  # Events must not crowd out the reconciles' requests
        self._pending: set[asyncio.Task] = set()

    async def emit(self, obj: dict, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        log.info("%s/%s: %s: %s", meta["namespace"], meta["name"], reason, message)
        task = asyncio.create_task(self._post(event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, event: dict) -> None:
        try:
            async with self._slots:
                await self.kube.create(event)
        except Exception as error:  # an Event that cannot be posted must not fail anything
            if not namespace_terminating(error):
                log.warning("could not post event %s for %s: %s", event["reason"], event["involvedObject"]["name"], error)

    async def flush(self) -> None:
        """Wait for the Events still being posted (at shutdown)."""
        await asyncio.gather(*self._pending, return_exceptions=True)
