"""What a RoleInstanceSet pass decides (Stateful mode: RoleInstances `{ris}-{ordinal}`, like a
StatefulSet of instances, the contract's §4.9), as pure functions of what observe saw.

`plan` turns a snapshot into the instances to create, rewrite and delete. `conclude` turns the
snapshot, the plan and what act found (a name held by an object the cache does not show is only
known at write time, under the name lock) into the status, the Events and the requeue.
Nothing here reads the store or talks to the API server.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .. import kinds, naming, timestamps
from ..api.common import resolve
from ..api.roleinstance import instance_set_fanout_problem
from ..desired import inplace_scheduling
from ..desired.ports import ROLE_PORTS
from ..hashing import json_digest
from . import conditions, first_status
from .control import CONFLICT_RECHECK_SECONDS

INSTANCE_SET = (kinds.API_VERSION, "RoleInstanceSet")
INSTANCE = (kinds.API_VERSION, "RoleInstance")
# RoleInstanceSet annotations every instance gets (the contract's §4.5).
COPIED_ANNOTATIONS = (
    naming.ANNOTATION_V2_GRACE_PERIOD,
    naming.ANNOTATION_INSTANCE_GANG,
    ROLE_PORTS,
    *inplace_scheduling.ROLE_ANNOTATIONS,
)
# Update types that replace instances instead of updating them in place.
RECREATE_TYPES = ("RecreatePod",)
# On an instance of an InPlaceOnly set: its pods may change only in place (the RoleInstance
# controller refuses any other change, with the condition InPlaceUpdateBlocked).
ANNOTATION_IN_PLACE_ONLY = "rolebasedgroup.workloads.x-k8s.io/in-place-only"
FAILED_CREATE = "FailedCreate"


def template_revision(template: dict) -> str:
    return json_digest(template)


def controller_reference(owner: dict) -> dict:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_instance(
    instance_set: dict,
    name: str,
    revision: str,
    template: dict,
    identity: Mapping[str, str],
    pod_identity: Mapping[str, str] | None = None,
) -> dict:
    """A RoleInstance of the set, as both modes make it (the contract's §4.5): the set's labels,
    selector labels and revision, the copied annotations, the in-place-only mark, and an owner
    reference. The modes differ only in `name`, the `identity` labels and the `pod_identity`
    labels injected into every component template."""
    meta, spec = instance_set["metadata"], instance_set.get("spec") or {}
    template = copy.deepcopy(template)  # the set's own body is never changed
    if pod_identity:
        for component in template.get("components") or []:
            pod_meta = component.setdefault("template", {}).setdefault("metadata", {})
            pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **pod_identity}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in COPIED_ANNOTATIONS}
    if (spec.get("updateStrategy") or {}).get("type") == "InPlaceOnly":
        annotations[ANNOTATION_IN_PLACE_ONLY] = "true"
    labels = {
        **(meta.get("labels") or {}),
        **((spec.get("selector") or {}).get("matchLabels") or {}),
        naming.LABEL_CONTROLLER_REVISION: revision,
        **identity,
    }
    instance = {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleInstance",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [controller_reference(instance_set)],
        },
        "spec": template,
    }
    if annotations:
        instance["metadata"]["annotations"] = annotations
    return instance


def desired_instance(instance_set: dict, ordinal: int, revision: str) -> dict:
    """Instance `{ris}-{ordinal}`: its stable identity on the instance and on its pods."""
    name = naming.instance_name(instance_set["metadata"]["name"], ordinal)
    identity = {naming.LABEL_V2_INSTANCE_INDEX: str(ordinal), naming.STATEFULSET_POD_NAME: name}
    template = (instance_set.get("spec") or {}).get("roleInstanceTemplate") or {}
    return build_instance(instance_set, name, revision, template, identity, pod_identity=identity)


def _shape(spec: dict) -> list[tuple[str, int]]:
    return [(c.get("name"), c.get("size", 1)) for c in spec.get("components") or []]


@dataclasses.dataclass(frozen=True)
class InstanceView:
    """What a pass needs of one observed instance, decoded once."""

    name: str
    ordinal: int | None  # None: not a name of this set's Stateful mode
    revision: str | None
    ready: bool
    deleting: bool
    shape: tuple[tuple[str, int], ...]  # component names and sizes: what in-place cannot change
    ready_since: datetime.datetime | None = None  # when RoleInstanceReady last became True
    in_place_blocked: str | None = None  # why its pods cannot change in place (InPlaceUpdateBlocked)


def view(instance: dict, set_name: str) -> InstanceView:
    meta = instance["metadata"]
    suffix = meta["name"][len(set_name) + 1 :] if meta["name"].startswith(set_name + "-") else ""
    status = instance.get("status") or {}
    condition = conditions.find(status.get("conditions"), "RoleInstanceReady") or {}
    ready = condition.get("status") == "True" and status.get("observedGeneration", 0) >= meta.get("generation", 0)
    blocked = conditions.find(status.get("conditions"), "InPlaceUpdateBlocked") or {}
    return InstanceView(
        meta["name"],
        int(suffix) if suffix.isdigit() else None,
        (meta.get("labels") or {}).get(naming.LABEL_CONTROLLER_REVISION),
        ready,
        bool(meta.get("deletionTimestamp")),
        tuple(_shape(instance.get("spec") or {})),
        timestamps.parse_or_none(condition.get("lastTransitionTime")) if condition.get("status") == "True" else None,
        blocked.get("message") if blocked.get("status") == "True" else None,
    )


@dataclasses.dataclass
class InstancePlan:
    create: list[int] = dataclasses.field(default_factory=list)
    update: list[int] = dataclasses.field(default_factory=list)  # in place: the new spec on the instance
    delete: list[str] = dataclasses.field(default_factory=list)  # scale-in, strays, and updates in-place cannot do


def plan_instances(spec: dict, revision: str, instances: list[InstanceView]) -> InstancePlan:
    """Stateful mode: ordinals below replicas exist (all at once with Parallel, one after the
    other with OrderedReady), the rest go, highest first; ordinals from the partition up move to
    the new revision, highest first, as far as maxUnavailable allows (the controller's default is
    10%, rounded up and at least 1; rounded down when maxSurge is set); an update that changes the
    components' names or sizes recreates the instance (InPlaceOnly refuses that: see
    blocked_updates). While a rollout runs, maxSurge extra instances on the new revision take the
    ordinals from replicas up; their Ready ones count as available, and they go when it is done."""
    replicas = spec.get("replicas", 1)
    strategy = spec.get("updateStrategy") or {}
    ordered = spec.get("podManagementPolicy") == "OrderedReady"
    by_ordinal = {i.ordinal: i for i in instances if i.ordinal is not None}
    partition = resolve(strategy.get("partition"), replicas)
    # A rollout never needs more than `replicas` new instances: a larger surge (one stored before
    # admission bounded it) would only make the plan, which lists instances, huge.
    surge = (
        0 if strategy.get("paused") else min(resolve(strategy.get("maxSurge", 0), replicas, round_up=True), replicas)
    )
    behind = [o for o in range(partition, replicas) if o in by_ordinal and by_ordinal[o].revision != revision]
    settled = all(
        o in by_ordinal and by_ordinal[o].revision == revision and by_ordinal[o].ready
        for o in range(partition, replicas)
    )
    surging = any(o >= replicas for o in by_ordinal)
    # Surge instances are made while instances are behind, and stay until the updated ones are Ready.
    keep = replicas + (surge if behind or (surging and not settled) else 0)
    plan = InstancePlan()
    plan.delete += [i.name for i in instances if i.ordinal is None and not i.deleting]
    extra = sorted(
        (i for i in instances if i.ordinal is not None and i.ordinal >= keep and not i.deleting),
        key=lambda i: -i.ordinal,
    )
    plan.delete += [i.name for i in (extra[:1] if ordered else extra)]
    for ordinal in range(keep):
        if ordinal in by_ordinal or (ordinal >= replicas and not behind):
            continue
        if ordered and not all(by_ordinal.get(o) and by_ordinal[o].ready for o in range(ordinal)):
            break
        plan.create.append(ordinal)
        if ordered:
            break
    if strategy.get("paused"):
        return plan
    budget = resolve(strategy.get("maxUnavailable", "10%"), replicas, round_up=not surge)
    budget = budget if surge else max(budget, 1)
    surged = sum(
        1
        for o in range(replicas, keep)
        if o in by_ordinal and by_ordinal[o].ready and by_ordinal[o].revision == revision and not by_ordinal[o].deleting
    )
    unavailable = (
        sum(
            1 for o in range(replicas) if not (by_ordinal.get(o) and by_ordinal[o].ready and not by_ordinal[o].deleting)
        )
        - surged
    )
    shape = tuple(_shape(spec.get("roleInstanceTemplate") or {}))
    for ordinal in sorted(behind, reverse=True):
        instance = by_ordinal[ordinal]
        if instance.deleting:
            continue
        if instance.ready:  # replacing a ready instance makes it unavailable for a while
            if unavailable >= budget:
                continue
            unavailable += 1
        if strategy.get("type") in RECREATE_TYPES:
            plan.delete.append(instance.name)
        elif instance.shape == shape:
            plan.update.append(ordinal)
        elif strategy.get("type") != "InPlaceOnly":  # InPlaceOnly leaves it, and says so
            plan.delete.append(instance.name)
    return plan


def blocked_updates(spec: dict, revision: str, instances: list[InstanceView]) -> list[str]:
    """What InPlaceOnly cannot move, each naming the instance and why: components whose names
    or sizes change (only recreation can do that), and pods whose change is not image-only (the
    instance's InPlaceUpdateBlocked condition)."""
    if (spec.get("updateStrategy") or {}).get("type") != "InPlaceOnly":
        return []
    shape = tuple(_shape(spec.get("roleInstanceTemplate") or {}))
    blocked = []
    for seen in instances:
        if seen.revision != revision and seen.shape != shape:
            blocked.append(f"{seen.name}: its components' names or sizes change")
        elif seen.in_place_blocked is not None:
            blocked.append(f"{seen.name}: {seen.in_place_blocked}")
    return blocked


def _available(instance: InstanceView, min_ready_seconds: int, now: datetime.datetime) -> bool:
    if not instance.ready or instance.ready_since is None:
        return False
    return (now - instance.ready_since).total_seconds() >= min_ready_seconds


def instance_set_status(
    instance_set: dict, revision: str, instances: list[InstanceView], now: datetime.datetime
) -> dict:
    """The set's status, counted over its instances (the contract's §2.4 and §4.9)."""
    meta, spec = instance_set["metadata"], instance_set["spec"]
    previous = instance_set.get("status") or {}
    replicas = spec.get("replicas", 1)
    live = [v for v in instances if not v.deleting]
    partition = resolve((spec.get("updateStrategy") or {}).get("partition"), replicas)
    current = previous.get("currentRevision") or revision
    updated = [v for v in live if v.revision == revision]
    if partition == 0 and len(live) == replicas and all(v.ready for v in updated) and len(updated) == replicas:
        current = revision
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "observedGeneration": meta.get("generation", 0),
        "replicas": len(live),
        "readyReplicas": sum(1 for v in live if v.ready),
        "availableReplicas": sum(1 for v in live if _available(v, spec.get("minReadySeconds", 0), now)),
        "currentReplicas": sum(1 for v in live if v.revision == current),
        "updatedReplicas": len(updated),
        "updatedReadyReplicas": sum(1 for v in updated if v.ready),
        "expectedUpdatedReplicas": max(replicas - partition, 0),
        "updateRevision": revision,
        "currentRevision": current,
        "labelSelector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
    }


