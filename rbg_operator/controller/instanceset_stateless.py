"""A RoleInstanceSet's Stateless mode (the contract's §4.9): instances with random names, like the
pods of a CloneSet, as pure functions of what observe saw.

- Instances are `{set}-{id}`, a random 5-character id, and are the set's by the label
  `role-instance-owner: {set UID}` (Stateful instances, named by ordinal, are deleted on a switch).
- Scale-in deletes, in this order: the instances named in `scaleStrategy.roleInstanceToDelete` or
  labelled `role-instance-delete`, then those not Ready, then those on an old revision, then the
  newest. Named instances are deleted whatever the replicas, and replaced.
- `scaleStrategy.maxUnavailable` bounds how many instances may be unready while new ones are made.
- A rollout keeps `partition` instances on the old revision, and updates the rest (unready ones
  first) in place, or by recreation when the components change or the type is RecreatePod, within
  `maxUnavailable`; `maxSurge` new instances are made first, and as many old ones go once they are.
- Lifecycle hooks: an instance that carries a hook's labels (`labelsHandler`) and finalizers
  (`finalizersHandler`) is marked `PreparingDelete` (or `PreparingUpdate`) and waits until someone
  removes them before it is deleted (or updated), so a router can drain it first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .. import kinds, naming
from ..api.common import resolve
from .instanceset_plan import RECREATE_TYPES, InstanceView, _shape, controller_reference

LABEL_INSTANCE_ID = "rbg.workloads.x-k8s.io/role-instance-id"
LABEL_INSTANCE_OWNER = "rbg.workloads.x-k8s.io/role-instance-owner"
LABEL_DELETE = "rbg.workloads.x-k8s.io/role-instance-delete"
LABEL_LIFECYCLE_STATE = "rbg.workloads.x-k8s.io/role-instance-lifecycle-state"
LABEL_LIFECYCLE_TIMESTAMP = "rbg.workloads.x-k8s.io/role-instance-lifecycle-timestamp"
IN_PLACE_UPDATE_READY = "RoleInstanceInPlaceUpdateReady"  # the readiness gate of every Stateless instance
PATTERNS = ("Stateful", "Stateless")


def pattern_of(instance_set: dict) -> str:
    """The set's mode from its annotation: Stateful when unset; anything else is returned as is."""
    return (instance_set["metadata"].get("annotations") or {}).get(naming.ANNOTATION_V2_INSTANCE_PATTERN) or "Stateful"


def instance_id(instance: dict) -> str:
    return (instance["metadata"].get("labels") or {}).get(LABEL_INSTANCE_ID, "")


def is_stateless_instance(instance: dict, instance_set: dict) -> bool:
    labels = instance["metadata"].get("labels") or {}
    return labels.get(LABEL_INSTANCE_OWNER) == instance_set["metadata"].get("uid")


def desired_instance(instance_set: dict, instance_id: str, revision: str, template: dict) -> dict:
    """Instance `{set}-{id}`: the set's template, its labels, and the Stateless identity labels."""
    meta = instance_set["metadata"]
    spec = instance_set.get("spec") or {}
    gates = [g for g in template.get("readinessGates") or [] if g.get("conditionType") != IN_PLACE_UPDATE_READY]
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleInstance",
        "metadata": {
            "name": f"{meta['name']}-{instance_id}",
            "namespace": meta["namespace"],
            "labels": {
                **(meta.get("labels") or {}),
                **((spec.get("selector") or {}).get("matchLabels") or {}),
                naming.LABEL_CONTROLLER_REVISION: revision,
                LABEL_INSTANCE_ID: instance_id,
                LABEL_INSTANCE_OWNER: meta["uid"],
            },
            "ownerReferences": [controller_reference(instance_set)],
        },
        "spec": {**template, "readinessGates": [*gates, {"conditionType": IN_PLACE_UPDATE_READY}]},
    }


@dataclasses.dataclass(frozen=True)
class Seen:
    """What the Stateless plan needs of one observed instance."""

    view: InstanceView
    created: str  # creationTimestamp: RFC 3339, so it sorts as text
    marked: bool  # named for deletion
    labels: dict
    finalizers: tuple[str, ...]

    @classmethod
    def of(cls, instance: dict, view: InstanceView, to_delete: set[str]) -> Seen:
        meta = instance["metadata"]
        labels = meta.get("labels") or {}
        return cls(
            view,
            meta.get("creationTimestamp") or "",
            view.name in to_delete or labels.get(LABEL_DELETE) == "true",
            labels,
            tuple(meta.get("finalizers") or ()),
        )


