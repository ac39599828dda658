"""Metadata every child object carries: owner reference, labels, annotations."""

from __future__ import annotations

from ..api.rolebasedgroup import RoleBasedGroup, Role
from .. import naming


def owner_reference(group: RoleBasedGroup) -> dict:
    # controller=true lets garbage collection cascade deletion; blockOwnerDeletion keeps
    # foreground deletion honest without any finalizer of ours.
    return {
        "apiVersion": naming.API_VERSION,
        "kind": "RoleBasedGroup",
        "name": group.name,
        "uid": group.metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def role_labels(group: RoleBasedGroup, role: Role) -> dict[str, str]:
    """User labels of the role, then the identifying labels (which a user may not override)."""
    return {**(role.labels or {}), **naming.role_selector(group.name, role.name)}


def child_metadata(group: RoleBasedGroup, role: Role, name: str) -> dict:
    meta = {
        "name": name,
        "namespace": group.namespace,
        "labels": role_labels(group, role),
        "ownerReferences": [owner_reference(group)],
    }
    if role.annotations:
        meta["annotations"] = dict(role.annotations)
    return meta
