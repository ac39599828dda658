"""ClusterEngineRuntimeProfile: sidecars, init containers and volumes that roles name in
engineRuntimes. Cluster-scoped; the same schema in v1alpha1 and v1alpha2. The operator serves
the kind so that manifests with profiles apply; it does not inject them yet (admission and the
controller say so for each role that names one)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .common import ApiModel, Container, k8s_type

Volume = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.Volume")]


class ClusterEngineRuntimeProfileSpec(ApiModel):
    """What a role naming this profile in engineRuntimes would get added to its pods."""

    init_containers: list[Container] | None = Field(None, description="Appended to the pods' initContainers.")
    containers: list[Container] | None = Field(None, description="Appended to the pods' containers.")
    volumes: list[Volume] | None = Field(None, description="Appended to the pods' volumes.")
    update_strategy: Literal["NoUpdate", "RollingUpdate"] = Field(
        "NoUpdate", description="Whether pods follow a change of the profile (not read, as in the reference)."
    )


class ClusterEngineRuntimeProfileStatus(ApiModel):
    """Empty: the profile has no observed state."""
