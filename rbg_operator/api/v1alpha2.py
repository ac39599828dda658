"""RoleBasedGroup, RoleBasedGroupSet and CoordinatedPolicy in workloads.x-k8s.io/v1alpha2.

The reference's current API: a role runs one of three patterns (standalone, leader-worker,
custom components) instead of naming a pod template and a workload; the workload is a role
annotation (default RoleInstanceSet); gang scheduling is a set of group annotations; coordination
is a CoordinatedPolicy named like the group. Conversion to and from v1alpha1 is in conversion.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from .common import (
    MAX_GROUP_PODS,
    MAX_LEADER_WORKER_SIZE,
    MAX_ROLE_REPLICAS,
    MAX_ROLES,
    MAX_SET_REPLICAS,
    ApiModel,
    Condition,
    DnsLabel,
    FreeForm,
    IntOrString,
    PodTemplateSpec,
    RoleName,
    ServicePort,
    cel,
    fanout_problem,
    json_size,
    resolve,
)
from .rolebasedgroup import (LIST_MAP_BY_NAME, EngineRuntime, RoleBasedGroupStatus, RoleTemplate, RolloutStrategy,
                             dependency_cycle)
from .rolebasedgroupset import set_fanout

API_VERSION = "workloads.x-k8s.io/v1alpha2"
WORKLOAD_TYPE_KEY = "rbg.workloads.x-k8s.io/role-workload-type"
ROLE_INSTANCE_SET = "workloads.x-k8s.io/v1alpha2/RoleInstanceSet"
WORKLOAD_TYPES = (ROLE_INSTANCE_SET, "apps/v1/StatefulSet", "apps/v1/Deployment",
                  "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet")
RESTART_POLICIES = Literal["None", "RecreateRoleInstanceOnPodRestart"]


class TemplateRefV2(ApiModel):
    """A roleTemplates entry, with the strategic merge patch applied onto it."""

    name: DnsLabel = Field(description="Name of the roleTemplates entry.")
    patch: FreeForm | None = Field(None, description="Strategic merge patch over the referenced template.")


class TemplateSource(ApiModel):
    """Where a pattern's pod template comes from: inline, or a roleTemplates entry."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!(has(self.template) && has(self.templateRef))", "template and templateRef are mutually exclusive"))}

    template: PodTemplateSpec | None = Field(None, description="An inline pod template.")
    template_ref: TemplateRefV2 | None = Field(None, description="A roleTemplates entry with an optional patch.")


