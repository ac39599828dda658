"""In-place scheduling (the contract's §4.6 and §4.12): a recreated pod of a RoleInstance goes back to
the node where the same pod (or a pod of the same component) ran before, where its model cache is.

The role annotations reach the RoleInstance through its RoleInstanceSet. The nodes the pods ran on are
kept on the RoleInstance, in an annotation of ours, not in the operator's memory as the reference keeps
them: a restarted or newly elected operator sends a pod back to its node exactly as the old one would
have, the first recreation after a restart included. What was injected into a pod is written on the
pod too, because a pod's affinity cannot change: an in-place image update rebuilds the same affinity
from it, whatever the bindings have become since.

Pure functions only.
"""

from __future__ import annotations

import copy
import dataclasses
import json

from .. import naming
from . import exclusive

ANNOTATION_MODE = naming.ANNOTATION_INPLACE_SCHEDULING
ANNOTATION_GRANULARITY = naming.ANNOTATION_INPLACE_GRANULARITY
ANNOTATION_AVOID = naming.ANNOTATION_INPLACE_AVOID
EXCLUSIVE_TOPOLOGY = exclusive.ANNOTATION_TOPOLOGY
# Ours. On the RoleInstance: {pod name: node} of every pod seen scheduled. On a pod: what its
# creation injected, {"mode", "nodes", "avoid"}.
ANNOTATION_NODES = "rolebasedgroup.workloads.x-k8s.io/inplace-scheduling-nodes"
ANNOTATION_INJECTED = "rolebasedgroup.workloads.x-k8s.io/inplace-scheduling"
MODES = naming.INPLACE_SCHEDULING_MODES
# The role annotations a RoleInstance takes from its RoleInstanceSet (the contract's §4.5).
ROLE_ANNOTATIONS = (ANNOTATION_MODE, ANNOTATION_GRANULARITY, ANNOTATION_AVOID)
PREFERRED_WEIGHT = 100


@dataclasses.dataclass(frozen=True)
class Placement:
    """What goes into one pod's affinity: toward `nodes` (preferred or required), away from nodes
    carrying any of the `avoid` label keys."""

    mode: str
    nodes: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()

    def annotation(self) -> str:
        return json.dumps({"mode": self.mode, "nodes": list(self.nodes), "avoid": list(self.avoid)}, sort_keys=True)

    @classmethod
    def from_pod(cls, pod: dict) -> Placement | None:
        """What a pod's creation injected, from its annotation; None when nothing was."""
        raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_INJECTED)
        try:
            found = json.loads(raw) if raw else None
        except ValueError:
            return None
        if not isinstance(found, dict) or found.get("mode") not in MODES:
            return None
        return cls(found["mode"], tuple(map(str, found.get("nodes") or ())), tuple(map(str, found.get("avoid") or ())))


def bindings(instance: dict) -> dict[str, str]:
    """The nodes the instance's pods ran on, by pod name, as recorded on it."""
    raw = ((instance.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_NODES)
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def without_gone_nodes(instance: dict, gone: set[str]) -> dict:
    """The instance as a pass should see it when nodes its pods ran on are gone from the cluster:
    without their bindings, for a Required rule toward a node that no longer exists could never
    be met, and a Preferred one is moot. The annotation itself is rewritten the next time the
    bindings change. The instance itself when nothing is dropped."""
    found = bindings(instance)
    kept = {name: node for name, node in found.items() if node not in gone}
    if kept == found:
        return instance
    annotations = {**instance["metadata"]["annotations"], ANNOTATION_NODES: json.dumps(kept, sort_keys=True)}
    return {**instance, "metadata": {**instance["metadata"], "annotations": annotations}}


def enabled(instance: dict) -> bool:
    return ((instance.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_MODE) in MODES


def recorded(instance: dict, pods: dict[str, dict], wanted: list[str]) -> str | None:
    """The instance's bindings annotation with the nodes its scheduled pods are on now (a pod's
    earlier node is kept while it is away, being recreated), and without the pods it no longer
    wants; None when that changes nothing or in-place scheduling is off."""
    if not enabled(instance):
        return None
    before = bindings(instance)
    after = {name: node for name, node in before.items() if name in wanted}
    for name, pod in pods.items():
        node = (pod.get("spec") or {}).get("nodeName")
        if node and name in wanted:
            after[name] = node
    return None if after == before else json.dumps(after, sort_keys=True)


def placement(instance: dict, pod_name: str, component: dict, component_pods: list[str]) -> Placement | None:
    """What to inject into a new pod: toward the node the same pod ran on (granularity Pod, the
    default of a Stateful instance) or the nodes its component's pods ran on (Component, the
    default otherwise); None when in-place scheduling is off or the pod has exclusive topology."""
    annotations = (instance.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(ANNOTATION_MODE)
    if mode not in MODES:
        return None
    template_annotations = ((component.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    if EXCLUSIVE_TOPOLOGY in template_annotations:
        return None  # exclusive topology places the group's pods itself
    stateful = naming.LABEL_V2_INSTANCE_INDEX in ((instance.get("metadata") or {}).get("labels") or {})
    granularity = annotations.get(ANNOTATION_GRANULARITY) or ("Pod" if stateful else "Component")
    ran_on = bindings(instance)
    names = [pod_name] if granularity == "Pod" else component_pods
    nodes = tuple(sorted({ran_on[n] for n in names if n in ran_on}))
    avoid = tuple(k.strip() for k in (annotations.get(ANNOTATION_AVOID) or "").split(",") if k.strip())
    if not nodes and not avoid:
        return None
    return Placement(mode, nodes, avoid)


def with_affinity(spec: dict, where: Placement) -> dict:
    """The pod spec with `where` added to its node affinity. A required rule is added to every
    term the user wrote (terms are alternatives, so each must carry it); the preferred one is a
    term of its own with weight 100."""
    spec = dict(spec)
    affinity = copy.deepcopy(spec.get("affinity") or {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    toward = {"key": "metadata.name", "operator": "In", "values": list(where.nodes)}
    required_fields = [toward] if where.nodes and where.mode == "Required" else []
    required_expressions = [{"key": key, "operator": "DoesNotExist"} for key in where.avoid]
    if where.nodes and where.mode == "Preferred":
        node_affinity.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).append(
            {"weight": PREFERRED_WEIGHT, "preference": {"matchFields": [toward]}}
        )
    if required_fields or required_expressions:
        required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
        terms = required.setdefault("nodeSelectorTerms", [])
        if not terms:
            terms.append({})
        for term in terms:
            if required_fields:
                term["matchFields"] = [*(term.get("matchFields") or []), *required_fields]
            if required_expressions:
                term["matchExpressions"] = [*(term.get("matchExpressions") or []), *required_expressions]
    spec["affinity"] = affinity
    return spec
