"""The workload object of each role: StatefulSet, Deployment or LeaderWorkerSet."""

from __future__ import annotations

from .. import kinds, naming
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .instanceset import instance_components, instance_set_metadata, instance_set_spec
from .meta import child_metadata
from .options import DEFAULT, BuildOptions
from .pods import pod_template
from .rollout import RolePlan, group_revision, revision_hash, revision_label, update_strategy
from .strategicmerge import merge
from .templates import resolved_template


def role_pod_templates(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions = DEFAULT,
                       v2_keys: bool = True) -> dict:
    """What the role's workload makes its pods from: the pod template, or a LeaderWorkerSet's
    size with its worker and leader templates, or a RoleInstanceSet's instance components.
    `v2_keys`: see meta.pods_get_v2_keys (a RoleInstanceSet's pods have them from the start)."""
    if role.workload.kind == "RoleInstanceSet":
        return {"components": instance_components(group, role, options)}
    if role.workload.kind != "LeaderWorkerSet":
        return {"template": pod_template(group, role, options, v2_keys=v2_keys)}
    pattern = role.leader_worker_pattern
    leader_patch = pattern.leader_template_patch if pattern is not None else None
    worker_patch = pattern.worker_template_patch if pattern is not None else None
    base = resolved_template(group, role)
    templates = {
        "size": role.leader_worker_size,
        # Engine runtimes go to the leader alone, as in the reference's leader-worker pattern.
        "workerTemplate": pod_template(group, role, options, merge(base, worker_patch or {}), v2_keys,
                                       engine_runtimes=False),
    }
    if leader_patch or role.engine_runtimes:
        templates["leaderTemplate"] = pod_template(group, role, options, merge(base, leader_patch or {}), v2_keys)
    return templates


def role_revision(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions = DEFAULT) -> str:
    return revision_hash(role_pod_templates(group, role, options))


def role_revisions(group: RoleBasedGroupV2, options: BuildOptions = DEFAULT) -> dict[str, str]:
    return {role.name: role_revision(group, role, options) for role in group.spec.roles}


def group_revision_of(group: RoleBasedGroupV2, options: BuildOptions = DEFAULT) -> str:
    return group_revision(role_revisions(group, options))


def _statefulset(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "spec": {
            "replicas": role.replicas,
            "serviceName": naming.service_name(group.name, role.name),
            # Parallel: role instances are peers (tensor/data parallel servers), not a chain.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": naming.role_selector(group.name, role.name)},
            "template": templates["template"],
            "minReadySeconds": role.min_ready_seconds,
        },
    }


def _deployment(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {
            "replicas": role.replicas,
            "selector": {"matchLabels": naming.role_selector(group.name, role.name)},
            "template": templates["template"],
            "minReadySeconds": role.min_ready_seconds,
        },
    }


def _leaderworkerset(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    template = dict(templates)
    # The LeaderWorkerSet's own group recreation is the role-instance policy; a group-wide
    # policy is the operator's job, so LeaderWorkerSet must not recreate on its own as well.
    lws_restart = {"RecreateRoleInstanceOnPodRestart": "RecreateGroupOnPodRestart",
                   "RecreateRBGOnPodRestart": "None"}.get(role.restart_policy or "")
    if lws_restart:
        template["restartPolicy"] = lws_restart
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "spec": {"replicas": role.replicas, "leaderWorkerTemplate": template},
    }


BUILDERS = {"StatefulSet": _statefulset, "Deployment": _deployment, "LeaderWorkerSet": _leaderworkerset}


def role_workload(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions = DEFAULT,
                  plan: RolePlan = RolePlan(), v2_pod_keys: bool = True) -> dict:
    """The role's workload; `plan` overrides the role's own settings while coordination paces it."""
    templates = role_pod_templates(group, role, options, v2_pod_keys)
    metadata = child_metadata(group, role, naming.workload_name(group.name, role.name))
    if role.workload.kind == "RoleInstanceSet":
        workload = {"apiVersion": kinds.API_VERSION, "kind": "RoleInstanceSet",
                    "spec": instance_set_spec(group, role, templates, plan.partition, plan.max_unavailable)}
        metadata = instance_set_metadata(role, metadata)
    else:
        workload = BUILDERS[role.workload.kind](group, role, templates)
        workload["spec"].update(update_strategy(role, role.workload.kind, plan))
    if plan.replicas is not None:
        workload["spec"]["replicas"] = plan.replicas
    workload["metadata"] = metadata
    revision = revision_hash(templates)
    workload["metadata"]["labels"][revision_label(role.name)] = revision
    workload["metadata"]["labels"][revision_label(role.name, naming.LABEL_V2_REVISION_PREFIX)] = revision
    return {"apiVersion": workload["apiVersion"], "kind": workload["kind"], "metadata": workload["metadata"],
            "spec": workload["spec"]}
