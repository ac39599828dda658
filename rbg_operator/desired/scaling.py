"""Scaling objects: the RoleBasedGroupScalingAdapter of a role, and the groups of a set."""

from __future__ import annotations

import copy
import hashlib
import json

from .. import naming
from ..api import conversion
from ..api.rolebasedgroup import Role, RoleBasedGroup
from .meta import owner_reference


def scaling_adapter(group: RoleBasedGroup, role: Role) -> dict:
    """The adapter of a role with scalingAdapter.enable. It carries no replicas: those belong
    to whoever scales it (kubectl scale, an HPA); the adapter controller seeds them once."""
    return {
        "apiVersion": naming.API_VERSION,
        "kind": "RoleBasedGroupScalingAdapter",
        "metadata": {
            "name": naming.adapter_name(group.name, role.name),
            "namespace": group.namespace,
            "labels": naming.role_labels(group.namespace, group.name, role.name),
            "ownerReferences": [owner_reference(group)],
        },
        "spec": {"scaleTargetRef": {"name": group.name, "role": role.name}},
    }


def role_pod_selector(group: str, role: Role) -> str:
    """Label selector of the pods an autoscaler should count: for LeaderWorkerSet roles, the leaders."""
    labels = naming.role_selector(group, role.name)
    if role.workload.kind == "LeaderWorkerSet":
        labels[naming.LWS_WORKER_INDEX] = "0"
    return ",".join(f"{k}={v}" for k, v in labels.items())


def template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _kept_member_metadata(group_set: dict) -> dict:
    """The set's v1alpha2 groupTemplate labels and annotations (kept in an annotation of the
    v1alpha1 set by conversion), without the annotations that conversion turns into spec fields."""
    kept = conversion.group_template_metadata(group_set["metadata"].get("annotations"))
    annotations = {k: v for k, v in (kept.get("annotations") or {}).items()
                   if k not in conversion.SPEC_CARRIER_KEYS and k != conversion.FAILED_KEY}
    if conversion.EXCLUSIVE_V2_KEY in annotations:  # members are written in v1alpha1
        annotations[conversion.EXCLUSIVE_V1_KEY] = annotations.pop(conversion.EXCLUSIVE_V2_KEY)
    return {k: v for k, v in (("labels", kept.get("labels")), ("annotations", annotations)) if v}


def member_template_hash(group_set: dict) -> str:
    """What a member must match to be current: the set's template and its groupTemplate labels and
    annotations (the template alone when it has none, as before there were any)."""
    template, kept = group_set["spec"]["template"], _kept_member_metadata(group_set)
    return template_hash({"template": template, "metadata": kept} if kept else template)


def set_member(group_set: dict, index: int) -> dict:
    """Group `{rbgs}-{i}` of a RoleBasedGroupSet, made from the set's template; the labels and
    annotations of a v1alpha2 groupTemplate go on it too, under the set's own."""
    meta = group_set["metadata"]
    template = group_set["spec"]["template"]
    kept = _kept_member_metadata(group_set)
    return {
        "apiVersion": naming.API_VERSION,
        "kind": "RoleBasedGroup",
        "metadata": {
            "name": naming.set_member_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": {**kept.get("labels", {}),
                       naming.LABEL_SET_NAME: meta["name"], naming.LABEL_SET_INDEX: str(index),
                       naming.LABEL_V2_SET_NAME: meta["name"], naming.LABEL_V2_SET_INDEX: str(index)},
            "annotations": {**kept.get("annotations", {}),
                            naming.ANNOTATION_SET_TEMPLATE: member_template_hash(group_set)},
            "ownerReferences": [{
                "apiVersion": naming.API_VERSION, "kind": "RoleBasedGroupSet", "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": copy.deepcopy(template),
    }
