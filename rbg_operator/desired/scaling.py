"""Scaling objects: the RoleBasedGroupScalingAdapter of a role, and the groups of a set."""

from __future__ import annotations

import copy

from .. import kinds, naming
from ..api.conversion import FAILED_KEY
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from ..hashing import json_digest
from .meta import owner_reference


def scaling_adapter(group: RoleBasedGroupV2, role: RoleV2) -> dict:
    """The adapter of a role with scalingAdapter.enable. It carries no replicas: those belong
    to whoever scales it (kubectl scale, an HPA); the adapter controller seeds them once."""
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleBasedGroupScalingAdapter",
        "metadata": {
            "name": naming.adapter_name(group.name, role.name),
            "namespace": group.namespace,
            "labels": naming.role_labels(group.namespace, group.name, role.name),
            "ownerReferences": [owner_reference(group)],
        },
        "spec": {"scaleTargetRef": {"name": group.name, "role": role.name}},
    }


def role_pod_selector(group: str, role: RoleV2) -> str:
    """Label selector of the pods an autoscaler should count: for LeaderWorkerSet roles, the leaders."""
    labels = naming.role_selector(group, role.name)
    if role.workload.kind == "LeaderWorkerSet":
        labels[naming.LWS_WORKER_INDEX] = "0"
    return ",".join(f"{k}={v}" for k, v in labels.items())


def template_hash(template: dict) -> str:
    return json_digest(template)


def member_template_hash(group_set: dict) -> str:
    """What a member must match to be current: the set's groupTemplate."""
    return template_hash(group_set["spec"]["groupTemplate"])


def set_member(group_set: dict, index: int) -> dict:
    """Group `{rbgs}-{i}` of a RoleBasedGroupSet, made from the set's groupTemplate: its spec, and
    its labels and annotations under the set's own."""
    meta = group_set["metadata"]
    template = group_set["spec"]["groupTemplate"]
    written_as_metadata = template.get("metadata") or {}
    annotations = {
        k: v
        for k, v in {**(written_as_metadata.get("annotations") or {}), **(template.get("annotations") or {})}.items()
        if k != FAILED_KEY
    }
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleBasedGroup",
        "metadata": {
            "name": naming.set_member_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": {
                **(written_as_metadata.get("labels") or {}),
                **(template.get("labels") or {}),
                naming.LABEL_SET_NAME: meta["name"],
                naming.LABEL_SET_INDEX: str(index),
                naming.LABEL_V2_SET_NAME: meta["name"],
                naming.LABEL_V2_SET_INDEX: str(index),
            },
            "annotations": {**annotations, naming.ANNOTATION_SET_TEMPLATE: member_template_hash(group_set)},
            "ownerReferences": [
                {
                    "apiVersion": kinds.API_VERSION,
                    "kind": "RoleBasedGroupSet",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
