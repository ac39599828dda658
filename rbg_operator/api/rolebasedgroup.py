"""RoleBasedGroup (workloads.x-k8s.io/v1alpha1): spec and status models.

These models are the single source of truth: the CRD schema in crds/ is generated from
them, and the operator parses every group through them before acting on it.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import Field, model_validator

from ..kinds import DEPLOYMENT, LEADER_WORKER_SET, ROLE_INSTANCE_SET, STATEFUL_SET
from . import component_discovery
from .common import (
    MAX_GROUP_PODS,
    MAX_LEADER_WORKER_SIZE,
    MAX_ROLE_REPLICAS,
    MAX_ROLES,
    ApiModel,
    Condition,
    Container,
    DnsLabel,
    FreeForm,
    IntOrString,
    MaxSurge,
    Percent,
    PodTemplateSpec,
    RoleName,
    ServicePort,
    cel,
    fanout_problem,
    graph_cycle,
    json_object,
    json_size,
)
from .discovery_size import discovery_size_problem

LABEL_GROUP = "rolebasedgroup.workloads.x-k8s.io/name"
LIST_MAP_BY_NAME = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
# ROLE_INSTANCE_SET is v1alpha2's default workload: only a group written in v1alpha2 has it
# (v1alpha1's CEL rules refuse it), and admission checks such groups by the v1alpha2 rules.
SUPPORTED_WORKLOADS = (STATEFUL_SET, DEPLOYMENT, LEADER_WORKER_SET, ROLE_INSTANCE_SET)
# The role annotation in which conversion keeps v1alpha2-only role fields (api/conversion.py).
V2_FIELDS_KEY = "conversion.workloads.x-k8s.io/v1alpha2-role-fields"


class Workload(ApiModel):
    """The kind of workload a role runs as."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "(self.apiVersion == 'apps/v1' && (self.kind == 'StatefulSet' || self.kind == 'Deployment'))"
                " || (self.apiVersion == 'leaderworkerset.x-k8s.io/v1' && self.kind == 'LeaderWorkerSet')"
                " || (self.apiVersion == 'workloads.x-k8s.io/v1alpha2' && self.kind == 'RoleInstanceSet')",
                "workload must be apps/v1 StatefulSet, apps/v1 Deployment, leaderworkerset.x-k8s.io/v1 LeaderWorkerSet "
                "or workloads.x-k8s.io/v1alpha2 RoleInstanceSet",
            )
        )
    }

    api_version: str = Field(
        "apps/v1", description="API version of the workload: apps/v1 or leaderworkerset.x-k8s.io/v1."
    )
    kind: str = Field("StatefulSet", description="Kind of the workload: StatefulSet, Deployment or LeaderWorkerSet.")

    @property
    def key(self) -> tuple[str, str]:
        return (self.api_version, self.kind)


class TemplateRef(ApiModel):
    """Points at an entry of spec.roleTemplates."""

    name: str = Field(description="Name of the roleTemplates entry this role's pod template starts from.")


class LeaderWorkerSetSpec(ApiModel):
    """Shape of a LeaderWorkerSet role: pods per group and the leader/worker patches."""

    size: int = Field(1, ge=1, le=MAX_LEADER_WORKER_SIZE, description="Pods per leader-worker group, leader included.")
    patch_leader_template: FreeForm | None = Field(
        None, description="Strategic merge patch applied to the role template for the leader pod."
    )
    patch_worker_template: FreeForm | None = Field(
        None, description="Strategic merge patch applied to the role template for worker pods."
    )


class InPlaceUpdateStrategy(ApiModel):
    """Settings for in-place updates."""

    grace_period_seconds: int | None = Field(
        None, ge=0, description="Seconds the pod is marked not-ready before an in-place update."
    )


