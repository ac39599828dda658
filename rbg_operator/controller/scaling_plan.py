"""What the scaling kinds' passes decide, as pure functions of what observe saw.

RoleBasedGroupScalingAdapter: its spec.replicas becomes the replicas of one role of one group,
and its status mirrors that role. RoleBasedGroupSet: `replicas` groups from one template,
scaled in from the highest index, a template change rolled one group at a time.
Nothing here reads the store or talks to the API server.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping

from .. import kinds, naming, timestamps
from ..api.scalingadapter import RoleBasedGroupScalingAdapterSpec
from ..api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleV2
from ..desired.scaling import member_template_hash, role_pod_selector, set_member
from . import conditions
from .control import CONFLICT_RECHECK_SECONDS
from .diff import contains
from .instanceset_plan import Event

RBG = (kinds.API_VERSION, "RoleBasedGroup")
ADAPTER = (kinds.API_VERSION, "RoleBasedGroupScalingAdapter")
GROUP_SET = (kinds.API_VERSION, "RoleBasedGroupSet")


# --- RoleBasedGroupScalingAdapter ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AdapterSnapshot:
    body: dict  # the adapter
    spec: RoleBasedGroupScalingAdapterSpec
    group: dict | None  # the group its scaleTargetRef names


@dataclasses.dataclass(frozen=True)
class RoleScale:
    """A JSON patch of one role's replicas, guarded by a test of the role's name at its index."""

    group: str
    index: int
    role: str
    replicas: int

    def patch(self) -> list[dict]:
        return [
            {"op": "test", "path": f"/spec/roles/{self.index}/name", "value": self.role},
            {"op": "replace", "path": f"/spec/roles/{self.index}/replicas", "value": self.replicas},
        ]


@dataclasses.dataclass(frozen=True)
class AdapterPlan:
    seed: int | None = None  # replicas to seed the adapter with, from the role (the pass ends there)
    scale: RoleScale | None = None
    events: tuple[Event, ...] = ()  # after the scale, before the status
    status: dict | None = None


def plan_adapter(snapshot: AdapterSnapshot, now: datetime.datetime) -> AdapterPlan:
    """Unbound while the role does not exist; seeded once from the role, after which scalers own
    the adapter's replicas; a difference is written into the role; the status mirrors the role."""
    spec, group = snapshot.spec, snapshot.group
    target = spec.scale_target_ref
    roles = {r["name"]: r for r in ((group or {}).get("spec") or {}).get("roles", [])}
    old_status = snapshot.body.get("status") or {}
    if target.role not in roles:
        return AdapterPlan(status={"phase": "NotBound"})
    role = roles[target.role]
    if spec.replicas is None:
        return AdapterPlan(seed=role.get("replicas", 1))
    status: dict = {"phase": "Bound"}
    scale, events = None, ()
    if spec.replicas != role.get("replicas", 1):
        scale = RoleScale(target.name, list(roles).index(target.role), target.role, spec.replicas)
        status["lastScaleTime"] = timestamps.stamp(now)
        events = (
            Event(
                "Normal",
                "Scaled",
                f"role {target.role} of {target.name}: replicas {role.get('replicas', 1)} -> {spec.replicas}",
            ),
        )
    elif "lastScaleTime" in old_status:
        status["lastScaleTime"] = old_status["lastScaleTime"]
    observed = next(
        (r for r in ((group.get("status") or {}).get("roleStatuses") or []) if r["name"] == target.role), {}
    )
    status.update(
        {
            "replicas": observed.get("replicas", 0),
            "readyReplicas": observed.get("readyReplicas", 0),
            "selector": role_pod_selector(target.name, RoleV2.model_validate(role)),
        }
    )
    return AdapterPlan(scale=scale, events=events, status=status)


