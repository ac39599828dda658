"""Engine runtimes: what the ClusterEngineRuntimeProfiles a role names add to its pods.

Pure: the profiles come in as the operator's cache holds them (BuildOptions.engine_profiles).
As in the reference, `injectContainers` and the profile's `updateStrategy` are not read: a
profile change reaches the pods of every role that names it, as a rolling update of the role.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from .. import kinds
from ..api.v1alpha2 import RoleV2

API_VERSION, KIND = kinds.ENGINE_RUNTIME_PROFILE
APPENDED = ("initContainers", "containers", "volumes")


def missing_profiles(roles: list[RoleV2], profiles: Mapping[str, dict]) -> list[str]:
    """The profiles roles name that do not exist, each naming the field."""
    return [
        f"spec.roles[{i}].engineRuntimes[{j}].profileName: ClusterEngineRuntimeProfile "
        f"{runtime.profile_name!r} not found"
        for i, role in enumerate(roles)
        for j, runtime in enumerate(role.engine_runtimes or [])
        if runtime.profile_name not in profiles
    ]


def inject_engine_runtimes(template: dict, role: RoleV2, profiles: Mapping[str, dict]) -> dict:
    """Append each named profile's init containers, containers and volumes (an entry whose name
    the pod already has is skipped), then the role's overrides: the env and args of an entry of
    `containers` are appended to the profile container of that name."""
    template = copy.deepcopy(template)
    spec = template.setdefault("spec", {})
    for runtime in role.engine_runtimes or []:
        profile = (profiles.get(runtime.profile_name) or {}).get("spec") or {}
        for field in APPENDED:
            present = {entry.get("name") for entry in spec.get(field) or []}
            added = [copy.deepcopy(e) for e in profile.get(field) or [] if e.get("name") not in present]
            if added:
                spec[field] = [*(spec.get(field) or []), *added]
        sidecars = {c.get("name") for field in ("initContainers", "containers") for c in profile.get(field) or []}
        for override in runtime.containers or []:
            if override.get("name") not in sidecars:
                continue  # only the profile's own containers take overrides
            for container in (*(spec.get("initContainers") or []), *(spec.get("containers") or [])):
                if container.get("name") == override["name"]:
                    for field in ("env", "args"):
                        if override.get(field):
                            container[field] = [*(container.get(field) or []), *copy.deepcopy(override[field])]
    return template
