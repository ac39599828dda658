"""What a RoleBasedGroupWarmup's pass decides, as a pure function of what observe saw and the time.

One pod per target node, pulling the node's images and running its custom containers. A node
counts by its pods (the only record of attempts; nothing is remembered between passes):
succeeded once one of them succeeded, active while one is pending or running, and out of retries
once it has more failed pods than backoffLimitPerNode. Failed pods are therefore kept while the
warmup runs. A pod not scheduled UNSCHEDULED_TIMEOUT_SECONDS after its creation (the node is
gone, cordoned, tainted or full) makes its node count as failed, without a retry: a new pod
pinned to the same node would wait the same way. That pod is kept as the record, and goes when
the warmup ends; should it still be scheduled and succeed first, the node counts as warmed up.
Once Completed or Failed the warmup is final: it creates nothing more, and only its TTL is left
to act on. Nothing here reads the store or talks to the API server.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from .. import kinds, naming, timestamps
from ..api.warmup import RoleBasedGroupWarmupSpec, WarmupActions
from . import conditions
from .instanceset_plan import Event

WARMUP = kinds.WARMUP
RUNNING, PAUSED, COMPLETED, FAILED = "Running", "Paused", "Completed", "Failed"
FINAL = (COMPLETED, FAILED)
# A failed node is retried after 10 s, doubled per failure up to 5 minutes, counted from the
# creation of its last failed pod (as a Job's pods are): a node that always fails costs at most a
# pod per 5 minutes, not a pod per pass.
RETRY_BASE_SECONDS, RETRY_MAX_SECONDS = 10.0, 300.0
# With no backoffLimitPerNode a node is retried for ever; the failed pods kept per node are the
# newest few, enough to reach the longest delay (older ones only cost etcd space).
UNLIMITED_HISTORY = 6
PRELOAD_COMMAND = ["sh", "-c", "exit 0"]
# How long a warmup pod may stay unscheduled before its node counts as failed. The contract has
# no per-node bound (globalTimeoutSeconds bounds the whole warmup, and is optional), so without
# one a pod that can never be scheduled would keep the warmup Running for ever. Measured from the
# pod's creationTimestamp: the API server's record, the same after an operator restart.
UNSCHEDULED_TIMEOUT_SECONDS = 600


@dataclasses.dataclass(frozen=True)
class WarmupSnapshot:
    """Everything one pass knows, read once from the cache."""

    body: dict  # the warmup
    spec: RoleBasedGroupWarmupSpec
    pods: tuple[dict, ...]  # the pods it controls
    # Nodes the store holds that the pass may need, by name: their labels and whether they take pods.
    nodes: Mapping[str, dict]
    group_pods: tuple[dict, ...] = ()  # the target group's pods (targetRoleBasedGroup only)


@dataclasses.dataclass(frozen=True)
class Merged:
    """The actions of one node, merged: what its pod runs."""

    images: tuple[str, ...]
    containers: tuple[dict, ...]  # custom containers, unique, without their names
    volumes: tuple[dict, ...]
    pull_secrets: tuple[dict, ...]
    conflicts: tuple[str, ...] = ()  # volume names defined differently by two actions


@dataclasses.dataclass(frozen=True)
class WarmupPlan:
    create: tuple[dict, ...] = ()  # pods (generateName), in node order
    delete: tuple[tuple[str, str], ...] = ()  # (name, uid) of pods to delete
    status: dict | None = None  # None: leave the status as it is
    events: tuple[Event, ...] = ()
    delete_warmup: bool = False  # its TTL after finishing has passed
    requeue: float | None = None  # seconds until a time-based decision is due


# --- targets -----------------------------------------------------------------------------------


def node_matches(node: dict, selector: Mapping[str, str]) -> bool:
    labels = node["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_role(pod: dict) -> str | None:
    labels = pod["metadata"].get("labels") or {}
    return labels.get(naming.LABEL_V2_ROLE_NAME) or labels.get(naming.LABEL_ROLE)


def targets(snapshot: WarmupSnapshot) -> dict[str, list[WarmupActions]]:
    """Target node -> the actions for it, in a stable order (node names sorted)."""
    spec = snapshot.spec
    if spec.target_nodes is not None:
        chosen = spec.target_nodes
        if chosen.node_names is not None:
            names = set(chosen.node_names)
        else:
            # A cordoned node takes no new pods: its warmup pod would wait for ever.
            names = {
                name
                for name, node in snapshot.nodes.items()
                if node_matches(node, chosen.node_selector or {}) and not (node.get("spec") or {}).get("unschedulable")
            }
        return {name: [chosen] for name in sorted(names)}
    group = spec.target_role_based_group
    assert group is not None
    by_node: dict[str, set[str]] = {}
    for pod in snapshot.group_pods:
        node, role = (pod.get("spec") or {}).get("nodeName"), pod_role(pod)
        if node and role in group.roles and not pod["metadata"].get("deletionTimestamp"):
            by_node.setdefault(node, set()).add(role)
    # The roles' actions by role name: a map has no order once stored (the API server sorts its
    # keys), and a node's pod must not change with the order pods or keys arrive in.
    return {node: [group.roles[r] for r in sorted(roles)] for node, roles in sorted(by_node.items())}


def merge(actions: list[WarmupActions]) -> Merged:
    """Images and custom containers each once (a container counts once whatever it was named),
    volumes and pull secrets by name; a volume name defined two ways keeps its first definition
    and is reported."""
    images: list[str] = []
    containers: list[dict] = []
    volumes: dict[str, dict] = {}
    secrets: dict[str, dict] = {}
    conflicts: list[str] = []
    for action in actions:
        if action.image_preload is not None:
            images += [i for i in action.image_preload.images if i not in images]
            for secret in action.image_preload.pull_secrets or []:
                secrets.setdefault(secret.get("name", ""), secret)
        if action.customized_action is not None:
            for container in action.customized_action.containers:
                unnamed = {k: v for k, v in container.items() if k != "name"}
                if unnamed not in containers:
                    containers.append(unnamed)
            for volume in action.customized_action.volumes or []:
                name = volume.get("name", "")
                if name not in volumes:
                    volumes[name] = volume
                elif volumes[name] != volume and name not in conflicts:
                    conflicts.append(name)
    return Merged(tuple(images), tuple(containers), tuple(volumes.values()), tuple(secrets.values()), tuple(conflicts))


def warmup_pod(body: dict, spec: RoleBasedGroupWarmupSpec, node: str, hostname: str, merged: Merged) -> dict:
    """The pod that warms one node."""
    meta = body["metadata"]
    containers = [
        {"name": f"image-preload-{n}", "image": image, "command": PRELOAD_COMMAND, "imagePullPolicy": "IfNotPresent"}
        for n, image in enumerate(merged.images)
    ] + [{**container, "name": f"custom-{n}"} for n, container in enumerate(merged.containers)]
    pod_spec: dict = {"restartPolicy": "Never", "containers": containers}
    if len(hostname) <= naming.LABEL_VALUE_MAX:
        pod_spec["nodeSelector"] = {naming.LABEL_HOSTNAME: hostname}
    else:
        # A node the cache does not know, named longer than a nodeSelector value may be: pinned by
        # its name, as a DaemonSet pins its pods (a nodeSelector would get the pod refused).
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        pod_spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    if spec.tolerations:
        pod_spec["tolerations"] = list(spec.tolerations)
    if merged.volumes:
        pod_spec["volumes"] = list(merged.volumes)
    if merged.pull_secrets:
        pod_spec["imagePullSecrets"] = list(merged.pull_secrets)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": {
                naming.LABEL_WARMUP_NAME: meta["name"],
                naming.LABEL_WARMUP_UID: meta["uid"],
                naming.LABEL_WARMUP_NODE: naming.warmup_node_label(node),
            },
            "ownerReferences": [
                {
                    "apiVersion": body["apiVersion"],
                    "kind": body["kind"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


# --- the pass ----------------------------------------------------------------------------------


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _created(pod: dict) -> datetime.datetime:
    return timestamps.parse_or_none(pod["metadata"].get("creationTimestamp")) or datetime.datetime.min.replace(
        tzinfo=datetime.UTC
    )


def _some(names: list[str], most: int = 10) -> str:
    """Names for a message, at most `most` of them (a warmup may have thousands of nodes)."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def retry_delay(failures: int) -> float:
    return min(RETRY_BASE_SECONDS * 2 ** max(failures - 1, 0), RETRY_MAX_SECONDS)


