"""RoleBasedGroupSet: `replicas` identical RoleBasedGroups `{rbgs}-{i}` made from one template."""

from __future__ import annotations

from pydantic import Field, model_validator

from .common import MAX_SET_REPLICAS, ApiModel, Condition, fanout_problem, json_size
from .rolebasedgroup import RoleBasedGroupSpec, group_fanout


class RoleBasedGroupSetSpec(ApiModel):
    """How many groups to run and what each looks like."""

    replicas: int = Field(1, ge=0, le=MAX_SET_REPLICAS, description="Number of RoleBasedGroups in the set.")
    template: RoleBasedGroupSpec = Field(description="Spec of every RoleBasedGroup of the set.")

    @model_validator(mode="after")
    def _bounded_fanout(self) -> RoleBasedGroupSetSpec:
        problem = fanout_problem(
            "replicas", set_fanout(self.replicas, json_size(self.template.wire()), group_fanout(self.template))
        )
        if problem:
            raise ValueError(problem)
        return self


def set_fanout(replicas: int, template_bytes: int, group: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """The template copies a set makes: its group template in each member, and what each member makes."""
    return [("the group template", replicas, template_bytes)] + [
        (f"template.{what}", replicas * count, size) for what, count, size in group
    ]


class RoleBasedGroupSetStatus(ApiModel):
    """Observed state of the set."""

    observed_generation: int | None = Field(None, description="The .metadata.generation this status reflects.")
    replicas: int = Field(0, description="Groups that exist.")
    ready_replicas: int = Field(0, description="Groups whose Ready condition is True.")
    conditions: list[Condition] | None = Field(
        None,
        description="Standard conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