class RestartPolicyConfig(ApiModel):
    """What a pod restart recreates, and the backoff between recreations."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel((
        "!has(self.baseDelaySeconds) || !has(self.maxDelaySeconds) || self.maxDelaySeconds >= self.baseDelaySeconds",
        "maxDelaySeconds must be greater than or equal to baseDelaySeconds"))}

    type: RESTART_POLICIES | None = Field(None, description="None or RecreateRoleInstanceOnPodRestart.")
    base_delay_seconds: int | None = Field(None, ge=0, description="First backoff between recreations (default 30).")
    max_delay_seconds: int | None = Field(None, ge=0, description="Largest backoff between recreations (default 600).")


class StandalonePattern(TemplateSource):
    """Each replica is one instance of one pod."""


class LeaderWorkerPattern(TemplateSource):
    """Each replica is a leader and size-1 workers."""

    size: int = Field(1, ge=1, le=MAX_LEADER_WORKER_SIZE, description="Pods per instance, the leader included.")
    leader_template_patch: FreeForm | None = Field(None, description="Strategic merge patch for the leader only.")
    worker_template_patch: FreeForm | None = Field(None, description="Strategic merge patch for the workers only.")
    shared_service_selection: Literal["All", "LeaderOnly"] | None = Field(
        None, description="Which pods the role's headless Service selects.")
    restart_policy: str | None = Field(None, description="Deprecated: use restartPolicyConfig.type.")
    restart_policy_config: RestartPolicyConfig | None = Field(None, description="Restart policy and backoff.")


class InstanceComponent(ApiModel):
    """One named kind of pod inside every instance of a customComponents role."""

    name: DnsLabel = Field(description="Component name: in pod names and the component-name label.")
    size: int | None = Field(None, ge=0, le=MAX_LEADER_WORKER_SIZE, description="Pods of this component per instance.")
    service_name: str | None = Field(None, description="Governing headless Service (default: the role's).")
    labels: dict[str, str] | None = Field(None, description="Labels merged into the component's pods; they win.")
    annotations: dict[str, str] | None = Field(None, description="Annotations merged into the component's pods.")
    template: FreeForm = Field(description="The component's pod template.")


class CustomComponentsPattern(ApiModel):
    """Each replica is an instance of several named components."""

    components: list[InstanceComponent] | None = Field(
        None, max_length=MAX_ROLES, description="The components of every instance.")
    restart_policy: str | None = Field(None, description="Deprecated: use restartPolicyConfig.type.")
    restart_policy_config: RestartPolicyConfig | None = Field(None, description="Restart policy and backoff.")


class ScalingAdapterV2(ApiModel):
    """Whether the role gets a RoleBasedGroupScalingAdapter, and its extra labels."""

    enable: bool = Field(False, description="Create a RoleBasedGroupScalingAdapter {rbg}-{role} for this role.")
    labels: dict[str, str] | None = Field(None, description="Extra labels on the adapter.")


class RoleV2(ApiModel):
    """One named role of the group."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        {"rule": "[has(self.standalonePattern), has(self.leaderWorkerPattern), has(self.customComponentsPattern)]"
                 ".filter(set, set).size() <= 1",
         "messageExpression": "'role ' + self.name + ' sets more than one pattern, but only one of "
                              "standalonePattern, leaderWorkerPattern and customComponentsPattern may be set'"},
        ("!has(self.dependencies) || !(self.name in self.dependencies)", "a role cannot depend on itself",
         ".dependencies"),
        ("!has(self.leaderWorkerPattern) || !has(self.leaderWorkerPattern.sharedServiceSelection)"
         " || self.leaderWorkerPattern.sharedServiceSelection != 'LeaderOnly' || !has(self.annotations)"
         f" || !('{WORKLOAD_TYPE_KEY}' in self.annotations)"
         f" || self.annotations['{WORKLOAD_TYPE_KEY}'] == '{ROLE_INSTANCE_SET}'",
         "leaderWorkerPattern.sharedServiceSelection=LeaderOnly is only supported for RoleInstanceSet + "
         "leaderWorkerPattern"),
    )}

    name: DnsLabel = Field(description="Role name, unique in the group; a DNS label.")
    labels: dict[str, str] | None = Field(None, description="Labels of the role's workload and pods.")
    annotations: dict[str, str] | None = Field(
        None, description="Annotations of the role's workload; rbg.workloads.x-k8s.io/role-workload-type picks "
                          "the workload.")
    replicas: int = Field(1, ge=0, le=MAX_ROLE_REPLICAS, description="Number of role instances.")
    rollout_strategy: RolloutStrategy | None = Field(None, description="How template changes roll out.")
    dependencies: list[RoleName] | None = Field(
        None, max_length=MAX_ROLES, description="Roles that must be Ready before this role is created.")
    standalone_pattern: StandalonePattern | None = Field(None, description="One pod per instance.")
    leader_worker_pattern: LeaderWorkerPattern | None = Field(None, description="A leader and workers per instance.")
    custom_components_pattern: CustomComponentsPattern | None = Field(
        None, description="Named components per instance.")
    service_ports: list[ServicePort] | None = Field(None, description="Ports published in the discovery config.")
    engine_runtimes: list[EngineRuntime] | None = Field(None, description="Engine runtime sidecars.")
    scaling_adapter: ScalingAdapterV2 | None = Field(None, description="Scaling adapter for the role.")
    min_ready_seconds: int = Field(0, ge=0, description="Seconds a pod must be ready before it counts as available.")
    pod_management_policy: Literal["OrderedReady", "Parallel"] | None = Field(
        None, description="OrderedReady creates instances one at a time; Parallel (the default) all at once.")

    @property
    def pods_per_replica(self) -> int:
        if self.leader_worker_pattern is not None:
            return self.leader_worker_pattern.size
        if self.custom_components_pattern is not None:
            return sum(c.size or 0 for c in self.custom_components_pattern.components or [])
        return 1

    @property
    def runs_as_instance_set(self) -> bool:
        return (self.annotations or {}).get(WORKLOAD_TYPE_KEY, ROLE_INSTANCE_SET) == ROLE_INSTANCE_SET


