"""RoleBasedGroupWarmup (v1alpha2 only): pre-pull images, or run containers of one's own, once on
each of a set of nodes before the workloads that need them arrive.

The nodes are named (nodeNames), selected by label (nodeSelector), or those the pods of a
RoleBasedGroup are scheduled to (targetRoleBasedGroup, with actions per role). The controller
runs one pod per node (controller/warmup.py); the decisions are in controller/warmup_plan.py.
The CEL rules below are also checked by the model's own validators, with the same messages, so
the controller and the unit tests refuse what admission refuses.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .common import MAX_ROLES, ApiModel, Condition, RoleName, cel, k8s_type

Container = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.Container")]
Volume = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.Volume")]
Toleration = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.Toleration")]
LocalObjectReference = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.LocalObjectReference")]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]

# Bounds: every item becomes part of a pod (or a pod per node), and keeps CEL cost estimates low.
MAX_WARMUP_NODES = 5000  # as many nodes as a group may have pods
MAX_WARMUP_IMAGES = 64
MAX_WARMUP_CONTAINERS = 32
MAX_WARMUP_VOLUMES = 64

EITHER_TARGET = "either targetNodes or targetRoleBasedGroup must be specified"
BOTH_TARGETS = "targetNodes and targetRoleBasedGroup are mutually exclusive"
BACKOFF_REQUIRED = "backoffLimitPerNode must be set when maxFailedNodes is specified"
ONE_NODE_CHOICE = "exactly one of nodeNames or nodeSelector must be specified"
SOME_ACTION = "at least one of imagePreload or customizedAction must be specified"

# Not in the reference: its pods carry the name as a label value, which may not exceed 63
# characters, so a longer name would make a warmup whose every pod is refused.
WARMUP_NAME_RULE = (
    "size(self.metadata.name) <= 63",
    "metadata.name: the warmup's name is a label of its pods, so it may be at most 63 characters",
    "",  # metadata has no schema of its own to point into
)
ACTION_RULE = ("has(self.imagePreload) || has(self.customizedAction)", SOME_ACTION)
PHASES = Literal["", "Running", "Paused", "Completed", "Failed"]


class ImagePreload(ApiModel):
    """Images pulled onto the node (each by a container that exits at once)."""

    images: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=MAX_WARMUP_IMAGES, description="Images to pull onto every target node."
    )
    pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=MAX_WARMUP_VOLUMES, description="Secrets to pull the images with (imagePullSecrets)."
    )


class CustomizedAction(ApiModel):
    """Containers of one's own, run to completion on the node, with the volumes they mount."""

    containers: list[Container] = Field(
        min_length=1, max_length=MAX_WARMUP_CONTAINERS, description="Containers to run on every target node."
    )
    volumes: list[Volume] | None = Field(
        None, max_length=MAX_WARMUP_VOLUMES, description="Volumes the containers mount, merged by name."
    )


class WarmupActions(ApiModel):
    """What a warmup pod does on a node: pull images, run containers, or both."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(ACTION_RULE)}

    image_preload: ImagePreload | None = Field(None, description="Images to pull.")
    customized_action: CustomizedAction | None = Field(None, description="Containers to run.")

    @model_validator(mode="after")
    def _some_action(self) -> WarmupActions:
        if self.image_preload is None and self.customized_action is None:
            raise ValueError(SOME_ACTION)
        return self


class TargetNodes(WarmupActions):
    """Named nodes, or the nodes a label selector matches, and what to do on each."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("has(self.nodeNames) != has(self.nodeSelector)", ONE_NODE_CHOICE),
            ACTION_RULE,
        )
    }

    node_names: list[Annotated[str, Field(min_length=1, max_length=253)]] | None = Field(
        None, min_length=1, max_length=MAX_WARMUP_NODES, description="Names of the nodes to warm up."
    )
    node_selector: dict[str, str] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Labels a node must all carry to be warmed up.",
    )

    @model_validator(mode="after")
    def _one_node_choice(self) -> TargetNodes:
        if (self.node_names is None) == (self.node_selector is None):
            raise ValueError(ONE_NODE_CHOICE)
        return self


class TargetRoleBasedGroup(ApiModel):
    """The nodes a RoleBasedGroup's pods are scheduled to, with what to do per role."""

    name: str = Field(min_length=1, max_length=253, description="A RoleBasedGroup in the warmup's namespace.")
    roles: dict[RoleName, WarmupActions] = Field(
        min_length=1,
        max_length=MAX_ROLES,
        description="Per role name, what to do on the nodes of that role's pods; a node with pods of "
        "several roles gets all their actions merged into one pod.",
    )


class WarmupPolicies(ApiModel):
    """Pace, retries, failure tolerance, deadline and clean-up."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(("!has(self.maxFailedNodes) || has(self.backoffLimitPerNode)", BACKOFF_REQUIRED))
    }

    parallelism: int | None = Field(
        None, ge=1, le=2**31 - 1, description="Most nodes warmed at once; unset: all at once."
    )
    backoff_limit_per_node: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Retries of a node whose pod failed; unset: no limit; 0: none."
    )
    max_failed_nodes: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="Nodes whose retries ran out that the warmup tolerates before it fails (unset: 0).",
    )
    global_timeout_seconds: int | None = Field(
        None, ge=1, description="From status.startTime: then running pods are deleted and the warmup fails."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Delete the warmup this long after it completed or failed."
    )

    @model_validator(mode="after")
    def _backoff_required(self) -> WarmupPolicies:
        if self.max_failed_nodes is not None and self.backoff_limit_per_node is None:
            raise ValueError(BACKOFF_REQUIRED)
        return self


class RoleBasedGroupWarmupSpec(ApiModel):
    """Which nodes to warm up, what to do on each, and how."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("has(self.targetNodes) || has(self.targetRoleBasedGroup)", EITHER_TARGET),
            ("!(has(self.targetNodes) && has(self.targetRoleBasedGroup))", BOTH_TARGETS),
        )
    }

    paused: bool | None = Field(None, description="No new warmup pods while true; those running are left alone.")
    policies: WarmupPolicies | None = Field(None, description="Pace, retries, deadline and clean-up.")
    target_nodes: TargetNodes | None = Field(None, description="Named or label-selected nodes and their actions.")
    target_role_based_group: TargetRoleBasedGroup | None = Field(
        None, description="The nodes of a RoleBasedGroup's pods, with actions per role."
    )
    tolerations: list[Toleration] | None = Field(
        None, max_length=64, description="Tolerations of the warmup pods (to reach tainted nodes)."
    )

    @model_validator(mode="after")
    def _one_target(self) -> RoleBasedGroupWarmupSpec:
        if self.target_nodes is None and self.target_role_based_group is None:
            raise ValueError(EITHER_TARGET)
        if self.target_nodes is not None and self.target_role_based_group is not None:
            raise ValueError(BOTH_TARGETS)
        return self


class RoleBasedGroupWarmupStatus(ApiModel):
    """Progress over the target nodes (each counted once, by its latest pod)."""

    start_time: Timestamp | None = Field(None, description="When the warmup first ran (not paused).")
    completion_time: Timestamp | None = Field(None, description="When it completed or failed.")
    phase: PHASES = Field(description="Running, Paused, Completed or Failed (empty before the first pass).")
    desired: int = Field(description="Target nodes.")
    active: int = Field(description="Nodes whose warmup pod is pending or running.")
    succeeded: int = Field(description="Nodes whose warmup pod succeeded.")
    failed: int = Field(description="Nodes whose retries ran out.")
    conditions: list[Condition] | None = Field(
        None,
        description="Complete, Failed and VolumeConflict.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
