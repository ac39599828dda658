"""A RoleInstanceSet pass's plan, by the set's mode: its `role-instance-pattern` annotation picks
Stateful (instances by ordinal, instanceset_plan) or Stateless (random names, instanceset_stateless).
A switch deletes the instances of the other mode; an unknown mode plans nothing and says so."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from types import MappingProxyType

from ..api.roleinstance import instance_set_fanout_problem
from . import instanceset_stateless as stateless
from .instanceset_plan import InstanceSetPlan, InstanceSetSnapshot, plan_stateful, template_revision

_ID_LETTERS = "bcdfghjklmnpqrstvwxz"  # no vowels: no words
_ID_ALPHABET = _ID_LETTERS + "2456789"


def random_instance_id() -> str:
    """A Stateless instance's id: 5 characters, the first a letter, so it never reads as an ordinal."""
    return secrets.choice(_ID_LETTERS) + "".join(secrets.choice(_ID_ALPHABET) for _ in range(4))


def plan(snapshot: InstanceSetSnapshot, new_id: Callable[[], str] = random_instance_id) -> InstanceSetPlan:
    """The writes of the pass: instances to create, rewrite in place, label and delete."""
    body = snapshot.body
    spec = body.get("spec") or {}
    revision = template_revision(spec.get("roleInstanceTemplate") or {})
    pattern = stateless.pattern_of(body)
    if pattern not in stateless.PATTERNS:
        return InstanceSetPlan(revision, (), (), (), (), MappingProxyType({}), None, unknown_pattern=pattern)
    if pattern == "Stateful":
        return plan_stateful(snapshot, revision)
    template = spec.get("roleInstanceTemplate") or {}
    to_delete = set((spec.get("scaleStrategy") or {}).get("roleInstanceToDelete") or [])
    # Stateful instances (no owner label) go: the annotation was switched.
    stateful = [i for i in snapshot.instances if not stateless.is_stateless_instance(i, body)]
    seen = [
        stateless.Seen.of(i, v, to_delete)
        for i, v in zip(snapshot.instances, snapshot.views, strict=True)
        if stateless.is_stateless_instance(i, body)
    ]
    decided = stateless.plan_stateless(body, revision, template, seen, new_id)
    too_large = instance_set_fanout_problem(spec)
    if too_large:
        decided.create, decided.update = [], []
    by_name = {i["metadata"]["name"]: i for i in snapshot.instances}
    doomed = [i["metadata"]["name"] for i in stateful if not i["metadata"].get("deletionTimestamp")] + decided.delete
    update = tuple(
        stateless.desired_instance(body, stateless.instance_id(by_name[n]), revision, template) for n in decided.update
    )
    return InstanceSetPlan(
        revision,
        tuple(enumerate(decided.create)),
        update,
        tuple((n, by_name[n]["metadata"].get("uid")) for n in doomed),
        tuple(doomed),
        MappingProxyType({}),
        too_large,
        mark=tuple(decided.mark),
    )
