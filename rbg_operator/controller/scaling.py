"""Reconcilers of the scaling kinds.

RoleBasedGroupScalingAdapter: its spec.replicas (what `kubectl scale` and an HPA write
through the scale subresource) becomes the replicas of one role of one group; its status
mirrors that role. RoleBasedGroupSet: `replicas` groups made from one template, updated
one at a time, scaled in from the highest index.
"""

from __future__ import annotations

import json
import logging

import pydantic

from .. import naming
from ..api.errors import describe
from ..api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleV2
from ..api.scalingadapter import RoleBasedGroupScalingAdapterSpec
from ..desired.scaling import member_template_hash, role_pod_selector, set_member
from ..events import EventRecorder
from ..kube import KINDS, Kube
from . import conditions
from .control import CONFLICT_RECHECK_SECONDS, CREATING, conflict, controlled_by, observe
from .status import write_status
from .store import Store, other_owner

log = logging.getLogger(__name__)

RBG = (naming.API_VERSION, "RoleBasedGroup")
ADAPTER = (naming.API_VERSION, "RoleBasedGroupScalingAdapter")
GROUP_SET = (naming.API_VERSION, "RoleBasedGroupSet")
ADAPTER_MANAGER, SET_MANAGER = naming.FIELD_MANAGER_SCALING_ADAPTER, naming.FIELD_MANAGER_GROUP_SET