class RoleBasedGroupSpecV2(ApiModel):
    """A list of named roles deployed, ordered, scheduled and updated as one group."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("self.roles.all(r, !has(r.dependencies) || r.dependencies.all(d, self.roles.exists(x, x.name == d)))",
         "dependencies must name roles of this group", ".roles"),
        ("self.roles.map(r, (has(r.replicas) ? r.replicas : 1) * (has(r.leaderWorkerPattern)"
         " ? (has(r.leaderWorkerPattern.size) ? r.leaderWorkerPattern.size : 1)"
         " : has(r.customComponentsPattern) && has(r.customComponentsPattern.components)"
         " ? r.customComponentsPattern.components.map(c, has(c.size) ? c.size : 0).sum() : 1)).sum()"
         f" <= {MAX_GROUP_PODS}",
         f"the group's pods (replicas times the pods of one instance, over all roles) must be at most {MAX_GROUP_PODS}",
         ".roles"),
    )}

    roles: list[RoleV2] = Field(min_length=1, max_length=MAX_ROLES, description="The group's roles.",
                                json_schema_extra=LIST_MAP_BY_NAME)
    role_templates: list[RoleTemplate] | None = Field(
        None, max_length=MAX_ROLES, description="Named pod templates that roles can reference.",
        json_schema_extra=LIST_MAP_BY_NAME)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "RoleBasedGroupSpecV2":
        if (info.context or {}).get("structure_only"):  # the shape alone (a converted object)
            return self
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def pods(self) -> int:
        return sum(role.replicas * role.pods_per_replica for role in self.roles)

    def role(self, name: str) -> RoleV2:
        return next(r for r in self.roles if r.name == name)


class RoleBasedGroupV2(ApiModel):
    """A v1alpha2 RoleBasedGroup as the API server returns it."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    metadata: dict = Field(description="Standard object metadata.")
    spec: RoleBasedGroupSpecV2 = Field(description="Desired state of the group.")
    status: RoleBasedGroupStatus | None = Field(None, description="Observed state of the group.")


class GroupTemplate(ApiModel):
    """What every member group of a set looks like."""

    labels: dict[str, str] | None = Field(None, description="Labels of the member groups.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the member groups.")
    spec: RoleBasedGroupSpecV2 | None = Field(None, description="Spec of the member groups.")


class RoleBasedGroupSetSpecV2(ApiModel):
    """How many groups to run and what each looks like."""

    replicas: int = Field(1, ge=0, le=MAX_SET_REPLICAS, description="Number of RoleBasedGroups in the set.")
    group_template: GroupTemplate = Field(description="Every member group's labels, annotations and spec.")

    @model_validator(mode="after")
    def _bounded_fanout(self, info: ValidationInfo) -> "RoleBasedGroupSetSpecV2":
        if (info.context or {}).get("structure_only"):
            return self
        group = self.group_template.spec
        problem = fanout_problem("replicas", set_fanout(self.replicas, json_size(self.group_template.wire()),
                                                        group_fanout(group) if group is not None else []))
        if problem:
            raise ValueError(problem)
        return self


class PolicyRollingUpdate(ApiModel):
    """Keeps the listed roles' rollouts in step."""

    max_skew: IntOrString | None = Field(None, description="Largest allowed difference of the roles' progress.")
    partition: IntOrString | None = Field(None, description="Overrides the roles' partition.")
    max_unavailable: IntOrString | None = Field(None, description="Overrides the roles' maxUnavailable.")


class PolicyScaling(ApiModel):
    """Paces replica increases across the listed roles."""

    max_skew: IntOrString | None = Field(None, description="Largest allowed difference of the roles' scale-out.")
    progression: Literal["OrderScheduled", "OrderReady"] | None = Field(
        None, description="Advance when pods are scheduled or ready; empty: no gating.")


class PolicyStrategy(ApiModel):
    """Rolling update and scaling coordination."""

    rolling_update: PolicyRollingUpdate | None = Field(None, description="Coordinated rolling update.")
    scaling: PolicyScaling | None = Field(None, description="Coordinated scaling.")


class Policy(ApiModel):
    """One set of roles that update and scale together."""

    name: str = Field(min_length=1, description="Name of the rule.")
    roles: list[RoleName] = Field(min_length=1, max_length=MAX_ROLES, description="Role names of the bound group.")
    strategy: PolicyStrategy = Field(description="How the roles are coordinated.")


class CoordinatedPolicySpec(ApiModel):
    """Coordination rules for the RoleBasedGroup of the same name."""

    policies: list[Policy] = Field(min_length=1, max_length=MAX_ROLES, description="The rules.",
                                   json_schema_extra=LIST_MAP_BY_NAME)


