"""What a RoleInstance pass decides (the contract's §4.10), as pure functions of what observe saw.

Each component gets `size` pods, named by the role's pattern. A pod whose template changed is
updated in place when only its images (and its metadata) changed, after the grace period;
otherwise it is recreated, or, for an InPlaceOnly set, left alone with a condition saying why.
The instance restart policy RecreateRoleInstanceOnPodRestart recreates every pod of the
instance when one of them restarts, with an exponential backoff between recreations. What must
outlive a restart of the operator (restart count and time, in-place baselines, when a grace
period started) is kept in the instance's status and the pods' labels.

`plan` turns a snapshot and the clock into the pass's writes, in order. `conclude` turns the
snapshot, the plan and what act found (a name held by an object the cache does not show is only
known at write time, under the name lock) into the status, the Events and the requeue.
Nothing here reads the store or talks to the API server.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from .. import naming, timestamps
from ..api.common import graph_cycle, json_object
from ..desired import component_discovery, inplace_scheduling, ports
from ..hashing import json_digest
from . import conditions, first_status, pod_readiness
from .control import CONFLICT_RECHECK_SECONDS
from .instanceset_plan import ANNOTATION_IN_PLACE_ONLY, Event, controller_reference

POD = ("v1", "Pod")
RESTART_POLICY = "RecreateRoleInstanceOnPodRestart"
STABLE_AFTER_SECONDS = 600  # a restart count returns to 0 after max(2 x maxDelay, this) without one


def spec_without_images(spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    for field in ("containers", "initContainers"):
        for container in spec.get(field) or []:
            container.pop("image", None)
    return spec


def pod_name(instance: str, role_type: str | None, component: str, index: int) -> str:
    if role_type == "PodTemplate":
        return instance
    if role_type == "LeaderWorkerSet":
        return f"{instance}-{0 if component == 'leader' else index + 1}"
    return f"{instance}-{component}-{index}"


@dataclasses.dataclass(frozen=True)
class ComponentPlan:
    """What every pod of one component shares, worked out once per reconcile: hashing a pod
    template costs far more than the rest of a pod, and a component may have hundreds of pods."""

    component: dict
    role_type: str | None
    revision: str  # of the component's template: a pod at another one is outdated
    spec_hash: str  # of its pod spec without images: a pod with the same one is updated in place
    env: tuple[dict, ...] = ()  # the component-discovery variables, the same for each of its pods

    @property
    def subdomain(self) -> str | None:
        """Its pods' subdomain: the component's serviceName, else the template's own."""
        spec = (self.component.get("template") or {}).get("spec") or {}
        return self.component.get("serviceName") or spec.get("subdomain")

    @classmethod
    def of(cls, instance: dict, component: dict) -> ComponentPlan:
        template = component.get("template") or {}
        role_type = (instance["metadata"].get("labels") or {}).get(naming.LABEL_V2_ROLE_TYPE)
        env = component_discovery.discovery_env(
            instance["metadata"]["namespace"],
            (instance.get("spec") or {}).get("components") or [],
            component,
            lambda c, i: pod_name(instance["metadata"]["name"], role_type, c, i),
            lambda c, pod, name: ports.allocated_port(instance, c, pod, name),
        )
        # Injected env cannot change on a running pod: what decides it joins both hashes, so a
        # change of it recreates the pod. Only directives that add something add to the hashes,
        # so the pods of a group without them keep the hashes they had before these existed.
        injected = {}
        if env:
            injected["env"] = env
        if (ported := ports.hash_input(instance, component)) is not None:
            injected["ports"] = ported
        spec = spec_without_images(template.get("spec") or {})
        return cls(
            component,
            role_type,
            json_digest([template, injected] if injected else template),
            json_digest([spec, injected] if injected else spec),
            tuple(env),
        )


