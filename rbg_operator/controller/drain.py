"""Drain-aware removal of serving pods: the writes and the HTTP calls (the decisions are in
drain_plan; docs/drain.md).

The router is sglang-router's worker-management API, as version 0.3.2 serves it: `GET /workers`
lists `{id, url, worker_type, ...}`, `DELETE /workers/{id}` removes one (in-flight requests
finish; 404 once gone), `POST /workers {url, worker_type, bootstrap_port}` adds one (idempotent
for a URL). A worker's own load is SGLang's `GET /get_load` (a list with `num_reqs` per data-
parallel rank). Every call is async with a short timeout, so a router that hangs never holds the
event loop or a reconcile for long.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Iterable

import aiohttp

from .. import metrics
from ..api import drain
from ..events import EventRecorder
from ..kinds import POD, ROLE_BASED_GROUP
from ..kube import KINDS, ApiError, Kube
from . import drain_plan
from .drain_plan import DrainState, Finish, Seen
from .store import Store

log = logging.getLogger(__name__)

HTTP_TIMEOUT = aiohttp.ClientTimeout(total=3, connect=2)


class Router:
    """The HTTP side: the routers' worker lists and a worker's load. One session, made lazily."""

    def __init__(self, timeout: aiohttp.ClientTimeout = HTTP_TIMEOUT):
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # trust_env off: no proxy from the environment between the operator and pod addresses
            self._session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def workers(self, router: str) -> list[dict]:
        async with self.session().get(f"{router}/workers") as answer:
            answer.raise_for_status()
            body = await answer.json(content_type=None)
        workers = body.get("workers") if isinstance(body, dict) else None
        if not isinstance(workers, list):
            raise ValueError("GET /workers: no worker list in the answer")
        return [w for w in workers if isinstance(w, dict) and isinstance(w.get("url"), str)]

    async def remove(self, router: str, worker_id: str) -> None:
        async with self.session().delete(f"{router}/workers/{worker_id}") as answer:
            if answer.status != 404:  # gone already
                answer.raise_for_status()

    async def add(self, router: str, url: str, role: drain.WorkerRole) -> None:
        body: dict = {"url": url, "worker_type": role.worker_type}
        if role.bootstrap_port is not None:
            body["bootstrap_port"] = role.bootstrap_port
        async with self.session().post(f"{router}/workers", json=body) as answer:
            answer.raise_for_status()

    async def in_flight(self, url: str) -> int:
        async with self.session().get(f"{url}/get_load") as answer:
            answer.raise_for_status()
            body = await answer.json(content_type=None)
        ranks = body if isinstance(body, list) else [body]
        return sum(int(r.get("num_reqs", 0)) + int(r.get("num_waiting_reqs", 0)) for r in ranks if isinstance(r, dict))


def _why(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a pass knows of the pod's group for draining: read from the cache in observe."""

    group: dict
    config: drain.DrainConfig
    routers: tuple[str, ...]  # the router pods' addresses
    routers_ready_since: datetime.datetime | None = None  # drain_plan.routers_ready_since

    @classmethod
    def observe(cls, store: Store, namespace: str, obj: dict) -> Context | None:
        """The drain context of a group's child (instance or set); None when its group has no
        (readable) drain annotation."""
        name = drain_plan.group_of(obj)
        if not name:
            return None
        group = store.get(*ROLE_BASED_GROUP, namespace, name)
        config = drain.of((group or {}).get("metadata", {}).get("annotations")) if group else None
        if config is None:
            return None
        router_pods = store.in_role(*POD, namespace, name, config.router)
        routers = drain_plan.router_addresses(router_pods, config)
        return cls(group, config, tuple(routers), drain_plan.routers_ready_since(router_pods, config))


@dataclasses.dataclass(frozen=True)
class Result:
    may_go: frozenset[str]  # of the pods asked about, those that may be deleted or updated now
    requeue: float | None