class RollingUpdate(ApiModel):
    """How a role's pods are replaced during a rolling update."""

    type: str | None = Field(None, description="Update method of the rolling update, e.g. InPlaceIfPossible.")
    partition: IntOrString | None = Field(
        None, description="Ordinal (or percentage of replicas) below which pods keep the old revision."
    )
    max_unavailable: IntOrString = Field(
        1, description="Pods (or percentage) that may be unavailable during the update."
    )
    max_surge: MaxSurge = Field(
        0, description="Extra pods (or percentage) allowed above replicas during the update (at most 5000 or 100%)."
    )
    paused: bool = Field(False, description="Holds the role's rollout where it is.")
    in_place_update_strategy: InPlaceUpdateStrategy | None = Field(None, description="In-place update settings.")


class RolloutStrategy(ApiModel):
    """How a template change rolls out for a role."""

    type: Literal["RollingUpdate"] = Field("RollingUpdate", description="Rollout type; RollingUpdate.")
    rolling_update: RollingUpdate | None = Field(None, description="Rolling update parameters.")


class EngineRuntime(ApiModel):
    """Sidecars injected from a ClusterEngineRuntimeProfile."""

    profile_name: str = Field(description="Name of the ClusterEngineRuntimeProfile.")
    inject_containers: list[str] | None = Field(None, description="Not read, as in the reference.")
    containers: list[Container] | None = Field(None, description="Container overrides for the profile's sidecars.")


class ScalingAdapterSpec(ApiModel):
    """Whether the role gets a RoleBasedGroupScalingAdapter."""

    enable: bool = Field(False, description="Create a RoleBasedGroupScalingAdapter {rbg}-{role} for this role.")


class Role(ApiModel):
    """One named role of the group, run as one workload."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            # A RoleInstanceSet role (written in v1alpha2, stored in v1alpha1) may use the custom
            # components pattern, kept in an annotation: it has neither template nor templateRef.
            (
                "has(self.template) != has(self.templateRef) || (self.workload.kind == 'RoleInstanceSet'"
                " && has(self.annotations) && 'conversion.workloads.x-k8s.io/v1alpha2-role-fields' in self.annotations)",  # noqa: E501 - one rule, one line
                "set exactly one of template and templateRef",
            ),
            (
                "!has(self.templateRef) || self.workload.kind != 'LeaderWorkerSet'",
                "templateRef is not allowed for LeaderWorkerSet roles",
                ".templateRef",
            ),
            (
                "!has(self.leaderWorkerSet) || self.workload.kind == 'LeaderWorkerSet'"
                " || self.workload.kind == 'RoleInstanceSet'",
                "leaderWorkerSet is only allowed for LeaderWorkerSet and RoleInstanceSet roles",
                ".leaderWorkerSet",
            ),
            (
                "!has(self.dependencies) || !(self.name in self.dependencies)",
                "a role cannot depend on itself",
                ".dependencies",
            ),
        )
    }

    name: DnsLabel = Field(description="Role name, unique in the group; a DNS label.")
    replicas: int = Field(
        1, ge=0, le=MAX_ROLE_REPLICAS, description="Number of role instances (pods, or leader-worker groups)."
    )
    dependencies: list[RoleName] | None = Field(
        None, max_length=MAX_ROLES, description="Roles that must be Ready before this role is created."
    )
    workload: Workload = Field(
        default_factory=Workload,
        description="Workload kind of the role.",
        json_schema_extra={"default": {"apiVersion": "apps/v1", "kind": "StatefulSet"}},
    )
    template: PodTemplateSpec | None = Field(None, description="Pod template of the role.")
    template_ref: TemplateRef | None = Field(
        None, description="Use a spec.roleTemplates entry as the pod template (not with LeaderWorkerSet)."
    )
    template_patch: FreeForm | None = Field(
        None, description="Strategic merge patch applied onto the referenced role template."
    )
    leader_worker_set: LeaderWorkerSetSpec | None = Field(
        None, description="LeaderWorkerSet settings; only for LeaderWorkerSet roles."
    )
    restart_policy: Literal["None", "RecreateRBGOnPodRestart", "RecreateRoleInstanceOnPodRestart"] | None = Field(
        None, description="What a container restart or pod loss in this role recreates."
    )
    rollout_strategy: RolloutStrategy | None = Field(None, description="How template changes roll out.")
    service_ports: list[ServicePort] | None = Field(None, description="Ports published in the discovery config.")
    engine_runtimes: list[EngineRuntime] | None = Field(
        None, description="Engine runtime sidecars, from ClusterEngineRuntimeProfiles."
    )
    scaling_adapter: ScalingAdapterSpec | None = Field(None, description="Scaling adapter for the role.")
    min_ready_seconds: int = Field(0, ge=0, description="Seconds a pod must be ready before it counts as available.")
    labels: dict[str, str] | None = Field(None, description="Labels copied onto the workload and its pods.")
    annotations: dict[str, str] | None = Field(None, description="Annotations copied onto the workload and its pods.")

    @property
    def leader_worker_size(self) -> int:
        return self.leader_worker_set.size if self.leader_worker_set else 1

    @property
    def pods_per_replica(self) -> int:
        """Pods one replica runs: its leader-worker size, or the sum of its custom components'
        sizes (kept for v1alpha2 in an annotation that CEL cannot read, so counted here)."""
        if self.pattern != "customComponents":
            return self.leader_worker_size
        components = (self.v1alpha2_fields.get("customComponentsPattern") or {}).get("components")
        if not isinstance(components, list):
            return 0
        sizes = [c.get("size", 1) if isinstance(c, dict) else 0 for c in components]
        # Whatever is not a whole number counts as one pod here; the RoleInstance's schema refuses it.
        return sum(s if isinstance(s, int) and not isinstance(s, bool) and s >= 0 else 1 for s in sizes)

    @property
    def v1alpha2_fields(self) -> dict:
        """v1alpha2 role fields that v1alpha1 has no place for, kept by conversion in an annotation
        (api/conversion.py): the custom components pattern, podManagementPolicy, restart delays,
        sharedServiceSelection. Empty for a role written in v1alpha1."""
        return json_object((self.annotations or {}).get(V2_FIELDS_KEY))

    @property
    def first_component(self) -> tuple[str, str | None]:
        """(name, serviceName) of the first custom component kept for v1alpha2, as RoleV2's."""
        components = (self.v1alpha2_fields.get("customComponentsPattern") or {}).get("components")
        first = components[0] if isinstance(components, list) and components else None
        if not isinstance(first, dict) or not isinstance(first.get("name"), str):
            return ("", None)
        service = first.get("serviceName")
        return (first["name"], service if isinstance(service, str) else None)

    @property
    def pattern(self) -> str:
        """The v1alpha2 pattern the role's pods follow: standalone, leaderWorker or customComponents."""
        if "customComponentsPattern" in self.v1alpha2_fields and self.template is None and self.template_ref is None:
            return "customComponents"
        return "leaderWorker" if self.leader_worker_set is not None else "standalone"


