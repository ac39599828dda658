"""What a role's workload is made of: its pod template, and the spec of each kind around its
templates (workload_kinds.py puts them together with each kind's rollout knobs)."""

from __future__ import annotations

from .. import naming
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .discovery import inject
from .engineruntime import inject_engine_runtimes
from .gang import join_gang
from .meta import pod_labels, role_annotations
from .options import BuildOptions
from .templates import resolved_template


def pod_template(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions, base: dict | None = None,
                 v2_keys: bool = True, engine_runtimes: bool = True) -> dict:
    """A pod template with the role's labels and annotations, engine runtimes, discovery and gang
    membership."""
    template = resolved_template(group, role) if base is None else base
    if engine_runtimes and role.engine_runtimes:
        template = inject_engine_runtimes(template, role, options.engine_profiles)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), **pod_labels(group, role, v2_keys)}
    annotations = role_annotations(role)
    if annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **annotations}
    return join_gang(inject(template, group, role), group, role.name, options)


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
    lws_restart = {"RecreateRoleInstanceOnPodRestart": "RecreateGroupOnPodRestart",
                   "RecreateRBGOnPodRestart": "None"}.get(role.restart_policy or "")
    if lws_restart:
        template["restartPolicy"] = lws_restart
    return {"replicas": role.replicas, "leaderWorkerTemplate": template}