class Drainer:
    def __init__(self, kube: Kube, recorder: EventRecorder, router: Router | None = None):
        self.kube, self.recorder = kube, recorder
        self.router = router or Router()

    async def drive(
        self,
        ctx: Context,
        going: Iterable[dict],
        others: Iterable[dict],
        by: str,
        now: datetime.datetime,
        join_new: bool,
    ) -> Result:
        """One pass over the pods of one controller: `going`, the pods it wants to delete or update
        (each drained first, or let go); `others`, its pods that stay (joined to the routers when
        new or updated and Ready, or when a drain of theirs is no longer wanted)."""
        going = list(going)
        names = [p["metadata"]["name"] for p in going]
        ok: set[str] = set()
        requeue: float | None = None

        def again(seconds: float) -> None:
            nonlocal requeue
            requeue = seconds if requeue is None else min(requeue, seconds)

        # Side by side: one pod's slow answer does not hold the others' drains.
        async def one(pod: dict) -> None:
            if drain_plan.may_go(pod, ctx.config):
                ok.add(pod["metadata"]["name"])
                return
            try:
                if await self._drain(ctx, pod, by, now):
                    again(0.1)  # may go on the next pass
                else:
                    again(drain_plan.POLL_SECONDS)
            except ApiError as error:
                if error.status not in (404, 409):  # changed meanwhile: read again
                    raise
                again(drain_plan.POLL_SECONDS)

        async def rejoin(pod: dict) -> None:
            cancelled = drain_plan.cancelled(pod, ctx.config, by, names)
            if not (cancelled or (join_new and drain_plan.needs_join(pod, ctx.config))):
                return
            if not cancelled and (wait := drain_plan.join_wait(pod, ctx.routers_ready_since, now)) is not None:
                again(wait)
                return
            try:
                if not await self._join(ctx, pod, cancelled):
                    again(drain_plan.JOIN_RETRY_SECONDS)
            except ApiError as error:
                if error.status not in (404, 409):
                    raise
                again(drain_plan.POLL_SECONDS)

        async with asyncio.TaskGroup() as tasks:
            for pod in going:
                tasks.create_task(one(pod))
            for pod in others:
                tasks.create_task(rejoin(pod))
        return Result(frozenset(ok), requeue)

    async def _drain(self, ctx: Context, pod: dict, by: str, now: datetime.datetime) -> bool:
        """One step of the pod's drain; True when it finished (the pod may go on the next pass)."""
        config, name = ctx.config, pod["metadata"]["name"]
        state = DrainState.of(pod)
        if state is None or state.phase != drain_plan.DRAINING or state.revision != drain_plan.revision(pod):
            # Persisted before the router is told: a new leader finds the drain and its start.
            state = drain_plan.start(pod, by, now)
            pod = await self._write(pod, state)
            await self._event(
                ctx,
                pod,
                "Normal",
                "DrainStarted",
                f"taking {name} out of the router before it is {'updated' if by == 'pod' else 'removed'} "
                f"(timeout {config.timeout_seconds}s)",
            )
        seen = await self._look(ctx, pod)
        decision = drain_plan.decide(state, seen, config.timeout_seconds, now)
        if isinstance(decision, Finish):
            await self._write(pod, decision.state)
            self._record(decision)
            outcome = decision.state.outcome
            if outcome == "Drained":
                message = f"{name} drained in {decision.seconds:.1f}s: out of the router, no request in flight"
                await self._event(ctx, pod, "Normal", "Drained", message)
            else:
                message = (
                    f"{name}: drain cut short after {decision.seconds:.0f}s ({decision.state.why}); going on without it"
                )
                await self._event(ctx, pod, "Warning", "DrainCutShort", message)
            return True
        if decision.state.why != state.why or decision.state.url != state.url:
            await self._write(pod, decision.state)
        return False

    async def _look(self, ctx: Context, pod: dict) -> Seen:
        """Remove the pod from every router that lists it, and read its load."""
        role = drain_plan.worker_role(pod, ctx.config)
        assert role is not None
        removed, errors, url = 0, [], None

        async def router_pass(router: str) -> None:
            nonlocal removed, url
            try:
                listed = [w for w in await self.router.workers(router) if drain_plan.matches(w["url"], pod)]
                for worker in listed:
                    url = url or worker["url"]
                    await self.router.remove(router, str(worker.get("id") or worker["url"]))
                if listed:  # removal is queued in the router: look again
                    listed = [w for w in await self.router.workers(router) if drain_plan.matches(w["url"], pod)]
                if not listed:
                    removed += 1
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                errors.append(f"{router}: {_why(error)}")

        await asyncio.gather(*(router_pass(r) for r in ctx.routers))
        in_flight, load_error = None, None
        ip = drain_plan.pod_ip(pod)
        if ip is None:
            load_error = "the pod has no address"
        else:
            try:
                in_flight = await self.router.in_flight(f"http://{ip}:{role.port}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                load_error = _why(error)
        return Seen(len(ctx.routers), removed, tuple(errors), in_flight, load_error, url)

    async def _join(self, ctx: Context, pod: dict, cancelled: bool) -> bool:
        """Add a Ready pod to every router that lacks it, then record it joined; False when a router
        could not be told (tried again later)."""
        role = drain_plan.worker_role(pod, ctx.config)
        assert role is not None
        if not ctx.routers:
            return False
        url = drain_plan.join_url(pod, role)
        failed = []

        async def router_pass(router: str) -> None:
            try:
                if not any(drain_plan.matches(w["url"], pod) for w in await self.router.workers(router)):
                    await self.router.add(router, url, role)
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                failed.append(f"{router}: {_why(error)}")

        await asyncio.gather(*(router_pass(r) for r in ctx.routers))
        if failed:
            log.info("%s: not joined to the router yet: %s", pod["metadata"]["name"], failed[0])
            return False
        await self._write(pod, DrainState(drain_plan.JOINED, revision=drain_plan.revision(pod), url=url))
        if cancelled:
            await self._event(
                ctx, pod, "Normal", "DrainCancelled", f"{pod['metadata']['name']} stays: back in the router"
            )
        return True

    async def _write(self, pod: dict, state: DrainState) -> dict:
        """The pod with its new drain state: a merge patch of the one annotation, conditional on the
        version read, so a second writer (a deposed leader) gets 409 instead of overwriting a newer
        state. (The cache's pods are slim: never written back whole.)"""
        meta = pod["metadata"]
        return await self.kube.patch(
            KINDS[POD],
            meta["namespace"],
            meta["name"],
            drain_plan.state_patch(pod, state),
            manager=drain_plan.FIELD_MANAGER,
        )

    async def _event(self, ctx: Context, pod: dict, type_: str, reason: str, message: str) -> None:
        await self.recorder.emit({**pod, "apiVersion": "v1", "kind": "Pod"}, type_, reason, message)

    @staticmethod
    def _record(decision: Finish) -> None:
        outcome = decision.state.outcome or "Drained"
        metrics.drain_seconds.labels(outcome).observe(decision.seconds)
        if outcome != "Drained":
            metrics.drains_cut_short.labels(outcome).inc()
            metrics.drain_in_flight_at_timeout.inc(decision.state.in_flight or 0)