class RoleTemplate(ApiModel):
    """A named pod template that roles reference with templateRef."""

    name: DnsLabel = Field(description="Template name; a DNS label.")
    template: PodTemplateSpec = Field(description="The pod template.")


class KubeScheduling(ApiModel):
    """Gang scheduling with the scheduler-plugins coscheduling PodGroup."""

    schedule_timeout_seconds: int = Field(60, ge=1, description="Seconds to wait for the whole gang to be placed.")


class VolcanoScheduling(ApiModel):
    """Gang scheduling with a Volcano PodGroup."""

    priority_class_name: str | None = Field(None, description="Priority class of the PodGroup.")
    queue: str | None = Field(None, description="Volcano queue of the PodGroup.")


class PodGroupPolicy(ApiModel):
    """Gang scheduling: all pods of the group placed or none. Set one backend."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!(has(self.kubeScheduling) && has(self.volcanoScheduling))",
                "set at most one gang backend: kubeScheduling or volcanoScheduling",
            )
        )
    }

    kube_scheduling: KubeScheduling | None = Field(None, description="Use the scheduler-plugins coscheduling PodGroup.")
    volcano_scheduling: VolcanoScheduling | None = Field(None, description="Use a Volcano PodGroup.")


class CoordinationRollingUpdate(ApiModel):
    """Keeps the listed roles' rollouts in step."""

    max_skew: Percent | None = Field(None, description="Largest allowed difference of the roles' updated fractions.")
    partition: Percent | None = Field(None, description="Share of each role kept on the old revision.")
    max_unavailable: Percent | None = Field(None, description="Share of each role that may be unavailable.")


