"""Metadata every child object carries: owner reference, labels, annotations."""

from __future__ import annotations

from .. import kinds, naming
from ..api.v1alpha2 import WORKLOAD_TYPE_KEY, RoleBasedGroupV2, RoleV2


def owner_reference(group: RoleBasedGroupV2) -> dict:
    # controller=true lets garbage collection cascade deletion; blockOwnerDeletion keeps
    # foreground deletion honest without any finalizer of ours.
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleBasedGroup",
        "name": group.name,
        "uid": group.metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def role_labels(group: RoleBasedGroupV2, role: RoleV2) -> dict[str, str]:
    """User labels of the role, then the identifying labels of both key families (which a user
    may not override)."""
    return {**(role.labels or {}), **naming.role_labels(group.namespace, group.name, role.name)}


def pod_labels(group: RoleBasedGroupV2, role: RoleV2, v2_keys: bool) -> dict[str, str]:
    """The labels of the role's pods: without `v2_keys`, only the v1alpha1 identifying keys
    (see pods_get_v2_keys)."""
    if v2_keys:
        return role_labels(group, role)
    return {**(role.labels or {}), **naming.role_selector(group.name, role.name)}


def pod_template_labels(workload: dict) -> dict:
    """The labels of the pod template of an observed StatefulSet, Deployment or LeaderWorkerSet."""
    spec = workload.get("spec") or {}
    template = spec.get("template") or (spec.get("leaderWorkerTemplate") or {}).get("workerTemplate") or {}
    return (template.get("metadata") or {}).get("labels") or {}


def pods_get_v2_keys(observed: dict | None, revision_key: str, revision: str) -> bool:
    """Whether the role's pod templates carry the v1alpha2 label keys.

    Adding a label to a pod template replaces every pod, so a workload made before the keys
    existed gets them only when its pods are replaced anyway: at its next revision. New
    workloads get them at once, and a template that has them keeps them. The revision leaves
    these keys out (rollout.revision_hash), so this decision never makes a revision of its own,
    and it is read from the workload alone: a restarted operator decides the same.
    """
    if observed is None or naming.LABEL_V2_GROUP_NAME in pod_template_labels(observed):
        return True
    return (observed["metadata"].get("labels") or {}).get(revision_key) != revision


def role_annotations(role: RoleV2) -> dict[str, str]:
    """The role's annotations that its workload and pods carry: not the one that picks the
    workload, nor conversion's bookkeeping (neither says anything about the pods, and neither
    reached them while groups were stored in v1alpha1, so an upgrade restarts nothing)."""
    return {
        k: v
        for k, v in (role.annotations or {}).items()
        if k != WORKLOAD_TYPE_KEY and not k.startswith(naming.CONVERSION_PREFIX)
    }


def child_metadata(group: RoleBasedGroupV2, role: RoleV2, name: str) -> dict:
    meta = {
        "name": name,
        "namespace": group.namespace,
        "labels": role_labels(group, role),
        "ownerReferences": [owner_reference(group)],
    }
    annotations = role_annotations(role)
    if annotations:
        meta["annotations"] = annotations
    return meta
