"""The workload object of each role: StatefulSet, Deployment or LeaderWorkerSet."""

from __future__ import annotations

from .. import naming
from ..api.rolebasedgroup import Role, RoleBasedGroup
from .discovery import inject
from .gang import join_gang
from .meta import child_metadata, role_labels
from .options import DEFAULT, BuildOptions
from .rollout import RolePlan, group_revision, revision_hash, revision_label, update_strategy
from .strategicmerge import merge
from .templates import resolved_template


def pod_template(group: RoleBasedGroup, role: Role, options: BuildOptions, base: dict | None = None) -> dict:
    """A pod template with the role's labels and annotations, discovery and gang membership."""
    template = resolved_template(group, role) if base is None else base
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), **role_labels(group, role)}
    if role.annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **role.annotations}
    return join_gang(inject(template, group, role), group, options)


def role_pod_templates(group: RoleBasedGroup, role: Role, options: BuildOptions = DEFAULT) -> dict:
    """What the role's workload makes its pods from: the pod template, or a LeaderWorkerSet's
    size with its worker and leader templates."""
    if role.workload.kind != "LeaderWorkerSet":
        return {"template": pod_template(group, role, options)}
    lws = role.leader_worker_set
    base = resolved_template(group, role)
    templates = {
        "size": role.leader_worker_size,
        "workerTemplate": pod_template(group, role, options, merge(base, (lws and lws.patch_worker_template) or {})),
    }
    if lws and lws.patch_leader_template:
        templates["leaderTemplate"] = pod_template(group, role, options, merge(base, lws.patch_leader_template))
    return templates


def role_revision(group: RoleBasedGroup, role: Role, options: BuildOptions = DEFAULT) -> str:
    return revision_hash(role_pod_templates(group, role, options))


def role_revisions(group: RoleBasedGroup, options: BuildOptions = DEFAULT) -> dict[str, str]:
    return {role.name: role_revision(group, role, options) for role in group.spec.roles}


def group_revision_of(group: RoleBasedGroup, options: BuildOptions = DEFAULT) -> str:
    return group_revision(role_revisions(group, options))


def _statefulset(group: RoleBasedGroup, role: Role, templates: dict) -> dict:
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


def _deployment(group: RoleBasedGroup, role: Role, templates: dict) -> dict:
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


def _leaderworkerset(group: RoleBasedGroup, role: Role, templates: dict) -> dict:
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


def role_workload(group: RoleBasedGroup, role: Role, options: BuildOptions = DEFAULT,
                  plan: RolePlan = RolePlan()) -> dict:
    """The role's workload; `plan` overrides the role's own settings while coordination paces it."""
    templates = role_pod_templates(group, role, options)
    workload = BUILDERS[role.workload.kind](group, role, templates)
    workload["spec"].update(update_strategy(role, role.workload.kind, plan))
    if plan.replicas is not None:
        workload["spec"]["replicas"] = plan.replicas
    workload["metadata"] = child_metadata(group, role, naming.workload_name(group.name, role.name))
    workload["metadata"]["labels"][revision_label(role.name)] = revision_hash(templates)
    return {"apiVersion": workload["apiVersion"], "kind": workload["kind"], "metadata": workload["metadata"],
            "spec": workload["spec"]}
