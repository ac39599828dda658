"""The operator's view of the cluster, kept current by watch events (an informer cache).

Reconciles read observed state from here instead of issuing GETs; writes put the API
server's answer back here so the next reconcile compares against fresh data.
"""

from __future__ import annotations

import contextvars
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Collection, Hashable
from typing import NamedTuple

import orjson

from .. import kinds, naming
from ..desired import inplace_scheduling

ObjectKey = tuple[str, str]  # (namespace, name)
KindKey = tuple[str, str]  # (apiVersion, kind)

# The reconcile (its work-queue key) on whose behalf the current task writes. It is kept with the
# answer it stores, so that the watch echo of that write wakes the other controllers that read the
# object, but not the one that wrote it and has already acted on it.
writer: contextvars.ContextVar[Hashable | None] = contextvars.ContextVar("writer", default=None)


class Seen(NamedTuple):
    news: bool  # a version the store did not have
    written_by: Hashable | None = None  # for the version it had: the reconcile that wrote it, if any
    # For the version it had: the other reconciles its writer woke when the write was answered
    # (Store.on_write), which its watch echo need not wake again.
    told: frozenset = frozenset()


# Stored as the writer of a write result that carries someone else's change (a generation the
# writer had not read): its watch echo is news to every reader, the writer included.
UNREAD = object()
# UIDs of objects seen deleted, so that a write answer that arrives later cannot bring one back.
TOMBSTONES = 4096
# A tombstone's resourceVersion when the object is known gone for good (a 404 on delete).
FOR_GOOD = float("inf")


