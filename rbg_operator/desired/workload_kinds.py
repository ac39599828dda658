"""One strategy per workload kind a role runs as: StatefulSet, Deployment, LeaderWorkerSet,
RoleInstanceSet. Each says what the kind's pods are made from (its revision), how its object is
built with the role's rollout knobs, how its status tells readiness, and which of the group's
mechanisms apply to it. The group's code asks the strategy instead of testing the kind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .. import kinds, naming
from ..api.common import resolve
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .instanceset import instance_components, instance_set_metadata, instance_set_spec
from .instanceset import update_strategy as instance_update_strategy
from .meta import child_metadata
from .options import DEFAULT, BuildOptions
from .pods import pod_template
from .rollout import RolePlan, group_revision, revision_hash, revision_label
from .strategicmerge import merge
from .templates import resolved_template
from .workloads import deployment_spec, leaderworkerset_spec, statefulset_spec


@dataclasses.dataclass(frozen=True)
class Readiness:
    """How far a workload has come, by the rule its own tooling uses (`kubectl rollout status`
    for Deployments and StatefulSets, LeaderWorkerSet's conditions)."""

    ready: int
    old_pods_gone: bool  # no pod of an older revision still counts (a Deployment's surge)
    rolling: bool  # replacing pods of an older revision (not a creation or a scale-up)


@dataclasses.dataclass(frozen=True)
class WorkloadKind:
    api_version: str
    kind: str
    # What its pods are made from: the role's revision is the hash of it.
    pod_templates: Callable[[RoleBasedGroupV2, RoleV2, BuildOptions, bool], dict]
    # Its spec around those templates, without the rollout knobs.
    base_spec: Callable[[RoleBasedGroupV2, RoleV2, dict], dict]
    # The spec fields of its own update machinery: the role's rollout knobs, or coordination's (`plan`).
    rollout: Callable[[RoleV2, RolePlan], dict]
    # status, whether its controller has seen the latest spec, and the replicas wanted.
    readiness: Callable[[dict, bool, int], Readiness]
    # Pods by ordinal, updated above a partition: coordinated rollouts pace it by partitions, a
    # pod stuck on the old revision is replaced, and a pod gone below replicas was lost.
    ordinal_pods: bool = False
    # Updated by ordinal above a partition (StatefulSet pods, RoleInstanceSet instances): a
    # CoordinatedPolicy's partition, maxUnavailable and maxSkew pace its rollout.
    coordinated_rollout: bool = False
    # Its replicas are pods (not groups of pods): coordinated scaling paces their growth.
    paced_growth: bool = True
    # It recreates an instance itself: the per-instance restart policy is its own.
    recreates_instances: bool = False
    metadata: Callable[[RoleBasedGroupV2, RoleV2, dict], dict] = lambda group, role, metadata: metadata

    @property
    def key(self) -> tuple[str, str]:
        return self.api_version, self.kind

    def spec(self, group: RoleBasedGroupV2, role: RoleV2, templates: dict, plan: RolePlan) -> dict:
        return {**self.base_spec(group, role, templates), **self.rollout(role, plan)}


def _pod(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions, v2_keys: bool) -> dict:
    return {"template": pod_template(group, role, options, v2_keys=v2_keys)}


def _leader_worker(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions, v2_keys: bool) -> dict:
    pattern = role.leader_worker_pattern
    leader_patch = pattern.leader_template_patch if pattern is not None else None
    worker_patch = pattern.worker_template_patch if pattern is not None else None
    base = resolved_template(group, role)
    templates = {
        "size": role.leader_worker_size,
        # Engine runtimes go to the leader alone, as in the reference's leader-worker pattern.
        "workerTemplate": pod_template(
            group, role, options, merge(base, worker_patch or {}), v2_keys, engine_runtimes=False
        ),
    }
    if leader_patch or role.engine_runtimes:
        templates["leaderTemplate"] = pod_template(group, role, options, merge(base, leader_patch or {}), v2_keys)
    return templates


def _instances(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions, v2_keys: bool) -> dict:
    return {"components": instance_components(group, role, options)}  # its pods have the v2 keys from the start


def _knobs(role: RoleV2, plan: RolePlan, surging: bool) -> tuple:
    """maxUnavailable, maxSurge, partition and paused, coordination's plan first."""
    update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
    unavailable = plan.max_unavailable or (update.max_unavailable if update is not None else 1)
    surge = update.max_surge if update is not None else 0
    if surging and resolve(unavailable, role.replicas) == 0 and resolve(surge, role.replicas, round_up=True) == 0:
        # Deployments and LeaderWorkerSets take int-or-percent and resolve it themselves, and allow
        # no unavailable pod when they may surge (a rollout that never dips below replicas). Both
        # zero they would refuse: then one at a time.
        unavailable = 1
    partition = plan.partition
    if partition is None:
        partition = resolve(update.partition if update else None, role.replicas)
    paused = bool(update and update.paused)
    if paused:
        partition = role.replicas  # hold every pod at its current revision
    return unavailable, surge, partition, paused


def _statefulset_rollout(role: RoleV2, plan: RolePlan) -> dict:
    unavailable, _, partition, _ = _knobs(role, plan, surging=False)
    # A StatefulSet needs at least one: 0 (or a percentage that rounds to 0) means one at a time.
    return {
        "updateStrategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "partition": partition,
                "maxUnavailable": resolve(unavailable, role.replicas, default=1) or 1,
            },
        }
    }