# --- RoleBasedGroupSet --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroupSetSnapshot:
    body: dict  # the set
    spec: RoleBasedGroupSetSpecV2 | None  # None: the stored spec does not validate
    invalid: str  # why not
    members: Mapping[int, dict]  # the groups it controls, by index
    # Member names the cache shows held by a group the set does not control: why not.
    held: Mapping[int, str] = dataclasses.field(default_factory=dict)
    # Per member: the roles whose replicas another writer (the adapter, an HPA, a user) owns.
    replicas_owned_elsewhere: Mapping[int, frozenset[str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class GroupSetPlan:
    delete: tuple[tuple[int, str, str], ...] = ()  # (index, name, uid), highest index first
    create: tuple[tuple[int, dict], ...] = ()  # (index, group), lowest first
    held: Mapping[int, str] = dataclasses.field(default_factory=dict)
    invalid_status: dict | None = None  # the status of a set whose spec does not validate
    events: tuple[Event, ...] = ()


@dataclasses.dataclass(frozen=True)
class GroupSetReport:
    status: dict
    events: tuple[Event, ...]  # after the status
    requeue: float | None


def group_ready(group: dict) -> bool:
    status = group.get("status") or {}
    ready = conditions.find(status.get("conditions"), "Ready")
    return (
        ready is not None
        and ready["status"] == "True"
        and status.get("observedGeneration") == group["metadata"].get("generation")
    )


def plan_group_set(snapshot: GroupSetSnapshot, now: datetime.datetime) -> GroupSetPlan:
    """An invalid set says why once; otherwise the members from replicas up go, highest first,
    and the missing ones below are made from the current template, unless a group the set does
    not control holds the name (never adopted)."""
    body = snapshot.body
    if snapshot.spec is None:
        message = f"invalid RoleBasedGroupSet: {snapshot.invalid}"
        status = {
            "conditions": conditions.merge(
                (body.get("status") or {}).get("conditions"),
                [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": message}],
                body["metadata"].get("generation", 0),
                at=timestamps.stamp(now),
            )
        }
        changed = not contains(body.get("status") or {}, status)
        return GroupSetPlan(
            invalid_status=status,
            events=(Event("Warning", "InvalidSpec", message, after_status=True),) if changed else (),
        )
    replicas = snapshot.spec.replicas
    delete = tuple(
        (i, g["metadata"]["name"], g["metadata"]["uid"])
        for i, g in sorted(snapshot.members.items(), reverse=True)
        if i >= replicas
    )
    missing = [i for i in range(replicas) if i not in snapshot.members]
    held = {i: snapshot.held[i] for i in missing if i in snapshot.held}
    create = tuple((i, set_member(body, i)) for i in missing if i not in held)
    return GroupSetPlan(delete, create, held)


def plan_rollout(snapshot: GroupSetSnapshot, members: Mapping[int, dict]) -> tuple[tuple[int, dict], ...]:
    """The members to rewrite with the current template, given the members scaling left: one at
    a time while every member is Ready; but outdated members that are not Ready serve nothing and
    go first, all at once, or a template that never became Ready could never be replaced by a fix.
    A role's replicas that another writer owns stay out of the rewrite (a forced apply would take
    them back and reset the size)."""
    wanted = member_template_hash(snapshot.body)
    outdated = sorted(
        i
        for i, g in members.items()
        if (g["metadata"].get("annotations") or {}).get(naming.ANNOTATION_SET_TEMPLATE) != wanted
    )
    broken = [i for i in outdated if not group_ready(members[i])]
    chosen = broken or (outdated[:1] if outdated and all(group_ready(g) for g in members.values()) else [])
    rewrites = []
    for index in chosen:
        member = set_member(snapshot.body, index)
        kept = snapshot.replicas_owned_elsewhere.get(index, frozenset())
        for role in member["spec"].get("roles") or []:
            if "replicas" in role and role["name"] in kept:
                del role["replicas"]
        rewrites.append((index, member))
    return tuple(rewrites)


def conclude_group_set(
    snapshot: GroupSetSnapshot, members: Mapping[int, dict], held: Mapping[int, str], now: datetime.datetime
) -> GroupSetReport:
    """The set's status over the members as the pass left them, and when to look again."""
    body, replicas = snapshot.body, snapshot.spec.replicas
    wanted = member_template_hash(body)
    outdated = [
        i
        for i, g in members.items()
        if (g["metadata"].get("annotations") or {}).get(naming.ANNOTATION_SET_TEMPLATE) != wanted
    ]
    conflicts = [held[i] for i in sorted(held)]
    ready = sum(1 for g in members.values() if group_ready(g))
    generation = body["metadata"].get("generation", 0)
    done = ready == replicas and not outdated
    ready_condition = {
        "type": "Ready",
        "status": "True" if done else "False",
        "reason": "AllGroupsReady" if done else "GroupsNotReady",
        "message": f"{ready}/{replicas} groups ready" + (f", {len(outdated)} to update" if outdated else ""),
    }
    if conflicts:
        ready_condition.update(reason="ChildConflict", message="; ".join(conflicts))
    before = conditions.find((body.get("status") or {}).get("conditions"), "Ready") or {}
    status = {
        "observedGeneration": generation,
        "replicas": len(members),
        "readyReplicas": ready,
        "conditions": conditions.merge(
            (body.get("status") or {}).get("conditions"), [ready_condition], generation, at=timestamps.stamp(now)
        ),
    }
    events = ()
    if conflicts and before.get("message") != ready_condition["message"]:
        events = (Event("Warning", "ChildConflict", ready_condition["message"], after_status=True),)
    # The group in the way carries no label of the set's: no event of it wakes the set.
    return GroupSetReport(status, events, CONFLICT_RECHECK_SECONDS if conflicts else None)


def role_replicas_path(role: str) -> tuple[str, ...]:
    """Where managedFields record who owns a role's replicas."""
    return ("f:spec", "f:roles", "k:" + json.dumps({"name": role}, separators=(",", ":")), "f:replicas")
