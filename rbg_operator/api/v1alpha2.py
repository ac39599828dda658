"""RoleBasedGroup, RoleBasedGroupSet and CoordinatedPolicy in workloads.x-k8s.io/v1alpha2.

The reference's current API: a role runs one of three patterns (standalone, leader-worker,
custom components) instead of naming a pod template and a workload; the workload is a role
annotation (default RoleInstanceSet); gang scheduling is a set of group annotations; coordination
is a CoordinatedPolicy named like the group. Conversion to and from v1alpha1 is in conversion.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from .. import kinds, naming
from . import component_discovery
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
from .discovery_size import discovery_size_problem
from .kept import kept_coordination, pod_group_policy
from .rolebasedgroup import (
    GANG_ROLE_MINIMUMS,
    LIST_MAP_BY_NAME,
    Coordination,
    EngineRuntime,
    PodGroupPolicy,
    RoleBasedGroupStatus,
    RoleTemplate,
    RolloutStrategy,
    Workload,
    dependency_cycle,
    gang_minimum_problems,
    instance_set_name_problems,
    name_problems,
)
from .rolebasedgroupset import set_fanout

WORKLOAD_TYPE_KEY = "rbg.workloads.x-k8s.io/role-workload-type"
# The annotation's values: "apiVersion/kind" of a workload kind.
ROLE_INSTANCE_SET = "/".join(kinds.ROLE_INSTANCE_SET)
WORKLOAD_TYPES = tuple(
    "/".join(key) for key in (kinds.ROLE_INSTANCE_SET, kinds.STATEFUL_SET, kinds.DEPLOYMENT, kinds.LEADER_WORKER_SET)
)
RESTART_POLICIES = Literal["None", "RecreateRoleInstanceOnPodRestart"]
# A role annotation of conversion's (api/conversion.py): the v1alpha1 restartPolicy of a role that
# v1alpha2 has no place for (a standalone role's, or RecreateRBGOnPodRestart). The operator acts
# on it as a v1alpha1 group's policy, so a group keeps its behaviour whichever version wrote it.
V1_RESTART_POLICY_KEY = "conversion.workloads.x-k8s.io/v1alpha1-restart-policy"
V1_RESTART_POLICIES = ("None", "RecreateRBGOnPodRestart", "RecreateRoleInstanceOnPodRestart")


class TemplateRefV2(ApiModel):
    """A roleTemplates entry, with the strategic merge patch applied onto it."""

    name: DnsLabel = Field(description="Name of the roleTemplates entry.")
    patch: FreeForm | None = Field(None, description="Strategic merge patch over the referenced template.")


class TemplateSource(ApiModel):
    """Where a pattern's pod template comes from: inline, or a roleTemplates entry."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("!(has(self.template) && has(self.templateRef))", "template and templateRef are mutually exclusive")
        )
    }

    template: PodTemplateSpec | None = Field(None, description="An inline pod template.")
    template_ref: TemplateRefV2 | None = Field(None, description="A roleTemplates entry with an optional patch.")