class CoordinationScaling(ApiModel):
    """Paces replica increases across the listed roles."""

    max_skew: Percent | None = Field(None, description="Largest allowed difference of the roles' scaled fractions.")
    progression: Literal["OrderScheduled", "OrderReady"] = Field(
        "OrderScheduled", description="Advance when pods are scheduled (OrderScheduled) or ready (OrderReady)."
    )


class CoordinationStrategy(ApiModel):
    """Rolling update and scaling coordination."""

    rolling_update: CoordinationRollingUpdate | None = Field(None, description="Coordinated rolling update.")
    scaling: CoordinationScaling | None = Field(None, description="Coordinated scaling.")


class Coordination(ApiModel):
    """A set of roles that update and scale together."""

    name: str = Field(description="Name of this coordination rule.")
    roles: list[RoleName] = Field(min_length=1, max_length=MAX_ROLES, description="Names of the coordinated roles.")
    strategy: CoordinationStrategy | None = Field(None, description="How the roles are coordinated.")


class RoleBasedGroupSpec(ApiModel):
    """A list of named roles deployed, ordered, scheduled and updated as one group."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("self.roles.all(r, self.roles.exists_one(x, x.name == r.name))", "role names must be unique", ".roles"),
            (
                "self.roles.all(r, !has(r.dependencies) || r.dependencies.all(d, self.roles.exists(x, x.name == d)))",
                "dependencies must name roles of this group",
                ".roles",
            ),
            (
                "!has(self.coordination) || self.coordination.all(c, c.roles.all(n, self.roles.exists(r, r.name == n)))",  # noqa: E501 - one rule, one line
                "coordination roles must name roles of this group",
                ".coordination",
            ),
            (
                "self.roles.all(r, !has(r.templateRef) || (has(self.roleTemplates)"
                " && self.roleTemplates.exists(t, t.name == r.templateRef.name)))",
                "templateRef must name an entry of roleTemplates",
                ".roles",
            ),
            (
                "self.roles.map(r, (has(r.replicas) ? r.replicas : 1)"
                " * (has(r.leaderWorkerSet) && has(r.leaderWorkerSet.size) ? r.leaderWorkerSet.size : 1)).sum()"
                f" <= {MAX_GROUP_PODS}",
                f"the group's pods (replicas times leaderWorkerSet.size, over all roles) must be at most {MAX_GROUP_PODS}",  # noqa: E501 - one rule, one line
                ".roles",
            ),
        )
    }

    roles: list[Role] = Field(
        min_length=1, max_length=MAX_ROLES, description="The group's roles.", json_schema_extra=LIST_MAP_BY_NAME
    )
    role_templates: list[RoleTemplate] | None = Field(
        None,
        max_length=MAX_ROLES,
        description="Named pod templates that roles can reference.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    pod_group_policy: PodGroupPolicy | None = Field(
        None, description="Gang scheduling policy; its presence turns gang scheduling on."
    )
    coordination: list[Coordination] | None = Field(
        None, max_length=MAX_ROLES, description="Roles that roll out and scale together."
    )

    @model_validator(mode="after")
    def _check(self) -> RoleBasedGroupSpec:
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def role(self, name: str) -> Role:
        return next(r for r in self.roles if r.name == name)


class RoleStatus(ApiModel):
    """Observed counts of one role."""

    name: str = Field(description="Role name.")
    replicas: int = Field(0, description="Instances that exist.")
    ready_replicas: int = Field(0, description="Instances that are ready.")
    updated_replicas: int = Field(0, description="Instances on the current revision.")


class RoleBasedGroupStatus(ApiModel):
    """Observed state of the group."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    conditions: list[Condition] | None = Field(
        None,
        description="Ready, Progressing, Reconciling, Stalled, RollingUpdateInProgress, RestartInProgress.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    role_statuses: list[RoleStatus] | None = Field(None, description="Per-role counts.")