def conflict_conditions(conflicts: list[str], previous: list[dict] | None) -> list[dict]:
    """FailedCreate while names the owner wants are held by objects it does not control; once
    there was one, False again when none is left (an owner that never had one gets none)."""
    if conflicts:
        return [{"type": FAILED_CREATE, "status": "True", "reason": "ChildConflict", "message": "; ".join(conflicts)}]
    if conditions.find(previous, FAILED_CREATE) is not None:
        return [{"type": FAILED_CREATE, "status": "False", "reason": "NoConflict", "message": ""}]
    return []


@dataclasses.dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
    after_status: bool = False  # emitted once the status that records it is written


@dataclasses.dataclass(frozen=True)
class InstanceSetSnapshot:
    """Everything one pass knows, read once from the cache. The dicts are private copies that
    nothing changes."""

    body: dict  # the set
    instances: tuple[dict, ...]  # the instances it controls, deleting ones too
    views: tuple[InstanceView, ...]  # of `instances`, in the same order
    # Names the set may create that the cache shows held by an object it does not control: why not.
    held: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # With a group that drains this role (controller/drain.Context): the context, and the live pods
    # of each instance by instance name, drained before their instance is deleted.
    drain: Any = None
    pods: Mapping[str, tuple[dict, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class InstanceSetPlan:
    revision: str
    # (key, instance) to make: Stateful keys are ordinals, lowest first; Stateless ones, positions.
    create: tuple[tuple[int, dict], ...]
    update: tuple[dict, ...]  # outdated instances whose spec moves in place
    delete: tuple[tuple[str, str | None], ...]  # (name, uid), in the cache's order
    deleted: tuple[str, ...]  # the same names, in the order the decision lists them (for the Event)
    held: Mapping[int, str]  # keys not created: their names are held by others
    too_large: str | None  # why no instance is made or rewritten
    mark: tuple[tuple[str, str], ...] = ()  # (instance, lifecycle state): held by a lifecycle hook
    unknown_pattern: str | None = None  # the role-instance-pattern annotation names no mode


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What act did: the answers of its writes, and the names it found held under the name lock."""

    written: tuple[dict, ...] = ()
    held: Mapping[int, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Report:
    status: dict | None  # None: a young set's first status, held back (first_status.py)
    events: tuple[Event, ...]
    requeue: float | None


def plan_stateful(snapshot: InstanceSetSnapshot, revision: str | None = None) -> InstanceSetPlan:
    """Stateful mode's writes: instances `{set}-{ordinal}` to create, rewrite in place and delete
    (instances of Stateless mode, named otherwise, are strays and go)."""
    body = snapshot.body
    spec, name = body.get("spec") or {}, body["metadata"]["name"]
    revision = revision or template_revision(spec.get("roleInstanceTemplate") or {})
    decided = plan_instances(spec, revision, list(snapshot.views))
    # Each instance is a copy of the template: past the bound, none is made or rewritten (the
    # set was admitted by CEL, which cannot measure bytes; a group's role was refused earlier).
    too_large = instance_set_fanout_problem(spec)
    if too_large:
        decided.create, decided.update = [], []
    held = {o: snapshot.held[n] for o in decided.create if (n := naming.instance_name(name, o)) in snapshot.held}
    create = tuple((o, desired_instance(body, o, revision)) for o in decided.create if o not in held)
    # An outdated instance carries another revision label: it never holds the new spec already.
    update = tuple(desired_instance(body, o, revision) for o in decided.update)
    doomed = set(decided.delete)
    delete = tuple(
        (i["metadata"]["name"], i["metadata"].get("uid")) for i in snapshot.instances if i["metadata"]["name"] in doomed
    )
    return InstanceSetPlan(revision, create, update, delete, tuple(decided.delete), MappingProxyType(held), too_large)


def conclude(
    snapshot: InstanceSetSnapshot, planned: InstanceSetPlan, outcome: Outcome, now: datetime.datetime
) -> Report:
    """The status after the pass's writes, its Events and when to look again."""
    body = snapshot.body
    spec, name = body.get("spec") or {}, body["metadata"]["name"]
    held = {**planned.held, **outcome.held}
    conflicts = [held[o] for o in sorted(held)]
    created = [want["metadata"]["name"] for o, want in planned.create if o not in held]
    events = []
    if created or planned.deleted:
        events.append(
            Event(
                "Normal",
                "SuccessfulUpdate",
                ", ".join(
                    [f"created instance {n}" for n in created] + [f"deleted instance {n}" for n in planned.deleted]
                ),
            )
        )
    for instance, state in planned.mark:
        if state != "Normal":  # Normal again: the state ended, nothing waits
            events.append(
                Event("Normal", "LifecycleHookHolds", f"instance {instance} is {state}: waiting for its hook")
            )
    # The instances as the writes left them: their answers replace what the cache showed.
    views = {v.name: v for v in snapshot.views}
    views.update((w["metadata"]["name"], view(w, name)) for w in outcome.written)
    after = list(views.values())
    blocked = blocked_updates(spec, planned.revision, after)
    status = instance_set_status(body, planned.revision, after, now)
    failed = (
        {
            "type": "FailedUpdate",
            "status": "True",
            "reason": "InPlaceUpdateImpossible",
            "message": f"updateStrategy.type InPlaceOnly cannot update {'; '.join(blocked)}; only "
            f"recreating would; set the type to InPlaceIfPossible to allow it",
        }
        if blocked
        else {"type": "FailedUpdate", "status": "False", "reason": "NoFailure", "message": ""}
    )
    previous = (body.get("status") or {}).get("conditions")
    wanted = [failed, *conflict_conditions(conflicts, previous)]  # a conflict, if any, at [1]
    if planned.too_large:
        wanted.append(
            {
                "type": "FailedScale",
                "status": "True",
                "reason": "TemplateCopiesTooLarge",
                "message": f"spec.{planned.too_large}",
            }
        )
        if (conditions.find(previous, "FailedScale") or {}).get("status") != "True":
            events.append(Event("Warning", "TemplateCopiesTooLarge", f"spec.{planned.too_large}"))
    elif planned.unknown_pattern is not None:
        message = (
            f"metadata.annotations[{naming.ANNOTATION_V2_INSTANCE_PATTERN}]: {planned.unknown_pattern!r} "
            f"is not Stateful or Stateless"
        )
        wanted.append(
            {"type": "FailedScale", "status": "True", "reason": "UnknownRoleInstancePattern", "message": message}
        )
        if (conditions.find(previous, "FailedScale") or {}).get("message") != message:
            events.append(Event("Warning", "UnknownRoleInstancePattern", message))
    elif conditions.find(previous, "FailedScale") is not None:
        wanted.append({"type": "FailedScale", "status": "False", "reason": "NoFailure", "message": ""})
    status["conditions"] = conditions.merge(
        previous, wanted, body["metadata"].get("generation", 0), at=timestamps.stamp(now)
    )
    if conflicts and (conditions.find(previous, FAILED_CREATE) or {}).get("message") != wanted[1]["message"]:
        events.append(Event("Warning", "ChildConflict", wanted[1]["message"], after_status=True))
    # An instance that is Ready but not yet available for minReadySeconds: look again then.
    pending = spec.get("minReadySeconds", 0) if status["availableReplicas"] < status["readyReplicas"] else 0
    # The object in the way carries nothing that would wake the set when it goes: look again.
    requeue = float(pending) or (CONFLICT_RECHECK_SECONDS if conflicts else None)
    # Instances still coming up, and nothing else to say (no failure, no Warning): no reader
    # acts on that. The group reads the set's counts, and a set of no instances says all it will.
    in_progress_only = (
        0 < spec.get("replicas", 1) != status["readyReplicas"]
        and not any(c["status"] == "True" for c in status["conditions"])
        and not any(e.type == "Warning" for e in events)
    )
    instances = {i["metadata"]["name"]: i for i in snapshot.instances}
    instances.update((w["metadata"]["name"], w) for w in outcome.written)
    unreported = [i for i in instances.values() if "observedGeneration" not in (i.get("status") or {})]
    held = first_status.hold(body, in_progress_only, now, instances.values(), unreported)
    if held is not None:
        return Report(None, tuple(events), min(requeue or held, held))
    return Report(status, tuple(events), requeue)