def hook_holds(hook: dict | None, seen: Seen) -> bool:
    """Whether a lifecycle hook still holds the instance: it carries every label and finalizer
    the hook names (whoever drains it removes one of them when done)."""
    if not hook or not (hook.get("labelsHandler") or hook.get("finalizersHandler")):
        return False
    labels_held = all(seen.labels.get(k) == v for k, v in (hook.get("labelsHandler") or {}).items())
    finalizers_held = all(f in seen.finalizers for f in hook.get("finalizersHandler") or [])
    return labels_held and finalizers_held


@dataclasses.dataclass
class StatelessPlan:
    create: list[dict] = dataclasses.field(default_factory=list)
    update: list[str] = dataclasses.field(default_factory=list)  # names whose spec moves in place
    delete: list[str] = dataclasses.field(default_factory=list)
    mark: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, lifecycle state) to label


def plan_stateless(
    instance_set: dict, revision: str, template: dict, seen: list[Seen], new_id: Callable[[], str]
) -> StatelessPlan:
    spec = instance_set.get("spec") or {}
    replicas = spec.get("replicas", 1)
    strategy = spec.get("updateStrategy") or {}
    lifecycle = spec.get("lifecycle") or {}
    plan = StatelessPlan()
    live = [s for s in seen if not s.view.deleting]

    def remove(s: Seen) -> None:
        """Delete, unless the preDelete hook holds it: then mark it and wait."""
        if hook_holds(lifecycle.get("preDelete"), s):
            if s.labels.get(LABEL_LIFECYCLE_STATE) != "PreparingDelete":
                plan.mark.append((s.view.name, "PreparingDelete"))
        else:
            plan.delete.append(s.view.name)

    named = [s for s in live if s.marked]
    for s in named:
        remove(s)
    keep = [s for s in live if not s.marked]
    outdated = [s for s in keep if s.view.revision != revision]
    partition = resolve(strategy.get("partition"), replicas)
    paused = strategy.get("paused")
    # How many old-revision instances must still move: all but the partition's.
    to_move = 0 if paused else max(len(outdated) - partition, 0)
    surge = 0 if paused else min(resolve(strategy.get("maxSurge", 0), replicas, round_up=True), replicas)
    target = replicas + (min(surge, to_move) if to_move else 0)

    # Scale-in: the unready first, then the outdated (beyond the partition), then the newest.
    if len(keep) > target:
        newest_first = sorted(keep, key=lambda s: s.created, reverse=True)
        order = sorted(newest_first, key=lambda s: (s.view.ready, s.view.revision == revision))  # stable
        for s in order[: len(keep) - target]:
            remove(s)
            keep.remove(s)
            if s in outdated:
                outdated.remove(s)
                to_move = max(to_move - 1, 0)
    # Scale-out, within scaleStrategy.maxUnavailable: new instances are not ready at first.
    missing = target - len(keep)
    if missing > 0:
        limit = (spec.get("scaleStrategy") or {}).get("maxUnavailable")
        if limit is not None:
            unready = sum(1 for s in keep if not s.view.ready)
            missing = min(missing, max(resolve(limit, replicas, round_up=True) - unready, 0))
        plan.create = [desired_instance(instance_set, new_id(), revision, template) for _ in range(missing)]
    if not to_move:
        return plan
    # The rollout: unready instances first (they cost no availability), within maxUnavailable.
    budget = resolve(strategy.get("maxUnavailable", "10%"), replicas, round_up=not surge)
    budget = budget if surge else max(budget, 1)
    # Below 0 while surge instances are ready: each stands in for one being replaced.
    unavailable = replicas - sum(1 for s in keep if s.view.ready)
    shape = tuple(_shape(template))
    hook = lifecycle.get("inPlaceUpdate")
    for s in sorted(outdated, key=lambda s: (s.view.ready, s.created))[:to_move]:
        if s.view.ready:
            if unavailable >= budget:
                break
            unavailable += 1
        in_place = strategy.get("type") not in RECREATE_TYPES and s.view.shape == shape
        if in_place and hook_holds(hook, s):
            if s.labels.get(LABEL_LIFECYCLE_STATE) != "PreparingUpdate":
                plan.mark.append((s.view.name, "PreparingUpdate"))
            continue
        if in_place:
            plan.update.append(s.view.name)
        elif strategy.get("type") != "InPlaceOnly":
            remove(s)
    return plan