def spec_problems(spec: RoleBasedGroupSpec) -> list[str]:
    """Every rule a group must satisfy, each message naming the field (relative to the spec)."""
    problems: list[str] = []
    names = [role.name for role in spec.roles]
    template_names = {t.name for t in spec.role_templates or []}
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"roles: role name {duplicate!r} is used more than once")
    for i, template in enumerate(spec.role_templates or []):
        problems += component_discovery.template_problems(f"roleTemplates[{i}].template", template.template)
    for i, role in enumerate(spec.roles):
        where = f"roles[{i}]"
        # A malformed component-discovery directive is refused naming the field; the RoleInstance
        # controller would only skip it.
        problems += component_discovery.annotation_problems(f"{where}.annotations", role.annotations)
        problems += component_discovery.template_problems(f"{where}.template", role.template)
        problems += component_discovery.template_problems(f"{where}.templatePatch", role.template_patch)
        if role.workload.key not in SUPPORTED_WORKLOADS:
            problems.append(f"{where}.workload: unsupported workload {role.workload.api_version}/{role.workload.kind}")
        if (role.template is None) == (role.template_ref is None) and role.pattern != "customComponents":
            problems.append(f"{where}: set exactly one of template and templateRef")
        if role.template_ref is not None:
            if role.workload.key == LEADER_WORKER_SET:
                problems.append(f"{where}.templateRef: not allowed for LeaderWorkerSet roles")
            if role.template_ref.name not in template_names:
                problems.append(f"{where}.templateRef.name: no roleTemplates entry named {role.template_ref.name!r}")
        if role.leader_worker_set is not None and role.workload.key not in (LEADER_WORKER_SET, ROLE_INSTANCE_SET):
            problems.append(f"{where}.leaderWorkerSet: only allowed for LeaderWorkerSet and RoleInstanceSet roles")
        for dep in role.dependencies or []:
            if dep == role.name:
                problems.append(f"{where}.dependencies: role {role.name!r} depends on itself")
            elif dep not in names:
                problems.append(f"{where}.dependencies: unknown role {dep!r}")
    cycle = dependency_cycle(spec)
    if cycle:
        problems.append(f"roles: dependency cycle {' -> '.join(cycle)}")
    for i, rule in enumerate(spec.coordination or []):
        for role_name in rule.roles:
            if role_name not in names:
                problems.append(f"coordination[{i}].roles: unknown role {role_name!r}")
    pods = sum(role.replicas * role.pods_per_replica for role in spec.roles)
    if pods > MAX_GROUP_PODS:
        problems.append(
            f"roles: the group's pods (replicas times leaderWorkerSet.size or the custom components' "
            f"sizes, over all roles) are {pods}, at most {MAX_GROUP_PODS} are allowed"
        )
    fanout = fanout_problem("roles", group_fanout(spec))
    if fanout:
        problems.append(fanout)
    policy = spec.pod_group_policy
    if policy is not None and policy.kube_scheduling is not None and policy.volcano_scheduling is not None:
        problems.append("podGroupPolicy: set at most one gang backend: kubeScheduling or volcanoScheduling")
    return problems


def group_fanout(spec: RoleBasedGroupSpec) -> list[tuple[str, int, int]]:
    """The template copies a group makes (what, count, bytes of one): each RoleInstanceSet role puts
    its template (twice for a leader and its workers) into each of its `replicas` RoleInstances."""
    templates = {t.name: t.template for t in spec.role_templates or []}
    copies = []
    for i, role in enumerate(spec.roles):
        if role.workload.key != ROLE_INSTANCE_SET:
            continue  # one workload object; its pods are counted by pod quotas and the pod caps
        size = json_size(role.wire()) + (
            json_size(templates.get(role.template_ref.name)) if role.template_ref is not None else 0
        )
        copies.append((f"roles[{i}] ({role.name})", role.replicas, size * (2 if role.pattern == "leaderWorker" else 1)))
    return copies


def dependency_cycle(spec: RoleBasedGroupSpec) -> list[str]:
    """A dependency cycle as a list of role names (first repeated at the end), or []."""
    return graph_cycle({role.name: [d for d in role.dependencies or [] if d != role.name] for role in spec.roles})