class RestartPolicyConfig(ApiModel):
    """What a pod restart recreates, and the backoff between recreations."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "!has(self.baseDelaySeconds) || !has(self.maxDelaySeconds) || self.maxDelaySeconds >= self.baseDelaySeconds",  # noqa: E501 - one rule, one line
                "maxDelaySeconds must be greater than or equal to baseDelaySeconds",
            )
        )
    }

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
        None, description="Which pods the role's headless Service selects."
    )
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
        None, max_length=MAX_ROLES, description="The components of every instance."
    )
    restart_policy: str | None = Field(None, description="Deprecated: use restartPolicyConfig.type.")
    restart_policy_config: RestartPolicyConfig | None = Field(None, description="Restart policy and backoff.")


class ScalingAdapterV2(ApiModel):
    """Whether the role gets a RoleBasedGroupScalingAdapter, and its extra labels."""

    enable: bool = Field(False, description="Create a RoleBasedGroupScalingAdapter {rbg}-{role} for this role.")
    labels: dict[str, str] | None = Field(None, description="Extra labels on the adapter.")


class RoleV2(ApiModel):
    """One named role of the group."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            {
                "rule": "[has(self.standalonePattern), has(self.leaderWorkerPattern), has(self.customComponentsPattern)]"  # noqa: E501 - one rule, one line
                ".filter(set, set).size() <= 1",
                "messageExpression": "'role ' + self.name + ' sets more than one pattern, but only one of "
                "standalonePattern, leaderWorkerPattern and customComponentsPattern may be set'",
            },
            (
                "!has(self.dependencies) || !(self.name in self.dependencies)",
                "a role cannot depend on itself",
                ".dependencies",
            ),
            (
                "!has(self.leaderWorkerPattern) || !has(self.leaderWorkerPattern.sharedServiceSelection)"
                " || self.leaderWorkerPattern.sharedServiceSelection != 'LeaderOnly' || !has(self.annotations)"
                f" || !('{WORKLOAD_TYPE_KEY}' in self.annotations)"
                f" || self.annotations['{WORKLOAD_TYPE_KEY}'] == '{ROLE_INSTANCE_SET}'",
                "leaderWorkerPattern.sharedServiceSelection=LeaderOnly is only supported for RoleInstanceSet + "
                "leaderWorkerPattern",
            ),
        )
    }

    name: DnsLabel = Field(description="Role name, unique in the group; a DNS label.")
    labels: dict[str, str] | None = Field(None, description="Labels of the role's workload and pods.")
    annotations: dict[str, str] | None = Field(
        None,
        description="Annotations of the role's workload; rbg.workloads.x-k8s.io/role-workload-type picks the workload.",
    )
    replicas: int = Field(1, ge=0, le=MAX_ROLE_REPLICAS, description="Number of role instances.")
    rollout_strategy: RolloutStrategy | None = Field(None, description="How template changes roll out.")
    dependencies: list[RoleName] | None = Field(
        None, max_length=MAX_ROLES, description="Roles that must be Ready before this role is created."
    )
    standalone_pattern: StandalonePattern | None = Field(None, description="One pod per instance.")
    leader_worker_pattern: LeaderWorkerPattern | None = Field(None, description="A leader and workers per instance.")
    custom_components_pattern: CustomComponentsPattern | None = Field(
        None, description="Named components per instance."
    )
    service_ports: list[ServicePort] | None = Field(None, description="Ports published in the discovery config.")
    engine_runtimes: list[EngineRuntime] | None = Field(None, description="Engine runtime sidecars.")
    scaling_adapter: ScalingAdapterV2 | None = Field(None, description="Scaling adapter for the role.")
    min_ready_seconds: int = Field(0, ge=0, description="Seconds a pod must be ready before it counts as available.")
    pod_management_policy: Literal["OrderedReady", "Parallel"] | None = Field(
        None, description="OrderedReady creates instances one at a time; Parallel (the default) all at once."
    )

    @property
    def pods_per_replica(self) -> int:
        if self.leader_worker_pattern is not None:
            return self.leader_worker_pattern.size
        if self.custom_components_pattern is not None:
            return sum(c.size or 0 for c in self.custom_components_pattern.components or [])
        return 1

    @property
    def runs_as_instance_set(self) -> bool:
        return self.workload.key == kinds.ROLE_INSTANCE_SET

    @property
    def workload(self) -> Workload:
        """The workload the role runs as: its workload-type annotation, split at the last '/'
        (absent: RoleInstanceSet, v1alpha2's default)."""
        api_version, _, kind = (self.annotations or {}).get(WORKLOAD_TYPE_KEY, ROLE_INSTANCE_SET).rpartition("/")
        return Workload(api_version=api_version, kind=kind)

    @property
    def pattern(self) -> str:
        """standalone, leaderWorker or customComponents (a role without a pattern is refused)."""
        if self.leader_worker_pattern is not None:
            return "leaderWorker"
        if self.custom_components_pattern is not None:
            return "customComponents"
        return "standalone"

    @property
    def first_component(self) -> tuple[str, str | None]:
        """(name, serviceName) of the first custom component, whose pod 0 answers for an instance
        in the discovery files; ("", None) for the other patterns."""
        components = (self.custom_components_pattern.components if self.custom_components_pattern else None) or []
        return (components[0].name, components[0].service_name) if components else ("", None)

    @property
    def template_source(self) -> TemplateSource | None:
        """Where the role's pod template comes from (None for custom components: each has its own)."""
        return self.leader_worker_pattern or self.standalone_pattern

    @property
    def leader_worker_size(self) -> int:
        return self.leader_worker_pattern.size if self.leader_worker_pattern is not None else 1

    @property
    def restart_policy(self) -> str | None:
        """What a pod restart in this role recreates, as the group-level restart policies read it:
        a v1alpha1 value kept by conversion, else the pattern's own type (no default)."""
        kept = (self.annotations or {}).get(V1_RESTART_POLICY_KEY)
        if kept in V1_RESTART_POLICIES:
            return kept
        pattern = self.leader_worker_pattern or self.custom_components_pattern
        if pattern is None:
            return None
        config = pattern.restart_policy_config
        return (config.type if config is not None else None) or pattern.restart_policy or None