@dataclasses.dataclass(frozen=True)
class PodSlot:
    """One pod the instance should have; the pod itself is built only when it is written."""

    name: str
    index: int
    plan: ComponentPlan

    @property
    def component(self) -> str:
        return self.plan.component["name"]

    def pod(self, instance: dict, like: dict | None = None) -> dict:
        return desired_pod(instance, self.plan.component, self.index, self.plan, like)


def desired_pod(
    instance: dict, component: dict, index: int, plan: ComponentPlan | None = None, like: dict | None = None
) -> dict:
    """Pod `index` of a component, from its template, with its identity labels, the revision of
    its template and the hash that tells an image-only change (the contract's §4.5), its readiness
    gates and its in-place scheduling affinity. `like`: the live pod an in-place update changes,
    whose gates and affinity (which a pod cannot change) are kept. The pod shares the template's
    nested parts (it is only serialized, never changed)."""
    plan = plan or ComponentPlan.of(instance, component)
    meta = instance["metadata"]
    template = component.get("template") or {}
    template_meta, spec = template.get("metadata") or {}, dict(template.get("spec") or {})
    name = pod_name(meta["name"], plan.role_type, component["name"], index)
    labels = {
        **(template_meta.get("labels") or {}),
        **(component.get("labels") or {}),
        naming.LABEL_V2_INSTANCE_NAME: meta["name"],
        naming.LABEL_V2_COMPONENT_NAME: component["name"],
        naming.LABEL_V2_COMPONENT_ID: str(index),
        naming.LABEL_CONTROLLER_REVISION: plan.revision,
        naming.LABEL_POD_SPEC_HASH: plan.spec_hash,
    }
    if plan.role_type == "LeaderWorkerSet":
        labels[naming.LABEL_V2_COMPONENT_INDEX] = str(0 if component["name"] == "leader" else index + 1)
    annotations = {**(template_meta.get("annotations") or {}), **(component.get("annotations") or {})}
    if component.get("serviceName"):
        spec["hostname"], spec["subdomain"] = name, component["serviceName"]
    spec = component_discovery.with_env(spec, list(plan.env))
    annotations.pop(component_discovery.ANNOTATION, None)  # a directive to the operator, not the pod's
    if like is None:
        gates = with_gates(spec.get("readinessGates") or [], creation_gates(instance))
        where = inplace_scheduling.placement(instance, name, component, component_pod_names(instance, component))
    else:
        # A pod's gates cannot change: an update in place carries exactly the ones it has.
        gates = (like.get("spec") or {}).get("readinessGates") or []
        where = inplace_scheduling.Placement.from_pod(like)
    spec.pop("readinessGates", None)
    if gates:
        spec["readinessGates"] = gates
    if where is not None:
        spec = inplace_scheduling.with_affinity(spec, where)
        annotations[inplace_scheduling.ANNOTATION_INJECTED] = where.annotation()
    pod_meta = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": labels,
        "ownerReferences": [controller_reference(instance)],
    }
    if annotations:
        pod_meta["annotations"] = annotations
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
    return ports.inject(pod, instance, component)  # allocated ports: env and annotations (desired/ports.py)


def with_gates(own: list[dict], added: list[dict]) -> list[dict]:
    """The template's own readiness gates, then the operator's that it does not already name."""
    named = {g.get("conditionType") for g in own}
    return [*own, *(g for g in added if g.get("conditionType") not in named)]


def creation_gates(instance: dict) -> list[dict]:
    """The readiness gates a new pod of the instance gets (pod_readiness says when each has work)."""
    spec = instance.get("spec") or {}
    total = sum(c.get("size", 1) for c in spec.get("components") or [])
    return pod_readiness.gates_for(total, grace_seconds(instance), spec.get("readyPolicy"))


def grace_seconds(instance: dict) -> int:
    """The in-place update grace period the instance's set gives it (0: none, or not a number)."""
    raw = (instance["metadata"].get("annotations") or {}).get(naming.ANNOTATION_V2_GRACE_PERIOD) or "0"
    return int(raw) if raw.isdigit() else 0