def dependency_layers(spec: RoleBasedGroupSpec) -> list[list[str]]:
    """Roles grouped so that each layer depends only on earlier layers (spec order within a layer)."""
    placed: dict[str, int] = {}
    remaining = list(spec.roles)
    layers: list[list[str]] = []
    while remaining:
        layer = [r.name for r in remaining if all(d in placed for d in r.dependencies or [])]
        if not layer:
            raise ValueError("roles: dependency cycle")
        for name in layer:
            placed[name] = len(layers)
        layers.append(layer)
        remaining = [r for r in remaining if r.name not in placed]
    return layers


# How long `{rbg}-{role}` may be, by workload kind, so that every object and label derived from it
# is valid: a StatefulSet's pods carry controller-revision-hash `{name}-{10-char hash}` (a label
# value, at most 63); a LeaderWorkerSet's worker StatefulSets are `{name}-{index}` (up to 4
# digits at the replicas cap) with the same label; every role has the Service `s-{rbg}-{role}`
# (a DNS label, at most 63).
MAX_WORKLOAD_NAME = {"StatefulSet": 52, "LeaderWorkerSet": 47, "Deployment": 61}
MAX_GROUP_NAME = 63  # the value of the rolebasedgroup.workloads.x-k8s.io/name label


def dot_problems(name: str) -> list[str]:
    """A dot is a valid object name but not a DNS label: the role Services `s-{name}-{role}` could
    never be created, and the group would never become Ready."""
    if "." not in name:
        return []
    return [
        f"metadata.name: {name!r} contains '.', but the group name is part of the Service name "
        f"s-{name}-{{role}}, which must be a DNS label (lowercase letters, digits and '-')"
    ]


DOT_RULE = (
    "!self.metadata.name.contains('.')",
    "metadata.name: must not contain '.': it is part of the role Services' names s-{name}-{role}, "
    "which must be DNS labels (lowercase letters, digits and '-')",
    "",
)


def longest_instance_pod(workload: str, role) -> str:
    """The longest pod name a RoleInstanceSet role can make, at the caps of replicas and sizes: pods
    are `{ris}-{i}` (standalone), `{ris}-{i}-{j}` (leader-worker) or `{ris}-{i}-{component}-{j}`, and a
    pod's name is its hostname, a DNS label of at most 63."""
    instance = f"{workload}-{MAX_ROLE_REPLICAS - 1}"
    pattern = getattr(role, "pattern", "standalone")
    if pattern == "leaderWorker":
        return f"{instance}-{MAX_LEADER_WORKER_SIZE - 1}"
    if pattern == "customComponents":
        components = role.custom_components_pattern.components or []
        longest = max((c.name for c in components), key=len, default="")
        return f"{instance}-{longest}-{MAX_LEADER_WORKER_SIZE - 1}"
    return instance


def instance_set_name_problems(name: str, spec) -> list[str]:
    """RoleInstanceSet roles whose pods could be named past a DNS label. Checked at admission only: a
    group stored before this check keeps running (its pods fail by name only if they really are too long)."""
    problems = []
    for i, role in enumerate(spec.roles):
        if role.workload.kind != "RoleInstanceSet":
            continue
        workload = f"{name}-{role.name}"
        pod = longest_instance_pod(workload, role)
        if len(pod) > 63:  # the role's Service s-{rbg}-{role} is then short enough too
            problems.append(
                f"spec.roles[{i}].name: the role's pods would be named up to {pod!r} ({len(pod)} characters), "
                f"but a pod name is a DNS label of at most 63 characters (shorten the group, role or "
                f"component name)"
            )
    return problems


def name_problems(name: str, spec: RoleBasedGroupSpec) -> list[str]:
    """What the group's name and its roles' names cannot become (the limits above)."""
    problems = dot_problems(name)
    if len(name) > MAX_GROUP_NAME:
        problems.append(
            f"metadata.name: {len(name)} characters, at most {MAX_GROUP_NAME} are allowed "
            f"(it is the value of the {LABEL_GROUP} label)"
        )
    for i, role in enumerate(spec.roles):
        limit = MAX_WORKLOAD_NAME.get(role.workload.kind)
        workload = f"{name}-{role.name}"
        if limit is not None and len(workload) > limit:
            problems.append(
                f"spec.roles[{i}].name: the workload name {workload!r} has {len(workload)} characters, "
                f"at most {limit} are allowed for {role.workload.kind} roles (shorten the group or "
                f"role name)"
            )
    return problems


