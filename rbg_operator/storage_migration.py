"""`rbg-operator migrate-storage`: rewrite every stored object of the two-version kinds once in the
storage version (v1alpha2), then prune the CRDs' status.storedVersions to it.

Charts 0.1 and 0.2 stored v1alpha1. Changing a CRD's storage version leaves the objects in etcd as
they were: each read of one converts it through the webhook, and status.storedVersions keeps
v1alpha1 until something says every object has been rewritten. Kubernetes offers two ways to do
that: the StorageVersionMigration API (storagemigration.k8s.io, alpha until 1.34 and off by default:
it needs a feature gate and a runtime-config most clusters do not set, and it does not prune
storedVersions either), or a rewrite by a client: read each object and write it back unchanged, which
the API server stores re-encoded in the storage version. We do the rewrite: it works on every
Kubernetes version the CRDs support, it is what kube-storage-version-migrator does, and an unchanged
spec bumps no generation, so no child is rolled and no pod restarts.

Nothing is lost: an object is written back exactly as read, with its resourceVersion (a concurrent
change makes the write fail with 409, and the object is read again); an object the conversion could
not turn into v1alpha2 is never written back (its read has no spec), it is reported instead, and the
CRD keeps v1alpha1 in storedVersions until it is fixed and the command runs again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from . import kinds
from .api.conversion import FAILED_KEY
from .kube import KINDS, ApiError, Kind, Kube

log = logging.getLogger(__name__)

STORAGE_VERSION = kinds.STORED_VERSION  # crdgen marks this version `storage: true` (a unit test keeps them equal)
# The kinds whose CRDs stored v1alpha1 in charts 0.1 and 0.2. The v1alpha2-only kinds never did.
MIGRATED = (
    ("RoleBasedGroup", "rolebasedgroups", True),
    ("RoleBasedGroupSet", "rolebasedgroupsets", True),
    ("RoleBasedGroupScalingAdapter", "rolebasedgroupscalingadapters", True),
    ("ClusterEngineRuntimeProfile", "clusterengineruntimeprofiles", False),
)
CRD = KINDS[kinds.CUSTOM_RESOURCE_DEFINITION]
UPGRADE_CRDS = "kubectl apply --server-side --force-conflicts -f charts/ack-rbgs/crds/"
CONFLICT_RETRIES = 10  # fresh reads of one object that keeps changing under the rewrite


class MigrationError(Exception):
    """What stops the migration, saying what to do next."""


@dataclasses.dataclass(frozen=True)
class Plan:
    crd: str
    storage: str  # the version objects are read and written in
    storage_index: int  # its place in spec.versions
    stored: tuple[str, ...]  # status.storedVersions now

    @property
    def needed(self) -> bool:
        return set(self.stored) != {self.storage}

    @property
    def pruned(self) -> list[str]:
        """status.storedVersions once every object is rewritten."""
        return [self.storage]


def storage_version(crd: dict) -> str | None:
    return next((v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")), None)


def plan(crd: dict, expected_storage: str = STORAGE_VERSION) -> Plan:
    """What to do for one live CRD; refuses a CRD that does not store `expected_storage` yet (the
    rewrite would store the objects in the old version again)."""
    name = crd["metadata"]["name"]
    storage = storage_version(crd)
    if storage != expected_storage:
        raise MigrationError(
            f"CRD {name} stores {storage}, not {expected_storage}: apply this release's CRDs "
            f"first ({UPGRADE_CRDS}), then run `rbg-operator migrate-storage` again"
        )
    index = next(i for i, v in enumerate(crd["spec"]["versions"]) if v["name"] == storage)
    return Plan(name, storage, index, tuple((crd.get("status") or {}).get("storedVersions") or []))


def prune_patch(crd_plan: Plan) -> list[dict]:
    """A JSON patch setting storedVersions to the storage version, only if they are still what the
    plan saw and the storage version did not change meanwhile (else the API server refuses it: a
    version stored since would be dropped)."""
    return [
        {"op": "test", "path": "/status/storedVersions", "value": list(crd_plan.stored)},
        {"op": "test", "path": f"/spec/versions/{crd_plan.storage_index}/storage", "value": True},
        {"op": "replace", "path": "/status/storedVersions", "value": crd_plan.pruned},
    ]


def unwritable(obj: dict) -> str | None:
    """Why `obj` (as read in the storage version) must not be written back, or None. A read whose
    conversion failed has no spec (conversion.unconverted): writing it would store an empty spec."""
    failed = ((obj.get("metadata") or {}).get("annotations") or {}).get(FAILED_KEY)
    if failed is not None:
        return f"its conversion to {STORAGE_VERSION} failed ({failed}); fix it in v1alpha1 or delete it"
    return None


def _where(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return (
        f"{obj.get('kind')} {meta['namespace']}/{meta['name']}"
        if meta.get("namespace")
        else f"{obj.get('kind')} {meta.get('name')}"
    )


async def _rewrite(kube: Kube, kind: Kind, obj: dict) -> str | None:
    """Writes `obj` back unchanged; a problem that leaves it unmigrated, or None."""
    meta = obj["metadata"]
    for _ in range(CONFLICT_RETRIES):
        obj = {**obj, "apiVersion": kind.api_version, "kind": kind.kind}
        if problem := unwritable(obj):
            return problem
        try:
            await kube.replace(obj, kind)
            return None
        except ApiError as error:
            if error.status == 404:
                return None  # deleted meanwhile: nothing left to migrate
            if error.status != 409:
                return str(error)
        fresh = await kube.get(kind, meta.get("namespace"), meta["name"])
        if fresh is None:
            return None
        obj = fresh
    return f"it changed {CONFLICT_RETRIES} times while being rewritten; run the command again"


async def migrate_crd(kube: Kube, kind: Kind, crd_plan: Plan, say: Callable[[str], None]) -> list[str]:
    """Rewrites every object of `kind`; prunes storedVersions when all were. Returns the problems."""
    problems, done = [], 0
    while True:
        try:
            async for page, _ in kube.list_pages(kind):
                for obj in page:
                    obj = {**obj, "apiVersion": kind.api_version, "kind": kind.kind}
                    if problem := await _rewrite(kube, kind, obj):
                        problems.append(f"{_where(obj)}: {problem}")
                    done += 1
                if page:
                    say(f"{crd_plan.crd}: {done} rewritten in {crd_plan.storage}")
            break
        except ApiError as error:
            if error.status != 410:  # an expired continue token: list again (a rewrite twice is a no-op)
                raise
            problems, done = [], 0
    if problems:
        return problems
    try:
        await kube.patch(CRD, None, crd_plan.crd, prune_patch(crd_plan), patch_type="json", subresource="status")
    except ApiError as error:
        if error.status != 422:
            raise
        return [f"CRD {crd_plan.crd}: changed during the migration ({error}); run the command again"]
    say(f"{crd_plan.crd}: {done} objects stored in {crd_plan.storage}; storedVersions is now {crd_plan.pruned}")
    return []


def pending_warning(live_crds: list[dict]) -> str | None:
    """What the operator logs at start when objects are not all stored in STORAGE_VERSION yet: until
    then each v1alpha2 read of them (kubectl, the operator's own watches) needs the webhook."""
    problems = []
    for crd in live_crds:
        try:
            if plan(crd).needed:
                problems.append(crd["metadata"]["name"])
        except MigrationError as error:
            return str(error).replace("run `rbg-operator migrate-storage` again", "run `rbg-operator migrate-storage`")
    if not problems:
        return None
    return (
        f"{', '.join(problems)} may still hold objects stored in v1alpha1 (status.storedVersions): every "
        "v1alpha2 read of them needs the conversion webhook until `rbg-operator migrate-storage` rewrites them"
    )


async def warn_if_pending(kube: Kube) -> None:
    """Logs pending_warning once (a start-up check; needs only 'get' on the CRDs)."""
    try:
        live = [crd for _, plural, _ in MIGRATED if (crd := await kube.get(CRD, None, f"{plural}.{kinds.GROUP}"))]
    except Exception as error:  # noqa: BLE001 - a hint only: never in the way of starting
        log.debug("storage version check skipped: %s", error)
        return
    if warning := pending_warning(live):
        log.warning(warning)


async def migrate(kube: Kube, say: Callable[[str], None] = print) -> None:
    """Migrates every CRD that needs it; raises MigrationError naming what is left and what to do."""
    problems = []
    for kind_name, plural, namespaced in MIGRATED:
        name = f"{plural}.{kinds.GROUP}"
        crd = await kube.get(CRD, None, name)
        if crd is None:
            raise MigrationError(f"CRD {name} is not installed: apply this release's CRDs ({UPGRADE_CRDS})")
        crd_plan = plan(crd)
        if not crd_plan.needed:
            say(f"{name}: stored only in {crd_plan.storage}, nothing to do")
            continue
        say(f"{name}: storedVersions {list(crd_plan.stored)}; rewriting every object in {crd_plan.storage}")
        kind = Kind(kinds.api_version_of(crd_plan.storage), kind_name, plural, namespaced)
        problems += await migrate_crd(kube, kind, crd_plan, say)
    if problems:
        raise MigrationError(
            f"{len(problems)} objects could not be rewritten, so their CRDs keep their old "
            "storedVersions; fix them, then run `rbg-operator migrate-storage` again:\n  " + "\n  ".join(problems)
        )
