"""Reconcilers of the scaling kinds.

RoleBasedGroupScalingAdapter: its spec.replicas (what `kubectl scale` and an HPA write
through the scale subresource) becomes the replicas of one role of one group; its status
mirrors that role. RoleBasedGroupSet: `replicas` groups made from one template, updated
one at a time, scaled in from the highest index. The decisions are in scaling_plan; the
reconcilers here read the cache once (observe_*) and make the writes.
"""

from __future__ import annotations

import datetime
import logging

import pydantic

from .. import naming
from ..api.errors import describe
from ..api.scalingadapter import RoleBasedGroupScalingAdapterSpec
from ..api.v1alpha2 import RoleBasedGroupSetSpecV2
from ..events import EventRecorder
from ..kube import KINDS, Kube
from .control import CREATING, conflict, controlled_by
from .scaling_plan import (
    ADAPTER,
    GROUP_SET,
    RBG,
    AdapterSnapshot,
    GroupSetSnapshot,
    conclude_group_set,
    plan_adapter,
    plan_group_set,
    plan_rollout,
    role_replicas_path,
)
from .status import write_status
from .store import Store, other_owner

log = logging.getLogger(__name__)

ADAPTER_MANAGER, SET_MANAGER = naming.FIELD_MANAGER_SCALING_ADAPTER, naming.FIELD_MANAGER_GROUP_SET


