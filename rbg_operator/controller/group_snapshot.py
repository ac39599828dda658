"""Step 1 of a group's reconcile: one frozen snapshot of everything the pass decides from.

`observe` is the pass's only read of the store. Each object is decoded once, here, so every
decision of the pass is made from one version of each object, however many `await`s the writes
take afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pydantic

from .. import kinds, naming
from ..api.errors import describe
from ..api.v1alpha2 import RoleBasedGroupV2
from ..desired import engineruntime
from ..desired.gang import GANG_KINDS, NATIVE_COMPOSITE, pod_groups
from ..desired.options import BuildOptions
from ..desired.ports import RolePorts
from ..desired.workload_kinds import WORKLOAD_KINDS
from ..desired.workload_kinds import of as workload_kind
from . import policy as coordinated_policy
from .control import controlled_by
from .store import Store

RBG = (kinds.API_VERSION, "RoleBasedGroup")
ADAPTER = (kinds.API_VERSION, "RoleBasedGroupScalingAdapter")
CONFIG_MAP = ("v1", "ConfigMap")
POD = ("v1", "Pod")
REVISION = ("apps/v1", "ControllerRevision")
# Per-role children; the topology ConfigMap belongs to the group and goes with it.
ROLE_CHILD_KINDS = (("v1", "Service"), ADAPTER, *(k.key for k in WORKLOAD_KINDS.values()))
CHILD_KINDS = (CONFIG_MAP, *ROLE_CHILD_KINDS, *GANG_KINDS)

ChildKey = tuple[str, str, str]  # (apiVersion, kind, name)


@dataclasses.dataclass(frozen=True)
class GroupSnapshot:
    """What one pass knows. Nothing in it is written to: plan() builds new objects."""

    body: dict  # the group as stored (metadata, annotations, status)
    group: RoleBasedGroupV2 | None  # None when the stored spec cannot be read
    invalid: str | None = None  # why it cannot
    profiles: Mapping[str, dict] = dataclasses.field(default_factory=dict)  # engine runtime profiles named
    composite_pod_groups: bool = True  # the API server serves CompositePodGroup
    policy: dict | None = None  # the CoordinatedPolicy named like the group
    children: Mapping[ChildKey, dict] = dataclasses.field(default_factory=dict)
    labelled: frozenset[ChildKey] = frozenset()  # children that carry the group's label
    pods: tuple[dict, ...] = ()
    revisions: tuple[dict, ...] = ()  # ControllerRevisions carrying the group's label
    # The RoleScoped port allocations its RoleInstanceSets carry, with any missing ones chosen
    # for this pass (controller/ports.py); None with the port allocator off.
    ports: RolePorts | None = None

    @property
    def uid(self) -> str:
        return self.body["metadata"].get("uid", "")

    def child(self, api_version: str, kind: str, name: str) -> dict | None:
        """The object of that name as the store had it, whoever holds it."""
        return self.children.get((api_version, kind, name))

    def controlled(self, api_version: str, kind: str, name: str) -> dict | None:
        """The group's own child of that name; None for another's object as for none."""
        found = self.child(api_version, kind, name)
        return found if found is not None and controlled_by(found, self.uid) else None

    def workload(self, role) -> dict | None:
        return self.controlled(*workload_kind(role).key, naming.workload_name(self.group.name, role.name))

    def labelled_children(self, api_version: str, kind: str) -> list[dict]:
        return [obj for key, obj in self.children.items() if key[:2] == (api_version, kind) and key in self.labelled]

    def role_pods(self, role: str) -> list[dict]:
        return [p for p in self.pods if (p["metadata"].get("labels") or {}).get(naming.LABEL_ROLE) == role]


def child_keys(group: RoleBasedGroupV2, options: BuildOptions) -> set[ChildKey]:
    """The names the group's children take: an object of such a name that lacks the group's
    label (someone else's) must be seen before the name is written."""
    keys = {(*CONFIG_MAP, group.name)}
    keys |= {(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in pod_groups(group, None, options)}
    for role in group.spec.roles:
        keys.add(("v1", "Service", naming.service_name(group.name, role.name)))
        keys.add((*ADAPTER, naming.adapter_name(group.name, role.name)))
        keys.add((*workload_kind(role).key, naming.workload_name(group.name, role.name)))
    return keys


def observe(store: Store, namespace: str, name: str, options: BuildOptions) -> GroupSnapshot | None:
    """The snapshot of one group; None when there is nothing to do (gone, or being deleted)."""
    body = store.get(*RBG, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None  # owner references let garbage collection remove the children
    try:
        group = RoleBasedGroupV2.read(body)
    except pydantic.ValidationError as error:
        return GroupSnapshot(body, None, f"invalid RoleBasedGroup: {describe(error, prefix='')}")
    profiles = {
        r.profile_name: p
        for role in group.spec.roles
        for r in role.engine_runtimes or []
        if (p := store.get(engineruntime.API_VERSION, engineruntime.KIND, "", r.profile_name))
    }
    composite = store.serves(*NATIVE_COMPOSITE)
    policy = store.get(coordinated_policy.API_VERSION, coordinated_policy.KIND, namespace, name)
    children: dict[ChildKey, dict] = {}
    for api_version, kind in dict.fromkeys(CHILD_KINDS):
        for obj in store.owned_by_group(api_version, kind, namespace, name):
            children[(api_version, kind, obj["metadata"]["name"])] = obj
    labelled = frozenset(children)
    for key in child_keys(group, dataclasses.replace(options, composite_pod_groups=composite)):
        if key not in children:
            found = store.get(key[0], key[1], namespace, key[2])
            if found is not None:
                children[key] = found
    return GroupSnapshot(
        body,
        group,
        None,
        profiles,
        composite,
        policy,
        children,
        labelled,
        tuple(store.owned_by_group(*POD, namespace, name)),
        tuple(store.owned_by_group(*REVISION, namespace, name)),
    )