def component_pod_names(instance: dict, component: dict) -> list[str]:
    role_type = (instance["metadata"].get("labels") or {}).get(naming.LABEL_V2_ROLE_TYPE)
    return [
        pod_name(instance["metadata"]["name"], role_type, component["name"], i) for i in range(component.get("size", 1))
    ]


def pod_slots(instance: dict) -> dict[str, PodSlot]:
    """Every pod the instance should have, by name, in spec order: two hashes per component."""
    meta = instance["metadata"]
    slots = {}
    for component in (instance.get("spec") or {}).get("components") or []:
        plan = ComponentPlan.of(instance, component)
        for index in range(component.get("size", 1)):
            name = pod_name(meta["name"], plan.role_type, component["name"], index)
            slots[name] = PodSlot(name, index, plan)
    return slots


def pod_names(instance: dict) -> list[str]:
    """The names of pod_slots, in the same order, without hashing a template."""
    role_type = (instance["metadata"].get("labels") or {}).get(naming.LABEL_V2_ROLE_TYPE)
    return [
        pod_name(instance["metadata"]["name"], role_type, c["name"], index)
        for c in (instance.get("spec") or {}).get("components") or []
        for index in range(c.get("size", 1))
    ]


def desired_pods(instance: dict) -> dict[str, dict]:
    return {name: slot.pod(instance) for name, slot in pod_slots(instance).items()}


def update_kind(pod: dict, desired: dict | PodSlot) -> str:
    """ "current", "in-place" (images and metadata only) or "recreate"."""
    if isinstance(desired, PodSlot):
        revision, spec_hash = desired.plan.revision, desired.plan.spec_hash
        subdomain = desired.plan.subdomain
    else:
        want = desired["metadata"]["labels"]
        revision, spec_hash = want[naming.LABEL_CONTROLLER_REVISION], want[naming.LABEL_POD_SPEC_HASH]
        subdomain = desired["spec"].get("subdomain")
    have = pod["metadata"].get("labels") or {}
    if (pod.get("spec") or {}).get("subdomain") != subdomain:
        return "recreate"  # a pod cannot change its subdomain (sharedServiceSelection switched)
    if have.get(naming.LABEL_CONTROLLER_REVISION) == revision:
        return "current"
    return "in-place" if have.get(naming.LABEL_POD_SPEC_HASH) == spec_hash else "recreate"


DEPENDS_ON = "rolebasedgroup.workloads.x-k8s.io/component-depends-on"  # {"startAfter": [...], "deleteAfter": [...]}


