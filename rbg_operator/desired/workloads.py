"""The workload object of each role (StatefulSet for now; Deployment and LeaderWorkerSet follow)."""

from __future__ import annotations

import copy

from .. import naming
from ..api.rolebasedgroup import Role, RoleBasedGroup
from .meta import child_metadata, role_labels


def pod_template(group: RoleBasedGroup, role: Role) -> dict:
    """The role's pod template with the role's labels and annotations added."""
    template = copy.deepcopy(role.template or {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), **role_labels(group, role)}
    if role.annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **role.annotations}
    return template


def role_workload(group: RoleBasedGroup, role: Role) -> dict:
    name = naming.workload_name(group.name, role.name)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": child_metadata(group, role, name),
        "spec": {
            "replicas": role.replicas,
            "serviceName": naming.service_name(group.name, role.name),
            # Parallel: role instances are peers (tensor/data parallel servers), not a chain.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": naming.role_selector(group.name, role.name)},
            "template": pod_template(group, role),
            "minReadySeconds": role.min_ready_seconds,
        },
    }
