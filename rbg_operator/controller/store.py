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
    def __init__(self) -> None:
        self._objects: dict[KindKey, dict[ObjectKey, dict]] = defaultdict(dict)

    def upsert(self, obj: dict) -> None:
        """Keep the newest copy: a slow watch event must not overwrite a fresher write result."""
        kind = (obj["apiVersion"], obj["kind"])
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        current = self._objects[kind].get(key)
        if current is None or current["metadata"].get("uid") != obj["metadata"].get("uid") or _rv(obj) >= _rv(current):
            self._objects[kind][key] = obj

    def remove(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        objects = self._objects[(api_version, kind)]
        current = objects.get((namespace, name))
        if current is not None and (uid is None or current["metadata"].get("uid") == uid):
            del objects[(namespace, name)]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        return self._objects[(api_version, kind)].get((namespace, name))

    def keys(self, api_version: str, kind: str) -> list[ObjectKey]:
        return list(self._objects[(api_version, kind)])

    def owned_by_label(self, api_version: str, kind: str, namespace: str, label: str, value: str) -> list[dict]:
        return [
            obj
            for (ns, _), obj in self._objects[(api_version, kind)].items()
            if ns == namespace and (obj["metadata"].get("labels") or {}).get(label) == value
        ]

    def owned_by_group(self, api_version: str, kind: str, namespace: str, group: str) -> list[dict]:
        return self.owned_by_label(api_version, kind, namespace, naming.LABEL_GROUP_NAME, group)

    def in_namespace(self, api_version: str, kind: str, namespace: str) -> list[dict]:
        return [obj for (ns, _), obj in self._objects[(api_version, kind)].items() if ns == namespace]
