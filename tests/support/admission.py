"""Admission reviews as the API server sends them: the webhook is registered for v1alpha2, the
stored version, so a write made in v1alpha1 reaches it converted, with requestKind v1alpha1."""

from __future__ import annotations

import contextlib

from rbg_operator import webhook
from rbg_operator.api import conversion


@contextlib.contextmanager
def written_in(version: str):
    """A review of a write made in `version` (its requestKind)."""
    token = webhook.REQUESTED_VERSION.set(version)
    try:
        yield
    finally:
        webhook.REQUESTED_VERSION.reset(token)


def v1alpha1_write(kind: str, spec: dict, annotations: dict | None = None) -> dict:
    """The object the webhook is handed for a v1alpha1 write: converted to v1alpha2."""
    return conversion.convert(
        {"apiVersion": conversion.V1, "kind": kind, "metadata": {"annotations": annotations or {}}, "spec": spec},
        conversion.V2,
    )


def validate_v1alpha1_group(spec: dict, name: str, warnings: list[str], annotations: dict | None = None) -> None:
    stored = v1alpha1_write("RoleBasedGroup", spec, annotations)
    with written_in("v1alpha1"):
        webhook.validate_group(stored["spec"], name, warnings, annotations=stored["metadata"].get("annotations"))


def validate_v1alpha1_set(spec: dict, name: str, warnings: list[str], annotations: dict | None = None) -> None:
    stored = v1alpha1_write("RoleBasedGroupSet", spec, annotations)
    with written_in("v1alpha1"):
        webhook.validate_group_set(stored["spec"], name, warnings, annotations=stored["metadata"].get("annotations"))
