"""The RoleInstanceSet of a role on v1alpha2's default workload (the contract's §4.4.2): one
RoleInstance per replica, each made of the components of the role's pattern."""

from __future__ import annotations

import copy

from .. import naming
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .discovery import shared_service_selection
from .options import DEFAULT, BuildOptions
from .pods import pod_template
from .strategicmerge import merge
from .templates import resolved_template

ROLE_TYPES = {"standalone": "PodTemplate", "leaderWorker": "LeaderWorkerSet", "customComponents": "Components"}
RESTART_DEFAULTS = {
    "standalone": "None",
    "leaderWorker": "RecreateRoleInstanceOnPodRestart",
    "customComponents": "RecreateRoleInstanceOnPodRestart",
}
BASE_DELAY_SECONDS, MAX_DELAY_SECONDS = 30, 600
# A role's rollingUpdate.type as a RoleInstanceSet update type: v1alpha1's Recreate (or ReCreate)
# is RecreatePod; any other value (RollingUpdate, unset) is the default, InPlaceIfPossible.
UPDATE_TYPES = {
    "Recreate": "RecreatePod",
    "ReCreate": "RecreatePod",
    "RecreatePod": "RecreatePod",
    "InPlaceOnly": "InPlaceOnly",
}


def restart_policy_config(role: RoleV2) -> dict:
    """The instance restart policy, resolved as the contract's §2.1.4 says, with all three fields."""
    pattern = role.leader_worker_pattern or role.custom_components_pattern
    config = pattern.restart_policy_config if pattern is not None else None
    written = (config.type if config is not None else None) or (pattern.restart_policy if pattern else None)
    return {
        "type": written or RESTART_DEFAULTS[role.pattern],
        "baseDelaySeconds": BASE_DELAY_SECONDS
        if config is None or config.base_delay_seconds is None
        else config.base_delay_seconds,
        "maxDelaySeconds": MAX_DELAY_SECONDS
        if config is None or config.max_delay_seconds is None
        else config.max_delay_seconds,
    }


def _labelled(template: dict, labels: dict[str, str]) -> dict:
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    return template


def instance_components(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions = DEFAULT) -> list[dict]:
    """The components every RoleInstance of the role is made of, with finished pod templates."""
    service = naming.service_name(group.name, role.name)
    if role.pattern == "standalone":
        template = _labelled(pod_template(group, role, options), {naming.LABEL_V2_COMPONENT_SIZE: "1"})
        return [{"name": role.name, "size": 1, "serviceName": service, "template": template}]
    if role.pattern == "leaderWorker":
        size, pattern, base = role.leader_worker_size, role.leader_worker_pattern, resolved_template(group, role)
        leader = pod_template(group, role, options, merge(base, pattern.leader_template_patch or {}))
        # Engine runtime sidecars go to the leader alone, as in the reference.
        worker = pod_template(
            group, role, options, merge(base, pattern.worker_template_patch or {}), engine_runtimes=False
        )
        components = []
        for name, template, count in (("leader", leader, 1), ("worker", worker, max(size - 1, 0))):
            _labelled(template, {naming.LABEL_V2_COMPONENT_NAME: name, naming.LABEL_V2_COMPONENT_SIZE: str(size)})
            components.append({"name": name, "size": count, "template": template})
        components[0]["serviceName"] = service
        if shared_service_selection(role) == "All":
            components[1]["serviceName"] = service
        return components
    components = []
    for entry in (c.wire() for c in role.custom_components_pattern.components or []):
        base = copy.deepcopy(entry.get("template") or {})
        meta = base.setdefault("metadata", {})
        for field in ("labels", "annotations"):  # the component's own win over its template's
            if entry.get(field):
                meta[field] = {**(meta.get(field) or {}), **entry[field]}
        size = entry.get("size", 1)  # the reference fails on a missing size (Q14); one pod is what users mean
        template = _labelled(pod_template(group, role, options, base), {naming.LABEL_V2_COMPONENT_SIZE: str(size)})
        component = {
            "name": entry["name"],
            "size": size,
            "serviceName": entry.get("serviceName") or service,
            "template": template,
        }
        component.update({k: entry[k] for k in ("labels", "annotations") if entry.get(k)})
        components.append(component)
    return components


def selector(group: RoleBasedGroupV2, role: RoleV2) -> dict[str, str]:
    return {
        naming.LABEL_V2_GROUP_NAME: group.name,
        naming.LABEL_V2_ROLE_NAME: role.name,
        naming.LABEL_V2_GROUP_UID: naming.group_uid(group.namespace, group.name),
    }


def update_strategy(role: RoleV2, partition: int | None, max_unavailable: str | int | None) -> dict:
    """The role's rollingUpdate as the RoleInstanceSet's updateStrategy; coordination may set the
    partition and maxUnavailable."""
    update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
    strategy = {
        "type": UPDATE_TYPES.get((update.type if update is not None else None) or "", "InPlaceIfPossible"),
        "partition": partition if partition is not None else (update.partition if update else None) or 0,
        # 0 is a value here (with maxSurge, no instance may be unavailable), not a default.
        "maxUnavailable": next(
            (v for v in (max_unavailable, update.max_unavailable if update else None) if v is not None), 1
        ),
        "maxSurge": (update.max_surge if update else None) or 0,
        "paused": bool(update and update.paused),
    }
    if update is not None and update.in_place_update_strategy is not None:
        strategy["inPlaceUpdateStrategy"] = update.in_place_update_strategy.wire()
    return strategy


def instance_set_spec(
    group: RoleBasedGroupV2,
    role: RoleV2,
    templates: dict,
    partition: int | None = None,
    max_unavailable: str | int | None = None,
) -> dict:
    """The RoleInstanceSet's spec around `templates` ({"components": instance_components(...)})."""
    return {
        "replicas": role.replicas,
        "selector": {"matchLabels": selector(group, role)},
        "minReadySeconds": role.min_ready_seconds,
        "podManagementPolicy": role.pod_management_policy or "Parallel",
        "roleInstanceTemplate": {
            "restartPolicyConfig": restart_policy_config(role),
            "components": templates["components"],
        },
        "updateStrategy": update_strategy(role, partition, max_unavailable),
    }


def instance_set_metadata(group: RoleBasedGroupV2, role: RoleV2, metadata: dict) -> dict:
    """What the RoleInstanceSet carries besides the workload metadata every child has."""
    metadata["labels"][naming.LABEL_V2_ROLE_TYPE] = ROLE_TYPES[role.pattern]
    annotations = dict(metadata.get("annotations") or {})
    if group.annotations.get(naming.ANNOTATION_GROUP_GANG) == "true":
        # A gang-scheduled group's instances are gangs too, as the reference says and does not do (Q5).
        annotations.setdefault(naming.ANNOTATION_INSTANCE_GANG, "true")
    annotations[naming.ANNOTATION_V2_ROLE_SIZE] = str(role.replicas)
    annotations.setdefault(naming.ANNOTATION_V2_INSTANCE_PATTERN, "Stateful")
    update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
    if update is not None and update.in_place_update_strategy is not None:
        grace = update.in_place_update_strategy.grace_period_seconds
        if grace is not None:
            annotations[naming.ANNOTATION_V2_GRACE_PERIOD] = str(grace)
    metadata["annotations"] = annotations
    return metadata
