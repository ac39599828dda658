"""RoleBasedGroupSet: `replicas` identical RoleBasedGroups `{rbgs}-{i}` made from one template."""

from __future__ import annotations

from pydantic import Field

from .common import MAX_SET_REPLICAS, ApiModel, Condition
from .rolebasedgroup import RoleBasedGroupSpec


class RoleBasedGroupSetSpec(ApiModel):
    """How many groups to run and what each looks like."""

    replicas: int = Field(1, ge=0, le=MAX_SET_REPLICAS, description="Number of RoleBasedGroups in the set.")
    template: RoleBasedGroupSpec = Field(description="Spec of every RoleBasedGroup of the set.")


class RoleBasedGroupSetStatus(ApiModel):
    """Observed state of the set."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    replicas: int = Field(0, description="Groups that exist.")
    ready_replicas: int = Field(0, description="Groups whose Ready condition is True.")
    conditions: list[Condition] | None = Field(
        None, description="Standard conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