def unscheduled_until(pod: dict) -> datetime.datetime | None:
    """When a pending pod that no node has taken yet runs out of time to be scheduled; None once
    it is bound to a node (pulling images may take long: only scheduling is bounded)."""
    if _phase(pod) != "Pending" or (pod.get("spec") or {}).get("nodeName"):
        return None
    return _created(pod) + datetime.timedelta(seconds=UNSCHEDULED_TIMEOUT_SECONDS)


@dataclasses.dataclass
class _Node:
    succeeded: bool = False
    active: list[dict] = dataclasses.field(default_factory=list)
    failed: list[dict] = dataclasses.field(default_factory=list)
    unschedulable: list[dict] = dataclasses.field(default_factory=list)  # unscheduled past the bound


def _by_node(
    pods: tuple[dict, ...], now: datetime.datetime, nodes_by_label: Mapping[str, str] | None = None
) -> dict[str, _Node]:
    """Each node's pods by state, keyed by node name: a pod names its node by warmup_node_label,
    which `nodes_by_label` turns back into the name (a pod of a node no longer targeted keeps its
    label value as the key)."""
    nodes: dict[str, _Node] = {}
    for pod in sorted(pods, key=lambda p: (_created(p), p["metadata"]["name"])):
        label = (pod["metadata"].get("labels") or {}).get(naming.LABEL_WARMUP_NODE, "")
        node = nodes.setdefault((nodes_by_label or {}).get(label, label), _Node())
        phase = _phase(pod)
        if phase == "Succeeded":
            node.succeeded = True
        elif phase == "Failed":
            node.failed.append(pod)
        elif (until := unscheduled_until(pod)) is not None and until <= now:
            node.unschedulable.append(pod)
        else:
            node.active.append(pod)
    return nodes


