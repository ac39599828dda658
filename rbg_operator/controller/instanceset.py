"""The RoleInstanceSet controller (Stateful mode): RoleInstances `{ris}-{ordinal}`, like a
StatefulSet of instances (the contract's §4.9).

The decisions are pure (plan_instances, instance_set_status): the set, its instances as the
cache shows them, and the clock in; what to create, update and delete, and the status, out.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import logging

from .. import naming
from ..api.common import resolve
from ..api.roleinstance import instance_set_fanout_problem
from ..events import EventRecorder
from ..kube import KINDS, Kube
from . import conditions
from .control import CONFLICT_RECHECK_SECONDS, CREATING, conflict, observe
from .diff import contains
from .scaling import write_status
from .store import Store

log = logging.getLogger(__name__)

INSTANCE_SET = (naming.RIS_API_VERSION, "RoleInstanceSet")
INSTANCE = (naming.RIS_API_VERSION, "RoleInstance")
FIELD_MANAGER = "rbg-operator-instanceset"
# RoleInstanceSet annotations every instance gets (the contract's §4.5).
COPIED_ANNOTATIONS = (naming.ANNOTATION_V2_GRACE_PERIOD,)
# Update types that replace instances instead of updating them in place.
RECREATE_TYPES = ("RecreatePod",)
# On an instance of an InPlaceOnly set: its pods may change only in place (the RoleInstance
# controller refuses any other change, with the condition InPlaceUpdateBlocked).
ANNOTATION_IN_PLACE_ONLY = "rolebasedgroup.workloads.x-k8s.io/in-place-only"


def template_revision(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def owned(store: Store, kind: tuple[str, str], owner: dict) -> list[dict]:
    """Objects of `kind` whose controller is `owner`: from the group's index when the owner
    carries the group labels (a group's children), else from its namespace."""
    meta = owner["metadata"]
    labels = meta.get("labels") or {}
    group, role = labels.get(naming.LABEL_GROUP_NAME), labels.get(naming.LABEL_ROLE)
    candidates = (store.in_role(*kind, meta["namespace"], group, role) if group and role
                  else store.in_namespace(*kind, meta["namespace"]))
    return [o for o in candidates if any(r.get("controller") and r.get("uid") == meta.get("uid")
                                         for r in o["metadata"].get("ownerReferences") or [])]


def controller_reference(owner: dict) -> dict:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def desired_instance(instance_set: dict, ordinal: int, revision: str) -> dict:
    """Instance `{ris}-{ordinal}`: the set's template, labels and stable identity."""
    meta, spec = instance_set["metadata"], instance_set["spec"]
    name = naming.instance_name(meta["name"], ordinal)
    identity = {naming.LABEL_V2_INSTANCE_INDEX: str(ordinal), naming.STATEFULSET_POD_NAME: name}
    template = copy.deepcopy(spec.get("roleInstanceTemplate") or {})
    for component in template.get("components") or []:
        pod_meta = component.setdefault("template", {}).setdefault("metadata", {})
        pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **identity}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in COPIED_ANNOTATIONS}
    labels = {**(meta.get("labels") or {}), **((spec.get("selector") or {}).get("matchLabels") or {}),
              naming.LABEL_CONTROLLER_REVISION: revision, **identity}
    instance = {"apiVersion": naming.RIS_API_VERSION, "kind": "RoleInstance",
                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                             "ownerReferences": [controller_reference(instance_set)]},
                "spec": template}
    if (spec.get("updateStrategy") or {}).get("type") == "InPlaceOnly":
        annotations[ANNOTATION_IN_PLACE_ONLY] = "true"
    if annotations:
        instance["metadata"]["annotations"] = annotations
    return instance


def _shape(spec: dict) -> list[tuple[str, int]]:
    return [(c.get("name"), c.get("size", 1)) for c in spec.get("components") or []]


@dataclasses.dataclass(frozen=True)
class InstanceView:
    """What planning needs of one observed instance."""

    name: str
    ordinal: int | None  # None: not a name of this set's Stateful mode
    revision: str | None
    ready: bool
    deleting: bool
    shape: tuple[tuple[str, int], ...]  # component names and sizes: what in-place cannot change


