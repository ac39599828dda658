"""Reflectors: keep the store equal to one kind's objects, with informer semantics.

A reflector lists (in pages, filtered by a label selector on the server), replaces what the
store held for its scope with the list, then watches from the list's resourceVersion. A
watch that ends cleanly is resumed from the last version seen; any other end (410 Gone, a
broken or silent connection, an API server restart) lists again, and whatever vanished
meanwhile is delivered as a DELETED event, so nothing deleted during a gap stays cached.

Every change is handed to `deliver(event_type, object)`, which updates the store and wakes
the reconciles that read the object (see controller/wakes.py): the reflector itself only reads
the store, to know what a relist replaces.

An object that cannot be decoded or cached (nested deeper than the decoder or the store's
encoder goes) costs that object alone: it is dropped from the store, handed to `report`, and
every other object goes on, so one tenant's hostile object never stops a list or a watch.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from .. import metrics
from ..kube import ApiError, Kind, Kube, Unreadable
from .store import Store

log = logging.getLogger(__name__)

Deliver = Callable[[str, dict], None]
# (the kind, what could be read of the object's metadata, why it was skipped)
Report = Callable[[Kind, dict, str], None]


def _ignore(kind: Kind, metadata: dict, reason: str) -> None:
    pass


class Reflector:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        kind: Kind,
        deliver: Deliver,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        keep: Callable[[str], bool] = lambda namespace: True,
        idle_timeout: float | None = None,
        watch_seconds: int = 300,
        report: Report = _ignore,
    ):
        self.kube, self.store, self.kind, self.deliver = kube, store, kind, deliver
        self.namespace, self.label_selector, self.keep = namespace, label_selector, keep
        self.idle_timeout, self.watch_seconds = idle_timeout, watch_seconds
        self.report = report
        self.synced = asyncio.Event()  # set after the first complete list
        # Since when the store may not say what the server holds (no list done since the start
        # or since the last failure); None while it is current. The liveness check reads it.
        self.behind_since: float | None = time.monotonic()

    def __repr__(self) -> str:
        scope = self.namespace or "all namespaces"
        return f"reflector of {self.kind.kind} ({self.kind.api_version}) in {scope}"

    async def run_supervised(self, restart_delay: float = 1.0) -> None:
        """run(), started again whenever it dies of something unforeseen: logged, counted, and
        never silent, since no one awaits the task."""
        while True:
            try:
                await self.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.behind_since = self.behind_since or time.monotonic()
                metrics.reflector_restarts.labels(self.kind.plural).inc()
                log.exception("%s died; starting it again in %gs", self, restart_delay)
                await asyncio.sleep(restart_delay)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                version = await self._relist()
                failures = 0
                self.behind_since = None
                while True:  # a clean end of a watch resumes from the last version: no gap
                    version = await self._watch(version)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 404:  # the kind is not served (its CRD is not installed, a gate is off)
                    self.store.mark_served(self.kind.api_version, self.kind.kind, False)
                    self.synced.set()
                    self.behind_since = None
                    await asyncio.sleep(30)
                    continue
                failures += 1
                if error.status != 410:
                    log.warning("%s: %s; listing again", self, error)
            except (TimeoutError, aiohttp.ClientError, ConnectionError, ValueError) as error:
                failures += 1
                log.info("%s: watch broke (%s); listing again", self, type(error).__name__)
            self.behind_since = self.behind_since or time.monotonic()
            # Back off on repeated failures (an API server that is down), with jitter so the
            # reflectors of every kind do not list again in lockstep.
            await asyncio.sleep(
                min(30.0, 0.2 * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0) if failures > 1 else 0
            )

    async def _relist(self) -> str:
        """List everything in scope and make the store say exactly that."""
        api_version, kind = self.kind.api_version, self.kind.kind
        listed: set[tuple[str, str]] = set()
        version = ""
        async for page, version in self.kube.list_pages(
            self.kind, self.namespace, self.label_selector, item_by_item=True
        ):
            for item in page:
                meta = item.metadata if isinstance(item, Unreadable) else item.get("metadata") or {}
                if not self.keep(meta.get("namespace", "")):
                    continue
                key = (meta.get("namespace", ""), meta.get("name"))
                if key[1]:
                    listed.add(key)  # there, even if unreadable: not a deletion
                if isinstance(item, Unreadable):
                    self._skip(meta, f"does not decode ({item.error})")
                    continue
                obj = {"apiVersion": api_version, "kind": kind, **item}
                cached_uid = self.store.uid_of(api_version, kind, *key)
                if cached_uid is not None and cached_uid != meta.get("uid"):
                    self._vanished(key, version)  # deleted and created again under the same name meanwhile
                self._deliver("ADDED" if cached_uid is None else "MODIFIED", obj)
        for key in self.store.keys(api_version, kind, self.namespace):
            if key not in listed and self.keep(key[0]):
                self._vanished(key, version)
        self.store.mark_served(api_version, kind, True)
        self.synced.set()
        return version

    def _vanished(self, key: tuple[str, str], version: str) -> None:
        gone = self.store.get(self.kind.api_version, self.kind.kind, *key)
        if gone is not None:
            log.debug("%s: %s/%s was deleted while the watch was down", self, *key)
            # Gone as of the list's version (or it left the label selector by then).
            gone["metadata"]["resourceVersion"] = version or gone["metadata"].get("resourceVersion")
            self._deliver("DELETED", gone)

    def _deliver(self, event_type: str, obj: dict) -> None:
        try:
            self.deliver(event_type, obj)
        except Exception as error:  # this object alone; the list or watch goes on
            log.debug("%s: cannot cache %s", self, obj.get("metadata"), exc_info=True)
            self._skip(obj.get("metadata") or {}, f"cannot be cached ({type(error).__name__}: {error})")

    def _skip(self, meta: dict, reason: str) -> None:
        """Leave an object out of the store: an old copy would be read as current."""
        if meta.get("name"):
            self.store.forget(self.kind.api_version, self.kind.kind, meta.get("namespace", ""), meta["name"])
        self.report(self.kind, meta, reason)

    async def _watch(self, version: str) -> str:
        """Deliver events until the server ends the watch; returns the last version seen."""
        seconds = int(self.watch_seconds * random.uniform(1.0, 2.0))  # spread reconnects, as client-go does
        async for event in self.kube.watch(
            self.kind,
            self.namespace,
            version,
            seconds=seconds,
            label_selector=self.label_selector,
            idle_timeout=self.idle_timeout,
        ):
            obj = event.get("object") or {}
            unreadable = isinstance(obj, Unreadable)
            meta = obj.metadata if unreadable else obj.get("metadata") or {}
            version = meta.get("resourceVersion") or version
            if event.get("type") == "BOOKMARK" or not self.keep(meta.get("namespace", "")):
                continue
            if unreadable and not (event.get("type") == "DELETED" and meta.get("name")):
                self._skip(meta, f"does not decode ({obj.error})")
                continue
            body = {"metadata": meta} if unreadable else obj  # a deletion needs only the metadata
            self._deliver(event["type"], {"apiVersion": self.kind.api_version, "kind": self.kind.kind, **body})
        return version
