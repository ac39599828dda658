"""Strategic merge patch of pod templates, as `kubectl patch --type strategic` applies it.

Maps merge recursively (a null deletes a key); lists whose Kubernetes type declares a patch
merge key merge element by element on that key; other lists are replaced. The directive
`$patch: replace` replaces a map or list, `$patch: delete` removes a keyed list element.

No maintained Python library implements this, so the merge keys below are taken from the
Kubernetes API (`x-kubernetes-patch-merge-key`); a unit test checks them against the pinned
release's OpenAPI document.
"""

from __future__ import annotations

import copy
from typing import Any

# Field name -> merge key, for the list fields of a PodTemplateSpec that merge by key.
# Field names are unique enough within a pod template for this to be unambiguous.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "evictionResponders": "name",  # Kubernetes 1.37
}

DIRECTIVE = "$patch"


def merge(original: Any, patch: Any, field: str | None = None) -> Any:
    """The result of applying `patch` to `original`; neither argument is modified."""
    if isinstance(patch, dict):
        if patch.get(DIRECTIVE) == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != DIRECTIVE}
        if not isinstance(original, dict):
            original = {}
        result = copy.deepcopy(original)
        for key, value in patch.items():
            if key == DIRECTIVE:
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = merge(result.get(key), value, key)
        return result
    if isinstance(patch, list):
        key = MERGE_KEYS.get(field or "")
        if key is None or not isinstance(original, list):
            return [_strip(item) for item in patch if not _is(item, "delete")]
        return _merge_keyed(original, patch, key)
    return copy.deepcopy(patch)


def _merge_keyed(original: list, patch: list, key: str) -> list:
    if any(_is(item, "replace") for item in patch):
        return [_strip(item) for item in patch if not _is(item, "replace")]
    result = copy.deepcopy(original)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next(
            (i for i, have in enumerate(result) if isinstance(have, dict) and have.get(key) == item[key]), None
        )
        if _is(item, "delete"):
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip(item))
        else:
            result[index] = merge(result[index], item)
    return result


def _is(item: Any, directive: str) -> bool:
    return isinstance(item, dict) and item.get(DIRECTIVE) == directive


def _strip(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: _strip(v) for k, v in item.items() if k != DIRECTIVE}
    if isinstance(item, list):
        return [_strip(v) for v in item]
    return copy.deepcopy(item)
