"""A RoleInstanceSet's Stateless mode (the contract's §4.9): instances with random names, like the
pods of a CloneSet, as pure functions of what observe saw.

- Instances are `{set}-{id}`, a random 5-character id, and are the set's by the label
  `role-instance-owner: {set UID}` (Stateful instances, named by ordinal, are deleted on a switch).
- Scale-in deletes, in this order: the instances named in `scaleStrategy.roleInstanceToDelete` or
  labelled `role-instance-delete`, then those already `PreparingDelete`, then those not Ready,
  then those on an old revision, then the newest. Named instances are deleted whatever the replicas, and replaced.
- `scaleStrategy.maxUnavailable` bounds how many instances may be unready while new ones are made.
- A rollout keeps `partition` instances on the old revision, and updates the rest (unready ones
  first) in place, or by recreation when the components change or the type is RecreatePod, within
  `maxUnavailable`; `maxSurge` new instances are made first, and as many old ones go once they are.
- Lifecycle hooks: an instance that carries a hook's labels (`labelsHandler`) and finalizers
  (`finalizersHandler`) is marked `PreparingDelete` (or `PreparingUpdate`) and waits until someone
  removes them before it is deleted (or updated), so a router can drain it first. A scale-in takes
  the instances already `PreparingDelete` first; an instance whose state has ended (the scale-in
  was cancelled, the update went through) is marked `Normal` again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .. import naming
from ..api.common import resolve
from .instanceset_plan import RECREATE_TYPES, InstanceView, _shape, build_instance

LABEL_INSTANCE_ID = "rbg.workloads.x-k8s.io/role-instance-id"
LABEL_INSTANCE_OWNER = "rbg.workloads.x-k8s.io/role-instance-owner"
LABEL_DELETE = "rbg.workloads.x-k8s.io/role-instance-delete"
LABEL_LIFECYCLE_STATE = "rbg.workloads.x-k8s.io/role-instance-lifecycle-state"
LABEL_LIFECYCLE_TIMESTAMP = "rbg.workloads.x-k8s.io/role-instance-lifecycle-timestamp"
# Lifecycle states this mode writes (the contract's §4.6): held by a hook, and back to normal.
NORMAL, PREPARING_DELETE, PREPARING_UPDATE = "Normal", "PreparingDelete", "PreparingUpdate"
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
    """Instance `{set}-{id}`, built as Stateful mode builds its instances (instanceset_plan's
    build_instance: labels, copied annotations, the in-place-only mark), with the Stateless
    identity labels and the readiness gate every Stateless instance carries (§2.5)."""
    gates = [g for g in template.get("readinessGates") or [] if g.get("conditionType") != IN_PLACE_UPDATE_READY]
    identity = {LABEL_INSTANCE_ID: instance_id, LABEL_INSTANCE_OWNER: instance_set["metadata"]["uid"]}
    return build_instance(
        instance_set,
        f"{instance_set['metadata']['name']}-{instance_id}",
        revision,
        {**template, "readinessGates": [*gates, {"conditionType": IN_PLACE_UPDATE_READY}]},
        identity,
    )


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

    @property
    def preparing_delete(self) -> bool:
        return self.labels.get(LABEL_LIFECYCLE_STATE) == PREPARING_DELETE


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
    """The pass's decisions, then the lifecycle-state labels they call for: the state of each
    instance a hook holds, and `Normal` again on an instance whose state has ended (a scale-in
    that was cancelled, an update the hook let through)."""
    spec = instance_set.get("spec") or {}
    lifecycle = spec.get("lifecycle") or {}
    plan = StatelessPlan()
    held: dict[str, str] = {}  # name -> the lifecycle state a hook holds it in, this pass

    def remove(s: Seen) -> None:
        """Delete, unless the preDelete hook holds it: then it waits, PreparingDelete."""
        if hook_holds(lifecycle.get("preDelete"), s):
            held[s.view.name] = PREPARING_DELETE
        else:
            plan.delete.append(s.view.name)

    _decide(instance_set, revision, template, seen, new_id, plan, remove, held)
    for s in seen:
        if s.view.deleting:
            continue
        state = s.labels.get(LABEL_LIFECYCLE_STATE)
        if s.view.name in held:
            if state != held[s.view.name]:
                plan.mark.append((s.view.name, held[s.view.name]))
        elif state in (PREPARING_DELETE, PREPARING_UPDATE) and s.view.name not in plan.delete:
            plan.mark.append((s.view.name, NORMAL))
    return plan


def _decide(
    instance_set: dict,
    revision: str,
    template: dict,
    seen: list[Seen],
    new_id: Callable[[], str],
    plan: StatelessPlan,
    remove: Callable[[Seen], None],
    held: dict[str, str],
) -> None:
    spec = instance_set.get("spec") or {}
    replicas = spec.get("replicas", 1)
    strategy = spec.get("updateStrategy") or {}
    live = [s for s in seen if not s.view.deleting]

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

    # Scale-in: those already PreparingDelete first (an earlier pass chose them and their hook is
    # draining them: choosing others would drain more than the scale-in needs), then the unready,
    # then the outdated (beyond the partition), then the newest.
    if len(keep) > target:
        newest_first = sorted(keep, key=lambda s: s.created, reverse=True)
        order = sorted(  # stable: the newest first within each rank
            newest_first, key=lambda s: (not s.preparing_delete, s.view.ready, s.view.revision == revision)
        )
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
        return
    # The rollout: unready instances first (they cost no availability), within maxUnavailable.
    budget = resolve(strategy.get("maxUnavailable", "10%"), replicas, round_up=not surge)
    budget = budget if surge else max(budget, 1)
    # Below 0 while surge instances are ready: each stands in for one being replaced.
    unavailable = replicas - sum(1 for s in keep if s.view.ready)
    shape = tuple(_shape(template))
    hook = (spec.get("lifecycle") or {}).get("inPlaceUpdate")
    # An instance an earlier pass began to recreate (PreparingDelete) stays first, as at scale-in.
    for s in sorted(outdated, key=lambda s: (not s.preparing_delete, s.view.ready, s.created))[:to_move]:
        if s.view.ready:
            if unavailable >= budget:
                break
            unavailable += 1
        in_place = strategy.get("type") not in RECREATE_TYPES and s.view.shape == shape
        if in_place and hook_holds(hook, s):
            held[s.view.name] = PREPARING_UPDATE
            continue
        if in_place:
            plan.update.append(s.view.name)
        elif strategy.get("type") != "InPlaceOnly":
            remove(s)
