"""A CoordinatedPolicy (v1alpha2) as the coordination rules the reconciler already paces by.

The policy binds to the RoleBasedGroup of its own name and namespace. Pure: the policy object and
the group's role names in; the rules in v1alpha1's shape and what could not be used out, each
naming the field.
"""

from __future__ import annotations

import pydantic

from .. import kinds
from ..api.errors import describe
from ..api.rolebasedgroup import Coordination
from ..api.v1alpha2 import CoordinatedPolicySpec

API_VERSION, KIND = kinds.COORDINATED_POLICY


def _percent(value: int | str | None) -> str | None:
    """maxSkew, partition and maxUnavailable of a policy as the coordinator reads them: whole
    percentages ("25%"). A bare number is a count in Kubernetes' int-or-string, which a share of
    roles of different sizes cannot use: it is refused by the v1alpha1 rule below."""
    return value if value is None or isinstance(value, str) else str(value)


def policy_rules(policy: dict, roles: list[str]) -> tuple[list[Coordination], list[str]]:
    try:
        spec = CoordinatedPolicySpec.model_validate(policy.get("spec") or {})
    except pydantic.ValidationError as error:
        return [], [describe(error, "spec")]
    rules, problems = [], []
    for i, rule in enumerate(spec.policies):
        where = f"spec.policies[{i}]"
        unknown = [r for r in rule.roles if r not in roles]
        if unknown:
            problems.append(
                f"{where}.roles: no role {', '.join(unknown)} in RoleBasedGroup {policy['metadata']['name']}"
            )
            continue
        strategy: dict = {}
        if rule.strategy.rolling_update is not None:
            update = rule.strategy.rolling_update
            strategy["rollingUpdate"] = {
                k: _percent(v)
                for k, v in (
                    ("maxSkew", update.max_skew),
                    ("partition", update.partition),
                    ("maxUnavailable", update.max_unavailable),
                )
                if v is not None
            }
        if rule.strategy.scaling is not None:
            scaling = rule.strategy.scaling
            strategy["scaling"] = {
                k: v
                for k, v in (("maxSkew", _percent(scaling.max_skew)), ("progression", scaling.progression))
                if v is not None
            }
        try:
            rules.append(Coordination.model_validate({"name": rule.name, "roles": rule.roles, "strategy": strategy}))
        except pydantic.ValidationError as error:
            problems.append(describe(error, where))
    return rules, problems


APPLIED = "CoordinatedPolicyApplied"


def applied_conditions(group: str, problems: list[str] | None, previous: list[dict] | None) -> list[dict]:
    """Whether the group's CoordinatedPolicy is in force: True, or False naming what is wrong with
    it; when the policy is gone, False once (absent on a group that never had one)."""
    if problems is None:
        if any(c["type"] == APPLIED for c in previous or []):
            return [
                {
                    "type": APPLIED,
                    "status": "False",
                    "reason": "NoPolicy",
                    "message": f"no CoordinatedPolicy named {group}",
                }
            ]
        return []
    if problems:
        return [
            {
                "type": APPLIED,
                "status": "False",
                "reason": "InvalidCoordinatedPolicy",
                "message": f"CoordinatedPolicy {group}: " + "; ".join(problems) + " (those rules are not applied)",
            }
        ]
    return [
        {"type": APPLIED, "status": "True", "reason": "Applied", "message": f"CoordinatedPolicy {group} is in force"}
    ]
