"""RoleBasedGroup, RoleBasedGroupSet and CoordinatedPolicy in workloads.x-k8s.io/v1alpha2.

The reference's current API: a role runs one of three patterns (standalone, leader-worker,
custom components) instead of naming a pod template and a workload; the workload is a role
annotation (default RoleInstanceSet); gang scheduling is a set of group annotations; coordination
is a CoordinatedPolicy named like the group. Conversion to and from v1alpha1 is in conversion.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
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
)
from .rolebasedgroup import LIST_MAP_BY_NAME, EngineRuntime, RoleBasedGroupStatus, RoleTemplate, RolloutStrategy

API_VERSION = "workloads.x-k8s.io/v1alpha2"
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
        ("!(has(self.standalonePattern) && has(self.leaderWorkerPattern))",
         "standalonePattern and leaderWorkerPattern are mutually exclusive"),
        ("!has(self.dependencies) || !(self.name in self.dependencies)", "a role cannot depend on itself",
         ".dependencies"),
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


class RoleBasedGroupSpecV2(ApiModel):
    """A list of named roles deployed, ordered, scheduled and updated as one group."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("self.roles.all(r, !has(r.dependencies) || r.dependencies.all(d, self.roles.exists(x, x.name == d)))",
         "dependencies must name roles of this group", ".roles"),
    )}

    roles: list[RoleV2] = Field(min_length=1, max_length=MAX_ROLES, description="The group's roles.",
                                json_schema_extra=LIST_MAP_BY_NAME)
    role_templates: list[RoleTemplate] | None = Field(
        None, max_length=MAX_ROLES, description="Named pod templates that roles can reference.",
        json_schema_extra=LIST_MAP_BY_NAME)

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

