"""The port allocator's state: which ports are in use, and the ports chosen for writes still in
flight (the decisions themselves are pure, in desired/ports.py; docs/port-allocation.md).

The used set is read from the cache every time ports are chosen: every port a RoleInstanceSet
or RoleInstance carries in its annotations, across every namespace the operator watches, plus
the ports reserved for writes not yet answered. Nothing else is remembered, so a restarted
operator (or a new leader, whose cache is synced before it reconciles) knows exactly what its
predecessor allocated, and a port is free again once the object that carried it is gone.

Two reconciles never choose the same port: reading the used set, choosing and reserving happen
with no `await` in between, so in the operator's one event loop nothing else can choose in the
middle (the same guarantee as one asyncio lock held across the choice, with nothing to hold
across the write). A reservation is released once the write that carries its ports has been
answered, and the answer is in the cache, or has failed. Only the leader reconciles, so only one
process chooses at a time.
"""

from __future__ import annotations

import dataclasses
import random

from .. import kinds, naming
from ..desired import ports
from ..desired.engineruntime import missing_profiles
from ..desired.instanceset import instance_components
from ..desired.options import BuildOptions, PortSettings
from ..desired.workload_kinds import of as workload_kind
from .group_snapshot import GroupSnapshot
from .instanceset_plan import InstanceSetPlan, InstanceSetSnapshot
from .roleinstance_plan import pod_name
from .store import Store

RETRY_SECONDS = 30.0  # when the range is exhausted: ports free up only as objects go
CARRIERS = (kinds.ROLE_INSTANCE_SET, kinds.ROLE_INSTANCE)


class Reservation:
    """Ports chosen for one pass's writes; used until released."""

    def __init__(self, allocator: PortAllocator | None = None, chosen: list[int] | None = None):
        self.allocator, self.ports = allocator, list(chosen or [])

    def release(self) -> None:
        if self.allocator is not None:
            self.allocator.reserved.difference_update(self.ports)
            self.allocator = None


class PortAllocator:
    def __init__(self, store: Store, settings: PortSettings, rng: random.Random | None = None):
        self.store, self.settings = store, settings
        self.rng = rng or random.Random()
        self.reserved: set[int] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def observe_used(self) -> set[int]:
        """Every port the cache shows carried, and every port reserved."""
        used = set(self.reserved)
        for kind in CARRIERS:
            for namespace, name in self.store.keys(*kind):
                obj = self.store.get(*kind, namespace, name)
                if obj is not None:
                    used |= ports.ports_in(obj["metadata"].get("annotations"))
        return used

    def reserve(self, count: int) -> Reservation:
        """`count` free ports, reserved; PortsExhausted when the range has fewer. No await here:
        see the module's docstring."""
        if count <= 0:
            return Reservation()
        chosen = ports.choose(count, self.observe_used(), self.settings, self.rng)
        self.reserved.update(chosen)
        return Reservation(self, chosen)

    # -- a group's pass: RoleScoped, on the RoleInstanceSets --------------------------------

    def for_group(self, snapshot: GroupSnapshot, build: BuildOptions) -> tuple[ports.RolePorts | None, Reservation]:
        """The ROLE_PORTS annotation of each RoleInstanceSet role of the group: what its set
        carries, and a new port for each RoleScoped allocation it lacks. None when the allocator
        is off or the group cannot be built (its pass reports why)."""
        group = snapshot.group
        if not self.enabled or group is None or missing_profiles(group.spec.roles, snapshot.profiles):
            return None, Reservation()
        build = dataclasses.replace(
            build, engine_profiles=dict(snapshot.profiles), composite_pod_groups=snapshot.composite_pod_groups
        )
        roles, carried = {}, {}
        for role in group.spec.roles:
            strategy = workload_kind(role)
            if strategy.key != kinds.ROLE_INSTANCE_SET:
                continue
            roles[role.name] = instance_components(group, role, build)
            found = snapshot.controlled(*strategy.key, naming.workload_name(group.name, role.name))
            carried[role.name] = ((found or {}).get("metadata", {}).get("annotations") or {}).get(ports.ROLE_PORTS)
        needs = ports.role_needs(roles, carried)
        exhausted = None
        try:
            reservation = self.reserve(len(needs.missing))
        except ports.PortsExhausted as error:
            reservation, exhausted = Reservation(), str(error)
        chosen = dict(zip(needs.missing, reservation.ports, strict=False))  # none when exhausted
        annotations, problems = ports.role_annotations(needs, chosen)
        return ports.RolePorts(annotations, needs.problems + tuple(problems), exhausted), reservation

    # -- a RoleInstanceSet's pass: PodScoped, on the RoleInstances ---------------------------

    def for_instances(
        self, snapshot: InstanceSetSnapshot, planned: InstanceSetPlan
    ) -> tuple[InstanceSetPlan, Reservation, str | None]:
        """The plan with POD_PORTS on every instance it writes: what the stored instance carries,
        and a new port for each PodScoped allocation of each of its pods that it lacks. When the
        range has too few, the instances that lack one are not written (their pods would start
        without their variables), and why is returned."""
        if not self.enabled:
            return planned, Reservation(), None
        carried = {
            i["metadata"]["name"]: (i["metadata"].get("annotations") or {}).get(ports.POD_PORTS)
            for i in snapshot.instances
        }
        wants = [want for _, want in planned.create] + list(planned.update)
        needs = {
            w["metadata"]["name"]: ports.pod_needs(w, pods_by_component(w), carried.get(w["metadata"]["name"]))
            for w in wants
        }
        exhausted = None
        try:
            reservation = self.reserve(sum(len(n.missing) for n in needs.values()))
        except ports.PortsExhausted as error:
            reservation, exhausted = Reservation(), str(error)
        chosen = iter(reservation.ports)

        def filled(want: dict) -> dict | None:
            need = needs[want["metadata"]["name"]]
            if need.missing and exhausted is not None:
                return None
            return ports.with_pod_ports(want, {**need.kept, **{key: next(chosen) for key in need.missing}})

        create = tuple((o, w) for o, want in planned.create if (w := filled(want)) is not None)
        update = tuple(w for want in planned.update if (w := filled(want)) is not None)
        return dataclasses.replace(planned, create=create, update=update), reservation, exhausted


def pods_by_component(instance: dict) -> dict[str, list[str]]:
    """The names of the pods each component of the instance has."""
    meta = instance["metadata"]
    role_type = (meta.get("labels") or {}).get(naming.LABEL_V2_ROLE_TYPE)
    return {
        c["name"]: [pod_name(meta["name"], role_type, c["name"], i) for i in range(c.get("size", 1))]
        for c in (instance.get("spec") or {}).get("components") or []
    }
