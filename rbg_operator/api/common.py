"""Building blocks shared by the API models: camelCase aliases, free-form objects, embedded
Kubernetes types, int-or-string and percentages, and the standard condition."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PERCENT = r"^(100|[1-9]?[0-9])%$"


class ApiModel(BaseModel):
    """Base of every API object part: fields are camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(*rules: tuple[str, str] | tuple[str, str, str]) -> dict:
    """CEL admission rules (rule, message[, fieldPath]) for a model's or field's schema."""
    validations = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) == 3:
            entry["fieldPath"] = rule[2]
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


def k8s_type(definition: str) -> WithJsonSchema:
    """Marks a field whose schema is the real Kubernetes one (read from the pinned
    Kubernetes' OpenAPI document when the CRDs are generated)."""
    return WithJsonSchema({"x-rbg-k8s-type": definition})


FREE_FORM = WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})

# Embedded Kubernetes objects stay plain dicts in Python: the operator copies them into
# child objects; the API server validates them against the real schema.
PodTemplateSpec = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.PodTemplateSpec")]
Container = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.Container")]
ServicePort = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.ServicePort")]
FreeForm = Annotated[dict[str, Any], FREE_FORM]

IntOrString = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]
Percent = Annotated[str, Field(pattern=PERCENT)]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
# Bounds that keep the CEL rules' cost estimate within the API server's budget.
MAX_ROLES = 64
RoleName = Annotated[str, Field(max_length=63)]


class Condition(ApiModel):
    """A standard metav1.Condition."""

    type: str = Field(description="Condition type, e.g. Ready or Progressing.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the condition's last transition.")
    message: str = Field("", description="Human-readable details about the transition.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).",
                                      json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(None, ge=0, description="The .metadata.generation the condition was set for.")
