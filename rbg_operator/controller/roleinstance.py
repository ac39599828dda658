"""The RoleInstance controller: the pods of one instance of a role (the contract's §4.10). The
decisions are in roleinstance_plan; this module reads the cache once (observe) and makes the
writes (act, report).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from types import MappingProxyType

from .. import kinds, naming
from ..desired import inplace_scheduling
from ..events import EventRecorder
from ..kube import KINDS, Kube
from . import drain_plan, status
from .control import CREATING, conflict
from .drain import Context, Drainer
from .instanceset import owned
from .instanceset_plan import INSTANCE
from .roleinstance_plan import (
    POD,
    Create,
    Delete,
    MarkGraceStart,
    Outcome,
    RecordPlacement,
    Report,
    RoleInstancePlan,
    RoleInstanceSnapshot,
    SetPodConditions,
    UpdateInPlace,
    conclude,
    plan,
    pod_names,
)
from .status import write_status
from .store import Store

log = logging.getLogger(__name__)

FIELD_MANAGER = "rbg-operator-roleinstance"
# Writers of their own: the nodes an instance's pods ran on, and its pods' readiness-gate conditions.
PLACEMENT_MANAGER = "rbg-operator-inplace-scheduling"
READINESS_MANAGER = "rbg-operator-pod-readiness"
# A reconcile of a large instance gives the event loop back this often in its per-pod loops, so
# that lease renewal, webhooks and other reconciles are never held up by one instance.
YIELD_EVERY = 64


def observe(store: Store, namespace: str, name: str) -> RoleInstanceSnapshot | None:
    """The instance, its pods and the objects in the way of pod names it wants, from the cache:
    the pass's only read of it. None when the instance is gone or going."""
    body = store.get(*INSTANCE, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    bound = set(inplace_scheduling.bindings(body).values())
    gone = {node for node in bound if store.get(*kinds.NODE, "", node) is None}
    if gone and store.keys(*kinds.NODE):  # no node at all: the operator may not watch them
        body = inplace_scheduling.without_gone_nodes(body, gone)
    pods = {p["metadata"]["name"]: p for p in owned(store, POD, body) if not p["metadata"].get("deletionTimestamp")}
    held = {}
    for wanted in pod_names(body):
        if wanted not in pods and (found := store.get(*POD, namespace, wanted)) is not None:
            if (problem := conflict(found, body)) is not None:
                held[wanted] = problem
    drain = Context.observe(store, namespace, body)
    return RoleInstanceSnapshot(body, MappingProxyType(pods), MappingProxyType(held), drain)


def removes(action) -> str | None:
    """The pod an action deletes or changes in place (a serving pod's drain comes first)."""
    if isinstance(action, Delete | MarkGraceStart):
        return action.name
    if isinstance(action, UpdateInPlace):
        return action.slot.name
    return None


class RoleInstanceReconciler:
    """One pass over a RoleInstance:

    1. observe: the instance, its live pods and any object holding a pod name it wants, read from
       the cache once;
    2. plan: with RecreateRoleInstanceOnPodRestart and a pod that restarted, every pod goes (or,
       within the backoff, nothing moves); otherwise failed and extra pods go, missing pods are
       created once the components they start after are Ready, changed pods are updated in place
       (images only, after the grace period, their restart counts recorded first) or recreated,
       or left for InPlaceOnly;
    3. act: those writes in the plan's order, each new name checked under its lock to be absent
       or the instance's;
    4. conclude: the status counted over the pods as the writes left them, the RoleInstanceReady,
       Restarting and InPlaceUpdateBlocked conditions, the Events and when to look again;
    5. report: the Events, and the status when it changed.
    """

    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder, drainer: Drainer | None = None):
        self.kube, self.store, self.recorder = kube, store, recorder
        self.drainer = drainer or Drainer(kube, recorder)

    async def reconcile(self, namespace: str, name: str) -> float | None:
        snapshot = observe(self.store, namespace, name)
        if snapshot is None:
            return None
        now = datetime.datetime.now(datetime.UTC)
        planned = plan(snapshot, now)
        if snapshot.drain is not None:
            planned = await self.drain(snapshot, planned, now)
        outcome = await self.act(snapshot.body, planned)
        report = conclude(snapshot, planned, outcome, now)
        await self.report(snapshot.body, report)
        return report.requeue

    async def drain(
        self, snapshot: RoleInstanceSnapshot, planned: RoleInstancePlan, now: datetime.datetime
    ) -> RoleInstancePlan:
        """The plan without the deletions and in-place updates of serving pods whose drain has not
        finished (each drain advanced by one step), and with a look again while one runs."""
        going = {n for a in planned.actions if (n := removes(a)) in snapshot.pods}
        result = await self.drainer.drive(
            snapshot.drain,
            [snapshot.pods[n] for n in sorted(going)],
            [p for n, p in snapshot.pods.items() if n not in going],
            drain_plan.BY_POD,
            now,
            join_new=True,
        )
        return drain_plan.held_back(planned, removes, result.may_go, result.requeue)

    async def act(self, body: dict, planned: RoleInstancePlan) -> Outcome:
        namespace = body["metadata"]["namespace"]
        written: dict[str, dict] = {}
        held: dict[str, str] = {}
        for i, action in enumerate(planned.actions):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if isinstance(action, RecordPlacement):
                self.store.upsert(
                    await self.kube.patch(
                        KINDS[INSTANCE],
                        namespace,
                        body["metadata"]["name"],
                        {"metadata": {"annotations": {inplace_scheduling.ANNOTATION_NODES: action.nodes}}},
                        manager=PLACEMENT_MANAGER,
                    )
                )
            elif isinstance(action, SetPodConditions):
                written[action.name] = await self._store(
                    self.kube.apply(
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": {"name": action.name, "namespace": namespace},
                            "status": {"conditions": [dict(c) for c in action.conditions]},
                        },
                        subresource="status",
                        manager=READINESS_MANAGER,
                    )
                )
            elif isinstance(action, Delete):
                await self.kube.delete(KINDS[POD], namespace, action.name, uid=action.uid)
            elif isinstance(action, Create):
                result = await self._create(body, action.slot.pod(body))
                if isinstance(result, str):
                    held[action.slot.name] = result
                else:
                    written[action.slot.name] = result
            elif isinstance(action, MarkGraceStart):
                written[action.name] = await self._store(
                    self.kube.patch(
                        KINDS[POD],
                        namespace,
                        action.name,
                        {"metadata": {"labels": {naming.LABEL_IN_PLACE_SINCE: action.since}}},
                        manager=FIELD_MANAGER,
                    )
                )
            elif isinstance(action, UpdateInPlace):
                await write_status(self.kube, self.store, body, action.status_first, FIELD_MANAGER)
                written[action.slot.name] = await self._store(
                    self.kube.apply(action.slot.pod(body, like=action.like), manager=FIELD_MANAGER)
                )
        return Outcome(MappingProxyType(written), MappingProxyType(held))

    async def report(self, body: dict, report: Report) -> None:
        await status.report(self.kube, self.store, self.recorder, body, report.status, report.events, FIELD_MANAGER)

    async def _create(self, owner: dict, want: dict) -> dict | str:
        """Create a missing pod, unless the API server shows its name held by a pod the instance
        does not control (a bare pod, another owner's): that one is never written over. Returns
        the pod made, or why not."""
        meta = want["metadata"]
        async with CREATING.hold((*POD, meta["namespace"], meta["name"])):
            found = await self.kube.get(KINDS[POD], meta["namespace"], meta["name"])
            if found is not None:
                found.update(apiVersion=POD[0], kind=POD[1])
                if (problem := conflict(found, owner)) is not None:
                    return problem
            return await self._store(self.kube.apply(want, manager=FIELD_MANAGER))

    async def _store(self, write) -> dict:
        """The answer of a write, kept in the store and returned."""
        result = await write
        self.store.upsert(result)
        return result