def component_order(components: list[dict]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The contract's component-depends-on directive (read from the component's annotations, then its
    template's): which components each must wait for before its pods are created (startAfter), and
    which must have no excess pods left before its own excess pods go (the reverse of startAfter,
    with its own deleteAfter). A graph with a cycle, or a directive that is not valid JSON, orders
    nothing."""
    start: dict[str, list[str]] = {}
    delete: dict[str, list[str]] = {c["name"]: [] for c in components}
    for component in components:
        directive = json_object(
            (component.get("annotations") or {}).get(DEPENDS_ON)
            or (((component.get("template") or {}).get("metadata") or {}).get("annotations") or {}).get(DEPENDS_ON)
        )
        start[component["name"]] = [d for d in directive.get("startAfter") or [] if d in delete]
        delete[component["name"]] += [d for d in directive.get("deleteAfter") or [] if d in delete]
    for name, waits_for in start.items():
        for before in waits_for:
            delete[before].append(name)  # what starts after a component goes before it
    return ({} if graph_cycle(start) else start), ({} if graph_cycle(delete) else delete)


def _ready(pod: dict) -> bool:
    return (conditions.find((pod.get("status") or {}).get("conditions"), "Ready") or {}).get("status") == "True"


@dataclasses.dataclass(frozen=True)
class RestartDecision:
    recreate: bool = False
    wait: float | None = None  # seconds of backoff left before a recreation may happen
    reason: str = ""


def restart_decision(instance: dict, pods: list[dict], current: bool, now: datetime.datetime) -> RestartDecision:
    """RecreateRoleInstanceOnPodRestart: a pod of an instance that was Ready (its last status
    says so, and no recreation is under way), with no update in progress, failed or had a
    container restart that no in-place update explains. The first recreation is immediate;
    each later one waits min(base x 2^(n-1), max) after the previous one."""
    spec, status = instance.get("spec") or {}, instance.get("status") or {}
    config = spec.get("restartPolicyConfig") or {}
    if (config.get("type") or spec.get("restartPolicy")) != RESTART_POLICY or not current:
        return RestartDecision()
    was_ready = (conditions.find(status.get("conditions"), "RoleInstanceReady") or {}).get("status") == "True"
    restarting = (conditions.find(status.get("conditions"), "Restarting") or {}).get("status") == "True"
    if not was_ready or restarting:
        return RestartDecision()
    baselines = status.get("inPlaceUpdateContainerBaselines") or {}
    reason = ""
    for pod in pods:
        name = pod["metadata"]["name"]
        if naming.restart_ignored(pod):
            continue  # a pod whose failures the restart policy is told to ignore (a sidecar, a probe job)
        if pod_readiness.condition(pod, pod_readiness.IN_PLACE_UPDATE_READY) == "False":
            continue  # its containers restart on purpose: an in-place update is under way
        if (pod.get("status") or {}).get("phase") == "Failed":
            reason = f"pod {name} failed"
            break
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            baseline = (baselines.get(name) or {}).get(container["name"])
            # An in-place image change restarts the container once: that restart is expected.
            allowed = baseline["restartCount"] + 1 if baseline else 0
            if container.get("restartCount", 0) > allowed:
                reason = f"container {container['name']} of pod {name} restarted"
                break
        if reason:
            break
    if not reason:
        return RestartDecision()
    count, last = status.get("restartCount", 0), timestamps.parse_or_none(status.get("lastRestartTime"))
    if count and last is not None:
        delay = min(config.get("baseDelaySeconds", 30) * 2 ** (count - 1), config.get("maxDelaySeconds", 600))
        left = (last - now).total_seconds() + delay
        if left > 0:
            return RestartDecision(wait=left, reason=reason)
    return RestartDecision(recreate=True, reason=reason)


def component_statuses(instance: dict, pods: dict[str, dict], slots: dict[str, PodSlot] | None = None) -> list[dict]:
    slots = pod_slots(instance) if slots is None else slots
    by_component: dict[str, list[PodSlot]] = {}
    for slot in slots.values():
        by_component.setdefault(slot.component, []).append(slot)
    statuses = []
    for component in (instance.get("spec") or {}).get("components") or []:
        wanted = by_component.get(component["name"], [])
        have = [(pods[w.name], w) for w in wanted if w.name in pods]
        updated = [(p, w) for p, w in have if update_kind(p, w) == "current"]
        ready = sum(1 for p, _ in have if _ready(p))
        statuses.append(
            {
                "name": component["name"],
                "size": len(wanted),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "updatedReplicas": len(updated),
                "updatedReadyReplicas": sum(1 for p, _ in updated if _ready(p)),
                "scheduledReplicas": sum(1 for p, _ in have if (p.get("spec") or {}).get("nodeName")),
            }
        )
    return statuses


@dataclasses.dataclass(frozen=True)
class RoleInstanceSnapshot:
    """Everything one pass knows, read once from the cache. The dicts are private copies that
    nothing changes."""

    body: dict  # the instance
    pods: Mapping[str, dict]  # the pods it controls that are not going, by name
    # Names of pods it should have that the cache shows held by an object it does not control: why not.
    held: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The group's drain context (controller/drain.Context) when its group drains this role's pods.
    drain: Any = None


@dataclasses.dataclass(frozen=True)
class Delete:
    name: str
    uid: str | None


@dataclasses.dataclass(frozen=True)
class Create:
    slot: PodSlot  # the pod is built only when it is written


@dataclasses.dataclass(frozen=True)
class MarkGraceStart:
    name: str
    since: str  # `{revision}-{unix seconds}`: the grace period of an in-place update starts


@dataclasses.dataclass(frozen=True)
class UpdateInPlace:
    slot: PodSlot
    like: dict  # the live pod: its readiness gates and affinity, which cannot change, are kept
    # Written first: the instance's status with the pod's container restart counts from before
    # the new images restart them, so an operator killed in between does not take that restart
    # for a crash.
    status_first: dict


@dataclasses.dataclass(frozen=True)
class RecordPlacement:
    nodes: str  # the instance's annotation of the nodes its pods are on, written before any delete


@dataclasses.dataclass(frozen=True)
class SetPodConditions:
    name: str
    conditions: tuple[dict, ...]  # readiness-gate conditions: type and status


Action = RecordPlacement | Delete | Create | MarkGraceStart | SetPodConditions | UpdateInPlace


@dataclasses.dataclass(frozen=True)
class RoleInstancePlan:
    slots: Mapping[str, PodSlot]  # every pod the instance should have, in spec order
    decision: RestartDecision
    actions: tuple[Action, ...]  # in the order act makes them
    status: dict  # the status with what this pass changes of it (restart count, baselines)
    blocked: tuple[str, ...]  # pods an InPlaceOnly instance cannot update
    held: Mapping[str, str]  # pods not created: their names are held by others
    look_again: tuple[float, ...]
    events: tuple[Event, ...]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What act did: the answers of its writes by pod name, and the names it found held under
    the name lock."""

    written: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    held: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Report:
    status: dict | None  # None: a young instance's first status, held back (first_status.py)
    events: tuple[Event, ...]
    requeue: float | None


def plan(snapshot: RoleInstanceSnapshot, now: datetime.datetime) -> RoleInstancePlan:
    """The writes of the pass, in order: a recreation of every pod (restart policy), or the pods
    to delete (failed, extra, and changed beyond what in-place can do), create (once the
    components they start after are Ready) and update in place (after the grace period)."""
    body, pods = snapshot.body, snapshot.pods
    slots = pod_slots(body)
    status = copy.deepcopy(body.get("status") or {})
    current = all(n in pods and update_kind(pods[n], s) == "current" for n, s in slots.items())
    decision = restart_decision(
        body,
        list(pods.values()),
        current and status.get("observedGeneration") == body["metadata"].get("generation"),
        now,
    )
    record = inplace_scheduling.recorded(body, dict(pods), list(slots))
    # Where the pods are is written down before any of them goes, for their successors to return to.
    first: tuple[Action, ...] = () if record is None else (RecordPlacement(record),)
    if decision.recreate:
        status.update(
            restartCount=status.get("restartCount", 0) + 1,
            lastRestartTime=timestamps.stamp(now),
            inPlaceUpdateContainerBaselines={},
        )
        event = Event(
            "Normal",
            "ReCreateInstance",
            f"{decision.reason}: recreating the instance (restart {status['restartCount']})",
        )
        return RoleInstancePlan(
            slots,
            decision,
            first + tuple(Delete(n, p["metadata"].get("uid")) for n, p in pods.items()),
            status,
            (),
            {},
            (),
            (event,),
        )
    if decision.wait is not None:  # crashed pods stay meanwhile, so their logs survive
        return RoleInstancePlan(slots, decision, first, status, (), {}, (decision.wait,), ())
    return _converge(snapshot, slots, decision, status, now, first)


def _converge(
    snapshot: RoleInstanceSnapshot,
    slots: Mapping[str, PodSlot],
    decision: RestartDecision,
    status: dict,
    now: datetime.datetime,
    first: tuple[Action, ...] = (),
) -> RoleInstancePlan:
    body = snapshot.body
    annotations = body["metadata"].get("annotations") or {}
    in_place_only = annotations.get(ANNOTATION_IN_PLACE_ONLY) == "true"
    grace = grace_seconds(body)
    components = (body.get("spec") or {}).get("components") or []
    start_after, delete_after = component_order(components)

    def component_of(pod: dict) -> str | None:
        return (pod["metadata"].get("labels") or {}).get(naming.LABEL_V2_COMPONENT_NAME)

    actions: list[Action] = list(first)
    look_again: list[float] = []
    blocked: list[str] = []
    held: dict[str, str] = {}
    # Failed pods go, and extra ones, each once the components it is deleted after have none left.
    excess = {component_of(p) for n, p in snapshot.pods.items() if n not in slots}
    pods = {}
    for name, pod in snapshot.pods.items():
        failed = (pod.get("status") or {}).get("phase") == "Failed"
        if failed or (name not in slots and not set(delete_after.get(component_of(pod), [])) & excess):
            actions.append(Delete(name, pod["metadata"].get("uid")))
        else:
            pods[name] = pod
    sizes = {c["name"]: c.get("size", 1) for c in components}
    gang = annotations.get(naming.ANNOTATION_INSTANCE_GANG) == "true"
    if gang and not in_place_only and any(update_kind(pods[n], s) == "recreate" for n, s in slots.items() if n in pods):
        # A gang instance's pods are placed together: one that must be recreated takes them all along.
        actions += [Delete(n, p["metadata"].get("uid")) for n, p in pods.items()]
        return RoleInstancePlan(slots, decision, tuple(actions), status, (), {}, (1.0,), ())
    # Runtime readiness, not the pods' Ready: with InstancePodReady, a started component's pods
    # are Ready only once the components starting after them run too.
    ready = collections.Counter(component_of(p) for p in pods.values() if pod_readiness.runtime_ready(p))
    updates: list[Action] = []
    for name, slot in slots.items():
        pod = pods.get(name)
        if pod is None:
            if all(ready[c] >= sizes[c] > 0 for c in start_after.get(slot.component, [])):
                if name in snapshot.held:
                    held[name] = snapshot.held[name]
                else:
                    actions.append(Create(slot))
            continue
        kind = update_kind(pod, slot)
        if kind == "recreate" and in_place_only:
            blocked.append(name)
        elif kind == "recreate":
            actions.append(Delete(name, pod["metadata"].get("uid")))  # made anew on the next pass
            look_again.append(1.0)
        elif kind == "in-place":
            if grace:
                mark = (pod["metadata"].get("labels") or {}).get(naming.LABEL_IN_PLACE_SINCE, "")
                target, _, since = mark.partition("-")
                if target != slot.plan.revision or not since.isdigit():
                    actions.append(MarkGraceStart(name, f"{slot.plan.revision}-{int(now.timestamp())}"))
                    look_again.append(float(grace))
                    continue
                left = int(since) + grace - now.timestamp()
                if left > 0:
                    look_again.append(left)
                    continue
            baselines = status.setdefault("inPlaceUpdateContainerBaselines", {})
            baselines[name] = in_place_baseline(pod, slot, baselines.get(name) or {})
            updates.append(
                UpdateInPlace(
                    slot,
                    like=pod,
                    status_first={
                        **(body.get("status") or {}),
                        "inPlaceUpdateContainerBaselines": copy.deepcopy(baselines),
                    },
                )
            )
    # The gates' conditions go before the images change: the pod leaves its endpoints first.
    going = {a.name for a in actions if isinstance(a, Delete)}
    actions += gate_conditions(body, {n: p for n, p in pods.items() if n not in going}, slots, status)
    actions += updates
    return RoleInstancePlan(slots, decision, tuple(actions), status, tuple(blocked), held, tuple(look_again), ())


def in_place_baseline(pod: dict, slot: PodSlot, before: dict) -> dict:
    """The restart counts an in-place update starts from: of each container whose image it changes
    (which restarts once), and the earlier baseline of a container it leaves alone (which may have
    restarted for an earlier update). An update that changes no image (template metadata only)
    has no container to wait for."""
    live = {c.get("name"): c.get("image") for c in (pod.get("spec") or {}).get("containers") or []}
    wanted = {
        c.get("name"): c.get("image")
        for c in ((slot.plan.component.get("template") or {}).get("spec") or {}).get("containers") or []
    }
    baseline = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        container = status.get("name")
        if not live or live.get(container) != wanted.get(container):
            baseline[container] = {"restartCount": status.get("restartCount", 0)}
        elif container in before:
            baseline[container] = before[container]
    return baseline


def gate_conditions(body: dict, pods: dict[str, dict], slots: Mapping[str, PodSlot], status: dict) -> list[Action]:
    """The readiness-gate conditions to write on the instance's pods (pod_readiness)."""
    updating = {n for n, s in slots.items() if n in pods and update_kind(pods[n], s) == "in-place"}
    instance_ready = all(n in pods and n not in updating and pod_readiness.runtime_ready(pods[n]) for n in slots)
    baselines = status.get("inPlaceUpdateContainerBaselines") or {}
    policy = (body.get("spec") or {}).get("readyPolicy")
    actions: list[Action] = []
    for name, pod in pods.items():
        changes = pod_readiness.wanted_conditions(
            pod,
            in_place_ready_now=pod_readiness.in_place_ready(pod, name in updating, baselines.get(name)),
            instance_ready=instance_ready,
            ready_policy=policy,
        )
        if changes:
            actions.append(SetPodConditions(name, tuple(changes)))
    return actions


def conclude(
    snapshot: RoleInstanceSnapshot, planned: RoleInstancePlan, outcome: Outcome, now: datetime.datetime
) -> Report:
    """The status after the pass's writes (the watch echoes of its own writes will not wake this
    instance again, so the status must already count them), its Events and when to look again."""
    body, slots, decision = snapshot.body, planned.slots, planned.decision
    name = body["metadata"]["name"]
    gone = {a.name for a in planned.actions if isinstance(a, Delete)}
    pods = {n: p for n, p in snapshot.pods.items() if n not in gone}
    pods.update(outcome.written)
    held = {**planned.held, **outcome.held}
    conflicts = [held[n] for n in slots if n in held]
    look_again = list(planned.look_again)
    events = list(planned.events)
    status = copy.deepcopy(planned.status)
    in_place = sorted(
        n
        for n, s in slots.items()
        if n in pods
        and (
            update_kind(pods[n], s) == "in-place"
            or pod_readiness.condition(pods[n], pod_readiness.IN_PLACE_UPDATE_READY) == "False"
        )
    )
    # A pod counts when it is Ready, at the instance's revision and not held by an in-place update.
    unready = [
        n
        for n, s in slots.items()
        if not (n in pods and _ready(pods[n]) and update_kind(pods[n], s) == "current") or n in in_place
    ]
    ready = bool(slots) and not unready
    # readyPolicy None: the instance counts as ready at once, pods or not (the contract's §4.19).
    ready_at_once = (body.get("spec") or {}).get("readyPolicy") == "None"
    wanted = [
        {
            "type": "RoleInstanceReady",
            "status": "True" if ready or ready_at_once else "False",
            "reason": "Ready" if ready or ready_at_once else "InplaceUpdateNotReady" if in_place else "PodsNotReady",
            "message": ""
            if ready or ready_at_once
            else f"updating in place: {', '.join(in_place)}"
            if in_place
            else "not every pod of the instance is ready and updated",
        },
        {
            "type": "RoleInstanceInPlaceUpdateReady",
            "status": "False" if in_place else "True",
            "reason": "InPlaceUpdating" if in_place else "InPlaceUpdateReady",
            "message": f"updating in place: {', '.join(in_place)}" if in_place else "",
        },
    ]
    if not ready_at_once:
        wanted.append(
            {
                "type": "RoleInstanceAllPodsReady",
                "status": "True" if ready else "False",
                "reason": "PodsReady" if ready else "AtLeastOnePodNotReady",
                "message": "Ready" if ready else f"not ready or not updated: {', '.join(unready) or 'no pods yet'}",
            }
        )
    # The instance's readiness gates: conditions of its own that must be True too (a Stateless
    # set's instances have RoleInstanceInPlaceUpdateReady, which this pass writes; others, another writer).
    known = {c["type"]: c["status"] for c in (body.get("status") or {}).get("conditions") or []}
    known.update((c["type"], c["status"]) for c in wanted)
    waiting = [
        g["conditionType"]
        for g in (body.get("spec") or {}).get("readinessGates") or []
        if known.get(g.get("conditionType")) != "True"
    ]
    if waiting and wanted[0]["status"] == "True":
        wanted[0].update(
            status="False", reason="ReadinessGatesNotReady", message=f"readiness gates not True: {', '.join(waiting)}"
        )
    if conflicts:
        wanted[0].update(status="False", reason="ChildConflict", message="; ".join(conflicts))
        look_again.append(CONFLICT_RECHECK_SECONDS)  # nothing of the pod in the way wakes the instance
        before = conditions.find((body.get("status") or {}).get("conditions"), "RoleInstanceReady") or {}
        if before.get("message") != wanted[0]["message"]:
            events.append(Event("Warning", "ChildConflict", wanted[0]["message"]))
    if decision.recreate:
        wanted.append(
            {
                "type": "Restarting",
                "status": "True",
                "reason": "RestartPolicyTriggered",
                "message": f"{decision.reason}; recreating every pod of the instance",
            }
        )
    elif ready:
        wanted.append({"type": "Restarting", "status": "False", "reason": "InstanceReady", "message": ""})
    if not decision.recreate and decision.wait is None:
        wanted.append(
            {
                "type": "InPlaceUpdateBlocked",
                "status": "True",
                "reason": "NotImageOnly",
                "message": f"pod {', '.join(planned.blocked)} changes more than images, which InPlaceOnly cannot do",
            }
            if planned.blocked
            else {"type": "InPlaceUpdateBlocked", "status": "False", "reason": "NotBlocked", "message": ""}
        )
    last = timestamps.parse_or_none(status.get("lastRestartTime"))
    max_delay = ((body.get("spec") or {}).get("restartPolicyConfig") or {}).get("maxDelaySeconds", 600)
    if (
        ready
        and last is not None
        and status.get("restartCount")
        and (now - last).total_seconds() >= max(2 * max_delay, STABLE_AFTER_SECONDS)
    ):
        status["restartCount"] = 0  # stable long enough: the next incident starts the backoff afresh
    generation = body["metadata"].get("generation", 0)
    status.update(
        {
            "observedGeneration": generation,
            "componentStatuses": component_statuses(body, pods, dict(slots)),
            "labelSelector": f"{naming.LABEL_V2_INSTANCE_NAME}={name}",
            "updateRevision": (body["metadata"].get("labels") or {}).get(naming.LABEL_CONTROLLER_REVISION, ""),
            "conditions": conditions.merge(status.get("conditions"), wanted, generation, at=timestamps.stamp(now)),
        }
    )
    if ready:
        status["currentRevision"] = status["updateRevision"]
    # Pods still being created or started, and nothing else to say: no reader acts on that.
    in_progress_only = (
        wanted[0]["reason"] == "PodsNotReady"
        and not planned.blocked
        and not decision.recreate
        and decision.wait is None
        and not events
    )
    held = first_status.hold(body, in_progress_only, now, pods.values())
    if held is not None:
        return Report(None, tuple(events), min([*look_again, held]))
    return Report(status, tuple(events), min(look_again) if look_again else None)