def view(instance: dict, set_name: str) -> InstanceView:
    meta = instance["metadata"]
    suffix = meta["name"][len(set_name) + 1:] if meta["name"].startswith(set_name + "-") else ""
    status = instance.get("status") or {}
    ready = ((conditions.find(status.get("conditions"), "RoleInstanceReady") or {}).get("status") == "True"
             and status.get("observedGeneration", 0) >= meta.get("generation", 0))
    return InstanceView(meta["name"], int(suffix) if suffix.isdigit() else None,
                        (meta.get("labels") or {}).get(naming.LABEL_CONTROLLER_REVISION), ready,
                        bool(meta.get("deletionTimestamp")), tuple(_shape(instance.get("spec") or {})))


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
    surge = 0 if strategy.get("paused") else min(resolve(strategy.get("maxSurge", 0), replicas, round_up=True),
                                                 replicas)
    behind = [o for o in range(partition, replicas) if o in by_ordinal and by_ordinal[o].revision != revision]
    settled = all(o in by_ordinal and by_ordinal[o].revision == revision and by_ordinal[o].ready
                  for o in range(partition, replicas))
    surging = any(o >= replicas for o in by_ordinal)
    # Surge instances are made while instances are behind, and stay until the updated ones are Ready.
    keep = replicas + (surge if behind or (surging and not settled) else 0)
    plan = InstancePlan()
    plan.delete += [i.name for i in instances if i.ordinal is None and not i.deleting]
    extra = sorted((i for i in instances if i.ordinal is not None and i.ordinal >= keep and not i.deleting),
                   key=lambda i: -i.ordinal)
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
    surged = sum(1 for o in range(replicas, keep) if o in by_ordinal and by_ordinal[o].ready
                 and by_ordinal[o].revision == revision and not by_ordinal[o].deleting)
    unavailable = sum(1 for o in range(replicas) if not (by_ordinal.get(o) and by_ordinal[o].ready
                                                        and not by_ordinal[o].deleting)) - surged
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


def blocked_updates(spec: dict, revision: str, instances: list[dict], set_name: str) -> list[str]:
    """What InPlaceOnly cannot move, each naming the instance and why: components whose names
    or sizes change (only recreation can do that), and pods whose change is not image-only (the
    instance's InPlaceUpdateBlocked condition)."""
    if (spec.get("updateStrategy") or {}).get("type") != "InPlaceOnly":
        return []
    shape = tuple(_shape(spec.get("roleInstanceTemplate") or {}))
    blocked = []
    for instance in instances:
        seen = view(instance, set_name)
        refused = conditions.find((instance.get("status") or {}).get("conditions"), "InPlaceUpdateBlocked") or {}
        if seen.revision != revision and seen.shape != shape:
            blocked.append(f"{seen.name}: its components' names or sizes change")
        elif refused.get("status") == "True":
            blocked.append(f"{seen.name}: {refused.get('message')}")
    return blocked


def _available(instance: dict, min_ready_seconds: int, now: datetime.datetime) -> bool:
    ready = conditions.find((instance.get("status") or {}).get("conditions"), "RoleInstanceReady") or {}
    if ready.get("status") != "True":
        return False
    since = datetime.datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00"))
    return (now - since).total_seconds() >= min_ready_seconds


def instance_set_status(instance_set: dict, revision: str, instances: list[dict],
                        now: datetime.datetime) -> dict:
    """The set's status, counted over its instances (the contract's §2.4 and §4.9)."""
    meta, spec = instance_set["metadata"], instance_set["spec"]
    previous = instance_set.get("status") or {}
    replicas = spec.get("replicas", 1)
    views = [view(i, meta["name"]) for i in instances]
    live = [(i, v) for i, v in zip(instances, views) if not v.deleting]
    partition = resolve((spec.get("updateStrategy") or {}).get("partition"), replicas)
    current = previous.get("currentRevision") or revision
    updated = [v for _, v in live if v.revision == revision]
    if partition == 0 and len(live) == replicas and all(v.ready for v in updated) and len(updated) == replicas:
        current = revision
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    status = {
        "observedGeneration": meta.get("generation", 0),
        "replicas": len(live),
        "readyReplicas": sum(1 for _, v in live if v.ready),
        "availableReplicas": sum(1 for i, v in live if v.ready and _available(i, spec.get("minReadySeconds", 0), now)),
        "currentReplicas": sum(1 for _, v in live if v.revision == current),
        "updatedReplicas": len(updated),
        "updatedReadyReplicas": sum(1 for v in updated if v.ready),
        "expectedUpdatedReplicas": max(replicas - partition, 0),
        "updateRevision": revision,
        "currentRevision": current,
        "labelSelector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
    }
    return status