class RoleBasedGroupSpecV2(ApiModel):
    """A list of named roles deployed, ordered, scheduled and updated as one group."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                "self.roles.all(r, !has(r.dependencies) || r.dependencies.all(d, self.roles.exists(x, x.name == d)))",
                "dependencies must name roles of this group",
                ".roles",
            ),
            (
                "self.roles.map(r, (has(r.replicas) ? r.replicas : 1) * (has(r.leaderWorkerPattern)"
                " ? (has(r.leaderWorkerPattern.size) ? r.leaderWorkerPattern.size : 1)"
                " : has(r.customComponentsPattern) && has(r.customComponentsPattern.components)"
                " ? r.customComponentsPattern.components.map(c, has(c.size) ? c.size : 0).sum() : 1)).sum()"
                f" <= {MAX_GROUP_PODS}",
                f"the group's pods (replicas times the pods of one instance, over all roles) must be at most {MAX_GROUP_PODS}",  # noqa: E501 - one rule, one line
                ".roles",
            ),
        )
    }

    roles: list[RoleV2] = Field(
        min_length=1, max_length=MAX_ROLES, description="The group's roles.", json_schema_extra=LIST_MAP_BY_NAME
    )
    role_templates: list[RoleTemplate] | None = Field(
        None,
        max_length=MAX_ROLES,
        description="Named pod templates that roles can reference.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RoleBasedGroupSpecV2:
        context = info.context or {}
        # The shape alone: a converted object, or a stored one (RoleBasedGroupV2.read checks it).
        if context.get("structure_only") or context.get("stored"):
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
    """A RoleBasedGroup as the API server returns it in v1alpha2, the version it is stored in and
    the one the operator works in."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    metadata: dict = Field(description="Standard object metadata.")
    spec: RoleBasedGroupSpecV2 = Field(description="Desired state of the group.")
    status: RoleBasedGroupStatus | None = Field(None, description="Observed state of the group.")

    @classmethod
    def read(cls, body: dict) -> RoleBasedGroupV2:
        """A stored group, checked for what the operator needs in order to act on it
        (acting_problems), not for every v1alpha2 write rule: a group written in v1alpha1 was
        admitted by the v1alpha1 rules, and must not be refused later."""
        return cls.model_validate(body, context={"stored": True})

    @model_validator(mode="after")
    def _acting(self, info: ValidationInfo) -> RoleBasedGroupV2:
        context = info.context or {}
        if context.get("structure_only"):
            return self
        # Named from the object's root, as the v1alpha1 model names them (coordination is kept
        # from a v1alpha1 spec, and named as it was written).
        problems = [f"spec.{p}" for p in acting_problems(self.spec)] if context.get("stored") else []
        roles = [role.name for role in self.spec.roles]
        for i, rule in enumerate(self.coordination):
            problems += [f"spec.coordination[{i}].roles: unknown role {n!r}" for n in rule.roles if n not in roles]
        problems += name_problems(self.metadata.get("name", ""), self.spec)
        if not context.get("stored"):
            problems += instance_set_name_problems(self.metadata.get("name", ""), self.spec)
            # Not for a stored group: one admitted before this check must not be refused later.
            problems += [p for p in [discovery_size_problem(self.metadata.get("name", ""), self.spec.roles)] if p]
            annotations = self.metadata.get("annotations") or {}
            if (
                annotations.get(naming.ANNOTATION_GROUP_GANG)
                == annotations.get(naming.ANNOTATION_INSTANCE_GANG)
                == "true"
            ):
                problems.append(
                    f"metadata.annotations: {naming.ANNOTATION_GROUP_GANG} and "
                    f"{naming.ANNOTATION_INSTANCE_GANG} cannot both be set on a group: use the first for "
                    f"group-level gang scheduling (its instances are gangs too), or set the second per role "
                    f"in spec.roles[].annotations"
                )
        problems += gang_minimum_problems((self.metadata.get("annotations") or {}).get(GANG_ROLE_MINIMUMS), roles)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def name(self) -> str:
        return self.metadata["name"]

    @property
    def namespace(self) -> str:
        return self.metadata["namespace"]

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def pod_group_policy(self) -> PodGroupPolicy | None:
        """The group's gang scheduling, from its gang annotations (and the v1alpha1
        podGroupPolicy that conversion keeps beside them, which can say more)."""
        policy = pod_group_policy(self.annotations)
        return PodGroupPolicy.model_validate(policy) if policy is not None else None

    @property
    def coordination(self) -> list[Coordination]:
        """The rules a v1alpha1 `coordination` had, which conversion keeps in an annotation (the
        reference makes a CoordinatedPolicy of them; this operator paces by them directly)."""
        return [Coordination.model_validate(rule) for rule in kept_coordination(self.annotations)]


