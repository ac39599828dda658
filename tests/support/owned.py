"""Objects and owner references for the pure tests of who controls what."""

from __future__ import annotations

from rbg_operator import kinds


def owner(kind: str, name: str, uid: str) -> dict:
    return {"apiVersion": kinds.API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": "ns", "uid": uid}}


def child(name: str, *refs: dict, kind: str = "Service", labels: dict | None = None, **rest) -> dict:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "5",
            "labels": labels or {},
            "ownerReferences": list(refs),
        },
        **rest,
    }


def ref(kind: str, name: str, uid: str, controller: bool = True) -> dict:
    return {"apiVersion": kinds.API_VERSION, "kind": kind, "name": name, "uid": uid, "controller": controller}