def resource_version(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class _Entry(NamedTuple):
    """One cached object: what lookups and freshness checks need, and the object as compact JSON.

    A decoded Kubernetes object takes five to six times its JSON size in Python dicts, and the
    cache is most of the operator's memory; reads decode their group's few objects (tens of
    microseconds each) and get a private copy, so no caller can change the cache by accident.
    """

    uid: str | None
    rv: int
    group: str | None
    role: str | None
    json: bytes
    written_by: Hashable | None
    warmup: str | None = None  # a warmup pod's warmup name (pods only)
    told: frozenset = frozenset()  # the reconciles woken by the write's answer (Seen.told)

    def decode(self) -> dict:
        return orjson.loads(self.json)


def _compact(obj: dict) -> bytes:
    """The object as compact JSON, in bytes of exactly its length. orjson's own answer keeps the
    buffer it wrote into (4 KB or more for an 800-byte pod), which would make the cache three to
    five times its size; the copy costs a microsecond."""
    return bytes(memoryview(orjson.dumps(obj)))


class Store:
    """Objects by kind and (namespace, name), with an index of each kind's objects by the group
    label, so a reconcile reads its group's children without scanning every group's."""

    def __init__(self) -> None:
        self._objects: dict[KindKey, dict[ObjectKey, _Entry]] = defaultdict(dict)
        self._by_group: dict[KindKey, dict[tuple[str, str], dict[str, _Entry]]] = defaultdict(lambda: defaultdict(dict))
        # Warmup pods by their warmup's name: a warmup pass reads its pods without decoding every
        # pod of the namespace (they carry no group label, so the group index does not hold them).
        self._by_warmup: dict[tuple[str, str], dict[str, _Entry]] = defaultdict(dict)
        # uid -> the resourceVersion at which it was seen gone. A label-selector watch also says
        # DELETED when an object only stops matching; it may match again later, and only a newer
        # version of it than the tombstone's proves that it exists.
        self._deleted: OrderedDict[str, float] = OrderedDict()
        self._unserved: set[KindKey] = set()  # kinds whose last list the API server answered 404
        self.json_bytes = 0  # of every cached object: how much of the operator's memory the cache is
        # Called with a reconcile's write answer that is news, and that reconcile's key; wakes at
        # once what the write's watch echo would wake later, and returns those keys. The
        # controller-runtime "expectations": what the operator did itself, it acts on without
        # waiting for the watch to show it.
        self.on_write: Callable[[dict, Hashable], frozenset] | None = None

    def mark_served(self, api_version: str, kind: str, served: bool) -> None:
        """What the reflector of a kind last learnt: whether the API server serves it (a CRD not
        installed, a feature gate off)."""
        (self._unserved.discard if served else self._unserved.add)((api_version, kind))

    def serves(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) not in self._unserved

    def upsert(self, obj: dict, *, read_generation: int | None = None) -> Seen:
        """Keep the newest copy: a slow watch event must not overwrite a fresher write result,
        and nothing brings back an object already seen deleted.

        Says whether this was news. The watch echo of a write, whose answer is stored already,
        is not: it names the writer instead, which need not be woken by its own write. A writer
        that passes the generation it read, and gets back another one (someone changed the spec
        meanwhile), is woken by the echo like every other reader."""
        kind = (obj["apiVersion"], obj["kind"])
        buried_at = self._deleted.get(obj["metadata"].get("uid"))
        if buried_at is not None:
            if resource_version(obj) <= buried_at:
                return Seen(False)  # a write answer or event from before it was seen gone
            del self._deleted[obj["metadata"]["uid"]]  # it left the selector and came back
        slim = SLIMMERS.get(kind, _slim_managed_fields)(obj)
        if slim is None:
            return Seen(False)
        meta = slim["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        current = self._objects[kind].get(key)
        uid, rv = meta.get("uid"), resource_version(slim)
        if current is not None and current.uid == uid and rv and rv <= current.rv:
            if rv < current.rv:
                return Seen(False)
            return Seen(True) if current.written_by is UNREAD else Seen(False, current.written_by, current.told)
        labels = meta.get("labels") or {}
        written_by = writer.get()
        if written_by is not None and read_generation is not None and meta.get("generation") != read_generation:
            written_by = UNREAD
        entry = _Entry(
            uid,
            rv,
            labels.get(naming.LABEL_GROUP_NAME),
            labels.get(naming.LABEL_ROLE),
            _compact(slim),
            written_by,
            labels.get(naming.LABEL_WARMUP_NAME) if kind == kinds.POD else None,
        )
        if current is not None:
            self._unindex(kind, key, current)
            self.json_bytes -= len(current.json)
        self._objects[kind][key] = entry
        self.json_bytes += len(entry.json)
        if entry.group is not None:
            self._by_group[kind][(key[0], entry.group)][key[1]] = entry
        if entry.warmup is not None:
            self._by_warmup[(key[0], entry.warmup)][key[1]] = entry
        if written_by is not None and self.on_write is not None:
            told = self.on_write(obj, writer.get())
            if told:
                self._retell(kind, key, entry._replace(told=told))
        return Seen(True)

    def _retell(self, kind: KindKey, key: ObjectKey, entry: _Entry) -> None:
        """Replace an entry by the same version with other bookkeeping (its writer, whom it told)."""
        self._objects[kind][key] = entry
        if entry.group is not None:
            self._by_group[kind][(key[0], entry.group)][key[1]] = entry
        if entry.warmup is not None:
            self._by_warmup[(key[0], entry.warmup)][key[1]] = entry

    def remove(
        self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None, seen_at: float = FOR_GOOD
    ) -> None:
        """Forget an object seen deleted (by a watch, a relist, or a 404): a later write answer
        or stale event with its UID is ignored, unless it is newer than `seen_at`, the
        resourceVersion at which it was seen gone (a watch event's own, a relist's)."""
        if uid:
            self._bury(uid, seen_at)
        current = self.forget(api_version, kind, namespace, name, uid)
        if current is not None and current.uid:
            self._bury(current.uid, seen_at)

    def forget(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> _Entry | None:
        """Drop the cached copy without a tombstone (an object that cannot be cached as it is now)."""
        objects = self._objects[(api_version, kind)]
        current = objects.get((namespace, name))
        if current is not None and (uid is None or current.uid == uid):
            del objects[(namespace, name)]
            self._unindex((api_version, kind), (namespace, name), current)
            self.json_bytes -= len(current.json)
            return current
        return None

    def _bury(self, uid: str, seen_at: float) -> None:
        self._deleted[uid] = max(seen_at, self._deleted.get(uid, 0))
        self._deleted.move_to_end(uid)
        if len(self._deleted) > TOMBSTONES:
            self._deleted.popitem(last=False)

    def mark_read(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """The reconcile of this object is about to read it: a change its last write brought
        back unread (changed_under_writer) is read now, and needs no further pass."""
        key = (namespace, name)
        entry = self._objects[(api_version, kind)].get(key)
        if entry is None or entry.written_by is not UNREAD:
            return
        self._retell((api_version, kind), key, entry._replace(written_by=writer.get()))

    def changed_under_writer(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """The stored version is a write answer that carried a generation its writer had not read."""
        entry = self._objects[(api_version, kind)].get((namespace, name))
        return entry is not None and entry.written_by is UNREAD

    def version_of(self, api_version: str, kind: str, namespace: str, name: str) -> int | None:
        entry = self._objects[(api_version, kind)].get((namespace, name))
        return entry.rv if entry is not None else None

    def uid_of(self, api_version: str, kind: str, namespace: str, name: str) -> str | None:
        entry = self._objects[(api_version, kind)].get((namespace, name))
        return entry.uid if entry is not None else None

    def _unindex(self, kind: KindKey, key: ObjectKey, entry: _Entry) -> None:
        if entry.warmup is not None:
            pods = self._by_warmup.get((key[0], entry.warmup))
            if pods is not None:
                pods.pop(key[1], None)
                if not pods:
                    del self._by_warmup[(key[0], entry.warmup)]
        if entry.group is None:
            return
        members = self._by_group[kind].get((key[0], entry.group))
        if members is not None:
            members.pop(key[1], None)
            if not members:
                del self._by_group[kind][(key[0], entry.group)]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        entry = self._objects[(api_version, kind)].get((namespace, name))
        return entry.decode() if entry is not None else None

    def keys(self, api_version: str, kind: str, namespace: str | None = None) -> list[ObjectKey]:
        """Every stored (namespace, name) of a kind, or of one namespace of it."""
        return [key for key in self._objects[(api_version, kind)] if namespace is None or key[0] == namespace]

    def owned_by_label(self, api_version: str, kind: str, namespace: str, label: str, value: str) -> list[dict]:
        if label == naming.LABEL_GROUP_NAME:
            return self.owned_by_group(api_version, kind, namespace, value)
        return [
            obj
            for obj in self.in_namespace(api_version, kind, namespace)
            if (obj["metadata"].get("labels") or {}).get(label) == value
        ]

    def warmup_pods(self, namespace: str, warmup: str) -> list[dict]:
        """Pods labelled with the warmup's name (whoever controls them: the caller checks)."""
        return [e.decode() for e in self._by_warmup.get((namespace, warmup), {}).values()]

    def owned_by_group(self, api_version: str, kind: str, namespace: str, group: str) -> list[dict]:
        return [e.decode() for e in self._by_group[(api_version, kind)].get((namespace, group), {}).values()]

    def in_role(self, api_version: str, kind: str, namespace: str, group: str, role: str) -> list[dict]:
        return [
            e.decode()
            for e in self._by_group[(api_version, kind)].get((namespace, group), {}).values()
            if e.role == role
        ]

    def in_namespace(self, api_version: str, kind: str, namespace: str) -> list[dict]:
        return [e.decode() for (ns, _), e in self._objects[(api_version, kind)].items() if ns == namespace]


POD_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "labels",
    "ownerReferences",
    "creationTimestamp",
    "deletionTimestamp",
)


POD_ANNOTATIONS_READ = frozenset(
    {naming.ANNOTATION_RESTART_TRIGGER, inplace_scheduling.ANNOTATION_INJECTED, naming.ANNOTATION_DRAIN_STATE}
)


def _slim_pod(pod: dict) -> dict:
    """The parts of a pod that reconciles read (placement, readiness, restarts, ownership): pods
    are most of what the store holds, and their specs and managed fields are most of a pod."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    # podIP: a drained pod is found in the router, and its load read, by its address.
    slim_status = {key: status[key] for key in ("phase", "conditions", "startTime", "podIP") if key in status}
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in status:
            slim_status[key] = [
                {"name": c.get("name"), "restartCount": c.get("restartCount", 0), "ready": c.get("ready", False)}
                for c in status[key]
            ]
    slim_meta = {key: meta[key] for key in POD_METADATA if key in meta}
    # Of the annotations, only those a reconcile reads (the whole map can be large).
    read = {k: v for k, v in (meta.get("annotations") or {}).items() if k in POD_ANNOTATIONS_READ}
    if read:
        slim_meta["annotations"] = read
    return {
        "apiVersion": pod["apiVersion"],
        "kind": pod["kind"],
        "metadata": slim_meta,
        # Placement, and the readiness gates, hostname and subdomain (fixed at creation: an update in
        # place keeps them, and another subdomain means a new pod; a router may name a pod by them).
        "spec": {key: spec[key] for key in ("nodeName", "readinessGates", "hostname", "subdomain") if spec.get(key)}
        # Images: an in-place update waits only for the containers whose image it changes.
        | {"containers": [{"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or []]},
        "status": slim_status,
    }


# The spec fields whose other owners a reconcile must know (it yields them): everything else of
# metadata.managedFields, often as large as the object itself, is dropped from the store.
OWNERSHIP_KEPT = ("f:replicas",)


def owners(obj: dict, path: tuple[str, ...]) -> list[str]:
    """The field managers that own the field at `path` of managedFields' fieldsV1 (e.g.
    ("f:spec", "f:replicas")), in managedFields order. The store keeps only the entries this asks about."""
    found = []
    for entry in obj["metadata"].get("managedFields") or []:
        node = entry.get("fieldsV1") or {}
        for step in path:
            node = node.get(step) if isinstance(node, dict) else None
        if node is not None:
            found.append(entry.get("manager"))
    return found


def other_owner(obj: dict, path: tuple[str, ...], ours: Collection[str]) -> str | None:
    """A field manager not in `ours` that owns the field at `path`, if any."""
    return next((manager for manager in owners(obj, path) if manager not in ours), None)


def _slim_managed_fields(obj: dict) -> dict:
    entries = obj["metadata"].get("managedFields")
    if not entries:
        return obj
    kept = []
    for entry in entries:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        owned: dict = {field: {} for field in OWNERSHIP_KEPT if field in spec}
        # A group's roles are a map by name: who owns each role's replicas (a set re-applying
        # its member yields them to the scaling adapter or a user).
        roles = {
            key: {"f:replicas": {}}
            for key, fields in (spec.get("f:roles") or {}).items()
            if key.startswith("k:") and "f:replicas" in fields
        }
        if roles:
            owned["f:roles"] = roles
        if owned:
            kept.append(
                {"manager": entry.get("manager"), "operation": entry.get("operation"), "fieldsV1": {"f:spec": owned}}
            )
    return {**obj, "metadata": {**obj["metadata"], "managedFields": kept}}


def _slim_revision(revision: dict) -> dict | None:
    """A group's revision history is read for names, numbers and owners only (undo reads the data
    itself); the StatefulSets' own revisions carry the group label too but are not ours to keep."""
    meta = revision["metadata"]
    if not any(o.get("controller") and o.get("kind") == "RoleBasedGroup" for o in meta.get("ownerReferences") or []):
        return None
    return {
        "apiVersion": revision["apiVersion"],
        "kind": revision["kind"],
        "revision": revision.get("revision", 0),
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences")
            if key in meta
        },
    }


# The kinds that make objects of the child kinds: a child controlled by none of them is not ours.
OWNER_KINDS = frozenset({"RoleBasedGroup", "RoleBasedGroupSet", "RoleInstanceSet", "RoleInstance"})
FOREIGN_LABELS = (naming.LABEL_GROUP_NAME, naming.LABEL_ROLE)  # what indexes it and whom it wakes


def _slim_child(obj: dict) -> dict:
    """A child kind's object (the watches select them by a label anyone may set) is kept whole
    only when one of our kinds controls it; a ConfigMap, whose data may be up to 1 MiB, only when
    it is its group's topology, named like the group. Anything else keeps the little that tells
    whose it is: a forged label costs a few hundred bytes, never the object's size."""
    meta = obj["metadata"]
    controller = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    ours = (
        controller is not None
        and controller.get("kind") in OWNER_KINDS
        and str(controller.get("apiVersion", "")).startswith(kinds.GROUP + "/")
        and (obj["kind"] != "ConfigMap" or controller.get("name") == meta.get("name"))
    )
    if ours:
        return _slim_managed_fields(obj)
    labels = meta.get("labels") or {}
    kept = {
        key: meta[key]
        for key in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
        )
        if key in meta
    }
    kept["labels"] = {key: labels[key] for key in FOREIGN_LABELS if key in labels}
    kept["ownerReferences"] = (
        [{key: controller.get(key) for key in ("apiVersion", "kind", "name", "uid", "controller")}]
        if controller is not None
        else []
    )
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": kept}


def _slim_node(node: dict) -> dict:
    """What warmups read of a node: its name, labels (nodeSelector, hostname) and whether it takes
    pods. Node status (images, conditions, addresses) is most of a node and changes often."""
    meta = node["metadata"]
    slim_meta = {key: meta[key] for key in ("name", "uid", "resourceVersion", "labels") if key in meta}
    unschedulable = (node.get("spec") or {}).get("unschedulable")
    return {
        "apiVersion": node["apiVersion"],
        "kind": node["kind"],
        "metadata": slim_meta,
        "spec": {"unschedulable": True} if unschedulable else {},
    }


CHILD_KINDS = kinds.GROUP_CHILDREN
SLIMMERS = {
    kinds.POD: _slim_pod,
    kinds.NODE: _slim_node,
    kinds.CONTROLLER_REVISION: _slim_revision,
    **{kind: _slim_child for kind in CHILD_KINDS},
}