class GroupTemplateMetadata(ApiModel):
    """Labels and annotations of the member groups, written as object metadata."""

    labels: dict[str, str] | None = Field(None, description="Labels of the member groups.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the member groups.")


class GroupTemplate(ApiModel):
    """What every member group of a set looks like."""

    labels: dict[str, str] | None = Field(None, description="Labels of the member groups.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the member groups.")
    # The contract puts labels and annotations directly under groupTemplate, but the reference's own
    # examples (rbgs-base, rbgs-exclusive-topology) write them under metadata: both are accepted,
    # and the direct fields win where both name a key (docs/api-versions.md).
    metadata: GroupTemplateMetadata | None = Field(
        None, description="Labels and annotations of the member groups, as the reference's examples write them."
    )
    spec: RoleBasedGroupSpecV2 | None = Field(None, description="Spec of the member groups.")


class RoleBasedGroupSetSpecV2(ApiModel):
    """How many groups to run and what each looks like."""

    replicas: int = Field(1, ge=0, le=MAX_SET_REPLICAS, description="Number of RoleBasedGroups in the set.")
    group_template: GroupTemplate = Field(description="Every member group's labels, annotations and spec.")

    @model_validator(mode="after")
    def _bounded_fanout(self, info: ValidationInfo) -> RoleBasedGroupSetSpecV2:
        context = info.context or {}
        if context.get("structure_only"):
            return self
        group = self.group_template.spec
        problems = []
        if context.get("stored"):  # what every member would be refused for (written in v1alpha1, too)
            problems += (
                [f"groupTemplate.spec.{p}" for p in acting_problems(group)]
                if group is not None
                else ["groupTemplate.spec: required"]
            )
        problem = fanout_problem(
            "replicas",
            set_fanout(
                self.replicas, json_size(self.group_template.wire()), group_fanout(group) if group is not None else []
            ),
        )
        if problem:
            problems.append(problem)
        if problems:
            raise ValueError("; ".join(problems))
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
        None, description="Advance when pods are scheduled or ready; empty: no gating."
    )


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

    policies: list[Policy] = Field(
        min_length=1, max_length=MAX_ROLES, description="The rules.", json_schema_extra=LIST_MAP_BY_NAME
    )


class CoordinatedPolicyStatus(ApiModel):
    """Observed state of the policy."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    conditions: list[Condition] | None = Field(
        None,
        description="Standard conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


def _workload_problems(where: str, role: RoleV2) -> list[str]:
    """Patterns a workload kind cannot run (v1alpha1 refuses the same in its own terms)."""
    kind, key = role.workload.kind, f"{where}.annotations[{WORKLOAD_TYPE_KEY}]"
    if role.leader_worker_pattern is not None and role.workload.key not in (
        kinds.LEADER_WORKER_SET,
        kinds.ROLE_INSTANCE_SET,
    ):
        return [f"{key}: a {kind} cannot run leaderWorkerPattern; use LeaderWorkerSet or RoleInstanceSet"]
    if role.custom_components_pattern is not None and role.workload.key != kinds.ROLE_INSTANCE_SET:
        return [f"{key}: a {kind} cannot run customComponentsPattern; use RoleInstanceSet"]
    if (
        role.workload.key == kinds.LEADER_WORKER_SET
        and role.leader_worker_pattern is not None
        and role.leader_worker_pattern.template_ref is not None
    ):
        return [f"{where}.leaderWorkerPattern.templateRef: not allowed for LeaderWorkerSet roles"]
    return []


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
    an empty patch (docs/api-versions.md)."""
    return acting_problems(spec) + write_problems(spec)


