"""One level-triggered reconcile of one RoleBasedGroup: compare what should exist with what
the store has observed, write only the difference, then report status."""

from __future__ import annotations

import dataclasses
import datetime
import logging

from .. import kinds, metrics, naming
from ..desired.gang import NATIVE_COMPOSITE, NATIVE_POD_GROUP, NATIVE_WORKLOAD
from ..desired.options import DEFAULT, BuildOptions
from ..desired.ports import keep_carried_role_ports
from ..events import EventRecorder
from ..kube import KINDS, ApiError, Kube, namespace_terminating
from .control import CONFLICT_RECHECK_SECONDS, CREATING, conflict
from .control import observe as look_up
from .diff import contains
from .group_plan import DEFAULT_PROGRESS_DEADLINE, GroupOptions, GroupPlan, plan, problem_plan
from .group_snapshot import REVISION, GroupSnapshot, observe
from .ports import PortAllocator
from .restarts import RestartSettings, RestartTracker, delete_pod
from .status import write_status
from .steps import Apply, CountRecreation, Delete, DeletePod, Emit, RecordRevision, Step, WriteRestartState
from .store import Store
from .together import together

log = logging.getLogger(__name__)

# Native gang objects whose shape cannot change in place (templates, parents): replaced instead.
RECREATE_WHEN_IMMUTABLE = {NATIVE_WORKLOAD, NATIVE_POD_GROUP, NATIVE_COMPOSITE}


class ChildConflict(Exception):
    """A child's name is taken by an object this group does not control."""


