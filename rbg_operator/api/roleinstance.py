"""RoleInstanceSet and RoleInstance: the v1alpha2-only workload a RoleBasedGroup role runs as.

A RoleInstance is one replica of a role: one or more named components, each `size` pods made
from the component's pod template. A RoleInstanceSet keeps `replicas` RoleInstances made from
its roleInstanceTemplate and rolls them to a new template (StatefulSet-like or CloneSet-like,
after its role-instance-pattern annotation). An RBG normally creates both; they can also be
created directly, and then get the defaults the reference only documents (replicas 1,
updateStrategy.type InPlaceIfPossible, partition 0).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .common import (
    MAX_INSTANCE_PODS,
    MAX_LEADER_WORKER_SIZE,
    MAX_ROLE_REPLICAS,
    MAX_ROLES,
    ApiModel,
    Condition,
    DnsLabel,
    IntOrString,
    MaxSurge,
    PodTemplateSpec,
    cel,
    fanout_problem,
    json_size,
    k8s_type,
)
from .rolebasedgroup import LIST_MAP_BY_NAME, InPlaceUpdateStrategy
from .v1alpha2 import RESTART_POLICIES, RestartPolicyConfig

LabelSelector = Annotated[dict[str, Any], k8s_type("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")]
# The UpdateStrategyType values. The reference takes any string here; an unknown value (or
# v1alpha1's "Recreate") is refused instead of silently updating in place (Q11).
UPDATE_STRATEGY_TYPES = Literal["RecreatePod", "InPlaceIfPossible", "InPlaceOnly"]
# On the string itself, so that the format survives the optional field's unwrapping in crdgen.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def _conditions(description: str) -> Any:
    return Field(
        None,
        description=description,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class RoleInstanceComponent(ApiModel):
    """One named group of identical pods inside a RoleInstance."""

    name: DnsLabel = Field(description="Component name: part of the pod names and the component-name label.")
    # The reference leaves size optional and then fails the reconcile on it (Q14): here unset means 1 pod.
    size: int = Field(1, ge=0, le=MAX_LEADER_WORKER_SIZE, description="Pods of this component in the instance.")
    service_name: str | None = Field(
        None, description="Headless Service the pods get as subdomain (hostname: the pod name); it must exist."
    )
    labels: dict[str, str] | None = Field(None, description="Labels merged into the component's pods; they win.")
    annotations: dict[str, str] | None = Field(
        None, description="Annotations merged into the component's pods; component directives are read here first."
    )
    # The reference keeps this schemaless. Typed as the real PodTemplateSpec, as RoleBasedGroup
    # templates are here, so that a malformed template is refused when the object is written
    # instead of failing every pod creation later; one embedded pod template keeps the CRD small.
    template: PodTemplateSpec = Field(description="Pod template of the component's pods.")


class RoleInstanceReadinessGate(ApiModel):
    """A RoleInstance condition that must be True before the instance counts as ready."""

    condition_type: str = Field(description="Type of a condition in the RoleInstance's status.conditions.")


# CEL: the pods of one instance (unset size is 1, as the schema's default).
INSTANCE_PODS = "self.components.map(c, has(c.size) ? c.size : 1).sum()"


class RoleInstanceSpec(ApiModel):
    """The components of one instance and how its readiness and restarts work."""

    # Each pod costs the operator work on every reconcile of the instance; one instance may hold
    # as many pods as a whole group.
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                f"{INSTANCE_PODS} <= {MAX_INSTANCE_PODS}",
                f"an instance's pods (the sum of its components' sizes) must be at most {MAX_INSTANCE_PODS}",
                ".components",
            )
        )
    }

    components: list[RoleInstanceComponent] = Field(
        min_length=1,
        max_length=MAX_ROLES,
        description="The instance's components, each unique by name.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    # An enum here, where the reference takes any string, so that a typo is refused.
    ready_policy: Literal["AllPodReady", "None"] = Field(
        "AllPodReady", description="AllPodReady: the pods turn Ready together, once all are; None: ready at once."
    )
    restart_policy: RESTART_POLICIES | None = Field(None, description="Deprecated: use restartPolicyConfig.type.")
    restart_policy_config: RestartPolicyConfig | None = Field(
        None, description="What a pod failure or container restart recreates, and the backoff; empty: no restart."
    )
    readiness_gates: list[RoleInstanceReadinessGate] | None = Field(
        None, description="Instance conditions that must be True for the instance to be ready."
    )

    @property
    def pods(self) -> int:
        return sum(c.size for c in self.components)

    @model_validator(mode="after")
    def _unique_names(self) -> RoleInstanceSpec:
        names = [c.name for c in self.components]
        problems = [
            f"components[{i}].name: {name!r} is used more than once"
            for i, name in enumerate(names)
            if name in names[:i]
        ]
        if self.pods > MAX_INSTANCE_PODS:
            problems.append(
                f"components: an instance's pods (the sum of its components' sizes) are {self.pods}, at "
                f"most {MAX_INSTANCE_PODS} are allowed"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ComponentStatus(ApiModel):
    """Pod counts of one component of an instance."""

    name: str = Field(description="Component name.")
    size: int = Field(description="Pods the component should have.")
    ready_replicas: int = Field(description="Pods that are ready.")
    updated_replicas: int = Field(description="Pods at the instance's update revision.")
    scheduled_replicas: int = Field(description="Pods bound to a node.")
    available_replicas: int = Field(description="Pods ready for at least minReadySeconds.")
    updated_ready_replicas: int = Field(description="Pods at the update revision that are ready.")


class ContainerBaseline(ApiModel):
    """A container as it was before an in-place update, to tell expected restarts from crashes."""

    restart_count: int = Field(description="The container's restartCount before the update.")
    image_id: str | None = Field(None, alias="imageID", description="The container's imageID before the update.")


class RoleInstanceStatus(ApiModel):
    """Observed state of one instance."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    conditions: list[Condition] | None = _conditions(
        "RoleInstanceReady, RoleInstanceAllPodsReady, Restarting, FailedScale, FailedUpdate and the "
        "readiness-gate conditions."
    )
    component_statuses: list[ComponentStatus] | None = Field(
        None, description="Pod counts per component, in spec order."
    )
    label_selector: str | None = Field(None, description="Selector of the instance's pods.")
    current_revision: str | None = Field(None, description="ControllerRevision every pod was at last.")
    update_revision: str | None = Field(None, description="ControllerRevision of the current spec.")
    collision_count: int | None = Field(None, description="Hash collisions met when naming revisions.")
    in_place_update_container_baselines: dict[str, dict[str, ContainerBaseline]] | None = Field(
        None, description="Per pod, per container: its state before the last in-place update."
    )
    restart_count: int | None = Field(None, description="How often the restart policy recreated the instance.")
    last_restart_time: Timestamp | None = Field(None, description="When the instance was last recreated.")


