"""RoleBasedGroupScalingAdapter: one role of one group behind a scale subresource, so that
`kubectl scale` and a HorizontalPodAutoscaler can drive the role's replicas."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import ApiModel, Condition


class ScaleTargetRef(ApiModel):
    """The group and role this adapter scales."""

    name: str = Field(description="Name of the RoleBasedGroup in the adapter's namespace.")
    role: str = Field(description="Name of the role in that group.")


class RoleBasedGroupScalingAdapterSpec(ApiModel):
    """Desired replicas of one role."""

    replicas: int | None = Field(
        None, ge=0, description="Desired replicas of the role; written by kubectl scale or an HPA."
    )
    scale_target_ref: ScaleTargetRef = Field(description="The group and role to scale.")


class RoleBasedGroupScalingAdapterStatus(ApiModel):
    """Observed state of the scaled role."""

    phase: Literal["NotBound", "Bound"] | None = Field(None, description="Bound once the target role exists.")
    replicas: int | None = Field(None, description="Current replicas of the role.")
    ready_replicas: int | None = Field(None, description="Ready replicas of the role.")
    selector: str | None = Field(
        None, description="Label selector of the role's pods (for LeaderWorkerSet roles, the leaders)."
    )
    last_scale_time: str | None = Field(
        None,
        description="When the adapter last changed the role's replicas.",
        json_schema_extra={"format": "date-time"},
    )
    conditions: list[Condition] | None = Field(
        None,
        description="Standard conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
