"""The migration's decisions: which CRDs need a rewrite, what storedVersions becomes, which objects
must never be written back."""

from __future__ import annotations

import pytest

from rbg_operator import storage_migration
from rbg_operator.api import crdgen
from rbg_operator.api.conversion import FAILED_KEY
from rbg_operator.storage_migration import MigrationError, Plan, plan, prune_patch, unwritable


def crd(storage: str, stored: list[str], name: str = "rolebasedgroups.workloads.x-k8s.io") -> dict:
    return {
        "metadata": {"name": name},
        "spec": {"versions": [{"name": v, "storage": v == storage} for v in ("v1alpha1", "v1alpha2")]},
        "status": {"storedVersions": stored},
    }


def test_a_crd_that_stored_v1alpha1_needs_the_rewrite_and_is_pruned_to_v1alpha2():
    decided = plan(crd("v1alpha2", ["v1alpha1", "v1alpha2"]))
    assert decided.needed and decided.pruned == ["v1alpha2"] and decided.storage_index == 1


def test_a_crd_stored_only_in_v1alpha2_needs_nothing():
    assert not plan(crd("v1alpha2", ["v1alpha2"])).needed


def test_a_crd_that_still_stores_v1alpha1_is_refused_with_the_upgrade_command():
    with pytest.raises(MigrationError) as refused:
        plan(crd("v1alpha1", ["v1alpha1"]))
    assert str(refused.value).startswith(
        "CRD rolebasedgroups.workloads.x-k8s.io stores v1alpha1, not v1alpha2: "
        "apply this release's CRDs first (kubectl apply --server-side"
    )


def test_the_prune_only_applies_to_what_the_plan_saw():
    patch = prune_patch(Plan("x", "v1alpha2", 1, ("v1alpha1", "v1alpha2")))
    assert patch == [
        {"op": "test", "path": "/status/storedVersions", "value": ["v1alpha1", "v1alpha2"]},
        {"op": "test", "path": "/spec/versions/1/storage", "value": True},
        {"op": "replace", "path": "/status/storedVersions", "value": ["v1alpha2"]},
    ]


def test_a_read_without_its_spec_is_never_written_back():
    read = {"metadata": {"name": "g", "annotations": {FAILED_KEY: "roles[0]: bad"}}, "spec": {}}
    assert "conversion to v1alpha2 failed (roles[0]: bad)" in unwritable(read)
    assert unwritable({"metadata": {"name": "g", "annotations": {"a": "b"}}, "spec": {"roles": []}}) is None


def test_the_migrated_kinds_are_those_crdgen_stores_in_the_migration_version():
    two_versions = {s.plural: s for s in crdgen.crd_specs() if len(s.versions) > 1}
    assert {plural for _, plural, _ in storage_migration.MIGRATED} == set(two_versions)
    for spec in two_versions.values():
        assert [v.name for v in spec.versions if v.storage] == [storage_migration.STORAGE_VERSION], spec.kind
    for kind, plural, namespaced in storage_migration.MIGRATED:
        assert (two_versions[plural].kind, two_versions[plural].scope == "Namespaced") == (kind, namespaced)


def test_the_operator_warns_at_start_while_objects_await_the_migration():
    assert storage_migration.pending_warning([crd("v1alpha2", ["v1alpha2"])]) is None
    warning = storage_migration.pending_warning(
        [crd("v1alpha2", ["v1alpha2"]), crd("v1alpha2", ["v1alpha1", "v1alpha2"], "rolebasedgroupsets.x")]
    )
    assert warning.startswith("rolebasedgroupsets.x may still hold objects stored in v1alpha1") and warning.endswith(
        "until `rbg-operator migrate-storage` rewrites them"
    )
    old_crds = storage_migration.pending_warning([crd("v1alpha1", ["v1alpha1"])])
    assert "stores v1alpha1, not v1alpha2: apply this release's CRDs first" in old_crds
