"""The RoleInstance controller: the pods of one instance of a role (the contract's §4.10).

Each component gets `size` pods, named by the role's pattern. A pod whose template changed is
updated in place when only its images (and its metadata) changed, after the grace period;
otherwise it is recreated, or, for an InPlaceOnly set, left alone with a condition saying why.
The instance restart policy RecreateRoleInstanceOnPodRestart recreates every pod of the
instance when one of them restarts, with an exponential backoff between recreations.

The decisions are pure functions of the instance, its pods and the clock; what must outlive a
restart of the operator (restart count and time, in-place baselines, when a grace period
started) is kept in the instance's status and the pods' labels.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import hashlib
import json
import logging

from .. import naming
from ..api.common import graph_cycle, json_object
from ..events import EventRecorder
from ..kube import KINDS, Kube
from . import conditions
from .instanceset import owned
from .instanceset_plan import ANNOTATION_IN_PLACE_ONLY, INSTANCE, controller_reference
from .control import CONFLICT_RECHECK_SECONDS, CREATING, conflict, observe
from .scaling import write_status
from .store import Store

log = logging.getLogger(__name__)

POD = ("v1", "Pod")
FIELD_MANAGER = "rbg-operator-roleinstance"
RESTART_POLICY = "RecreateRoleInstanceOnPodRestart"
STABLE_AFTER_SECONDS = 600  # a restart count returns to 0 after max(2 x maxDelay, this) without one


def _hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


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

    @classmethod
    def of(cls, instance: dict, component: dict) -> "ComponentPlan":
        template = component.get("template") or {}
        return cls(component, (instance["metadata"].get("labels") or {}).get(naming.LABEL_V2_ROLE_TYPE),
                   _hash(template), _hash(spec_without_images(template.get("spec") or {})))


@dataclasses.dataclass(frozen=True)
class PodSlot:
    """One pod the instance should have; the pod itself is built only when it is written."""

    name: str
    index: int
    plan: ComponentPlan

    @property
    def component(self) -> str:
        return self.plan.component["name"]

    def pod(self, instance: dict) -> dict:
        return desired_pod(instance, self.plan.component, self.index, self.plan)


def desired_pod(instance: dict, component: dict, index: int, plan: ComponentPlan | None = None) -> dict:
    """Pod `index` of a component, from its template, with its identity labels, the revision of
    its template and the hash that tells an image-only change (the contract's §4.5). The pod
    shares the template's nested parts (it is only serialized, never changed)."""
    plan = plan or ComponentPlan.of(instance, component)
    meta = instance["metadata"]
    template = component.get("template") or {}
    template_meta, spec = template.get("metadata") or {}, dict(template.get("spec") or {})
    name = pod_name(meta["name"], plan.role_type, component["name"], index)
    labels = {**(template_meta.get("labels") or {}), **(component.get("labels") or {}),
              naming.LABEL_V2_INSTANCE_NAME: meta["name"], naming.LABEL_V2_COMPONENT_NAME: component["name"],
              naming.LABEL_V2_COMPONENT_ID: str(index),
              naming.LABEL_CONTROLLER_REVISION: plan.revision, naming.LABEL_POD_SPEC_HASH: plan.spec_hash}
    if plan.role_type == "LeaderWorkerSet":
        labels[naming.LABEL_V2_COMPONENT_INDEX] = str(0 if component["name"] == "leader" else index + 1)
    annotations = {**(template_meta.get("annotations") or {}), **(component.get("annotations") or {})}
    if component.get("serviceName"):
        spec["hostname"], spec["subdomain"] = name, component["serviceName"]
    pod_meta = {"name": name, "namespace": meta["namespace"], "labels": labels,
                "ownerReferences": [controller_reference(instance)]}
    if annotations:
        pod_meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


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


def desired_pods(instance: dict) -> dict[str, dict]:
    return {name: slot.pod(instance) for name, slot in pod_slots(instance).items()}


def update_kind(pod: dict, desired: dict | PodSlot) -> str:
    """"current", "in-place" (images and metadata only) or "recreate"."""
    if isinstance(desired, PodSlot):
        revision, spec_hash = desired.plan.revision, desired.plan.spec_hash
    else:
        want = desired["metadata"]["labels"]
        revision, spec_hash = want[naming.LABEL_CONTROLLER_REVISION], want[naming.LABEL_POD_SPEC_HASH]
    have = pod["metadata"].get("labels") or {}
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
        directive = json_object((component.get("annotations") or {}).get(DEPENDS_ON) or (
            ((component.get("template") or {}).get("metadata") or {}).get("annotations") or {}).get(DEPENDS_ON))
        start[component["name"]] = [d for d in directive.get("startAfter") or [] if d in delete]
        delete[component["name"]] += [d for d in directive.get("deleteAfter") or [] if d in delete]
    for name, waits_for in start.items():
        for before in waits_for:
            delete[before].append(name)  # what starts after a component goes before it
    return ({} if graph_cycle(start) else start), ({} if graph_cycle(delete) else delete)


def _ready(pod: dict) -> bool:
    return (conditions.find((pod.get("status") or {}).get("conditions"), "Ready") or {}).get("status") == "True"


def _time(stamp: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


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
    count, last = status.get("restartCount", 0), _time(status.get("lastRestartTime"))
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
        statuses.append({"name": component["name"], "size": len(wanted), "readyReplicas": ready,
                         "availableReplicas": ready, "updatedReplicas": len(updated),
                         "updatedReadyReplicas": sum(1 for p, _ in updated if _ready(p)),
                         "scheduledReplicas": sum(1 for p, _ in have if (p.get("spec") or {}).get("nodeName"))})
    return statuses


# A reconcile of a large instance gives the event loop back this often in its per-pod loops, so
# that lease renewal, webhooks and other reconciles are never held up by one instance.
YIELD_EVERY = 64


class RoleInstanceReconciler:
    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder
        # (namespace, instance) -> pods whose names are held by objects the instance does not
        # control, found by the pass under way (one pass per instance at a time).
        self.conflicts: dict[tuple[str, str], list[str]] = {}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        body = self.store.get(*INSTANCE, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        self.conflicts[(namespace, name)] = []
        try:
            return await self._reconcile(body)
        finally:
            del self.conflicts[(namespace, name)]

    async def _reconcile(self, body: dict) -> float | None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        now = datetime.datetime.now(datetime.timezone.utc)
        pods = {p["metadata"]["name"]: p for p in owned(self.store, POD, body)
                if not p["metadata"].get("deletionTimestamp")}
        desired = pod_slots(body)
        status = dict(body.get("status") or {})
        current = all(n in pods and update_kind(pods[n], d) == "current" for n, d in desired.items())
        decision = restart_decision(body, list(pods.values()), current and status.get(
            "observedGeneration") == body["metadata"].get("generation"), now)
        look_again: list[float] = []
        restarting, blocked = None, []
        if decision.recreate:
            for i, pod in enumerate(pods.values()):
                await self._delete(pod)
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            pods = {}
            status.update(restartCount=status.get("restartCount", 0) + 1, lastRestartTime=conditions.now(),
                          inPlaceUpdateContainerBaselines={})
            restarting = {"type": "Restarting", "status": "True", "reason": "RestartPolicyTriggered",
                          "message": f"{decision.reason}; recreating every pod of the instance"}
            await self.recorder.emit(body, "Normal", "ReCreateInstance", f"{decision.reason}: recreating the instance "
                                     f"(restart {status['restartCount']})")
        elif decision.wait is not None:
            look_again.append(decision.wait)  # crashed pods stay meanwhile, so their logs survive
        else:
            # `pods` comes back as this pass left them: the watch echoes of its own writes will not
            # wake this reconcile again, so the status must already count them.
            blocked = await self._converge(body, pods, desired, status, now, look_again)
        ready = bool(desired) and all(n in pods and _ready(pods[n]) and update_kind(pods[n], d) == "current"
                                      for n, d in desired.items())
        wanted_conditions = [{"type": "RoleInstanceReady", "status": "True" if ready else "False",
                              "reason": "AllPodsReady" if ready else "PodsNotReady",
                              "message": "" if ready else "not every pod of the instance is ready and updated"}]
        conflicts = self.conflicts[(namespace, name)]
        if conflicts:
            wanted_conditions[0].update(status="False", reason="ChildConflict", message="; ".join(conflicts))
            look_again.append(CONFLICT_RECHECK_SECONDS)  # nothing of the pod in the way wakes the instance
            before = conditions.find((body.get("status") or {}).get("conditions"), "RoleInstanceReady") or {}
            if before.get("message") != wanted_conditions[0]["message"]:
                await self.recorder.emit(body, "Warning", "ChildConflict", wanted_conditions[0]["message"])
        if restarting is not None:
            wanted_conditions.append(restarting)
        elif ready:
            wanted_conditions.append({"type": "Restarting", "status": "False", "reason": "InstanceReady", "message": ""})
        if not decision.recreate and decision.wait is None:
            wanted_conditions.append(
                {"type": "InPlaceUpdateBlocked", "status": "True", "reason": "NotImageOnly",
                 "message": f"pod {', '.join(blocked)} changes more than images, which InPlaceOnly cannot do"}
                if blocked else {"type": "InPlaceUpdateBlocked", "status": "False", "reason": "NotBlocked",
                                 "message": ""})
        last = _time(status.get("lastRestartTime"))
        max_delay = ((body.get("spec") or {}).get("restartPolicyConfig") or {}).get("maxDelaySeconds", 600)
        if ready and last is not None and status.get("restartCount") and \
                (now - last).total_seconds() >= max(2 * max_delay, STABLE_AFTER_SECONDS):
            status["restartCount"] = 0  # stable long enough: the next incident starts the backoff afresh
        generation = body["metadata"].get("generation", 0)
        status.update({
            "observedGeneration": generation,
            "componentStatuses": component_statuses(body, pods, desired),
            "labelSelector": f"{naming.LABEL_V2_INSTANCE_NAME}={name}",
            "updateRevision": (body["metadata"].get("labels") or {}).get(naming.LABEL_CONTROLLER_REVISION, ""),
            "conditions": conditions.merge(status.get("conditions"), wanted_conditions, generation),
        })
        if ready:
            status["currentRevision"] = status["updateRevision"]
        await write_status(self.kube, self.store, body, status, FIELD_MANAGER)
        return min(look_again) if look_again else None

    async def _converge(self, body: dict, pods: dict[str, dict], desired: dict[str, PodSlot], status: dict,
                        now: datetime.datetime, look_again: list[float]) -> list[str]:
        """Create missing pods, remove extra and failed ones, update the rest; returns the pods an
        InPlaceOnly instance cannot update."""
        in_place_only = (body["metadata"].get("annotations") or {}).get(ANNOTATION_IN_PLACE_ONLY) == "true"
        grace = int((body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_V2_GRACE_PERIOD) or 0)
        blocked = []
        components = (body.get("spec") or {}).get("components") or []
        start_after, delete_after = component_order(components)
        component_of = lambda pod: (pod["metadata"].get("labels") or {}).get(naming.LABEL_V2_COMPONENT_NAME)  # noqa: E731
        excess = {component_of(p) for n, p in pods.items() if n not in desired}
        for i, (name, pod) in enumerate(list(pods.items())):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            failed = (pod.get("status") or {}).get("phase") == "Failed"
            if failed or (name not in desired and not set(delete_after.get(component_of(pod), [])) & excess):
                await self._delete(pod)
                del pods[name]
        sizes = {c["name"]: c.get("size", 1) for c in components}
        ready = collections.Counter(component_of(p) for p in pods.values() if _ready(p))
        for i, (name, slot) in enumerate(desired.items()):
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            pod = pods.get(name)
            if pod is None:
                if all(ready[c] >= sizes[c] > 0 for c in start_after.get(slot.component, [])) and \
                        (made := await self._create(body, slot.pod(body))) is not None:
                    pods[name] = made
                continue
            kind = update_kind(pod, slot)
            if kind == "recreate" and in_place_only:
                blocked.append(name)
            elif kind == "recreate":
                await self._delete(pod)  # made anew on the next pass, from the new template
                del pods[name]
                look_again.append(1.0)
            elif kind == "in-place":
                pods[name], wait = await self._update_in_place(body, pod, slot.pod(body), status, grace, now)
                if wait:
                    look_again.append(wait)
        return blocked

    async def _update_in_place(self, body: dict, pod: dict, want: dict, status: dict, grace: int,
                               now: datetime.datetime) -> tuple[dict, float | None]:
        """New images and metadata on the running pod, after `grace` seconds (counted from a label
        on the pod, so a restarted operator waits the same). Returns the pod as it is now, and the
        seconds left to wait."""
        name, revision = pod["metadata"]["name"], want["metadata"]["labels"][naming.LABEL_CONTROLLER_REVISION]
        if grace:
            mark = (pod["metadata"].get("labels") or {}).get(naming.LABEL_IN_PLACE_SINCE, "")
            target, _, since = mark.partition("-")
            if target != revision or not since.isdigit():
                marked = await self._store(self.kube.patch(KINDS[POD], pod["metadata"]["namespace"], name, {
                    "metadata": {"labels": {naming.LABEL_IN_PLACE_SINCE: f"{revision}-{int(now.timestamp())}"}}},
                    manager=FIELD_MANAGER))
                return marked, float(grace)
            left = int(since) + grace - now.timestamp()
            if left > 0:
                return pod, left
        baselines = status.setdefault("inPlaceUpdateContainerBaselines", {})
        baselines[name] = {c["name"]: {"restartCount": c.get("restartCount", 0)}
                           for c in (pod.get("status") or {}).get("containerStatuses") or []}
        # The baseline is stored before the image changes: an operator killed in between must not
        # take the restart the new image causes for a crash.
        stored = self.store.get(*INSTANCE, body["metadata"]["namespace"], body["metadata"]["name"]) or body
        await write_status(self.kube, self.store, stored, {**(stored.get("status") or {}),
                                                            "inPlaceUpdateContainerBaselines": dict(baselines)},
                           FIELD_MANAGER)
        return await self._store(self.kube.apply(want, manager=FIELD_MANAGER)), None

    async def _create(self, body: dict, want: dict) -> dict | None:
        """Create a missing pod, unless its name is held by a pod the instance does not control
        (a bare pod, another owner's): that one is never written over, and the conflict is
        reported. Returns the pod made, or None."""
        key = (*POD, want["metadata"]["namespace"], want["metadata"]["name"])
        async with CREATING.hold(key):
            problem = conflict(await observe(self.store, self.kube, *key), body)
            if problem is not None:
                self.conflicts[(body["metadata"]["namespace"], body["metadata"]["name"])].append(problem)
                return None
            return await self._store(self.kube.apply(want, manager=FIELD_MANAGER))

    async def _store(self, write) -> dict:
        """The answer of a write, kept in the store and returned (trimmed to what the store keeps)."""
        result = await write
        self.store.upsert(result)
        return self.store.get("v1", "Pod", result["metadata"]["namespace"], result["metadata"]["name"]) or result

    async def _delete(self, pod: dict) -> None:
        await self.kube.delete(KINDS[POD], pod["metadata"]["namespace"], pod["metadata"]["name"],
                               uid=pod["metadata"].get("uid"))
