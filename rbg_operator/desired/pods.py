"""The pod template of a role: its labels and annotations, engine runtimes, discovery and gang
membership. Every workload kind builds its pods from it (workloads.py, instanceset.py)."""

from __future__ import annotations

from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .discovery import inject
from .engineruntime import inject_engine_runtimes
from .exclusive import with_exclusive_topology
from .gang import join_gang
from .meta import pod_labels, role_annotations
from .options import BuildOptions
from .templates import resolved_template


def pod_template(
    group: RoleBasedGroupV2,
    role: RoleV2,
    options: BuildOptions,
    base: dict | None = None,
    v2_keys: bool = True,
    engine_runtimes: bool = True,
) -> dict:
    """A pod template with the role's labels and annotations, engine runtimes, exclusive topology,
    discovery and gang membership."""
    template = resolved_template(group, role) if base is None else base
    if engine_runtimes and role.engine_runtimes:
        template = inject_engine_runtimes(template, role, options.engine_profiles)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), **pod_labels(group, role, v2_keys)}
    annotations = role_annotations(role)
    if annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **annotations}
    template = with_exclusive_topology(template, group.namespace, group.name, group.annotations)
    return join_gang(inject(template, group, role), group, role.name, options)
