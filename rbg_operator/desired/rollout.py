"""Rollouts: each role's update strategy, its revision, and the pace of coordinated roles.

Everything here is pure: the coordinator is given what the reconciler observed (pods
updated and ready, current partitions) and answers with the partitions to apply.
"""

from __future__ import annotations

import dataclasses
import math

from .. import naming
from ..api.common import resolve  # noqa: F401 - where the rollout code has always found it
from ..api.v1alpha2 import RoleBasedGroupV2
from ..hashing import json_digest

HISTORY_LIMIT = 10  # ControllerRevisions kept per group


def revision_hash(pod_templates: dict) -> str:
    """A role's revision: the hash of the pod templates the operator gives its workload (built by
    desired.workload_kinds.role_pod_templates). Anything that would restart pods changes it; replicas
    do not, being outside the templates. Neither do the v1alpha2 label keys, which are the same
    for every revision of a role and reach old workloads' pods only with their next revision
    (meta.pods_get_v2_keys)."""
    hashed = {key: _without_v2_labels(value) for key, value in pod_templates.items()}
    return json_digest(hashed)


def _without_v2_labels(template):
    labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    if not labels or naming.LABEL_V2_GROUP_NAME not in labels:
        return template
    kept = {k: v for k, v in labels.items() if k not in naming.V2_POD_LABELS}
    return {**template, "metadata": {**template["metadata"], "labels": kept}}


def group_revision(role_revisions: dict[str, str]) -> str:
    return json_digest(role_revisions)


def revision_label(role: str, key_prefix: str = naming.LABEL_REVISION_PREFIX) -> str:
    """The label key of a role's revision on its workload. The part after the '/' may hold 63
    characters; a role name too long for it is shortened and made unique by a hash (cutting the
    whole key, as before, gave keys that were invalid or shared by two roles)."""
    prefix, _, name = f"{key_prefix}{role}".partition("/")
    return f"{prefix}/{naming.shortened(name, digest_of=role)}"


def controller_revision(group: RoleBasedGroupV2, owner: dict, number: int, revision: str) -> dict:
    """The group's role templates as a ControllerRevision `{rbg}-{revision}`: what undo restores.
    `templateFields` says which role fields it holds: undo replaces those and no others (revisions
    recorded before labels and annotations were kept lack them)."""
    roles = {}
    for role in group.spec.roles:
        fields = role.wire()
        roles[role.name] = {k: fields[k] for k in naming.ROLE_TEMPLATE_FIELDS if k in fields}
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{group.name}-{revision}",
            "namespace": group.namespace,
            "labels": naming.group_labels(group.namespace, group.name),
            "ownerReferences": [owner],
        },
        "data": {"roles": roles, "templateFields": list(naming.ROLE_TEMPLATE_FIELDS)},
        "revision": number,
    }


@dataclasses.dataclass(frozen=True)
class RolePlan:
    """What coordination decided for one role this reconcile (None: the role's own setting)."""

    partition: int | None = None
    max_unavailable: str | None = None
    replicas: int | None = None


@dataclasses.dataclass
class RoleRollout:
    """What the reconciler observed of one coordinated role."""

    name: str
    replicas: int
    updated_ready: int  # pods at the desired revision and ready
    allowed: int  # pods currently allowed onto the desired revision (replicas - partition)


def coordinated_allowance(
    roles: list[RoleRollout], max_skew: str | None, floor_partition: str | None
) -> dict[str, int]:
    """How many pods of each role may be on the new revision, so that the roles'
    updated-and-ready fractions stay within max_skew of each other.

    A role may run ahead of the slowest role's updated-and-ready fraction by at most
    max_skew; since that fraction only grows, the bound holds at every moment. When no role
    may move (max_skew is below one pod of every role), the slowest roles advance one pod
    each, together: the smallest step that is possible, so small roles never deadlock.
    """
    skew = int((max_skew or "100%").rstrip("%")) / 100
    fraction = {r.name: r.updated_ready / r.replicas if r.replicas else 1.0 for r in roles}
    slowest = min(fraction.values(), default=1.0)
    ceiling = {r.name: r.replicas - resolve(floor_partition, r.replicas) for r in roles}
    allowance = {}
    for role in roles:
        limit = math.floor((slowest + skew) * role.replicas + 1e-9)
        allowance[role.name] = max(min(role.allowed, ceiling[role.name]), min(ceiling[role.name], limit))
    blocked = all(allowance[r.name] <= r.updated_ready for r in roles)
    if blocked:
        for role in roles:
            if fraction[role.name] == slowest and allowance[role.name] < ceiling[role.name]:
                allowance[role.name] += 1
    return allowance
