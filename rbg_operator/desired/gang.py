"""Gang scheduling: all pods of a group placed or none.

Three backends, chosen by the group:
- `podGroupPolicy.kubeScheduling`: a scheduler-plugins PodGroup `{rbg}`; pods carry the
  label `scheduling.x-k8s.io/pod-group` (what scheduler-plugins v0.34 reads) and go to the
  coscheduling scheduler.
- `podGroupPolicy.volcanoScheduling`: a Volcano PodGroup `{rbg}`; pods carry the annotation
  `scheduling.k8s.io/group-name` and go to Volcano's scheduler.
- `podGroupPolicy.kubeScheduling` plus the annotation
  `rolebasedgroup.workloads.x-k8s.io/gang-scheduler: kubernetes`: native gang scheduling of
  Kubernetes 1.37 (`scheduling.k8s.io/v1beta1`, feature gate GenericWorkload). The Workload
  `{rbg}` holds the templates, the runtime PodGroup `{rbg}` (template `all`) needs every pod,
  and pods join it through `spec.schedulingGroup.podGroupName`; the stock scheduler places them.
  With per-role minimums (ANNOTATION_GANG_ROLE_MINIMUMS) the Workload has one composite
  template instead: a CompositePodGroup `{rbg}` (`v1alpha3`, feature gate CompositePodGroup)
  whose gang needs every role's PodGroup `{rbg}-{role}`, each needing that role's minimum.
"""

from __future__ import annotations

import dataclasses

from .. import kinds, naming
from ..api.common import json_object, resolve
from ..api.v1alpha2 import RoleBasedGroupV2
from .meta import owner_reference
from .options import BuildOptions

COSCHEDULING = "coscheduling"
VOLCANO = "volcano"
KUBERNETES = "kubernetes"

NATIVE_WORKLOAD, NATIVE_POD_GROUP, NATIVE_COMPOSITE = (
    kinds.NATIVE_WORKLOAD,
    kinds.NATIVE_POD_GROUP,
    kinds.NATIVE_COMPOSITE_POD_GROUP,
)
# The object named {rbg} whose size holds the pods, per backend.
PODGROUP_KINDS = {
    COSCHEDULING: kinds.COSCHEDULING_POD_GROUP,
    VOLCANO: kinds.VOLCANO_POD_GROUP,
    KUBERNETES: NATIVE_POD_GROUP,
}
# Everything a gang may own, for removal when the policy goes or changes shape.
GANG_KINDS = (
    PODGROUP_KINDS[COSCHEDULING],
    PODGROUP_KINDS[VOLCANO],
    NATIVE_WORKLOAD,
    NATIVE_POD_GROUP,
    NATIVE_COMPOSITE,
)
COSCHEDULING_LABEL = "scheduling.x-k8s.io/pod-group"
VOLCANO_ANNOTATION = "scheduling.k8s.io/group-name"
WHOLE_GROUP = "all"  # the Workload template of the whole RoleBasedGroup
MAX_TEMPLATES = 8  # the Workload API's limit of pod group templates under one parent


def backend(group: RoleBasedGroupV2) -> str | None:
    policy = group.pod_group_policy
    if policy is None:
        return None
    if policy.volcano_scheduling is not None:
        return VOLCANO
    if policy.kube_scheduling is not None:
        annotations = group.metadata.get("annotations") or {}
        return KUBERNETES if annotations.get(naming.ANNOTATION_GANG_SCHEDULER) == KUBERNETES else COSCHEDULING
    return None


def role_minimums(group: RoleBasedGroupV2) -> dict[str, int | str]:
    """The per-role minimums the group asks for (checked at admission: api/rolebasedgroup.py)."""
    return json_object((group.metadata.get("annotations") or {}).get(naming.ANNOTATION_GANG_ROLE_MINIMUMS))


@dataclasses.dataclass(frozen=True)
class NativeShape:
    """How the native gang is laid out: per-role PodGroups under a composite, or one PodGroup.
    `problem` says why per-role minimums asked for are not in force (None: they are, or none
    were asked for)."""

    per_role: bool
    problem: str | None = None


def native_shape(group: RoleBasedGroupV2, options: BuildOptions) -> NativeShape:
    if backend(group) != KUBERNETES or not role_minimums(group):
        return NativeShape(False)
    if not options.composite_pod_groups:
        return NativeShape(
            False,
            "the API server does not serve scheduling.k8s.io/v1alpha3 CompositePodGroup "
            "(enable the CompositePodGroup feature gate, Kubernetes 1.37+); the gang needs "
            "every pod of the group instead",
        )
    return NativeShape(True)


def min_member(group: RoleBasedGroupV2, applied: dict[str, int] | None = None) -> int:
    """Every pod of the group: replicas x the pods of one replica (a LeaderWorkerSet's size, the
    sum of a custom-components role's component sizes). `applied` holds the
    replicas actually given to workloads where they differ from the spec (a coordinated scale-up
    in steps, another writer's value)."""
    applied = applied or {}
    return sum(applied.get(role.name, role.replicas) * role.pods_per_replica for role in group.spec.roles)


def role_gang_sizes(group: RoleBasedGroupV2, applied: dict[str, int] | None = None) -> dict[str, int]:
    """Per-role minimum pods of the gang, for roles that have pods: the minimum asked for (a
    percentage of the replicas applied, rounded up) and never more than the role has; a role not
    named needs all its pods."""
    applied, minimums = applied or {}, role_minimums(group)
    sizes = {}
    for role in group.spec.roles:
        replicas = applied.get(role.name, role.replicas)
        if replicas > 0:
            wanted = resolve(minimums.get(role.name), replicas, round_up=True, default=replicas)
            sizes[role.name] = max(1, min(wanted, replicas)) * role.pods_per_replica
    return sizes


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
    return ((spec.get("schedulingPolicy") or {}).get("gang") or {}).get("minCount")