class Reconciler:
    """A group's reconcile, in four steps:

    1. observe: one snapshot of the group and everything of it in the store (group_snapshot.py),
       the pass's only store read;
    2. plan: decide from the snapshot alone, with no I/O (group_plan.py): the children to apply
       layer by layer of the roles' start order, the deletions, the restart and stuck-pod
       actions, the status and the Events, and when to look again;
    3. act: the plan's writes, in its order (the restart state, which holds a recreation's
       intent, before any delete);
    4. report: the planned status, then the Events it brings.

    A pass whose plan holds no write and no new status writes nothing.
    """

    def __init__(
        self,
        kube: Kube,
        store: Store,
        recorder: EventRecorder,
        options: BuildOptions = DEFAULT,
        restarts: RestartTracker | None = None,
        progress_deadline: float = DEFAULT_PROGRESS_DEADLINE,
        ports: PortAllocator | None = None,
    ):
        self.kube, self.store, self.recorder = kube, store, recorder
        self.restarts = restarts or RestartTracker(kube, store, recorder, RestartSettings())
        self.options = GroupOptions(options, progress_deadline, self.restarts.settings)
        self.ports = ports or PortAllocator(store, options.ports)

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Returns seconds after which to look again, when waiting on time rather than on an event."""
        snapshot = observe(self.store, namespace, name, self.options.build)  # 1. observe
        if snapshot is None:
            return None  # gone or going: owner references let garbage collection remove the children
        # The RoleScoped ports its RoleInstanceSets carry, and new ones for those they lack,
        # reserved until the writes that carry them are answered (controller/ports.py).
        role_ports, reservation = self.ports.for_group(snapshot, self.options.build)
        try:
            return await self._pass(dataclasses.replace(snapshot, ports=role_ports))
        finally:
            reservation.release()

    async def _pass(self, snapshot: GroupSnapshot) -> float | None:
        decided = plan(snapshot, self.options, _now())  # 2. plan
        body = snapshot.body
        if decided.refused:  # a spec it cannot act on: its status says why, and nothing else is written
            await self._act(snapshot, decided)
            await self._report(body, decided)
            return None
        try:
            await self._act(snapshot, decided)  # 3. act
            if decided.problem is not None:  # the writes planned before it are done
                await self._report_problem(body, *decided.problem)
                return decided.requeue_after
            await self._report(body, decided)  # 4. report
        except ChildConflict as problem:
            await self._report_problem(body, "ChildConflict", str(problem))
            return CONFLICT_RECHECK_SECONDS  # the other object carries no label of ours: no event wakes us
        except ApiError as error:
            if not namespace_terminating(error):
                await self._report_problem(body, "ReconcileError", f"the API server refused a write: {error}")
            raise  # retried with backoff
        return decided.requeue_after

    # -- 3. act ----------------------------------------------------------------------------------

    async def _act(self, snapshot: GroupSnapshot, decided: GroupPlan) -> None:
        body = snapshot.body
        for note in decided.notes:
            await self.recorder.emit(body, note.type, note.reason, note.message)
        created: list[str] = []  # what this pass created, reported as one Event
        try:
            for batch in decided.batches:
                await together(*(self._lane(snapshot, lane, created) for lane in batch))
        finally:
            if created:  # also when a later write failed: these objects exist now
                await self.recorder.emit(body, "Normal", "Created", "created " + ", ".join(created))

    async def _lane(self, snapshot: GroupSnapshot, lane: tuple[Step, ...], created: list[str]) -> None:
        body = snapshot.body
        for step in lane:
            if isinstance(step, Apply):
                await self._apply(snapshot, step, created)
            elif isinstance(step, RecordRevision):
                await self._record_revision(body, step)
            elif isinstance(step, Delete):
                await self._delete(body, step.obj, step.why)
            elif isinstance(step, DeletePod):
                if await delete_pod(self.kube, self.store, step.pod) and step.announce is not None:
                    await self._emit(body, step.announce)
            elif isinstance(step, WriteRestartState):
                await self._write_restart_state(body, step.text)
            elif isinstance(step, CountRecreation):
                metrics.group_recreations.inc()
            elif isinstance(step, Emit):
                await self._emit(body, step)
            else:
                raise TypeError(f"no way to carry out {step!r}")

    async def _emit(self, body: dict, event: Emit) -> None:
        await self.recorder.emit(body, event.type, event.reason, event.message)

    async def _apply(self, snapshot: GroupSnapshot, step: Apply, created: list[str]) -> None:
        """Apply the planned object; never write over an object this group does not control
        (control.py), whether the store showed it or not."""
        desired, observed = step.desired, step.observed
        meta = desired["metadata"]
        if observed is None:
            key = (desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
            async with CREATING.hold(key):  # looked for and created by one owner at a time
                observed = await look_up(self.store, self.kube, *key)
                problem = conflict(observed, snapshot.body)
                if problem is not None:
                    raise ChildConflict(problem)
                if observed is not None and contains(observed, desired):
                    return  # it was there already, as wanted: the cache had not shown it yet
                if observed is not None:  # ports it carries never move, though the cache missed them
                    desired = keep_carried_role_ports(desired, observed)
                await self._write(snapshot, desired, observed, created)
            return
        await self._write(snapshot, desired, observed, created)

    async def _write(self, snapshot: GroupSnapshot, desired: dict, observed: dict | None, created: list[str]) -> None:
        try:
            result = await self.kube.apply(desired)
        except ApiError as error:
            if not (
                observed is not None
                and error.status == 422
                and "immutable" in str(error)
                and (desired["apiVersion"], desired["kind"]) in RECREATE_WHEN_IMMUTABLE
            ):
                raise
            await self._delete(snapshot.body, observed, "its spec cannot change in place; creating it anew")
            result = await self.kube.apply(desired)
            await self._requeue_pending_pods(snapshot)
        self.store.upsert(result)
        if observed is None:
            created.append(f"{desired['kind']} {desired['metadata']['name']}")

    async def _requeue_pending_pods(self, snapshot: GroupSnapshot) -> None:
        """Unbound pods of a replaced gang may sit in the scheduler's backoff for minutes: their
        workload changed under them. They hold nothing yet, so recreate them to be scheduled now."""
        for pod in snapshot.pods:
            if not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                # Never bound, so the restart policies do not count it as lost.
                await delete_pod(self.kube, self.store, pod)

    async def _record_revision(self, body: dict, step: RecordRevision) -> None:
        meta = body["metadata"]
        if step.create is not None:
            key = (*REVISION, meta["namespace"], step.create["metadata"]["name"])
            async with CREATING.hold(key):
                problem = conflict(await look_up(self.store, self.kube, *key), body)
                if problem is not None:
                    raise ChildConflict(problem)
                result = await self.kube.apply(step.create)
        else:
            name, number = step.renumber
            result = await self.kube.patch(KINDS[REVISION], meta["namespace"], name, {"revision": number})
        self.store.upsert(result)
        for old in step.prune:
            await self.kube.delete(
                KINDS[REVISION], meta["namespace"], old["metadata"]["name"], uid=old["metadata"]["uid"]
            )
            self.store.remove(*REVISION, meta["namespace"], old["metadata"]["name"], old["metadata"]["uid"])

    async def _delete(self, body: dict, obj: dict, why: str) -> None:
        meta = obj["metadata"]
        existed = await self.kube.delete(
            KINDS[(obj["apiVersion"], obj["kind"])], meta["namespace"], meta["name"], uid=meta["uid"]
        )
        self.store.remove(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"], meta["uid"])
        if not existed:
            return  # someone else deleted it: nothing of ours to report
        await self.recorder.emit(body, "Normal", "Deleted", f"deleted {obj['kind']} {meta['name']}: {why}")

    async def _write_restart_state(self, body: dict, text: str) -> None:
        meta = body["metadata"]
        result = await self.kube.apply(
            {
                "apiVersion": kinds.API_VERSION,
                "kind": "RoleBasedGroup",
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "annotations": {naming.ANNOTATION_RESTART_STATE: text},
                },
            },
            manager=naming.FIELD_MANAGER_RESTARTS,
        )
        self.store.upsert(result, read_generation=meta.get("generation"))

    # -- 4. report -------------------------------------------------------------------------------

    async def _report(self, body: dict, decided: GroupPlan) -> None:
        """Write the planned status, then the Events it brings."""
        if decided.status is not None:
            await write_status(self.kube, self.store, body, decided.status)
        for event in decided.events:
            await self._emit(body, event)

    async def _report_problem(self, body: dict, reason: str, message: str) -> None:
        """What failed reaches the user: Ready=False with the reason and message, and a Warning Event
        when that message is new. Best effort: the API server may be what is failing."""
        # A conflict waits for a person; a refused write is retried, so still in progress.
        try:
            await self._report(body, problem_plan(body, reason, message, stalled=reason == "ChildConflict"))
        except ApiError as error:
            log.warning(
                "could not report %s on %s/%s: %s",
                reason,
                body["metadata"]["namespace"],
                body["metadata"]["name"],
                error,
            )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