def observe_adapter(store: Store, namespace: str, name: str) -> AdapterSnapshot | None:
    """The adapter, decoded, and the group it targets, from the cache: the pass's only read of
    it. None when the adapter is gone or going, or its spec does not validate (said in the log)."""
    body = store.get(*ADAPTER, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = RoleBasedGroupScalingAdapterSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as error:
        log.warning("%s/%s: %s", namespace, name, describe(error))
        return None
    return AdapterSnapshot(body, spec, store.get(*RBG, namespace, spec.scale_target_ref.name))


class AdapterReconciler:
    """One pass over a RoleBasedGroupScalingAdapter:

    1. observe: the adapter and its target group, read from the cache once;
    2. plan: unbound while the role is missing; seeded once from the role; else the role's
       replicas set to the adapter's, and the status mirrored from the role;
    3. act: the seed, or the guarded patch of the role's replicas, and its Event;
    4. report: the status when it changed.
    """

    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder

    async def reconcile(self, namespace: str, name: str) -> None:
        snapshot = observe_adapter(self.store, namespace, name)
        if snapshot is None:
            return
        planned = plan_adapter(snapshot, datetime.datetime.now(datetime.UTC))
        if planned.seed is not None:
            self.store.upsert(
                await self.kube.patch(
                    KINDS[ADAPTER], namespace, name, {"spec": {"replicas": planned.seed}}, manager=ADAPTER_MANAGER
                )
            )
            return
        if planned.scale is not None:
            self.store.upsert(
                await self.kube.patch(
                    KINDS[RBG],
                    namespace,
                    planned.scale.group,
                    planned.scale.patch(),
                    patch_type="json",
                    manager=ADAPTER_MANAGER,
                )
            )
        for event in planned.events:
            await self.recorder.emit(snapshot.body, event.type, event.reason, event.message)
        await write_status(self.kube, self.store, snapshot.body, planned.status, ADAPTER_MANAGER)


def observe_group_set(store: Store, namespace: str, name: str) -> GroupSetSnapshot | None:
    """The set, decoded, the member groups it controls, the groups in the way of member names,
    and who owns each member role's replicas, from the cache: the pass's only read of it."""
    body = store.get(*GROUP_SET, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = RoleBasedGroupSetSpecV2.model_validate(body.get("spec") or {}, context={"stored": True})
    except pydantic.ValidationError as error:
        return GroupSetSnapshot(body, None, describe(error), {})
    meta = body["metadata"]
    members = {
        int(g["metadata"]["labels"][naming.LABEL_SET_INDEX]): g
        for g in store.owned_by_label(*RBG, namespace, naming.LABEL_SET_NAME, name)
        if controlled_by(g, meta["uid"])
    }
    held = {}
    for index in range(spec.replicas):
        if index not in members and (found := store.get(*RBG, namespace, naming.set_member_name(name, index))):
            if (problem := conflict(found, body)) is not None:
                held[index] = problem
    elsewhere = {
        index: frozenset(
            role["name"]
            for role in (group.get("spec") or {}).get("roles") or []
            if other_owner(group, role_replicas_path(role["name"]), OUR_GROUP_WRITERS)
        )
        for index, group in members.items()
    }
    return GroupSetSnapshot(body, spec, "", members, held, elsewhere)


class GroupSetReconciler:
    """One pass over a RoleBasedGroupSet:

    1. observe: the set, its member groups, groups in the way of member names and who owns each
       member role's replicas, read from the cache once;
    2. plan: an invalid set's status; else the members to delete (from the highest index) and to
       create;
    3. act: delete, then create, each new name checked under its lock to be absent or the set's;
    4. plan the rollout over the members scaling left: which outdated members to rewrite;
    5. act: rewrite them;
    6. conclude: the status over the members as the pass left them, the Events, the requeue;
    7. report: the status when it changed, then the Events.
    """

    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder

    async def reconcile(self, namespace: str, name: str) -> float | None:
        snapshot = observe_group_set(self.store, namespace, name)
        if snapshot is None:
            return None
        now = datetime.datetime.now(datetime.UTC)
        planned = plan_group_set(snapshot, now)
        if planned.invalid_status is not None:
            await self.report(snapshot.body, planned.invalid_status, planned.events)
            return None
        members = dict(snapshot.members)
        for index, member, uid in planned.delete:
            del members[index]
            await self.kube.delete(KINDS[RBG], namespace, member, uid=uid)
            self.store.remove(*RBG, namespace, member, uid)
            await self.recorder.emit(snapshot.body, "Normal", "Deleted", f"deleted RoleBasedGroup {member}")
        held = dict(planned.held)
        for index, want in planned.create:
            result = await self._create(snapshot.body, want)
            if isinstance(result, str):
                held[index] = result
                continue
            members[index] = result
            await self.recorder.emit(
                snapshot.body, "Normal", "Created", f"created RoleBasedGroup {want['metadata']['name']}"
            )
        for index, want in plan_rollout(snapshot, members):
            members[index] = await self._apply(want)
            await self.recorder.emit(
                snapshot.body,
                "Normal",
                "Updating",
                f"updating RoleBasedGroup {want['metadata']['name']} to the new template",
            )
        report = conclude_group_set(snapshot, members, held, now)
        await self.report(snapshot.body, report.status, report.events)
        return report.requeue

    async def report(self, body: dict, status: dict, events) -> None:
        await write_status(self.kube, self.store, body, status, SET_MANAGER)
        for event in events:
            await self.recorder.emit(body, event.type, event.reason, event.message)

    async def _create(self, owner: dict, want: dict) -> dict | str:
        """Create a member the cache does not show, unless the API server shows its name held by
        a group the set does not control (made by hand, or another set's): never adopted."""
        meta = want["metadata"]
        async with CREATING.hold((*RBG, meta["namespace"], meta["name"])):
            found = await self.kube.get(KINDS[RBG], meta["namespace"], meta["name"])
            if found is not None:
                found.update(apiVersion=RBG[0], kind=RBG[1])
                if (problem := conflict(found, owner)) is not None:
                    return problem
            return await self._apply(want)

    async def _apply(self, want: dict) -> dict:
        result = await self.kube.apply(want, manager=SET_MANAGER)
        self.store.upsert(result)
        return result


# Managers that have applied a member group's spec: the set now, the group reconcile's shared
# manager in releases before writers had managers of their own.
OUR_GROUP_WRITERS = (SET_MANAGER, naming.FIELD_MANAGER)