class InstanceSetReconciler:
    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder

    async def reconcile(self, namespace: str, name: str) -> float | None:
        body = self.store.get(*INSTANCE_SET, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None  # owner references take the instances and their pods away
        spec = body.get("spec") or {}
        revision = template_revision(spec.get("roleInstanceTemplate") or {})
        instances = owned(self.store, INSTANCE, body)
        views = [view(i, name) for i in instances]
        plan = plan_instances(spec, revision, views)
        # Each instance is a copy of the template: past the bound, none is made or rewritten (the
        # set was admitted by CEL, which cannot measure bytes; a group's role was refused earlier).
        too_large = instance_set_fanout_problem(spec)
        if too_large:
            plan.create, plan.update = [], []
        held: dict[int, str] = {}  # ordinal -> why its name is not the set's to write
        for ordinal in plan.create + plan.update:
            if (problem := await self._apply(body, desired_instance(body, ordinal, revision))) is not None:
                held[ordinal] = problem
        plan.create = [o for o in plan.create if o not in held]
        conflicts = list(held.values())
        for instance in instances:
            if instance["metadata"]["name"] in plan.delete:
                await self.kube.delete(KINDS[INSTANCE], namespace, instance["metadata"]["name"],
                                       uid=instance["metadata"].get("uid"))
        if plan.create or plan.delete:
            await self.recorder.emit(body, "Normal", "SuccessfulUpdate", ", ".join(
                [f"created instance {naming.instance_name(name, o)}" for o in plan.create]
                + [f"deleted instance {n}" for n in plan.delete]))
        instances = owned(self.store, INSTANCE, body)
        blocked = blocked_updates(spec, revision, instances, name)
        now = datetime.datetime.now(datetime.timezone.utc)
        status = instance_set_status(body, revision, instances, now)
        failed = ({"type": "FailedUpdate", "status": "True", "reason": "InPlaceUpdateImpossible",
                   "message": f"updateStrategy.type InPlaceOnly cannot update {'; '.join(blocked)}; only "
                              f"recreating would; set the type to InPlaceIfPossible to allow it"}
                  if blocked else {"type": "FailedUpdate", "status": "False", "reason": "NoFailure", "message": ""})
        previous = (body.get("status") or {}).get("conditions")
        wanted = [failed, *conflict_conditions(conflicts, previous)]  # a conflict, if any, at [1]
        if too_large:
            wanted.append({"type": "FailedScale", "status": "True", "reason": "TemplateCopiesTooLarge",
                           "message": f"spec.{too_large}"})
            if (conditions.find(previous, "FailedScale") or {}).get("status") != "True":
                await self.recorder.emit(body, "Warning", "TemplateCopiesTooLarge", f"spec.{too_large}")
        elif conditions.find(previous, "FailedScale") is not None:
            wanted.append({"type": "FailedScale", "status": "False", "reason": "NoFailure", "message": ""})
        status["conditions"] = conditions.merge(previous, wanted, body["metadata"].get("generation", 0))
        await write_status(self.kube, self.store, body, status, FIELD_MANAGER)
        if conflicts and (conditions.find(previous, FAILED_CREATE) or {}).get("message") != wanted[1]["message"]:
            await self.recorder.emit(body, "Warning", "ChildConflict", wanted[1]["message"])
        # An instance that is Ready but not yet available for minReadySeconds: look again then.
        pending = spec.get("minReadySeconds", 0) if status["availableReplicas"] < status["readyReplicas"] else 0
        # The object in the way carries nothing that would wake the set when it goes: look again.
        return float(pending) or (CONFLICT_RECHECK_SECONDS if conflicts else None)

    async def _apply(self, owner: dict, desired: dict) -> str | None:
        """Create or update an instance of the set; returns why not when the name is held by an
        object the set does not control."""
        meta = desired["metadata"]
        key = (*INSTANCE, meta["namespace"], meta["name"])
        observed = self.store.get(*key)
        async with CREATING.hold(key) if observed is None else contextlib.nullcontext():
            observed = observed or await observe(self.store, self.kube, *key)
            problem = conflict(observed, owner)
            if problem is not None:
                return problem
            if observed is not None and contains(observed, desired):
                return None
            self.store.upsert(await self.kube.apply(desired, manager=FIELD_MANAGER))
        return None


FAILED_CREATE = "FailedCreate"


def conflict_conditions(conflicts: list[str], previous: list[dict] | None) -> list[dict]:
    """FailedCreate while names the owner wants are held by objects it does not control; once
    there was one, False again when none is left (an owner that never had one gets none)."""
    if conflicts:
        return [{"type": FAILED_CREATE, "status": "True", "reason": "ChildConflict", "message": "; ".join(conflicts)}]
    if conditions.find(previous, FAILED_CREATE) is not None:
        return [{"type": FAILED_CREATE, "status": "False", "reason": "NoConflict", "message": ""}]
    return []
