"""The RoleInstanceSet controller: RoleInstances `{ris}-{ordinal}` like a StatefulSet of instances
(Stateful mode), or `{ris}-{id}` like a CloneSet's pods (Stateless mode; the contract's §4.9). The
decisions are in instanceset_modes and the planners it picks; this module reads the cache once
(observe) and makes the writes (act, report).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from types import MappingProxyType

from .. import naming
from ..desired.options import PortSettings
from ..desired.ports import keep_carried_pod_ports
from ..events import EventRecorder
from ..kinds import POD
from ..kube import KINDS, Kube
from . import drain_plan, status
from .control import CREATING, conflict
from .diff import contains
from .drain import Context, Drainer
from .instanceset_modes import plan
from .instanceset_plan import (
    INSTANCE,
    INSTANCE_SET,
    Event,
    InstanceSetPlan,
    InstanceSetSnapshot,
    Outcome,
    Report,
    conclude,
    view,
)
from .instanceset_stateless import LABEL_LIFECYCLE_STATE, LABEL_LIFECYCLE_TIMESTAMP
from .ports import RETRY_SECONDS, PortAllocator
from .store import Store

log = logging.getLogger(__name__)

FIELD_MANAGER = "rbg-operator-instanceset"


def owned(store: Store, kind: tuple[str, str], owner: dict) -> list[dict]:
    """Objects of `kind` whose controller is `owner`: from the group's index when the owner
    carries the group labels (a group's children), else from its namespace."""
    meta = owner["metadata"]
    labels = meta.get("labels") or {}
    group, role = labels.get(naming.LABEL_GROUP_NAME), labels.get(naming.LABEL_ROLE)
    candidates = (
        store.in_role(*kind, meta["namespace"], group, role)
        if group and role
        else store.in_namespace(*kind, meta["namespace"])
    )
    return [
        o
        for o in candidates
        if any(
            r.get("controller") and r.get("uid") == meta.get("uid") for r in o["metadata"].get("ownerReferences") or []
        )
    ]


def observe(store: Store, namespace: str, name: str) -> InstanceSetSnapshot | None:
    """The set, its instances and the objects in the way of the names it may create, from the
    cache: the pass's only read of it. None when the set is gone or going (owner references
    take the instances and their pods away)."""
    body = store.get(*INSTANCE_SET, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    instances = tuple(owned(store, INSTANCE, body))
    views = tuple(view(i, name) for i in instances)
    # The most a plan can create: the replicas and a surge of at most as many again.
    spec = body.get("spec") or {}
    replicas = spec.get("replicas", 1)
    ours = {v.name for v in views}
    held = {}
    for ordinal in range(2 * replicas if isinstance(replicas, int) else 0):
        wanted = naming.instance_name(name, ordinal)
        if wanted not in ours and (found := store.get(*INSTANCE, namespace, wanted)) is not None:
            if (problem := conflict(found, body)) is not None:
                held[wanted] = problem
    drain = Context.observe(store, namespace, body)
    pods: dict[str, tuple[dict, ...]] = {}
    if drain is not None:
        labels = body["metadata"].get("labels") or {}
        # Pods of live instances only: those of an instance already deleted are going, their drain
        # done; seen as staying, they would be put back into the router.
        alive = {i["metadata"]["name"] for i in instances if not i["metadata"].get("deletionTimestamp")}
        for pod in store.in_role(*POD, namespace, labels.get(naming.LABEL_GROUP_NAME), labels.get(naming.LABEL_ROLE)):
            instance = (pod["metadata"].get("labels") or {}).get(naming.LABEL_V2_INSTANCE_NAME) or ""
            if not pod["metadata"].get("deletionTimestamp") and instance in alive:
                pods[instance] = (*pods.get(instance, ()), pod)
    return InstanceSetSnapshot(body, instances, views, MappingProxyType(held), drain, MappingProxyType(pods))


class InstanceSetReconciler:
    """One pass over a RoleInstanceSet:

    1. observe: the set, its instances and any object holding a name it may create, read from
       the cache once;
    2. plan: the instances to create and rewrite (none past the fan-out bound), and to delete
       (strays, scale-in highest first, and updates that only recreating can do);
    3. act: create and rewrite them, each name checked under its lock to be absent or the set's,
       then delete;
    4. conclude: the status counted over the instances as the writes left them, the FailedUpdate,
       FailedCreate and FailedScale conditions, the Events and when to look again;
    5. report: the Events, and the status when it changed.
    """

    def __init__(
        self,
        kube: Kube,
        store: Store,
        recorder: EventRecorder,
        ports: PortAllocator | None = None,
        drainer: Drainer | None = None,
    ):
        self.kube, self.store, self.recorder = kube, store, recorder
        self.ports = ports or PortAllocator(store, PortSettings())
        self.drainer = drainer or Drainer(kube, recorder)

    async def reconcile(self, namespace: str, name: str) -> float | None:
        snapshot = observe(self.store, namespace, name)
        if snapshot is None:
            return None
        # The PodScoped ports of the instances it writes: kept, or new ones reserved until the
        # writes are answered (controller/ports.py).
        planned, reservation, exhausted = self.ports.for_instances(snapshot, plan(snapshot))
        requeue = None
        if snapshot.drain is not None:
            planned, requeue = await self.drain(snapshot, planned)
        try:
            outcome = await self.act(snapshot.body, planned)
        finally:
            reservation.release()
        report = conclude(snapshot, planned, outcome, datetime.datetime.now(datetime.UTC))
        if exhausted:
            message = f"port allocator: {exhausted}; instances that need a port wait for one"
            report = dataclasses.replace(
                report,
                events=(*report.events, Event("Warning", "PortsExhausted", message)),
                requeue=min(report.requeue or RETRY_SECONDS, RETRY_SECONDS),
            )
        if requeue is not None:
            report = dataclasses.replace(report, requeue=min(report.requeue or requeue, requeue))
        await self.report(snapshot.body, report)
        return report.requeue

    async def drain(
        self, snapshot: InstanceSetSnapshot, planned: InstanceSetPlan
    ) -> tuple[InstanceSetPlan, float | None]:
        """The plan without the deletions of instances whose serving pods have not finished
        draining (each drain advanced by one step); the other pods' drains that this set started
        and no longer wants are undone."""
        going = {name for name, _ in planned.delete}
        pods = [(instance, p) for instance, found in snapshot.pods.items() for p in found]
        result = await self.drainer.drive(
            snapshot.drain,
            [p for instance, p in pods if instance in going],
            [p for instance, p in pods if instance not in going],
            drain_plan.BY_INSTANCE,
            datetime.datetime.now(datetime.UTC),
            join_new=False,
        )
        waiting = {i for i, p in pods if i in going and p["metadata"]["name"] not in result.may_go}
        if not waiting:
            return planned, result.requeue
        delete = tuple((n, u) for n, u in planned.delete if n not in waiting)
        deleted = tuple(n for n in planned.deleted if n not in waiting)
        return dataclasses.replace(planned, delete=delete, deleted=deleted), result.requeue

    async def act(self, body: dict, planned: InstanceSetPlan) -> Outcome:
        written, held = [], {}
        for ordinal, want in planned.create:
            result = await self._create(body, want)
            if isinstance(result, str):
                held[ordinal] = result
            elif result is not None:
                written.append(result)
        for want in planned.update:
            written.append(await self._write(want))
        namespace = body["metadata"]["namespace"]
        for name, state in planned.mark:  # held by a lifecycle hook: say so, and wait
            labels = {LABEL_LIFECYCLE_STATE: state, LABEL_LIFECYCLE_TIMESTAMP: str(int(time.time()))}
            self.store.upsert(
                await self.kube.patch(
                    KINDS[INSTANCE], namespace, name, {"metadata": {"labels": labels}}, manager=FIELD_MANAGER
                )
            )
        for name, uid in planned.delete:
            await self.kube.delete(KINDS[INSTANCE], namespace, name, uid=uid)
        return Outcome(tuple(written), MappingProxyType(held))

    async def report(self, body: dict, report: Report) -> None:
        await status.report(self.kube, self.store, self.recorder, body, report.status, report.events, FIELD_MANAGER)

    async def _create(self, owner: dict, want: dict) -> dict | str | None:
        """Create an instance the cache does not show, unless the API server shows its name held
        by an object the set does not control: then why not. None when it is there already, as
        wanted."""
        meta = want["metadata"]
        async with CREATING.hold((*INSTANCE, meta["namespace"], meta["name"])):
            found = await self.kube.get(KINDS[INSTANCE], meta["namespace"], meta["name"])
            if found is not None:
                found.update(apiVersion=INSTANCE[0], kind=INSTANCE[1])
                if (problem := conflict(found, owner)) is not None:
                    return problem
                if contains(found, want):
                    return None
                want = keep_carried_pod_ports(want, found)  # its ports never move, though the cache missed them
            return await self._write(want)

    async def _write(self, want: dict) -> dict:
        result = await self.kube.apply(want, manager=FIELD_MANAGER)
        self.store.upsert(result)
        return result
