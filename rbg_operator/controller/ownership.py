"""Who sets a workload's replicas: the role, or another writer (`kubectl scale`, an HPA aimed at
the workload) whose change the operator yields to. Pure: decided from the observed workload's
managedFields and an annotation the operator keeps on it, so a restarted operator decides alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from .. import naming
from .store import owners

REPLICAS = ("f:spec", "f:replicas")


@dataclasses.dataclass(frozen=True)
class ReplicasOwnership:
    apply: bool  # our apply sets spec.replicas to the role's value
    overridden_by: str | None = None  # the manager whose different value stands
    running: int | None = None  # the value that stands while overridden


def replicas_ownership(observed: dict | None, wanted: int, ours: Collection[str]) -> ReplicasOwnership:
    """Whether to apply the role's `wanted` replicas to the `observed` workload.

    Another writer's value stands only while it differs from the role's and the role has not
    changed since the operator yielded (the role's value then is kept in an annotation): a later
    change of the role, of its scaling adapter or of an HPA behind it takes the replicas back, and
    an override that came round to the role's value ends by itself."""
    if observed is None:
        return ReplicasOwnership(True)
    holders = set(owners(observed, REPLICAS))
    others = holders - set(ours)
    if not others or holders & set(ours):
        return ReplicasOwnership(True)  # ours, or shared since we last applied the same value
    running = (observed.get("spec") or {}).get("replicas")
    yielded_at = (observed["metadata"].get("annotations") or {}).get(naming.ANNOTATION_YIELDED_REPLICAS)
    if running == wanted or (yielded_at is not None and yielded_at != str(wanted)):
        return ReplicasOwnership(True)
    return ReplicasOwnership(False, sorted(others)[0], running)


OVERRIDDEN = "ReplicasOverridden"


def overridden_conditions(group, ownership: dict[str, ReplicasOwnership], previous: list[dict] | None) -> list[dict]:
    """`ReplicasOverridden=True` naming each role whose workload runs another writer's replicas;
    False once none does (absent on a group that never had one)."""
    held = [(role, ownership[role.name]) for role in group.spec.roles if not ownership[role.name].apply]
    if held:
        message = "; ".join(
            f"role {role.name}: {decision.running} replicas set by {decision.overridden_by} (the role asks for "
            f"{role.replicas}; a change of the role's replicas takes them back)"
            for role, decision in held
        )
        return [{"type": OVERRIDDEN, "status": "True", "reason": "SetByAnotherWriter", "message": message}]
    if any(c["type"] == OVERRIDDEN for c in previous or []):
        return [
            {
                "type": OVERRIDDEN,
                "status": "False",
                "reason": "RoleReplicasApplied",
                "message": "every workload runs its role's replicas",
            }
        ]
    return []
