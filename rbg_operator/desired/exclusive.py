"""Exclusive topology (the contract's §4.12): the group annotation
`rbg.workloads.x-k8s.io/group-exclusive-topology: {topology key}` puts all of a group's pods in one
domain of that key (a node, a rack, a zone), and no other group's pods in it.

Each pod template gets a required pod affinity to the pods carrying the group's hash, and a required
anti-affinity to pods carrying any other group's hash in any namespace, both over the topology key.
The reference selects on a label no pod carries (its quirk Q1), so its pods stay Pending; here both rules select
on `rbg.workloads.x-k8s.io/group-uid`, the label every one of the group's pods carries (it is added
here even where a v1alpha1-era template lacks it). A template annotated
`rbg.workloads.x-k8s.io/role-disable-exclusive` is left alone, and so is one that already has a rule
of its own over that topology key.
"""

from __future__ import annotations

import copy

from .. import naming

ANNOTATION_TOPOLOGY = "rbg.workloads.x-k8s.io/group-exclusive-topology"
ANNOTATION_DISABLE = "rbg.workloads.x-k8s.io/role-disable-exclusive"


def with_exclusive_topology(template: dict, namespace: str, group: str, group_annotations: dict) -> dict:
    """The pod template (changed in place and returned) with the group's exclusive placement."""
    key = group_annotations.get(ANNOTATION_TOPOLOGY)
    meta = template.setdefault("metadata", {})
    if not key or (meta.get("annotations") or {}).get(ANNOTATION_DISABLE):
        return template
    spec = template.setdefault("spec", {})
    affinity = copy.deepcopy(spec.get("affinity") or {})
    terms = [
        *((affinity.get("podAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []),
        *((affinity.get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []),
    ]
    if any(t.get("topologyKey") == key for t in terms):
        return template  # the user placed it over this key already
    uid = naming.group_uid(namespace, group)
    meta["labels"] = {**(meta.get("labels") or {}), naming.LABEL_V2_GROUP_UID: uid}
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_TOPOLOGY: key}
    ours = {"key": naming.LABEL_V2_GROUP_UID, "operator": "In", "values": [uid]}
    others = [
        {"key": naming.LABEL_V2_GROUP_UID, "operator": "Exists"},
        {"key": naming.LABEL_V2_GROUP_UID, "operator": "NotIn", "values": [uid]},
    ]
    affinity.setdefault("podAffinity", {}).setdefault("requiredDuringSchedulingIgnoredDuringExecution", []).append(
        {"labelSelector": {"matchExpressions": [ours]}, "topologyKey": key}
    )
    # A domain is exclusive cluster-wide: without a namespaceSelector a pod anti-affinity term
    # repels only pods of its own namespace, so a group in another namespace could share the node.
    # `{}` selects every namespace (the group-uid hash includes the namespace, so it stays unique).
    affinity.setdefault("podAntiAffinity", {}).setdefault("requiredDuringSchedulingIgnoredDuringExecution", []).append(
        {"labelSelector": {"matchExpressions": others}, "namespaceSelector": {}, "topologyKey": key}
    )
    spec["affinity"] = affinity
    return template