def write_problems(spec: RoleBasedGroupSpecV2) -> list[str]:
    """The v1alpha2 write rules the operator could act without: refused in v1alpha2 writes, not in
    groups written in v1alpha1 (which may hold a role back with a partition equal to replicas)."""
    problems: list[str] = []
    for i, template in enumerate(spec.role_templates or []):
        if not ((template.template.get("spec") or {}).get("containers")):
            problems.append(f"roleTemplates[{i}].template.spec.containers: must have at least one container")
    for i, template in enumerate(spec.role_templates or []):
        problems += component_discovery.template_problems(f"roleTemplates[{i}].template", template.template)
    for i, role in enumerate(spec.roles):
        problems += _role_annotation_problems(f"roles[{i}].annotations", role.annotations or {})
        problems += _component_discovery_problems(f"roles[{i}]", role)
        update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
        if update is not None and role.replicas > 0:
            surge = resolve(update.max_surge, role.replicas, round_up=True)
            unavailable = resolve(update.max_unavailable, role.replicas)
            if surge == 0 and unavailable == 0:
                problems.append(
                    f"roles[{i}].rolloutStrategy.rollingUpdate: maxSurge and maxUnavailable cannot both be 0"
                )
            if update.partition is not None:
                partition = resolve(update.partition, role.replicas, round_up=True)
                if partition >= role.replicas:
                    problems.append(
                        f"roles[{i}].rolloutStrategy.rollingUpdate.partition: {partition} must be less "
                        f"than replicas {role.replicas}"
                    )
    return problems


def _component_discovery_problems(where: str, role: RoleV2) -> list[str]:
    """A malformed component-discovery directive, wherever it can reach a component: the role's
    annotations, its pattern's template and patches, a custom component or its template. Refused
    here, naming the field, rather than skipped without a word by the RoleInstance controller."""
    problems = component_discovery.annotation_problems(f"{where}.annotations", role.annotations)
    for name, source in (
        ("standalonePattern", role.standalone_pattern),
        ("leaderWorkerPattern", role.leader_worker_pattern),
    ):
        if source is None:
            continue
        problems += component_discovery.template_problems(f"{where}.{name}.template", source.template)
        if source.template_ref is not None:
            problems += component_discovery.template_problems(
                f"{where}.{name}.templateRef.patch", source.template_ref.patch
            )
    if (pattern := role.leader_worker_pattern) is not None:
        for field, patch in (
            ("leaderTemplatePatch", pattern.leader_template_patch),
            ("workerTemplatePatch", pattern.worker_template_patch),
        ):
            problems += component_discovery.template_problems(f"{where}.leaderWorkerPattern.{field}", patch)
    components = role.custom_components_pattern.components if role.custom_components_pattern is not None else None
    for j, component in enumerate(components or []):
        at = f"{where}.customComponentsPattern.components[{j}]"
        problems += component_discovery.annotation_problems(f"{at}.annotations", component.annotations)
        problems += component_discovery.template_problems(f"{at}.template", component.template)
    return problems


def _role_annotation_problems(where: str, annotations: dict[str, str]) -> list[str]:
    found = []
    for key, allowed in (
        (naming.ANNOTATION_INPLACE_SCHEDULING, naming.INPLACE_SCHEDULING_MODES),
        (naming.ANNOTATION_INPLACE_GRANULARITY, naming.INPLACE_GRANULARITIES),
        (naming.ANNOTATION_V2_INSTANCE_PATTERN, ("Stateful", "Stateless")),
    ):
        value = annotations.get(key)
        if value not in (None, "", *allowed):
            found.append(f"{where}[{key}]: {value!r} is not one of {', '.join(allowed)}")
    return found


