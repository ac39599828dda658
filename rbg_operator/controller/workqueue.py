"""A coalescing work queue in the manner of client-go's: a key is queued at most once,
never processed by two workers at a time, and re-queued once if it changed meanwhile.

Failed keys come back with per-key exponential backoff; a success resets it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 60.0):
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: dict[K, float] = {}  # key -> time it was queued (for queue-duration metrics)
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: dict[K, int] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self.base_delay, self.max_delay = base_delay, max_delay
        self.on_add: Callable[[K], None] | None = None
        self.on_get: Callable[[K, float], None] | None = None

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        """Queue a key now; a key already waiting is not queued twice (bursts coalesce). A timer
        pending for it goes: the pass reads everything the timer would have brought it to, and
        returns its own time-based requeue, if it has one, again."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued[key] = time.monotonic()
        self._ready.put_nowait(key)
        if self.on_add:
            self.on_add(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue a key after a delay; an earlier pending timer for the key wins."""
        if delay <= 0:
            self.add(key)
            return
        if key in self._queued:
            return  # it will be processed soon anyway, and will read the state as it is then
        existing = self._timers.get(key)
        loop = asyncio.get_running_loop()
        if existing is not None and existing.when() <= loop.time() + delay:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def add_rate_limited(self, key: K) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, min(self.max_delay, self.base_delay * 2**failures))

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        # asyncio.Queue.get does not suspend while the queue holds something: without this, a
        # worker whose key requeues itself would never let the event loop run anything else.
        await asyncio.sleep(0)
        key = await self._ready.get()
        queued_at = self._queued.pop(key)
        self._processing.add(key)
        if self.on_get:
            self.on_get(key, time.monotonic() - queued_at)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_workers(self, count: int, handle: Callable[[K], Awaitable[None]]) -> None:
        """Run `count` workers forever; `handle` decides success, failure and re-queueing."""

        async def worker() -> None:
            while True:
                key = await self.get()
                try:
                    await handle(key)
                finally:
                    self.done(key)

        await asyncio.gather(*(worker() for _ in range(count)))
