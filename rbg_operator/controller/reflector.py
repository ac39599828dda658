"""Reflectors: keep the store equal to one kind's objects, with informer semantics.

A reflector lists (in pages, filtered by a label selector on the server), replaces what the
store held for its scope with the list, then watches from the list's resourceVersion. A
watch that ends cleanly is resumed from the last version seen; any other end (410 Gone, a
broken or silent connection, an API server restart) lists again, and whatever vanished
meanwhile is delivered as a DELETED event, so nothing deleted during a gap stays cached.

Every change is handed to `deliver(event_type, object)`, which updates the store and wakes
the reconciles that read the object (see operator.WAKES): the reflector itself only reads
the store, to know what a relist replaces.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import aiohttp

from ..kube import ApiError, Kind, Kube
from .store import Store

log = logging.getLogger(__name__)

Deliver = Callable[[str, dict], None]


class Reflector:
    def __init__(self, kube: Kube, store: Store, kind: Kind, deliver: Deliver, *, namespace: str | None = None,
                 label_selector: str | None = None, keep: Callable[[str], bool] = lambda namespace: True,
                 idle_timeout: float | None = None, watch_seconds: int = 300):
        self.kube, self.store, self.kind, self.deliver = kube, store, kind, deliver
        self.namespace, self.label_selector, self.keep = namespace, label_selector, keep
        self.idle_timeout, self.watch_seconds = idle_timeout, watch_seconds
        self.synced = asyncio.Event()  # set after the first complete list

    def __repr__(self) -> str:
        scope = self.namespace or "all namespaces"
        return f"reflector of {self.kind.kind} ({self.kind.api_version}) in {scope}"

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._relist()
                failures = 0
                while True:  # a clean end of a watch resumes from the last version: no gap
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 404:  # the kind is not served (its CRD is not installed, a gate is off)
                    self.store.mark_served(self.kind.api_version, self.kind.kind, False)
                    self.synced.set()
                    await asyncio.sleep(30)
                    continue
                failures += 1
                if error.status != 410:
                    log.warning("%s: %s; listing again", self, error)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError) as error:
                failures += 1
                log.info("%s: watch broke (%s); listing again", self, type(error).__name__)
            # Back off on repeated failures (an API server that is down), with jitter so the
            # reflectors of every kind do not list again in lockstep.
            await asyncio.sleep(min(30.0, 0.2 * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0) if failures > 1 else 0)

    async def _relist(self) -> str:
        """List everything in scope and make the store say exactly that."""
        api_version, kind = self.kind.api_version, self.kind.kind
        listed: set[tuple[str, str]] = set()
        version = ""
        async for page, version in self.kube.list_pages(self.kind, self.namespace, self.label_selector):
            for item in page:
                meta = item["metadata"]
                if not self.keep(meta.get("namespace", "")):
                    continue
                key = (meta.get("namespace", ""), meta["name"])
                listed.add(key)
                obj = {"apiVersion": api_version, "kind": kind, **item}
                cached_uid = self.store.uid_of(api_version, kind, *key)
                if cached_uid is not None and cached_uid != meta.get("uid"):
                    self._vanished(key)  # deleted and created again under the same name meanwhile
                self.deliver("ADDED" if cached_uid is None else "MODIFIED", obj)
        for key in self.store.keys(api_version, kind, self.namespace):
            if key not in listed and self.keep(key[0]):
                self._vanished(key)
        self.store.mark_served(api_version, kind, True)
        self.synced.set()
        return version

    def _vanished(self, key: tuple[str, str]) -> None:
        gone = self.store.get(self.kind.api_version, self.kind.kind, *key)
        if gone is not None:
            log.debug("%s: %s/%s was deleted while the watch was down", self, *key)
            self.deliver("DELETED", gone)

    async def _watch(self, version: str) -> str:
        """Deliver events until the server ends the watch; returns the last version seen."""
        seconds = int(self.watch_seconds * random.uniform(1.0, 2.0))  # spread reconnects, as client-go does
        async for event in self.kube.watch(self.kind, self.namespace, version, seconds=seconds,
                                           label_selector=self.label_selector, idle_timeout=self.idle_timeout):
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            if event.get("type") == "BOOKMARK" or not self.keep(meta.get("namespace", "")):
                continue
            self.deliver(event["type"], {"apiVersion": self.kind.api_version, "kind": self.kind.kind, **obj})
        return version
