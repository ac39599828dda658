"""A role's pod template: its own, or a roleTemplates entry with the role's patch applied."""

from __future__ import annotations

import copy

from ..api.rolebasedgroup import Role, RoleBasedGroup
from .strategicmerge import merge


def resolved_template(group: RoleBasedGroup, role: Role) -> dict:
    if role.template_ref is None:
        return copy.deepcopy(role.template or {})
    base = next(t.template for t in group.spec.role_templates or [] if t.name == role.template_ref.name)
    return merge(base, role.template_patch or {})