class CoordinatedPolicyStatus(ApiModel):
    """Observed state of the policy."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    conditions: list[Condition] | None = Field(
        None, description="Standard conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})



def _source_problems(where: str, source: TemplateSource, templates: set[str]) -> list[str]:
    if source.template is not None and source.template_ref is not None:
        return [f"{where}: template and templateRef are mutually exclusive"]
    if source.template is None and source.template_ref is None:
        return [f"{where}: set template or templateRef"]
    if source.template_ref is not None and source.template_ref.name not in templates:
        return [f"{where}.templateRef.name: no roleTemplates entry named {source.template_ref.name!r}"]
    return []


def spec_problems(spec: RoleBasedGroupSpecV2) -> list[str]:
    """What the reference checks in its webhook and at reconcile time, at admission, each message
    naming the field (relative to the spec). Unlike the reference, a role without a pattern is
    refused here instead of failing every reconcile, and a templateRef without a patch counts as
    an empty patch (README, "API versions")."""
    problems: list[str] = []
    names = [role.name for role in spec.roles]
    templates = [t.name for t in spec.role_templates or []]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"roles: role name {duplicate!r} is used more than once")
    for i, template in enumerate(spec.role_templates or []):
        if templates.count(template.name) > 1:
            problems.append(f"roleTemplates[{i}]: duplicate template name {template.name!r}")
        if not ((template.template.get("spec") or {}).get("containers")):
            problems.append(f"roleTemplates[{i}].template.spec.containers: must have at least one container")
    for i, role in enumerate(spec.roles):
        where = f"roles[{i}]"
        workload = (role.annotations or {}).get(WORKLOAD_TYPE_KEY)
        if workload is not None and workload not in WORKLOAD_TYPES:
            problems.append(f"{where}.annotations[{WORKLOAD_TYPE_KEY}]: unsupported workload type {workload!r}; "
                            f"use one of {', '.join(WORKLOAD_TYPES)}")
        patterns = [name for name, value in (("standalonePattern", role.standalone_pattern),
                                             ("leaderWorkerPattern", role.leader_worker_pattern),
                                             ("customComponentsPattern", role.custom_components_pattern))
                    if value is not None]
        if len(patterns) > 1:
            problems.append(f"{where}: role {role.name!r} sets {' and '.join(patterns)}, but only one of "
                            "standalonePattern, leaderWorkerPattern and customComponentsPattern may be set")
        if role.standalone_pattern is not None:
            problems += _source_problems(f"{where}.standalonePattern", role.standalone_pattern, set(templates))
        elif role.leader_worker_pattern is not None:
            problems += _source_problems(f"{where}.leaderWorkerPattern", role.leader_worker_pattern, set(templates))
        elif role.custom_components_pattern is not None:
            components = role.custom_components_pattern.components or []
            if not components:
                problems.append(f"{where}.customComponentsPattern.components: at least one component is needed")
            seen = [c.name for c in components]
            for j, component in enumerate(components):
                if seen.count(component.name) > 1:
                    problems.append(f"{where}.customComponentsPattern.components[{j}].name: "
                                    f"{component.name!r} is used more than once")
                if component.size is None:
                    problems.append(f"{where}.customComponentsPattern.components[{j}].size: required")
        else:
            problems.append(f"{where}: set one of standalonePattern, leaderWorkerPattern, customComponentsPattern")
        update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
        if update is not None and role.replicas > 0:
            surge = resolve(update.max_surge, role.replicas, round_up=True)
            unavailable = resolve(update.max_unavailable, role.replicas)
            if surge == 0 and unavailable == 0:
                problems.append(f"{where}.rolloutStrategy.rollingUpdate: maxSurge and maxUnavailable cannot both be 0")
            if update.partition is not None:
                partition = resolve(update.partition, role.replicas, round_up=True)
                if partition >= role.replicas:
                    problems.append(f"{where}.rolloutStrategy.rollingUpdate.partition: {partition} must be less "
                                    f"than replicas {role.replicas}")
        for dep in role.dependencies or []:
            if dep not in names:
                problems.append(f"{where}.dependencies: unknown role {dep!r}")
    cycle = dependency_cycle(spec)
    if cycle:
        problems.append(f"roles: dependency cycle {' -> '.join(cycle)}")
    if spec.pods > MAX_GROUP_PODS:
        problems.append(f"roles: the group's pods (replicas times the pods of one instance: leaderWorkerPattern.size "
                        f"or the sum of the custom components' sizes, over all roles) are {spec.pods}, at most "
                        f"{MAX_GROUP_PODS} are allowed")
    fanout = fanout_problem("roles", group_fanout(spec))
    if fanout:
        problems.append(fanout)
    return problems


def group_fanout(spec: RoleBasedGroupSpecV2) -> list[tuple[str, int, int]]:
    """The template copies a group makes (what, count, bytes of one), as the v1alpha1 group_fanout
    counts them: each RoleInstanceSet role's template in each of its RoleInstances."""
    templates = {t.name: t.template for t in spec.role_templates or []}
    copies = []
    for i, role in enumerate(spec.roles):
        if not role.runs_as_instance_set:
            continue
        source = role.standalone_pattern or role.leader_worker_pattern
        ref = source.template_ref if source is not None else None
        size = json_size(role.wire()) + (json_size(templates.get(ref.name)) if ref is not None else 0)
        copies.append((f"roles[{i}] ({role.name})", role.replicas,
                       size * (2 if role.leader_worker_pattern is not None else 1)))
    return copies
