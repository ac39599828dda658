"""Gang scheduling: all pods of a group placed or none.

Three backends, chosen by the group:
- `podGroupPolicy.kubeScheduling`: a scheduler-plugins PodGroup `{rbg}`; pods carry the
  label `scheduling.x-k8s.io/pod-group` (what scheduler-plugins v0.34 reads) and go to the
  coscheduling scheduler.
- `podGroupPolicy.volcanoScheduling`: a Volcano PodGroup `{rbg}`; pods carry the annotation
  `scheduling.k8s.io/group-name` and go to Volcano's scheduler.
- `podGroupPolicy.kubeScheduling` plus the annotation
  `rolebasedgroup.workloads.x-k8s.io/gang-scheduler: kubernetes`: native Kubernetes gang
  scheduling, a `scheduling.k8s.io/v1alpha1` Workload `{rbg}` whose one pod group needs
  every pod; pods reference it with `spec.workloadRef` and the stock scheduler places them
  (Kubernetes >= 1.35 with the GenericWorkload and GangScheduling feature gates).
"""

from __future__ import annotations

from .. import naming
from ..api.rolebasedgroup import RoleBasedGroup
from .meta import owner_reference
from .options import BuildOptions

COSCHEDULING = "coscheduling"
VOLCANO = "volcano"
KUBERNETES = "kubernetes"

PODGROUP_KINDS = {
    COSCHEDULING: ("scheduling.x-k8s.io/v1alpha1", "PodGroup"),
    VOLCANO: ("scheduling.volcano.sh/v1beta1", "PodGroup"),
    KUBERNETES: ("scheduling.k8s.io/v1alpha1", "Workload"),
}
COSCHEDULING_LABEL = "scheduling.x-k8s.io/pod-group"
VOLCANO_ANNOTATION = "scheduling.k8s.io/group-name"
NATIVE_POD_GROUP = "all"  # the one pod group of the Workload: the whole RoleBasedGroup


def backend(group: RoleBasedGroup) -> str | None:
    policy = group.spec.pod_group_policy
    if policy is None:
        return None
    if policy.volcano_scheduling is not None:
        return VOLCANO
    if policy.kube_scheduling is not None:
        annotations = group.metadata.get("annotations") or {}
        return KUBERNETES if annotations.get(naming.ANNOTATION_GANG_SCHEDULER) == KUBERNETES else COSCHEDULING
    return None


def min_member(group: RoleBasedGroup, applied: dict[str, int] | None = None) -> int:
    """Every pod of the group: LeaderWorkerSet roles count replicas x size. `applied` holds the
    replicas actually given to workloads where they differ from the spec (a coordinated scale-up
    in steps, another writer's value)."""
    applied = applied or {}
    return sum(applied.get(role.name, role.replicas) * role.leader_worker_size for role in group.spec.roles)


def gang_size(target: int, current: int | None, pods: int) -> int:
    """The gang size to apply, given the pods `target` asks for, the size applied now (None: no pod
    group yet) and the pods that exist. A new gang and a shrinking one take the target at once.
    A growing one rises only as far as its new pods exist: a gang larger than the pods there makes
    the scheduler turn the first new pod away into a long backoff, while its sibling waits at the
    gate until it times out; a gang that has started needs no holding for pods yet to come."""
    if current is None or target <= current:
        return target
    return max(current, min(target, pods))


def applied_gang_size(podgroup: dict | None) -> int | None:
    """The size an existing pod group of any backend holds its pods to."""
    if podgroup is None:
        return None
    spec = podgroup.get("spec") or {}
    if "minMember" in spec:
        return spec["minMember"]
    groups = spec.get("podGroups") or [{}]
    return ((groups[0].get("policy") or {}).get("gang") or {}).get("minCount")


def pod_group(group: RoleBasedGroup, size: int | None = None) -> dict | None:
    kind = backend(group)
    if kind is None:
        return None
    size = min_member(group) if size is None else size
    api_version, kind_name = PODGROUP_KINDS[kind]
    policy = group.spec.pod_group_policy
    assert policy is not None
    if kind == COSCHEDULING:
        spec = {"minMember": size,
                "scheduleTimeoutSeconds": policy.kube_scheduling.schedule_timeout_seconds}
    elif kind == VOLCANO:
        spec = {"minMember": size}
        if policy.volcano_scheduling.queue:
            spec["queue"] = policy.volcano_scheduling.queue
        if policy.volcano_scheduling.priority_class_name:
            spec["priorityClassName"] = policy.volcano_scheduling.priority_class_name
    else:
        spec = {"podGroups": [{"name": NATIVE_POD_GROUP, "policy": {"gang": {"minCount": size}}}]}
    return {
        "apiVersion": api_version,
        "kind": kind_name,
        "metadata": {"name": group.name, "namespace": group.namespace,
                     "labels": naming.group_labels(group.namespace, group.name), "ownerReferences": [owner_reference(group)]},
        "spec": spec,
    }


def join_gang(template: dict, group: RoleBasedGroup, options: BuildOptions) -> dict:
    """Mark a pod template as a member of the group's gang (modifies and returns it)."""
    kind = backend(group)
    if kind is None:
        return template
    meta, spec = template.setdefault("metadata", {}), template.setdefault("spec", {})
    if kind == COSCHEDULING:
        meta.setdefault("labels", {})[COSCHEDULING_LABEL] = group.name
        spec.setdefault("schedulerName", options.coscheduling_scheduler)
    elif kind == VOLCANO:
        meta.setdefault("annotations", {})[VOLCANO_ANNOTATION] = group.name
        spec.setdefault("schedulerName", options.volcano_scheduler)
    else:
        spec["workloadRef"] = {"name": group.name, "podGroup": NATIVE_POD_GROUP}
    return template