class RoleInstanceSetScaleStrategy(ApiModel):
    """How instances are removed and added."""

    role_instance_to_delete: list[str] | None = Field(
        None, description="Names of instances to delete first when scaling down (Stateless mode only)."
    )
    max_unavailable: IntOrString | None = Field(
        None, description="Instances (or percentage) that may be unavailable while scaling up."
    )


class RoleInstanceSetUpdateStrategy(ApiModel):
    """How instances move to a new roleInstanceTemplate."""

    type: UPDATE_STRATEGY_TYPES = Field(
        "InPlaceIfPossible", description="RecreatePod, InPlaceIfPossible or InPlaceOnly."
    )
    partition: IntOrString = Field(0, description="Instances (or percentage, rounded down) kept at the old revision.")
    max_unavailable: IntOrString | None = Field(
        None, description="Instances (or percentage) that may be unavailable during the update (default 10%)."
    )
    max_surge: MaxSurge | None = Field(
        None,
        description="Extra instances (or percentage, rounded up) above replicas during the update (default 0; "
        "at most 5000 or 100%).",
    )
    paused: bool = Field(False, description="Holds the rollout where it is.")
    in_place_update_strategy: InPlaceUpdateStrategy | None = Field(None, description="In-place update settings.")


class RoleInstanceSetLifecycleHook(ApiModel):
    """A point in an instance's life where the set waits for hooks to finish (Stateless mode only)."""

    labels_handler: dict[str, str] | None = Field(
        None, description="Labels that hold the instance while present; removing them releases it."
    )
    finalizers_handler: list[str] | None = Field(None, description="Finalizers that hold the instance while present.")
    mark_pod_not_ready: bool | None = Field(None, description="Mark the instance's pods not ready during the hook.")