def acting_problems(spec: RoleBasedGroupSpecV2) -> list[str]:
    """What the operator needs of a group in order to act on it, whichever version wrote it."""
    problems: list[str] = []
    names = [role.name for role in spec.roles]
    templates = [t.name for t in spec.role_templates or []]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"roles: role name {duplicate!r} is used more than once")
    for i, template in enumerate(spec.role_templates or []):
        if templates.count(template.name) > 1:
            problems.append(f"roleTemplates[{i}]: duplicate template name {template.name!r}")
    for i, role in enumerate(spec.roles):
        where = f"roles[{i}]"
        workload = (role.annotations or {}).get(WORKLOAD_TYPE_KEY)
        if workload is not None and workload not in WORKLOAD_TYPES:
            problems.append(
                f"{where}.annotations[{WORKLOAD_TYPE_KEY}]: unsupported workload type {workload!r}; "
                f"use one of {', '.join(WORKLOAD_TYPES)}"
            )
        patterns = [
            name
            for name, value in (
                ("standalonePattern", role.standalone_pattern),
                ("leaderWorkerPattern", role.leader_worker_pattern),
                ("customComponentsPattern", role.custom_components_pattern),
            )
            if value is not None
        ]
        if len(patterns) > 1:
            problems.append(
                f"{where}: role {role.name!r} sets {' and '.join(patterns)}, but only one of "
                "standalonePattern, leaderWorkerPattern and customComponentsPattern may be set"
            )
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
                    problems.append(
                        f"{where}.customComponentsPattern.components[{j}].name: "
                        f"{component.name!r} is used more than once"
                    )
                if component.size is None:
                    problems.append(f"{where}.customComponentsPattern.components[{j}].size: required")
        else:
            problems.append(f"{where}: set one of standalonePattern, leaderWorkerPattern, customComponentsPattern")
        if workload is None or workload in WORKLOAD_TYPES:
            problems += _workload_problems(where, role)
        for dep in role.dependencies or []:
            if dep == role.name:
                problems.append(f"{where}.dependencies: role {role.name!r} depends on itself")
            elif dep not in names:
                problems.append(f"{where}.dependencies: unknown role {dep!r}")
    cycle = dependency_cycle(spec)
    if cycle:
        problems.append(f"roles: dependency cycle {' -> '.join(cycle)}")
    if spec.pods > MAX_GROUP_PODS:
        problems.append(
            f"roles: the group's pods (replicas times the pods of one instance: leaderWorkerPattern.size "
            f"or the sum of the custom components' sizes, over all roles) are {spec.pods}, at most "
            f"{MAX_GROUP_PODS} are allowed"
        )
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
        copies.append(
            (f"roles[{i}] ({role.name})", role.replicas, size * (2 if role.leader_worker_pattern is not None else 1))
        )
    return copies


def fields_not_acted_on(group: RoleBasedGroupV2) -> list[str]:
    """Fields the API accepts (the reference has them) but this operator does not act on yet,
    each naming the field: admission warns about them and the controller posts an Event."""
    notes = []
    kind_of_role = {role.name: role.workload.kind for role in group.spec.roles}
    for i, role in enumerate(group.spec.roles):
        update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
        if role.runs_as_instance_set:  # its pods are updated in place where they can be
            continue
        if (role.annotations or {}).get(naming.ANNOTATION_INPLACE_SCHEDULING):
            notes.append(
                f"spec.roles[{i}].annotations[{naming.ANNOTATION_INPLACE_SCHEDULING}]: acts on RoleInstanceSet "
                f"roles only; role {role.name} runs as a {role.workload.kind}"
            )
        if update is not None and update.type not in (None, "RollingUpdate", "ReCreate"):
            notes.append(
                f"spec.roles[{i}].rolloutStrategy.rollingUpdate.type: {update.type} is not done in place; "
                f"pods are replaced by the workload's rolling update"
            )
        if update is not None and update.in_place_update_strategy is not None:
            notes.append(
                f"spec.roles[{i}].rolloutStrategy.rollingUpdate.inPlaceUpdateStrategy: "
                f"pods are replaced, not updated in place"
            )
    # Written as v1alpha1's spec.coordination, and named so.
    for i, rule in enumerate(group.coordination):
        strategy = rule.strategy
        if strategy is not None and strategy.rolling_update is not None:
            for name in rule.roles:
                if kind_of_role.get(name, "StatefulSet") != "StatefulSet":
                    notes.append(
                        f"spec.coordination[{i}].strategy.rollingUpdate: paces StatefulSet roles only; "
                        f"role {name} runs as a {kind_of_role[name]}"
                    )
        if strategy is not None and strategy.scaling is not None:
            for name in rule.roles:
                if kind_of_role.get(name) == "LeaderWorkerSet":
                    notes.append(
                        f"spec.coordination[{i}].strategy.scaling: paces StatefulSet and Deployment roles "
                        f"only; role {name} runs as a LeaderWorkerSet"
                    )
    return notes
