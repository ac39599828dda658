"""Groups as the operator reads them. Most tests write a group in v1alpha1, as users of the
reference's first API do; it reaches the operator converted at the edge, in v1alpha2."""

from __future__ import annotations

from rbg_operator.api.conversion import V1, V2, convert
from rbg_operator.api.v1alpha2 import RoleBasedGroupV2


def hub(body: dict) -> RoleBasedGroupV2:
    """`body` (v1alpha1 unless it says otherwise) as the stored v1alpha2 group the operator acts on."""
    body = {"apiVersion": V1, "kind": "RoleBasedGroup", **body}
    return RoleBasedGroupV2.read(convert(body, V2))