class RoleInstanceSetLifecycle(ApiModel):
    """Lifecycle hooks of the set's instances."""

    pre_delete: RoleInstanceSetLifecycleHook | None = Field(None, description="Before an instance is deleted.")
    in_place_update: RoleInstanceSetLifecycleHook | None = Field(
        None, description="Around an in-place update of an instance."
    )


class RoleInstanceSetSpec(ApiModel):
    """How many instances to run, what each looks like, and how changes roll out."""

    # A set may run as many pods as a group. Its other bound, the bytes of template its instances
    # copy (instance_set_fanout_problem), CEL cannot measure: the controller refuses to fan out.
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            (
                f"(has(self.replicas) ? self.replicas : 1) * {INSTANCE_PODS.replace('self.', 'self.roleInstanceTemplate.')}"  # noqa: E501 - one rule, one line
                f" <= {MAX_INSTANCE_PODS}",
                f"the set's pods (replicas times the sum of the instance's component sizes) must be at most "
                f"{MAX_INSTANCE_PODS}",
                ".replicas",
            )
        )
    }

    # The reference only documents the default 1 (Q25): here the API server applies it.
    replicas: int = Field(1, ge=0, le=MAX_ROLE_REPLICAS, description="Number of instances.")
    selector: LabelSelector | None = Field(
        None, description="Label query over the instances; it should match the roleInstanceTemplate's labels."
    )
    role_instance_template: RoleInstanceSpec = Field(description="Spec of every instance of the set.")
    pod_management_policy: Literal["OrderedReady", "Parallel"] = Field(
        "Parallel", description="OrderedReady creates instances one at a time, each once the previous is Ready."
    )
    scale_strategy: RoleInstanceSetScaleStrategy | None = Field(None, description="Scaling settings.")
    # Defaulted to {} so that its documented defaults apply to a set that leaves it out (Q25).
    update_strategy: RoleInstanceSetUpdateStrategy = Field(
        default_factory=RoleInstanceSetUpdateStrategy,
        description="Rolling update settings.",
        json_schema_extra={"default": {}},
    )
    revision_history_limit: int = Field(10, ge=0, description="Old ControllerRevisions kept.")
    min_ready_seconds: int = Field(0, ge=0, description="Seconds an instance must be ready before it is available.")
    lifecycle: RoleInstanceSetLifecycle | None = Field(None, description="Lifecycle hooks (Stateless mode only).")

    @model_validator(mode="after")
    def _bounded(self) -> RoleInstanceSetSpec:
        problems = []
        pods = self.replicas * self.role_instance_template.pods
        if pods > MAX_INSTANCE_PODS:
            problems.append(
                f"replicas: the set's pods (replicas times the sum of the instance's component sizes) "
                f"are {pods}, at most {MAX_INSTANCE_PODS} are allowed"
            )
        fanout = instance_set_fanout_problem(self.wire())
        if fanout:
            problems.append(fanout)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def instance_set_fanout_problem(spec: dict) -> str | None:
    """Why a RoleInstanceSet (its spec as stored) may not make its instances: each is a copy of
    roleInstanceTemplate, and `replicas` of them would pass MAX_FANOUT_BYTES. None when they fit."""
    replicas = spec.get("replicas", 1)
    return fanout_problem(
        "replicas",
        [
            (
                "roleInstanceTemplate",
                replicas if isinstance(replicas, int) else 0,
                json_size(spec.get("roleInstanceTemplate")),
            )
        ],
    )


class RoleInstanceSetStatus(ApiModel):
    """Observed state of the set."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    replicas: int = Field(description="Instances that exist.")
    ready_replicas: int = Field(description="Instances whose RoleInstanceReady condition is True.")
    available_replicas: int = Field(description="Instances ready for at least minReadySeconds.")
    current_replicas: int = Field(description="Instances at the current revision.")
    updated_replicas: int = Field(description="Instances at the update revision.")
    updated_ready_replicas: int = Field(description="Instances at the update revision that are ready.")
    expected_updated_replicas: int | None = Field(None, description="Replicas minus partition.")
    update_revision: str | None = Field(None, description="ControllerRevision of the current roleInstanceTemplate.")
    current_revision: str | None = Field(None, description="ControllerRevision every instance was at last.")
    collision_count: int | None = Field(None, description="Hash collisions met when naming revisions.")
    conditions: list[Condition] | None = _conditions("FailedScale and FailedUpdate.")
    label_selector: str | None = Field(None, description="The spec selector as a string, for the scale subresource.")
