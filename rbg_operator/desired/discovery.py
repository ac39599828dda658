"""Service discovery objects: the per-role headless Service."""

from __future__ import annotations

from .. import naming
from ..api.rolebasedgroup import Role, RoleBasedGroup
from .meta import child_metadata


def headless_service(group: RoleBasedGroup, role: Role) -> dict:
    """`s-{rbg}-{role}`: gives every pod a stable DNS name `{pod}.s-{rbg}-{role}`, ready or not."""
    meta = child_metadata(group, role, naming.service_name(group.name, role.name))
    meta.pop("annotations", None)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": naming.role_selector(group.name, role.name),
        },
    }
