"""The operator's view of the cluster, kept current by watch events (an informer cache).

Reconciles read observed state from here instead of issuing GETs; writes put the API
server's answer back here so the next reconcile compares against fresh data.
"""

from __future__ import annotations

from collections import defaultdict

from .. import naming

ObjectKey = tuple[str, str]  # (namespace, name)
KindKey = tuple[str, str]  # (apiVersion, kind)


def _rv(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class Store:
    """Objects by kind and (namespace, name), with an index of each kind's objects by the group
    label, so a reconcile reads its group's children without scanning every group's."""

    def __init__(self) -> None:
        self._objects: dict[KindKey, dict[ObjectKey, dict]] = defaultdict(dict)
        self._by_group: dict[KindKey, dict[tuple[str, str], dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))

    def upsert(self, obj: dict) -> None:
        """Keep the newest copy: a slow watch event must not overwrite a fresher write result."""
        kind = (obj["apiVersion"], obj["kind"])
        obj = _slim_pod(obj) if kind == ("v1", "Pod") else _slim_managed_fields(obj)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        current = self._objects[kind].get(key)
        if current is None or current["metadata"].get("uid") != obj["metadata"].get("uid") or _rv(obj) >= _rv(current):
            if current is not None:
                self._unindex(kind, key, current)
            self._objects[kind][key] = obj
            group = _group_of(obj)
            if group is not None:
                self._by_group[kind][(key[0], group)][key[1]] = obj

    def remove(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        objects = self._objects[(api_version, kind)]
        current = objects.get((namespace, name))
        if current is not None and (uid is None or current["metadata"].get("uid") == uid):
            del objects[(namespace, name)]
            self._unindex((api_version, kind), (namespace, name), current)

    def _unindex(self, kind: KindKey, key: ObjectKey, obj: dict) -> None:
        group = _group_of(obj)
        if group is None:
            return
        members = self._by_group[kind].get((key[0], group))
        if members is not None:
            members.pop(key[1], None)
            if not members:
                del self._by_group[kind][(key[0], group)]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        return self._objects[(api_version, kind)].get((namespace, name))

    def keys(self, api_version: str, kind: str) -> list[ObjectKey]:
        return list(self._objects[(api_version, kind)])

    def owned_by_label(self, api_version: str, kind: str, namespace: str, label: str, value: str) -> list[dict]:
        if label == naming.LABEL_GROUP_NAME:
            return self.owned_by_group(api_version, kind, namespace, value)
        return [obj for obj in self.in_namespace(api_version, kind, namespace)
                if (obj["metadata"].get("labels") or {}).get(label) == value]

    def owned_by_group(self, api_version: str, kind: str, namespace: str, group: str) -> list[dict]:
        return list(self._by_group[(api_version, kind)].get((namespace, group), {}).values())

    def in_role(self, api_version: str, kind: str, namespace: str, group: str, role: str) -> list[dict]:
        return [obj for obj in self.owned_by_group(api_version, kind, namespace, group)
                if obj["metadata"]["labels"].get(naming.LABEL_ROLE) == role]

    def in_namespace(self, api_version: str, kind: str, namespace: str) -> list[dict]:
        return [obj for (ns, _), obj in self._objects[(api_version, kind)].items() if ns == namespace]


POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences", "creationTimestamp",
                "deletionTimestamp")


def _slim_pod(pod: dict) -> dict:
    """The parts of a pod that reconciles read (placement, readiness, restarts, ownership): pods
    are most of what the store holds, and their specs and managed fields are most of a pod."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    slim_status = {key: status[key] for key in ("phase", "conditions") if key in status}
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in status:
            slim_status[key] = [{"name": c.get("name"), "restartCount": c.get("restartCount", 0),
                                 "ready": c.get("ready", False)} for c in status[key]]
    return {"apiVersion": pod["apiVersion"], "kind": pod["kind"],
            "metadata": {key: meta[key] for key in POD_METADATA if key in meta},
            "spec": {"nodeName": spec["nodeName"]} if spec.get("nodeName") else {},
            "status": slim_status}


# The spec fields whose other owners a reconcile must know (it yields them): everything else of
# metadata.managedFields, often as large as the object itself, is dropped from the store.
OWNERSHIP_KEPT = ("f:replicas",)


def _slim_managed_fields(obj: dict) -> dict:
    entries = obj["metadata"].get("managedFields")
    if not entries:
        return obj
    kept = []
    for entry in entries:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        owned = {field: {} for field in OWNERSHIP_KEPT if field in spec}
        if owned:
            kept.append({"manager": entry.get("manager"), "operation": entry.get("operation"),
                         "fieldsV1": {"f:spec": owned}})
    return {**obj, "metadata": {**obj["metadata"], "managedFields": kept}}


def _group_of(obj: dict) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(naming.LABEL_GROUP_NAME)