def _deployment_rollout(role: RoleV2, plan: RolePlan) -> dict:
    unavailable, surge, _, paused = _knobs(role, plan, surging=True)
    return {
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}},
        "paused": paused,
    }


def _leaderworkerset_rollout(role: RoleV2, plan: RolePlan) -> dict:
    unavailable, surge, partition, _ = _knobs(role, plan, surging=True)
    return {
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"partition": partition, "maxUnavailable": unavailable, "maxSurge": surge},
        }
    }


def _instanceset_rollout(role: RoleV2, plan: RolePlan) -> dict:
    return {"updateStrategy": instance_update_strategy(role, plan.partition, plan.max_unavailable)}


def _instanceset_spec(group: RoleBasedGroupV2, role: RoleV2, templates: dict) -> dict:
    return instance_set_spec(group, role, templates)  # its updateStrategy comes from the rollout knobs


def _revisions_differ(status: dict) -> bool:
    update, current = status.get("updateRevision"), status.get("currentRevision")
    return bool(update and current and update != current)


def _statefulset_readiness(status: dict, current: bool, desired: int) -> Readiness:
    return Readiness(status.get("readyReplicas", 0), True, current and _revisions_differ(status))


def _deployment_readiness(status: dict, current: bool, desired: int) -> Readiness:
    # As `kubectl rollout status`: available pods, and no old ReplicaSet's pod left (maxSurge
    # keeps old ready pods around, which must not count for the new revision).
    replicas, updated = status.get("replicas", 0), status.get("updatedReplicas", 0)
    return Readiness(status.get("availableReplicas", 0), replicas <= updated, current and replicas > updated)


def _leaderworkerset_readiness(status: dict, current: bool, desired: int) -> Readiness:
    # Groups, each ready when all its pods are.
    updating = next((c for c in status.get("conditions") or [] if c.get("type") == "UpdateInProgress"), {})
    rolling = current and updating.get("status") == "True"
    return Readiness(status.get("readyReplicas", 0), not rolling, rolling)


def _instanceset_readiness(status: dict, current: bool, desired: int) -> Readiness:
    # Instances, each ready when all its pods are.
    return Readiness(
        status.get("readyReplicas", 0), status.get("replicas", 0) <= desired, current and _revisions_differ(status)
    )


STATEFUL_SET = WorkloadKind(
    "apps/v1",
    "StatefulSet",
    _pod,
    statefulset_spec,
    _statefulset_rollout,
    _statefulset_readiness,
    ordinal_pods=True,
    coordinated_rollout=True,
)
DEPLOYMENT = WorkloadKind("apps/v1", "Deployment", _pod, deployment_spec, _deployment_rollout, _deployment_readiness)
LEADER_WORKER_SET = WorkloadKind(
    "leaderworkerset.x-k8s.io/v1",
    "LeaderWorkerSet",
    _leader_worker,
    leaderworkerset_spec,
    _leaderworkerset_rollout,
    _leaderworkerset_readiness,
    paced_growth=False,
    recreates_instances=True,
)
ROLE_INSTANCE_SET = WorkloadKind(
    kinds.API_VERSION,
    "RoleInstanceSet",
    _instances,
    _instanceset_spec,
    _instanceset_rollout,
    _instanceset_readiness,
    coordinated_rollout=True,
    recreates_instances=True,
    metadata=instance_set_metadata,
)
WORKLOAD_KINDS = {k.kind: k for k in (STATEFUL_SET, DEPLOYMENT, LEADER_WORKER_SET, ROLE_INSTANCE_SET)}


def of(role: RoleV2) -> WorkloadKind:
    return WORKLOAD_KINDS[role.workload.kind]


def role_pod_templates(
    group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions = DEFAULT, v2_keys: bool = True
) -> dict:
    """What the role's workload makes its pods from (`v2_keys`: see meta.pods_get_v2_keys)."""
    return of(role).pod_templates(group, role, options, v2_keys)


def role_revision(group: RoleBasedGroupV2, role: RoleV2, options: BuildOptions = DEFAULT) -> str:
    return revision_hash(role_pod_templates(group, role, options))


def role_revisions(group: RoleBasedGroupV2, options: BuildOptions = DEFAULT) -> dict[str, str]:
    return {role.name: role_revision(group, role, options) for role in group.spec.roles}


def group_revision_of(group: RoleBasedGroupV2, options: BuildOptions = DEFAULT) -> str:
    return group_revision(role_revisions(group, options))


def role_workload(
    group: RoleBasedGroupV2,
    role: RoleV2,
    options: BuildOptions = DEFAULT,
    plan: RolePlan = RolePlan(),
    v2_pod_keys: bool = True,
) -> dict:
    """The role's workload; `plan` overrides the role's own settings while coordination paces it."""
    strategy = of(role)
    templates = strategy.pod_templates(group, role, options, v2_pod_keys)
    metadata = strategy.metadata(group, role, child_metadata(group, role, naming.workload_name(group.name, role.name)))
    spec = strategy.spec(group, role, templates, plan)
    if plan.replicas is not None:
        spec["replicas"] = plan.replicas
    revision = revision_hash(templates)
    metadata["labels"][revision_label(role.name)] = revision
    metadata["labels"][revision_label(role.name, naming.LABEL_V2_REVISION_PREFIX)] = revision
    return {"apiVersion": strategy.api_version, "kind": strategy.kind, "metadata": metadata, "spec": spec}