class AdapterReconciler:
    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder

    async def reconcile(self, namespace: str, name: str) -> None:
        body = self.store.get(*ADAPTER, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            spec = RoleBasedGroupScalingAdapterSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as error:
            log.warning("%s/%s: %s", namespace, name, describe(error))
            return
        target = spec.scale_target_ref
        group = self.store.get(*RBG, namespace, target.name)
        roles = {r["name"]: r for r in ((group or {}).get("spec") or {}).get("roles", [])}
        old_status = body.get("status") or {}
        if target.role not in roles:
            await write_status(self.kube, self.store, body, {"phase": "NotBound"}, ADAPTER_MANAGER)
            return
        role = roles[target.role]
        index = list(roles).index(target.role)
        if spec.replicas is None:  # seed from the role, once; from then on scalers own it
            result = await self.kube.patch(KINDS[ADAPTER], namespace, name, {"spec": {"replicas": role.get("replicas", 1)}},
                                           manager=ADAPTER_MANAGER)
            self.store.upsert(result)
            return
        status = {"phase": "Bound"}
        if spec.replicas != role.get("replicas", 1):
            # A JSON patch guarded by a test on the role's name: it changes exactly this role's replicas.
            result = await self.kube.patch(KINDS[RBG], namespace, target.name, [
                {"op": "test", "path": f"/spec/roles/{index}/name", "value": target.role},
                {"op": "replace", "path": f"/spec/roles/{index}/replicas", "value": spec.replicas},
            ], patch_type="json", manager=ADAPTER_MANAGER)
            self.store.upsert(result)
            status["lastScaleTime"] = conditions.now()
            await self.recorder.emit(body, "Normal", "Scaled",
                                     f"role {target.role} of {target.name}: replicas {role.get('replicas', 1)} -> {spec.replicas}")
        elif "lastScaleTime" in old_status:
            status["lastScaleTime"] = old_status["lastScaleTime"]
        observed = next((r for r in ((group.get("status") or {}).get("roleStatuses") or []) if r["name"] == target.role), {})
        status.update({
            "replicas": observed.get("replicas", 0),
            "readyReplicas": observed.get("readyReplicas", 0),
            "selector": role_pod_selector(target.name, RoleV2.model_validate(role)),
        })
        await write_status(self.kube, self.store, body, status, ADAPTER_MANAGER)


class GroupSetReconciler:
    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder

    def members(self, body: dict) -> dict[int, dict]:
        meta = body["metadata"]
        found = {}
        for group in self.store.owned_by_label(*RBG, meta["namespace"], naming.LABEL_SET_NAME, meta["name"]):
            if controlled_by(group, meta["uid"]):
                found[int(group["metadata"]["labels"][naming.LABEL_SET_INDEX])] = group
        return found

    async def reconcile(self, namespace: str, name: str) -> float | None:
        body = self.store.get(*GROUP_SET, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            spec = RoleBasedGroupSetSpecV2.model_validate(body.get("spec") or {}, context={"stored": True})
        except pydantic.ValidationError as error:
            message = f"invalid RoleBasedGroupSet: {describe(error)}"
            if await write_status(self.kube, self.store, body, {"conditions": conditions.merge(
                    (body.get("status") or {}).get("conditions"),
                    [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": message}],
                    body["metadata"].get("generation", 0))}, SET_MANAGER):
                await self.recorder.emit(body, "Warning", "InvalidSpec", message)
            return
        members = self.members(body)
        # Scale in: highest indices first.
        for index in sorted((i for i in members if i >= spec.replicas), reverse=True):
            group = members.pop(index)
            await self.kube.delete(KINDS[RBG], namespace, group["metadata"]["name"], uid=group["metadata"]["uid"])
            self.store.remove(*RBG, namespace, group["metadata"]["name"], group["metadata"]["uid"])
            await self.recorder.emit(body, "Normal", "Deleted", f"deleted RoleBasedGroup {group['metadata']['name']}")
        # Scale out with the current template; a group of a member's name that the set does not
        # control (made by hand, or another set's) is never adopted.
        conflicts = []
        for index in range(spec.replicas):
            if index not in members:
                member = naming.set_member_name(name, index)
                async with CREATING.hold((*RBG, namespace, member)):
                    problem = conflict(await observe(self.store, self.kube, *RBG, namespace, member), body)
                    if problem is None:
                        members[index] = await self._apply(body, index)
                if problem is not None:
                    conflicts.append(problem)
                    continue
                await self.recorder.emit(body, "Normal", "Created", f"created RoleBasedGroup {members[index]['metadata']['name']}")
        # Roll a template change one group at a time, only when every group is Ready; but outdated
        # groups that are not Ready serve nothing and go first, all at once: otherwise a template
        # that never became Ready could never be replaced by a fix.
        wanted = member_template_hash(body)
        outdated = sorted(i for i, g in members.items()
                          if (g["metadata"].get("annotations") or {}).get(naming.ANNOTATION_SET_TEMPLATE) != wanted)
        broken = [i for i in outdated if not _ready(members[i])]
        to_update = broken or (outdated[:1] if outdated and all(_ready(g) for g in members.values()) else [])
        for index in to_update:
            members[index] = await self._apply(body, index, members[index])
            await self.recorder.emit(body, "Normal", "Updating",
                                     f"updating RoleBasedGroup {members[index]['metadata']['name']} to the new template")
        outdated = [i for i in outdated if i not in to_update]
        ready = sum(1 for g in members.values() if _ready(g))
        generation = body["metadata"].get("generation", 0)
        done = ready == spec.replicas and not outdated
        ready_condition = {"type": "Ready", "status": "True" if done else "False",
                           "reason": "AllGroupsReady" if done else "GroupsNotReady",
                           "message": f"{ready}/{spec.replicas} groups ready" + (
                               f", {len(outdated)} to update" if outdated else "")}
        if conflicts:
            ready_condition.update(reason="ChildConflict", message="; ".join(conflicts))
        before = conditions.find((body.get("status") or {}).get("conditions"), "Ready") or {}
        await write_status(self.kube, self.store, body, {
            "observedGeneration": generation,
            "replicas": len(members),
            "readyReplicas": ready,
            "conditions": conditions.merge((body.get("status") or {}).get("conditions"), [ready_condition], generation),
        }, SET_MANAGER)
        if conflicts and before.get("message") != ready_condition["message"]:
            await self.recorder.emit(body, "Warning", "ChildConflict", ready_condition["message"])
        # The group in the way carries no label of the set's: no event of it wakes the set.
        return CONFLICT_RECHECK_SECONDS if conflicts else None

    async def _apply(self, body: dict, index: int, current: dict | None = None) -> dict:
        member = set_member(body, index)
        if current is not None:
            # Role replicas another writer set (the scaling adapter, an HPA through it, a user)
            # stay theirs: a forced apply would take them back and reset the size.
            for role in member["spec"].get("roles") or []:
                key = "k:" + json.dumps({"name": role["name"]}, separators=(",", ":"))
                if "replicas" in role and other_owner(current, ("f:spec", "f:roles", key, "f:replicas"),
                                                      OUR_GROUP_WRITERS) is not None:
                    del role["replicas"]
        result = await self.kube.apply(member, manager=SET_MANAGER)
        self.store.upsert(result)
        return result


# Managers that have applied a member group's spec: the set now, the group reconcile's shared
# manager in releases before writers had managers of their own.
OUR_GROUP_WRITERS = (SET_MANAGER, naming.FIELD_MANAGER)


def _ready(group: dict) -> bool:
    status = group.get("status") or {}
    ready = conditions.find(status.get("conditions"), "Ready")
    return (ready is not None and ready["status"] == "True"
            and status.get("observedGeneration") == group["metadata"].get("generation"))
