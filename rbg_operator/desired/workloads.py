"""What a role's workload is made of: the spec of each kind around its
templates (workload_kinds.py puts them together with each kind's rollout knobs)."""

from __future__ import annotations

from .. import naming
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2


def statefulset_spec(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    return {
        "replicas": role.replicas,
        "serviceName": naming.service_name(group.name, role.name),
        # Parallel: role instances are peers (tensor/data parallel servers), not a chain.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": naming.role_selector(group.name, role.name)},
        "template": templates["template"],
        "minReadySeconds": role.min_ready_seconds,
    }


def deployment_spec(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    return {
        "replicas": role.replicas,
        "selector": {"matchLabels": naming.role_selector(group.name, role.name)},
        "template": templates["template"],
        "minReadySeconds": role.min_ready_seconds,
    }


def leaderworkerset_spec(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    template = dict(templates)
    # The LeaderWorkerSet's own group recreation is the role-instance policy; a group-wide
    # policy is the operator's job, so LeaderWorkerSet must not recreate on its own as well.
    lws_restart = {
        "RecreateRoleInstanceOnPodRestart": "RecreateGroupOnPodRestart",
        "RecreateRBGOnPodRestart": "None",
    }.get(role.restart_policy or "")
    if lws_restart:
        template["restartPolicy"] = lws_restart
    return {"replicas": role.replicas, "leaderWorkerTemplate": template}
