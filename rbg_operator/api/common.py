"""Building blocks shared by the API models: camelCase aliases, free-form objects, embedded
Kubernetes types, int-or-string and percentages, and the standard condition."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PERCENT = r"^(100|[1-9]?[0-9])%$"


class ApiModel(BaseModel):
    """Base of every API object part: fields are camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(*rules: tuple[str, str] | tuple[str, str, str] | dict) -> dict:
    """CEL admission rules (rule, message[, fieldPath]) for a model's or field's schema; a dict is
    taken as the validation itself (for a messageExpression)."""
    validations = []
    for rule in rules:
        if isinstance(rule, dict):
            validations.append(rule)
            continue
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
# How deeply a free-form patch (templatePatch, patchLeaderTemplate, ...) may nest. A pod
# template is about 10 levels deep; the limit keeps a hostile patch from costing the
# operator's recursion depth and memory. CEL cannot measure depth: the webhook and the
# controller enforce it.
MAX_PATCH_DEPTH = 24


def nesting_depth(value: Any) -> int:
    """Levels of objects and lists in a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _shallow_enough(patch: dict[str, Any]) -> dict[str, Any]:
    depth = nesting_depth(patch)
    if depth > MAX_PATCH_DEPTH:
        raise ValueError(f"nested {depth} levels deep, at most {MAX_PATCH_DEPTH} are allowed")
    return patch


# Embedded Kubernetes objects stay plain dicts in Python: the operator copies them into
# child objects; the API server validates them against the real schema.
PodTemplateSpec = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.PodTemplateSpec")]
Container = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.Container")]
ServicePort = Annotated[dict[str, Any], k8s_type("io.k8s.api.core.v1.ServicePort")]
FreeForm = Annotated[dict[str, Any], FREE_FORM, AfterValidator(_shallow_enough)]

INT_OR_PERCENT = r"^[0-9]+%$"


def _int_or_percent(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
    elif not re.match(INT_OR_PERCENT, value):
        raise ValueError(f"{value!r} is neither a whole number nor a whole percentage such as '25%'")
    return value


def resolve(value: int | str | None, total: int, *, round_up: bool = False, default: int = 0) -> int:
    """An int-or-percent against `total`, as Kubernetes resolves maxSurge (up) and maxUnavailable (down)."""
    if value is None:
        return default
    if isinstance(value, int):
        return value
    fraction = int(value.rstrip("%")) * total / 100
    return math.ceil(fraction) if round_up else math.floor(fraction)


# Bounds that keep the CEL rules' cost estimate within the API server's budget.
MAX_ROLES = 64
# Size caps, so that no object admission accepts can make the operator allocate without bound
# (the topology ConfigMap lists every instance's address, and must stay well under 1 MiB).
MAX_ROLE_REPLICAS = 5000
MAX_LEADER_WORKER_SIZE = 256
MAX_GROUP_PODS = 5000
MAX_INSTANCE_PODS = MAX_GROUP_PODS  # one RoleInstance's pods, over all its components
MAX_SET_REPLICAS = 1000
# The template bytes one object may have copied into the objects made from it: a RoleInstanceSet
# role copies its template into each of its RoleInstances, a set its group template into each
# member. Each copy sits in etcd and in every operator replica's cache, and no pod quota counts it.
# 32 MiB is hundreds of times what an SGLang group needs (examples/sglang_pd.yaml: 6 KB in all).
MAX_FANOUT_BYTES = 32 * 1024 * 1024

# A count or a percentage: 3 or "25%", never "1.5%" or "two".
IntOrString = Annotated[
    int | str,
    AfterValidator(_int_or_percent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "maxLength": 8,  # bounds the CEL rule's cost estimate ("10000%" is 6)
            "x-kubernetes-validations": [
                {
                    "rule": f"type(self) == int ? self >= 0 : self.matches('{INT_OR_PERCENT}')",
                    "message": "must be a whole number or a whole percentage such as '25%'",
                }
            ],
        }
    ),
]
SURGE_LIMITS = f"a whole number from 0 to {MAX_ROLE_REPLICAS} or a percentage from 0% to 100%"


def _surge(value: int | str) -> int | str:
    value = _int_or_percent(value)
    if isinstance(value, int) and value > MAX_ROLE_REPLICAS or isinstance(value, str) and int(value[:-1]) > 100:
        raise ValueError(f"{value!r} is too large: must be {SURGE_LIMITS}")
    return value


# maxSurge: extra instances during a rollout. More than the replicas cap, or than 100%, surges
# nothing more (a rollout needs at most `replicas` new instances) but would make the operator
# plan that many (a rollout plan is per instance).
MaxSurge = Annotated[
    int | str,
    AfterValidator(_surge),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "maxLength": 8,  # as IntOrString's: a longer string is refused before the rule runs
            "x-kubernetes-validations": [
                {
                    "rule": f"type(self) == int ? self >= 0 && self <= {MAX_ROLE_REPLICAS} : self.matches('{PERCENT}')",
                    "message": f"maxSurge must be {SURGE_LIMITS}",
                }
            ],
        }
    ),
]
Percent = Annotated[str, Field(pattern=PERCENT)]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
RoleName = Annotated[str, Field(max_length=63)]


class Condition(ApiModel):
    """A standard metav1.Condition."""

    type: str = Field(description="Condition type, e.g. Ready or Progressing.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the condition's last transition.")
    message: str = Field("", description="Human-readable details about the transition.")
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation the condition was set for."
    )


def json_size(value: Any) -> int:
    """Bytes of a value as compact JSON: what one copy of it costs in etcd and in the cache."""
    return len(orjson.dumps(value))


def fanout_problem(where: str, copies: list[tuple[str, int, int]]) -> str | None:
    """The refusal (naming `where`) when copies of templates, given as (what, count, bytes of
    one), add up to more than MAX_FANOUT_BYTES; None when they fit."""
    total = sum(count * size for _, count, size in copies)
    if total <= MAX_FANOUT_BYTES:
        return None
    largest = sorted(copies, key=lambda c: -c[1] * c[2])[:3]
    detail = ", ".join(f"{what}: {count} x {size} bytes" for what, count, size in largest)
    return (
        f"{where}: the copies of templates this object makes ({detail}) come to {total} bytes, at most "
        f"{MAX_FANOUT_BYTES} bytes ({MAX_FANOUT_BYTES >> 20} MiB) are allowed (lower the replicas or "
        f"the template's size)"
    )


def json_object(text: str | None) -> dict:
    """A JSON object kept in an annotation; {} when absent, not JSON, or not an object (a hand
    edit must not break the reconcile that reads it)."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def graph_cycle(graph: dict[str, list[str]]) -> list[str]:
    """A cycle of `graph` (node -> the nodes it depends on) as a list of nodes, the first repeated
    at the end, or []. Edges to nodes outside the graph are ignored."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in graph.get(name, []):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep in graph and state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return []

    for name in graph:
        if state.get(name) is None:
            found = visit(name)
            if found:
                return found
    return []
