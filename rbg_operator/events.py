"""Kubernetes Events for the operator's decisions, attached to the group they concern.

Posted in the background, as client-go's recorder does: an Event is a record of a decision,
not a step of it, so a reconcile does not wait for the API server to store it. Like client-go's
broadcaster, the recorder holds a bounded backlog and drops what does not fit, with a warning:
a storm of decisions (thousands of groups created at once, pods failing everywhere) must not
cost the operator its memory. And like client-go's correlator, each object may post a burst of
25 Events and then one every 5 minutes: one noisy tenant's object cannot fill the backlog that
every tenant's Events share.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from .kube import Kube, namespace_terminating
from .timestamps import now

log = logging.getLogger(__name__)
COMPONENT = "rbg-operator"


class SpamFilter:
    """A token bucket per involved object (client-go's EventSourceObjectSpamFilter: burst 25, one
    more every 300 s), over the most recent `objects` objects."""

    def __init__(
        self,
        burst: int = 25,
        refill_seconds: float = 300.0,
        objects: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.burst, self.refill_seconds, self.objects, self.clock = burst, refill_seconds, objects, clock
        self._buckets: OrderedDict[tuple, tuple[float, float]] = OrderedDict()  # key -> (tokens, when)

    def allow(self, key: tuple) -> bool:
        at = self.clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), at))
        tokens = min(float(self.burst), tokens + (at - then) / self.refill_seconds)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, at)
        if len(self._buckets) > self.objects:
            self._buckets.popitem(last=False)  # the least recently seen object starts afresh later
        return allowed


class EventRecorder:
    def __init__(self, kube: Kube, concurrency: int = 8, backlog: int = 1000, spam: SpamFilter | None = None):
        self.kube = kube
        self.spam = spam or SpamFilter()
        self.filtered = 0
        self._concurrency = concurrency  # posters: Events must not crowd out the reconciles' requests
        self._backlog: asyncio.Queue[dict] = asyncio.Queue(maxsize=backlog)
        self._posters: list[asyncio.Task] = []
        self.dropped = 0

    async def emit(self, obj: dict, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
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
        if not self.spam.allow((obj["kind"], meta["namespace"], meta["name"], meta.get("uid"))):
            self.filtered += 1  # the log line above keeps the decision; the Event is spam
            return
        if not self._posters:  # started here, where an event loop surely runs
            self._posters = [asyncio.create_task(self._post_backlog()) for _ in range(self._concurrency)]
        try:
            self._backlog.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "%d Events dropped so far: %d are waiting to be posted already (the newest dropped: %s for %s)",
                    self.dropped,
                    self._backlog.maxsize,
                    reason,
                    meta["name"],
                )

    async def _post_backlog(self) -> None:
        while True:
            event = await self._backlog.get()
            try:
                await self.kube.create(event)
            except Exception as error:  # an Event that cannot be posted must not fail anything
                if not namespace_terminating(error):
                    log.warning(
                        "could not post event %s for %s: %s", event["reason"], event["involvedObject"]["name"], error
                    )
            finally:
                self._backlog.task_done()

    async def flush(self) -> None:
        """Wait for the Events still waiting to be posted (at shutdown)."""
        await self._backlog.join()

    async def close(self) -> None:
        for poster in self._posters:
            poster.cancel()
        await asyncio.gather(*self._posters, return_exceptions=True)
        self._posters = []