def _ref(pod: dict) -> tuple[str, str]:
    return (pod["metadata"]["name"], pod["metadata"]["uid"])


def _deletable(pods) -> list[tuple[str, str]]:
    return [_ref(p) for p in pods if not p["metadata"].get("deletionTimestamp")]


def _ttl(snapshot: WarmupSnapshot, completion: str | None, now: datetime.datetime) -> tuple[bool, float | None]:
    """(delete the warmup now, or seconds until then) for a finished warmup."""
    ttl = snapshot.spec.policies.ttl_seconds_after_finished if snapshot.spec.policies else None
    finished = timestamps.parse_or_none(completion)
    if ttl is None or finished is None:
        return False, None
    left = (finished + datetime.timedelta(seconds=ttl) - now).total_seconds()
    return (True, None) if left <= 0 else (False, left)


def plan_warmup(snapshot: WarmupSnapshot, now: datetime.datetime) -> WarmupPlan:
    """The pods to create and delete, the status, its Events, and when to look again."""
    body, spec = snapshot.body, snapshot.spec
    old = body.get("status") or {}
    policies = spec.policies
    if old.get("phase") in FINAL:
        # Final: only pods the end left behind (a pass cut short after its deletes) still go: a
        # failure's running ones, and pods that were never scheduled.
        leftover = [
            p
            for n in _by_node(snapshot.pods, now).values()
            for p in (n.active if old["phase"] == FAILED else []) + n.unschedulable
        ]
        gone, wait = _ttl(snapshot, old.get("completionTime"), now)
        return WarmupPlan(delete=tuple(_deletable(leftover)), delete_warmup=gone, requeue=wait)

    wanted = targets(snapshot)
    pods_by_node = _by_node(snapshot.pods, now, {naming.warmup_node_label(n): n for n in wanted})
    merged = {node: merge(actions) for node, actions in wanted.items()}
    limit = policies.backoff_limit_per_node if policies else None
    tolerated = (policies.max_failed_nodes if policies else None) or 0
    create_for: list[str] = []  # nodes that need a pod, ready now
    deletes: list[tuple[str, str]] = []
    retry_at: list[datetime.datetime] = []
    succeeded = failed = 0
    active: list[dict] = []
    unschedulable: list[str] = []  # nodes failed because their pod was never scheduled
    leftover: list[dict] = []  # pods that go when the warmup ends
    for name in sorted(set(wanted) | set(pods_by_node)):
        node = pods_by_node.get(name, _Node())
        if limit is None and len(node.failed) > UNLIMITED_HISTORY:
            deletes += _deletable(node.failed[: len(node.failed) - UNLIMITED_HISTORY])
        if node.succeeded:
            succeeded += 1
            deletes += _deletable(node.active + node.unschedulable)  # duplicates of a pod that did the job
        elif node.active:
            active.append(node.active[0])
            # A create retried after a lost answer: one is enough.
            deletes += _deletable(node.active[1:] + node.unschedulable)
        elif node.unschedulable:
            failed += 1
            unschedulable.append(name)
            leftover += node.unschedulable
        elif limit is not None and len(node.failed) > limit:
            failed += 1
        elif name in wanted:
            if node.failed:
                ready = _created(node.failed[-1]) + datetime.timedelta(seconds=retry_delay(len(node.failed)))
                if ready > now:
                    retry_at.append(ready)
                    continue
            create_for.append(name)
    waiting = len(retry_at)
    desired = succeeded + len(active) + failed + len(create_for) + waiting

    start = old.get("startTime")
    if start is None and not spec.paused:
        start = timestamps.stamp(now)
    generation = body["metadata"].get("generation", 0)
    status: dict = {"phase": RUNNING, "desired": desired, "succeeded": succeeded, "failed": failed}
    if start:
        status["startTime"] = start
    said: list[dict] = []
    events: list[Event] = []
    conflicts = sorted({c for node in merged.values() for c in node.conflicts})
    before = conditions.find(old.get("conditions"), "VolumeConflict")
    if conflicts:
        message = "volumes defined differently by the actions merged on a node (the first definition is used): "
        message += ", ".join(conflicts)
        said.append(
            {"type": "VolumeConflict", "status": "True", "reason": "ConflictingVolumeDefinitions", "message": message}
        )
        if (before or {}).get("status") != "True":
            events.append(Event("Warning", "VolumeConflict", message))
    elif before is not None:
        said.append({"type": "VolumeConflict", "status": "False", "reason": "VolumesMerged", "message": ""})

    deadline = None
    timeout = policies.global_timeout_seconds if policies else None
    if timeout is not None and start:
        deadline = timestamps.parse(start) + datetime.timedelta(seconds=timeout)
    ending = None  # (phase, condition type, reason, message)
    never_scheduled = ""
    if unschedulable:
        never_scheduled = f"; not scheduled within {UNSCHEDULED_TIMEOUT_SECONDS} s: {_some(unschedulable)}"
        if failed > old.get("failed", 0):  # said once: the status written with it records the count
            events.append(
                Event(
                    "Warning",
                    "WarmupNodeUnschedulable",
                    f"warmup pods not scheduled within {UNSCHEDULED_TIMEOUT_SECONDS} s, "
                    f"the nodes count as failed: {_some(unschedulable)}",
                    after_status=True,
                )
            )
    unfinished = len(active) + len(create_for) + waiting
    if desired == 0:
        ending = (COMPLETED, "Complete", "NoNodesMatched", "no node matched the warmup's targets")
    elif failed > tolerated:
        ending = (
            FAILED,
            "Failed",
            "MaxFailedNodesExceeded",
            f"{failed} nodes {'failed' if unschedulable else 'ran out of retries'}, more than the {tolerated} "
            f"tolerated{never_scheduled}",
        )
    elif unfinished == 0:
        ending = (
            COMPLETED,
            "Complete",
            "WarmupCompleted",
            f"{succeeded} of {desired} nodes warmed up" + (f", {failed} failed" if failed else "") + never_scheduled,
        )
    elif deadline is not None and now >= deadline:
        ending = (
            FAILED,
            "Failed",
            "GlobalTimeoutExceeded",
            f"{unfinished} of {desired} nodes not warmed up within {timeout} s",
        )
    if ending is not None:
        phase, type_, reason, message = ending
        deletes += _deletable(leftover)  # never scheduled: nothing waits for them any more
        if phase == FAILED:
            deletes += _deletable(active)  # nothing is waiting for them any more
        status.update(phase=phase, active=0 if phase == FAILED else len(active), completionTime=timestamps.stamp(now))
        said.append({"type": type_, "status": "True", "reason": reason, "message": message})
        events.append(
            Event(
                "Normal" if phase == COMPLETED else "Warning",
                "WarmupCompleted" if phase == COMPLETED else "WarmupFailed",
                message,
                after_status=True,
            )
        )
        status["conditions"] = conditions.merge(old.get("conditions"), said, generation, at=timestamps.stamp(now))
        gone, wait = _ttl(snapshot, status["completionTime"], now)
        return WarmupPlan(delete=tuple(deletes), status=status, events=tuple(events), delete_warmup=gone, requeue=wait)

    create: list[dict] = []
    if spec.paused:
        status["phase"] = PAUSED
    else:
        room = len(create_for)
        if policies and policies.parallelism is not None:
            room = max(policies.parallelism - len(active), 0)
        for name in create_for[:room]:
            hostname = (snapshot.nodes.get(name, {}).get("metadata", {}).get("labels") or {}).get(
                naming.LABEL_HOSTNAME, name
            )
            create.append(warmup_pod(body, spec, name, hostname, merged[name]))
    status["active"] = len(active) + len(create)
    if said or old.get("conditions"):
        status["conditions"] = conditions.merge(old.get("conditions"), said, generation, at=timestamps.stamp(now))
    # Time decides the next retry (not while paused) and the deadline (paused or not); pod
    # events decide everything else.
    # An unscheduled pod runs out of time by the clock alone: no event would say so.
    bounds = [u for p in active if (u := unscheduled_until(p)) is not None]
    due = ([] if spec.paused else retry_at) + ([deadline] if deadline is not None else []) + bounds
    requeue = max((min(due) - now).total_seconds(), 0.0) if due else None
    return WarmupPlan(create=tuple(create), delete=tuple(deletes), status=status, events=tuple(events), requeue=requeue)