def name_rules(name: str, roles: str) -> list[tuple[str, str, str]]:
    """The same limits as CEL rules on an object's root: `name` is its name expression (which may
    add a suffix, as a set's members do) and `roles` the path of its role list."""
    limit = (
        "(r.workload.kind == 'StatefulSet' ? {StatefulSet} : r.workload.kind == 'LeaderWorkerSet'"
        " ? {LeaderWorkerSet} : {Deployment})"
    ).format(**MAX_WORKLOAD_NAME)
    return [
        DOT_RULE,
        (
            f"{name} <= {MAX_GROUP_NAME}",
            f"metadata.name: the group name must be at most {MAX_GROUP_NAME} characters "
            f"(it is the value of the {LABEL_GROUP} label)",
            "",
        ),
        (
            f"{roles}.all(r, {name} + 1 + size(r.name) <= {limit})",
            "the workload name {rbg}-{role} must be at most "
            + ", ".join(f"{n} characters for {k} roles" for k, n in MAX_WORKLOAD_NAME.items())
            + "; shorten the group or role name",
            ".spec",
        ),
    ]


GANG_ROLE_MINIMUMS = "rolebasedgroup.workloads.x-k8s.io/gang-role-minimums"  # naming.ANNOTATION_GANG_ROLE_MINIMUMS
MAX_GANG_ROLES = 8  # the Workload API's limit of pod group templates under one composite template


def gang_minimum_problems(text: str | None, roles: list[str]) -> list[str]:
    """What is wrong with a per-role gang minimums annotation: a JSON object of role name to a
    whole number of at least 1 or a percentage of the role's replicas ("50%")."""
    if text is None:
        return []
    field = f"metadata.annotations[{GANG_ROLE_MINIMUMS}]"
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not value:
        return [
            f'{field}: must be a JSON object of role name to minimum pods, such as {{"prefill": 2, "decode": "50%"}}'
        ]
    problems = []
    for role, minimum in value.items():
        if role not in roles:
            problems.append(f"{field}: {role!r} is not a role of this group (roles: {', '.join(roles)})")
        elif isinstance(minimum, bool) or not (
            (isinstance(minimum, int) and minimum >= 1)
            or (isinstance(minimum, str) and re.fullmatch(r"([1-9][0-9]?|100)%", minimum))
        ):
            problems.append(
                f"{field}: the minimum of role {role!r} must be a whole number of at least 1 or a "
                f"percentage from 1% to 100%, not {minimum!r}"
            )
    if len(roles) > MAX_GANG_ROLES:
        problems.append(
            f"{field}: per-role minimums support at most {MAX_GANG_ROLES} roles (the Workload API's "
            f"limit), this group has {len(roles)}"
        )
    return problems


class RoleBasedGroup(ApiModel):
    """A RoleBasedGroup written in v1alpha1, as admission checks it (the operator reads groups in
    v1alpha2: api/v1alpha2.py)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}  # apiVersion, kind

    metadata: dict = Field(description="Standard object metadata.")
    spec: RoleBasedGroupSpec = Field(description="Desired state of the group.")
    status: RoleBasedGroupStatus | None = Field(None, description="Observed state of the group.")

    @model_validator(mode="after")
    def _names(self) -> RoleBasedGroup:
        problems = name_problems(self.metadata.get("name", ""), self.spec)
        problems += [p for p in [discovery_size_problem(self.metadata.get("name", ""), self.spec.roles)] if p]
        problems += gang_minimum_problems(
            (self.metadata.get("annotations") or {}).get(GANG_ROLE_MINIMUMS), [role.name for role in self.spec.roles]
        )
        if problems:
            raise ValueError("; ".join(problems))
        return self