def _gang(min_count: int) -> dict:
    return {"gang": {"minCount": min_count}}


def pod_groups(
    group: RoleBasedGroupV2,
    size: int | None = None,
    options: BuildOptions | None = None,
    applied: dict[str, int] | None = None,
) -> list[dict]:
    """The objects the group's gang needs, in creation order (templates before what they shape).
    `size`: the whole-group gang's pods (default every pod of the spec)."""
    kind = backend(group)
    if kind is None:
        return []
    size = min_member(group, applied) if size is None else size
    policy = group.pod_group_policy
    assert policy is not None

    def make(api_kind: tuple[str, str], name: str, spec: dict) -> dict:
        return {
            "apiVersion": api_kind[0],
            "kind": api_kind[1],
            "metadata": {
                "name": name,
                "namespace": group.namespace,
                "labels": naming.group_labels(group.namespace, group.name),
                "ownerReferences": [owner_reference(group)],
            },
            "spec": spec,
        }

    if kind == COSCHEDULING:
        return [
            make(
                PODGROUP_KINDS[kind],
                group.name,
                {"minMember": size, "scheduleTimeoutSeconds": policy.kube_scheduling.schedule_timeout_seconds},
            )
        ]
    if kind == VOLCANO:
        spec = {"minMember": size}
        if policy.volcano_scheduling.queue:
            spec["queue"] = policy.volcano_scheduling.queue
        if policy.volcano_scheduling.priority_class_name:
            spec["priorityClassName"] = policy.volcano_scheduling.priority_class_name
        return [make(PODGROUP_KINDS[kind], group.name, spec)]

    controller_ref = {"apiGroup": kinds.GROUP, "kind": "RoleBasedGroup", "name": group.name}
    if not native_shape(group, options or BuildOptions()).per_role:
        return [
            make(
                NATIVE_WORKLOAD,
                group.name,
                {
                    "controllerRef": controller_ref,
                    "podGroupTemplates": [{"name": WHOLE_GROUP, "schedulingPolicy": _gang(size)}],
                },
            ),
            make(
                NATIVE_POD_GROUP,
                group.name,
                {
                    "workloadRef": {"workloadName": group.name, "templateName": WHOLE_GROUP},
                    "schedulingPolicy": _gang(size),
                },
            ),
        ]
    sizes = role_gang_sizes(group, applied)
    composite_policy = {"gang": {"minGroupCount": max(1, len(sizes))}}
    return [
        make(
            NATIVE_WORKLOAD,
            group.name,
            {
                "controllerRef": controller_ref,
                "compositePodGroupTemplates": [
                    {
                        "name": WHOLE_GROUP,
                        "schedulingPolicy": composite_policy,
                        "podGroupTemplates": [
                            {"name": role, "schedulingPolicy": _gang(n)} for role, n in sizes.items()
                        ],
                    }
                ],
            },
        ),
        make(
            NATIVE_COMPOSITE,
            group.name,
            {
                "workloadRef": {"workloadName": group.name, "templateName": WHOLE_GROUP},
                "schedulingPolicy": composite_policy,
            },
        ),
        *(
            make(
                NATIVE_POD_GROUP,
                role_pod_group_name(group.name, role),
                {
                    "parentCompositePodGroupName": group.name,
                    "workloadRef": {"workloadName": group.name, "templateName": role},
                    "schedulingPolicy": _gang(n),
                },
            )
            for role, n in sizes.items()
        ),
    ]


def role_pod_group_name(group_name: str, role_name: str) -> str:
    return f"{group_name}-{role_name}"


def join_gang(template: dict, group: RoleBasedGroupV2, role_name: str, options: BuildOptions) -> dict:
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
        per_role = native_shape(group, options).per_role
        spec["schedulingGroup"] = {
            "podGroupName": role_pod_group_name(group.name, role_name) if per_role else group.name
        }
    return template


ROLE_MINIMUMS_APPLIED = "GangRoleMinimumsApplied"


def role_minimums_conditions(group: RoleBasedGroupV2, options: BuildOptions, previous: list[dict] | None) -> list[dict]:
    """Whether the per-role minimums asked for are in force: True, or False saying why not and what
    holds the pods instead; when no longer asked for, False once (absent on a group that never
    asked)."""
    condition = {"type": ROLE_MINIMUMS_APPLIED}
    if not role_minimums(group):
        if any(c["type"] == ROLE_MINIMUMS_APPLIED for c in previous or []):
            return [
                {
                    **condition,
                    "status": "False",
                    "reason": "NotRequested",
                    "message": f"no {naming.ANNOTATION_GANG_ROLE_MINIMUMS} annotation",
                }
            ]
        return []
    if backend(group) != KUBERNETES:
        return [
            {
                **condition,
                "status": "False",
                "reason": "NativeGangOnly",
                "message": f"metadata.annotations[{naming.ANNOTATION_GANG_ROLE_MINIMUMS}] needs native gang "
                f"scheduling (podGroupPolicy.kubeScheduling and {naming.ANNOTATION_GANG_SCHEDULER}: "
                f"kubernetes); it is ignored",
            }
        ]
    problem = native_shape(group, options).problem
    if problem:
        return [{**condition, "status": "False", "reason": "CompositePodGroupNotServed", "message": problem}]
    return [
        {
            **condition,
            "status": "True",
            "reason": "Applied",
            "message": f"CompositePodGroup {group.name} holds each role's PodGroup to its minimum",
        }
    ]
