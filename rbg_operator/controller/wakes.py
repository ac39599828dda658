"""What wakes what, in one table: for each kind the operator watches, the server-side label
selectors of its watches, and for an event of one of its objects the reconciles it wakes (as
controller-runtime's For/Owns/Watches read) and how soon.

A change to the reconciled object itself wakes its reconcile at once. Children wake their owner
after a short while instead (Delay.COALESCED: the seconds are a setting, passed in), so that a
burst of their changes (three workloads' status as their pods come up) costs one reconcile.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from typing import Protocol

from .. import kinds, naming
from . import conditions, drain_plan
from .store import Store

# The reconciles, by the name the work queue keys them with: (controller, namespace, name).
GROUP, ADAPTER, GROUP_SET = "rolebasedgroup", "rolebasedgroupscalingadapter", "rolebasedgroupset"
INSTANCE_SET, ROLE_INSTANCE = "roleinstanceset", "roleinstance"
WARMUP = "rolebasedgroupwarmup"
Key = tuple[str, str, str]
KIND_OF_CONTROLLER: dict[str, kinds.Key] = {
    GROUP: kinds.ROLE_BASED_GROUP,
    ADAPTER: kinds.SCALING_ADAPTER,
    GROUP_SET: kinds.GROUP_SET,
    INSTANCE_SET: kinds.ROLE_INSTANCE_SET,
    ROLE_INSTANCE: kinds.ROLE_INSTANCE,
    WARMUP: kinds.WARMUP,
}
CONTROLLERS_OF_KIND: dict[kinds.Key, list[str]] = {}
for _controller, _kind in KIND_OF_CONTROLLER.items():
    CONTROLLERS_OF_KIND.setdefault(_kind, []).append(_controller)

# Server-side filter of every child kind: only objects a group made are listed and watched, so
# the operator's memory and per-event work do not grow with what else runs on the cluster.
# Anyone may set a label: what a child kind's object holds is kept only when one of our kinds
# controls it (store.py's _slim_child), and nothing is written without that check (control.py).
CHILD_SELECTOR = naming.LABEL_GROUP_NAME
# Pods of RoleInstances made without a group (created directly, or by a RoleInstanceSet made
# directly) carry the instance's label and not the group's: a second pod watch, disjoint from
# the first, so each pod comes from exactly one of them.
INSTANCE_POD_SELECTOR = f"{naming.LABEL_V2_INSTANCE_NAME},!{naming.LABEL_GROUP_NAME}"
# Warmup pods carry neither label of the two watches above: a third, disjoint from both.
WARMUP_POD_SELECTOR = f"{naming.LABEL_WARMUP_NAME},!{naming.LABEL_GROUP_NAME},!{naming.LABEL_V2_INSTANCE_NAME}"
EVERYTHING = None  # no selector


def selector_matches(selector: str | None, labels: dict) -> bool:
    """Whether labels match a selector of the forms the table uses: `key` and `!key`, joined by commas."""
    return all(
        (term[1:] not in labels) if term.startswith("!") else (term in labels)
        for term in (selector or "").split(",")
        if term
    )


class Reads(Protocol):
    """What the mappers read: the operator's cache, and whether a group acts on its pods' changes."""

    store: Store

    def reads_pods(self, namespace: str, group: str) -> bool: ...


Mapper = Callable[[Reads, dict], Iterable[Key]]


class Delay(enum.Enum):
    NOW = "now"
    COALESCED = "coalesced"

    def seconds(self, coalesce_seconds: float) -> float:
        return coalesce_seconds if self is Delay.COALESCED else 0.0


@dataclasses.dataclass(frozen=True)
class Wake:
    targets: Mapper
    delay: Delay
    # When this holds of the object, its targets wake at once whatever the delay: the change a
    # parent is waiting for to report Ready (its last pod, its last instance) must not sit out
    # the coalescing delay at every level of the tree.
    at_once: Callable[[dict], bool] | None = None


@dataclasses.dataclass(frozen=True)
class Watch:
    kind: kinds.Key
    selectors: tuple[str | None, ...]  # one watch per selector; several must be disjoint
    wakes: tuple[Wake, ...]


# -- The mappers ----------------------------------------------------------------------------


def owning_group(obj: dict) -> tuple[str, str] | None:
    """(namespace, name) of the group that controls the object, or whose label it carries."""
    meta = obj["metadata"]
    for owner in meta.get("ownerReferences", []) or []:
        # Any version of ours: children made while groups were stored in v1alpha1 name that version.
        if (
            owner.get("controller")
            and owner.get("kind") == "RoleBasedGroup"
            and str(owner.get("apiVersion", "")).partition("/")[0] == kinds.GROUP
        ):
            return (meta["namespace"], owner["name"])
    group = (meta.get("labels") or {}).get(naming.LABEL_GROUP_NAME)
    return (meta["namespace"], group) if group else None


def itself(controller: str) -> Mapper:
    def targets(reads: Reads, obj: dict) -> Iterable[Key]:
        return [(controller, obj["metadata"]["namespace"], obj["metadata"]["name"])]

    return targets


def controlling_group(reads: Reads, obj: dict) -> Iterable[Key]:
    owner = owning_group(obj)
    return [(GROUP, *owner)] if owner is not None else []


def adapters_of_group(reads: Reads, group: dict) -> Iterable[Key]:
    """Adapters read their group's roles and role statuses."""
    namespace, name = group["metadata"]["namespace"], group["metadata"]["name"]
    return [
        (ADAPTER, namespace, a["metadata"]["name"])
        for a in reads.store.in_namespace(*kinds.SCALING_ADAPTER, namespace)
        if ((a.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == name
    ]


def set_of_group(reads: Reads, group: dict) -> Iterable[Key]:
    """A set reads its members' status."""
    name = (group["metadata"].get("labels") or {}).get(naming.LABEL_SET_NAME)
    return [(GROUP_SET, group["metadata"]["namespace"], name)] if name else []


def groups_naming_profile(reads: Reads, profile: dict) -> Iterable[Key]:
    """Groups whose roles name the profile in engineRuntimes (profiles change seldom: a scan)."""
    name = profile["metadata"]["name"]
    for namespace, group in reads.store.keys(*kinds.ROLE_BASED_GROUP):
        body = reads.store.get(*kinds.ROLE_BASED_GROUP, namespace, group) or {}
        if any(
            r.get("profileName") == name
            for role in (body.get("spec") or {}).get("roles") or []
            for r in role.get("engineRuntimes") or []
        ):
            yield GROUP, namespace, group


def controller_of(kind: kinds.Key, controller: str) -> Mapper:
    """The reconcile of the object of `kind` that controls the object (its owner reference)."""

    def targets(reads: Reads, obj: dict) -> Iterable[Key]:
        for owner in obj["metadata"].get("ownerReferences") or []:
            if owner.get("controller") and (owner.get("apiVersion"), owner.get("kind")) == kind:
                return [(controller, obj["metadata"]["namespace"], owner["name"])]
        return []

    return targets


def group_reading_pods(reads: Reads, pod: dict) -> Iterable[Key]:
    """Only a group with a restart policy reads its pods (restart counts, losses, the end of a
    recreation); other pod changes reach their group through the workload's status."""
    owner = owning_group(pod)
    if owner is None:
        return []
    # A pod being drained, or just drained, changes its group's Draining condition.
    state = drain_plan.DrainState.of(pod)
    draining = state is not None and state.phase != drain_plan.JOINED
    return [(GROUP, *owner)] if draining or reads.reads_pods(*owner) else []


def _unfinished_warmups(reads: Reads, namespace: str | None = None) -> Iterable[tuple[str, dict]]:
    """(namespace, spec) of the warmups still at work (a finished one creates nothing more)."""
    for ns, name in reads.store.keys(*kinds.WARMUP, namespace):
        body = reads.store.get(*kinds.WARMUP, ns, name) or {}
        if (body.get("status") or {}).get("phase") not in ("Completed", "Failed"):
            yield ns, body


def warmups_of_group_pod(reads: Reads, pod: dict) -> Iterable[Key]:
    """A warmup aimed at a group follows its pods onto their nodes (only scheduled pods count)."""
    owner = owning_group(pod)
    if owner is None or not (pod.get("spec") or {}).get("nodeName"):
        return []
    return [
        (WARMUP, ns, body["metadata"]["name"])
        for ns, body in _unfinished_warmups(reads, owner[0])
        if ((body.get("spec") or {}).get("targetRoleBasedGroup") or {}).get("name") == owner[1]
    ]


def warmups_of_node(reads: Reads, node: dict) -> Iterable[Key]:
    """A node read by a warmup at work: its labels select it (nodeSelector) and name its hostname.
    Nodes change seldom in what warmups read, and warmups are few and short-lived: a scan."""
    return [(WARMUP, ns, body["metadata"]["name"]) for ns, body in _unfinished_warmups(reads)]


def pod_ready(pod: dict) -> bool:
    """A pod that is Ready (seldom changes again until something goes wrong)."""
    found = conditions.find((pod.get("status") or {}).get("conditions"), "Ready")
    return found is not None and found.get("status") == "True"


def instance_ready(instance: dict) -> bool:
    """A RoleInstance whose status says Ready for its current spec (what its set counts)."""
    status = instance.get("status") or {}
    found = conditions.find(status.get("conditions"), "RoleInstanceReady")
    return (
        found is not None
        and found.get("status") == "True"
        and status.get("observedGeneration", 0) >= instance["metadata"].get("generation", 0)
    )


# -- The table ------------------------------------------------------------------------------

NOW, COALESCED = Delay.NOW, Delay.COALESCED
WATCHES: tuple[Watch, ...] = (
    Watch(
        kinds.ROLE_BASED_GROUP,
        (EVERYTHING,),
        (Wake(itself(GROUP), NOW), Wake(adapters_of_group, NOW), Wake(set_of_group, NOW)),
    ),
    Watch(kinds.SCALING_ADAPTER, (EVERYTHING,), (Wake(itself(ADAPTER), NOW), Wake(controlling_group, COALESCED))),
    Watch(kinds.GROUP_SET, (EVERYTHING,), (Wake(itself(GROUP_SET), NOW),)),
    # A policy binds to the group of its own name.
    Watch(kinds.COORDINATED_POLICY, (EVERYTHING,), (Wake(itself(GROUP), NOW),)),
    Watch(kinds.ENGINE_RUNTIME_PROFILE, (EVERYTHING,), (Wake(groups_naming_profile, COALESCED),)),  # cluster-scoped
    # Only this operator makes these (a set made by hand has no group label): watched unfiltered.
    Watch(
        kinds.ROLE_INSTANCE_SET, (EVERYTHING,), (Wake(itself(INSTANCE_SET), NOW), Wake(controlling_group, COALESCED))
    ),
    Watch(
        kinds.ROLE_INSTANCE,
        (EVERYTHING,),
        (
            Wake(itself(ROLE_INSTANCE), NOW),
            Wake(controller_of(kinds.ROLE_INSTANCE_SET, INSTANCE_SET), COALESCED, at_once=instance_ready),
        ),
    ),
    *(Watch(kind, (CHILD_SELECTOR,), (Wake(controlling_group, COALESCED),)) for kind in kinds.GROUP_CHILDREN),
    Watch(
        kinds.POD,
        (CHILD_SELECTOR, INSTANCE_POD_SELECTOR, WARMUP_POD_SELECTOR),
        (
            Wake(controller_of(kinds.ROLE_INSTANCE, ROLE_INSTANCE), COALESCED, at_once=pod_ready),
            Wake(group_reading_pods, COALESCED),
            Wake(controller_of(kinds.WARMUP, WARMUP), COALESCED),
            Wake(warmups_of_group_pod, COALESCED),
        ),
    ),
    Watch(kinds.WARMUP, (EVERYTHING,), (Wake(itself(WARMUP), NOW),)),
    Watch(kinds.NODE, (EVERYTHING,), (Wake(warmups_of_node, COALESCED),)),  # cluster-scoped
    Watch(kinds.CONTROLLER_REVISION, (CHILD_SELECTOR,), (Wake(controlling_group, COALESCED),)),
)
# (kind, selector) of each watch, in the table's order.
WATCHED: list[tuple[kinds.Key, str | None]] = [(w.kind, s) for w in WATCHES for s in w.selectors]
WAKES_BY_KIND: dict[kinds.Key, tuple[Wake, ...]] = {w.kind: w.wakes for w in WATCHES}


def woken(reads: Reads, obj: dict, coalesce_seconds: float) -> list[tuple[Key, float]]:
    """The reconciles an event of `obj` wakes, each with its delay in seconds."""
    return [
        (key, 0.0 if wake.at_once is not None and wake.at_once(obj) else wake.delay.seconds(coalesce_seconds))
        for wake in WAKES_BY_KIND.get((obj["apiVersion"], obj["kind"]), ())
        for key in wake.targets(reads, obj)
    ]
