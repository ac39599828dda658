"""A role's pod template: its own, or a roleTemplates entry with the role's patch applied."""

from __future__ import annotations

import copy

from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .strategicmerge import merge


def resolved_template(group: RoleBasedGroupV2, role: RoleV2) -> dict:
    source = role.template_source
    if source is None or source.template_ref is None:
        return copy.deepcopy((source.template if source is not None else None) or {})
    base = next(t.template for t in group.spec.role_templates or [] if t.name == source.template_ref.name)
    return merge(base, source.template_ref.patch or {})
