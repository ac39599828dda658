"""One level-triggered reconcile of one RoleBasedGroup: compare what should exist with what
the store has observed, write only the difference, then report status."""

from __future__ import annotations

import dataclasses
import datetime
import logging

import pydantic

from .. import naming
from ..api.errors import describe
from ..api.v1alpha2 import RoleBasedGroupV2, fields_not_acted_on
from ..desired import creation_layers, group_children, role_children
from ..desired import engineruntime
from ..desired.gang import (GANG_KINDS, NATIVE_COMPOSITE, NATIVE_POD_GROUP, NATIVE_WORKLOAD, PODGROUP_KINDS,
                            ROLE_MINIMUMS_APPLIED, applied_gang_size, gang_size, min_member,
                            role_minimums_conditions)
from ..desired.gang import backend as gang_backend
from ..desired.meta import owner_reference, pods_get_v2_keys
from ..desired.rollout import (HISTORY_LIMIT, RolePlan, RoleRollout, controller_revision, coordinated_allowance,
                               resolve, revision_label)
from ..desired.workloads import group_revision_of, role_revision
from ..desired.options import DEFAULT, BuildOptions
from ..events import EventRecorder
from ..kube import KINDS, ApiError, Kube, namespace_terminating
from . import conditions, health
from .diff import applied_digest, contains
from .progress import RoleProgress, workload_progress
from .ownership import OVERRIDDEN, ReplicasOwnership, overridden_conditions, replicas_ownership
from .restarts import RestartOutcome, RestartSettings, RestartTracker, delete_pod
from .control import CONFLICT_RECHECK_SECONDS, CREATING, conflict, controlled_by, observe
from .store import Store
from .stuck import stuck_pods
from . import policy
from .together import together

log = logging.getLogger(__name__)

RBG = (naming.API_VERSION, "RoleBasedGroup")
WORKLOAD_KINDS = {
    "StatefulSet": ("apps/v1", "StatefulSet"),
    "Deployment": ("apps/v1", "Deployment"),
    "LeaderWorkerSet": ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    "RoleInstanceSet": (naming.RIS_API_VERSION, "RoleInstanceSet"),
}
# Per-role children; the topology ConfigMap belongs to the group and goes with it.
ADAPTER = (naming.API_VERSION, "RoleBasedGroupScalingAdapter")
ROLE_CHILD_KINDS = [("v1", "Service"), ADAPTER, *WORKLOAD_KINDS.values()]
# Kinds whose spec the API server will not update in place: replaced when it must change.
# Native gang objects whose shape cannot change in place (templates, parents): replaced instead.
RECREATE_WHEN_IMMUTABLE = {NATIVE_WORKLOAD, NATIVE_POD_GROUP, NATIVE_COMPOSITE}


# As a Deployment's progressDeadlineSeconds: long enough for images to pull and models to load.
DEFAULT_PROGRESS_DEADLINE = 600.0


class ChildConflict(Exception):
    """A child's name is taken by an object this group does not control."""


def _owned_by(obj: dict, uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences", []) or [])


class Reconciler:
    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder, options: BuildOptions = DEFAULT,
                 restarts: RestartTracker | None = None, progress_deadline: float = DEFAULT_PROGRESS_DEADLINE):
        self.kube, self.store, self.recorder, self.options = kube, store, recorder, options
        self.progress_deadline = progress_deadline
        self.restarts = restarts or RestartTracker(kube, store, recorder, RestartSettings())

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Returns seconds after which to look again, when waiting on time rather than on an event."""
        body = self.store.get(*RBG, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # owner references let garbage collection remove the children
        try:
            group = RoleBasedGroupV2.read(body)
        except pydantic.ValidationError as error:
            await self._refuse(body, error)
            return
        if (body.get("status") or {}).get("observedGeneration") != body["metadata"].get("generation"):
            for note in fields_not_acted_on(group):  # once per generation
                await self.recorder.emit(body, "Warning", "FieldNotActedOn", note)
        profiles = {r.profile_name: p for role in group.spec.roles for r in role.engine_runtimes or []
                    if (p := self.store.get(engineruntime.API_VERSION, engineruntime.KIND, "", r.profile_name))}
        missing = engineruntime.missing_profiles(group.spec.roles, profiles)
        if missing:  # creating the profile wakes the group (see operator.WAKES)
            await self._stall(body, "EngineRuntimeProfileNotFound", "; ".join(missing) + (
                "; create it, or remove the role's engineRuntimes entry"))
            return
        options = dataclasses.replace(self.options, engine_profiles=profiles,
                                      composite_pod_groups=self.store.serves(*NATIVE_COMPOSITE))
        try:
            return await self._reconcile(body, group, options)
        except ChildConflict as problem:
            await self._report_problem(body, "ChildConflict", str(problem))
            return CONFLICT_RECHECK_SECONDS  # the other object carries no label of ours: no event wakes us
        except ApiError as error:
            if not namespace_terminating(error):
                await self._report_problem(body, "ReconcileError", f"the API server refused a write: {error}")
            raise  # retried with backoff

    async def _reconcile(self, body: dict, group: RoleBasedGroupV2, options: BuildOptions) -> float | None:
        created: list[str] = []  # what this pass created, reported as one Event
        try:
            rules, policy_problems = self._policy_rules(group)
            plans = self._coordinate(group, options, rules)
            ownership = self._replicas_ownership(group)
            applied = self._applied_replicas(group, plans, ownership)
            wanted = group_children(group, self._gang_size(group, applied), applied, options)
            await together(self._record_revision(body, group, options),
                           *(self._ensure(body, child, created) for child in wanted))
            await self._remove_stale_group_children(
                body, {(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in wanted})
            waiting: dict[str, str] = {}
            progress: dict[str, RoleProgress] = {}
            look_again: list[float | None] = []  # seconds until something changes by time alone

            async def ensure_role(role) -> None:
                workload = None
                observed = self._controlled(group, *WORKLOAD_KINDS[role.workload.kind],
                                            naming.workload_name(group.name, role.name))
                plan = plans.get(role.name, RolePlan())
                children = role_children(group, role.name, options, plan)
                # The revision leaves the v1alpha2 keys out, so the children built with them carry it.
                key = revision_label(role.name)
                if not pods_get_v2_keys(observed, key, children[-1]["metadata"]["labels"][key]):
                    children = role_children(group, role.name, options, plan, v2_pod_keys=False)
                for child in children:
                    if child["kind"] == role.workload.kind and not ownership[role.name].apply:
                        # Another writer's value stands: leave the field to it, and remember the
                        # role's value now, so a later change of the role takes it back.
                        child["spec"].pop("replicas")
                        child["metadata"].setdefault("annotations", {})[naming.ANNOTATION_YIELDED_REPLICAS] = \
                            str(role.replicas)
                    workload = await self._ensure(body, child, created)  # in order: the workload comes last
                if workload is not None and workload["kind"] == "StatefulSet":
                    look_again.append(await self._unstick(body, workload))
                progress[role.name] = workload_progress(role.name, role.replicas, workload)
                update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
                progress[role.name].paused = bool(update and update.paused)
                if plans.get(role.name, RolePlan()).replicas is not None:
                    progress[role.name].desired = role.replicas  # still growing in paced steps: not there yet

            for layer in creation_layers(group):
                ready_to_go = []
                for role_name in layer:
                    role = group.spec.role(role_name)
                    workload = self._controlled(group, *WORKLOAD_KINDS[role.workload.kind],
                                                naming.workload_name(group.name, role_name))
                    blocker = next((d for d in role.dependencies or [] if not progress[d].is_ready), None)
                    if blocker is not None and workload is None:
                        waiting[role_name] = blocker
                        progress[role_name] = RoleProgress(role_name, role.replicas)
                    else:
                        ready_to_go.append(role)
                # Roles of one layer do not depend on each other: apply them side by side.
                await together(*(ensure_role(role) for role in ready_to_go))
        finally:
            if created:  # also when a later apply failed: these objects exist now
                await self.recorder.emit(body, "Normal", "Created", "created " + ", ".join(created))

        await self._remove_stale_children(body, {
            r.name: {"Service", r.workload.kind} | ({ADAPTER[1]} if r.scaling_adapter and r.scaling_adapter.enable else set())
            for r in group.spec.roles})
        restarts = await self.restarts.reconcile(body, group)
        deadline_passes = await self._report(body, group, options, progress, waiting, restarts, ownership,
                                                 policy_problems)
        return min((t for t in (restarts.requeue_after, deadline_passes, *look_again) if t is not None), default=None)

    def _replicas_ownership(self, group: RoleBasedGroupV2) -> dict[str, ReplicasOwnership]:
        return {role.name: replicas_ownership(
                    self._controlled(group, *WORKLOAD_KINDS[role.workload.kind],
                                     naming.workload_name(group.name, role.name)),
                    role.replicas, {naming.FIELD_MANAGER})
                for role in group.spec.roles}

    @staticmethod
    def _applied_replicas(group: RoleBasedGroupV2, plans: dict[str, RolePlan],
                          ownership: dict[str, ReplicasOwnership]) -> dict[str, int]:
        """Replicas the workloads run with where they differ from the spec: another writer's value
        that stands, or a coordinated step. The topology and the gang follow these."""
        applied = {}
        for role in group.spec.roles:
            decision = ownership[role.name]
            if not decision.apply and decision.running is not None:
                applied[role.name] = decision.running
            elif plans.get(role.name, RolePlan()).replicas is not None:
                applied[role.name] = plans[role.name].replicas
        return applied

    def _gang_size(self, group: RoleBasedGroupV2, applied: dict[str, int]) -> int | None:
        """The pods the gang counts: the replicas applied, raised only as far as the pods exist
        (gang_size)."""
        backend = gang_backend(group)
        if backend is None:
            return None
        observed = self._controlled(group, *PODGROUP_KINDS[backend], group.name)
        pods = sum(1 for p in self.store.owned_by_group("v1", "Pod", group.namespace, group.name)
                   if not p["metadata"].get("deletionTimestamp"))
        return gang_size(min_member(group, applied), applied_gang_size(observed), pods)

    async def _ensure(self, group_body: dict, desired: dict, created: list[str]) -> dict:
        """Apply `desired` unless the observed object already matches it; never write over an
        object this group does not control (control.py), whether the store shows it or not.

        Matching means: everything we want is there (a hand edit is not), and the object was
        last applied from this very configuration (a field we stopped setting is not gone
        until we apply again, so a subset check alone would miss removals).
        """
        meta = desired["metadata"]
        key = (desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        observed = self.store.get(*key)
        if observed is not None:
            return await self._write(group_body, desired, observed, created)
        async with CREATING.hold(key):  # looked for and created by one owner at a time
            observed = await observe(self.store, self.kube, *key)
            return await self._write(group_body, desired, observed, created)

    async def _write(self, group_body: dict, desired: dict, observed: dict | None, created: list[str]) -> dict:
        meta = desired["metadata"]
        problem = conflict(observed, group_body)
        if problem is not None:
            raise ChildConflict(problem)
        meta.setdefault("annotations", {})[naming.ANNOTATION_APPLIED] = applied_digest(desired)
        if observed is not None and contains(observed, desired):
            return observed
        try:
            result = await self.kube.apply(desired)
        except ApiError as error:
            if not (observed is not None and error.status == 422 and "immutable" in str(error)
                    and (desired["apiVersion"], desired["kind"]) in RECREATE_WHEN_IMMUTABLE):
                raise
            await self._delete(group_body, observed, "its spec cannot change in place; creating it anew")
            result = await self.kube.apply(desired)
            await self._requeue_pending_pods(group_body)
        self.store.upsert(result)
        if observed is None:
            created.append(f"{desired['kind']} {meta['name']}")
        return result

    def _controlled(self, group: RoleBasedGroupV2, api_version: str, kind: str, name: str) -> dict | None:
        """The group's own child of that name, as the store has it; None for another's object
        (kept in the store as metadata only) as for none."""
        found = self.store.get(api_version, kind, group.namespace, name)
        return found if found is not None and controlled_by(found, group.metadata["uid"]) else None

    async def _unstick(self, group_body: dict, sts: dict) -> float | None:
        """Replace pods a StatefulSet rollout would wait on for ever (see stuck.py), within the
        rollout's maxUnavailable; returns when to look again for pods not stuck yet."""
        status = sts.get("status") or {}
        if status.get("observedGeneration") != sts["metadata"]["generation"] or not status.get("updateRevision"):
            return None
        if status.get("updateRevision") == status.get("currentRevision"):
            return None
        rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        meta = sts["metadata"]
        pods = self.store.in_role("v1", "Pod", meta["namespace"], meta["labels"][naming.LABEL_GROUP_NAME],
                                  meta["labels"][naming.LABEL_ROLE])
        found = stuck_pods(pods, status["updateRevision"], rolling.get("partition", 0),
                           resolve(rolling.get("maxUnavailable"), sts["spec"].get("replicas", 1), default=1) or 1,
                           datetime.datetime.now(datetime.timezone.utc))
        for pod in found.replace:
            # On an old revision, so the restart policies do not count it as lost.
            if not await delete_pod(self.kube, self.store, pod):
                continue
            await self.recorder.emit(group_body, "Normal", "ReplacedStuckPod",
                                     f"pod {pod['metadata']['name']} never became ready on the old revision; "
                                     f"replacing it with the new one")
        return found.requeue_after

    def _policy_rules(self, group: RoleBasedGroupV2) -> tuple[list, list[str] | None]:
        """The rules of the CoordinatedPolicy named like the group, and what of it cannot be used
        (None: there is no policy)."""
        found = self.store.get(policy.API_VERSION, policy.KIND, group.namespace, group.name)
        if found is None:
            return [], None
        return policy.policy_rules(found, [r.name for r in group.spec.roles])

    def _coordinate(self, group: RoleBasedGroupV2, options: BuildOptions, policy_rules: list = ()) -> dict[str, RolePlan]:
        """What coordination rules decide for their roles this time round:
        - rollingUpdate: StatefulSet partitions that keep updated-and-ready fractions within maxSkew,
          and the rule's maxUnavailable;
        - scaling: replicas raised in steps that keep the roles' scheduled (or ready) fractions within
          maxSkew. Decreases are never paced."""
        plans: dict[str, dict] = {}
        for rule in [*group.coordination, *policy_rules]:
            strategy = rule.strategy
            update = strategy.rolling_update if strategy else None
            if update is not None:
                observed: list[RoleRollout] = []
                for role_name in rule.roles:
                    role = group.spec.role(role_name)
                    sts = self._controlled(group, "apps/v1", "StatefulSet",
                                           naming.workload_name(group.name, role_name))
                    if role.workload.kind != "StatefulSet" or sts is None:
                        continue  # a role being created starts on the newest revision anyway
                    observed.append(self._rollout_of(group, role, sts, options))
                    if update.max_unavailable:
                        plans.setdefault(role_name, {})["max_unavailable"] = update.max_unavailable
                for name, allowed in coordinated_allowance(observed, update.max_skew, update.partition).items():
                    plans.setdefault(name, {})["partition"] = group.spec.role(name).replicas - allowed
            scaling = strategy.scaling if strategy else None
            if scaling is not None:
                growing = [self._growth_of(group, group.spec.role(n), scaling.progression) for n in rule.roles]
                growing = [g for g in growing if g is not None]
                for name, allowed in coordinated_allowance(growing, scaling.max_skew, None).items():
                    plans.setdefault(name, {})["replicas"] = allowed
        return {name: RolePlan(**fields) for name, fields in plans.items()}

    def _growth_of(self, group: RoleBasedGroupV2, role, progression: str) -> RoleRollout | None:
        """A role growing towards its replicas: how many pods exist and how many are scheduled (or ready)."""
        workload = self._controlled(group, *WORKLOAD_KINDS[role.workload.kind],
                                    naming.workload_name(group.name, role.name))
        current = (workload or {}).get("spec", {}).get("replicas", 0)
        if current >= role.replicas or role.workload.kind == "LeaderWorkerSet":
            return None
        pods = [p for p in self.store.in_role("v1", "Pod", group.namespace, group.name, role.name)
                if not p["metadata"].get("deletionTimestamp")]
        if progression == "OrderReady":
            done = sum(1 for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                              for c in (p.get("status") or {}).get("conditions", [])))
        else:
            done = sum(1 for p in pods if p["spec"].get("nodeName"))
        return RoleRollout(role.name, role.replicas, min(done, role.replicas), current)

    def _rollout_of(self, group: RoleBasedGroupV2, role, sts: dict, options: BuildOptions) -> RoleRollout:
        replicas = role.replicas
        labels = sts["metadata"].get("labels") or {}
        if labels.get(revision_label(role.name)) != role_revision(group, role, options):
            return RoleRollout(role.name, replicas, 0, 0)  # a new revision: nothing is allowed onto it yet
        partition = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
        status = sts.get("status") or {}
        revision = status.get("updateRevision") if status.get("observedGeneration") == sts["metadata"]["generation"] else None
        updated_ready = sum(
            1 for pod in self.store.in_role("v1", "Pod", group.namespace, group.name, role.name)
            if revision and pod["metadata"]["labels"].get("controller-revision-hash") == revision
            and not pod["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", [])))
        return RoleRollout(role.name, replicas, min(updated_ready, replicas), max(0, replicas - partition))

    async def _record_revision(self, body: dict, group: RoleBasedGroupV2, options: BuildOptions) -> None:
        """Keep a ControllerRevision of the role templates for every revision, newest numbered highest."""
        revisions = self.store.owned_by_group("apps/v1", "ControllerRevision", group.namespace, group.name)
        revisions = [r for r in revisions if _owned_by(r, group.metadata["uid"])]
        revision = group_revision_of(group, options)
        name = f"{group.name}-{revision}"
        highest = max((r.get("revision", 0) for r in revisions), default=0)
        current = next((r for r in revisions if r["metadata"]["name"] == name), None)
        if current is not None and current.get("revision", 0) == highest:
            return
        # A new revision, or an old one coming back (an undo): it becomes the newest. A revision's
        # data is immutable, so an old one is renumbered with a patch of that field alone.
        if current is None:
            key = ("apps/v1", "ControllerRevision", group.namespace, name)
            async with CREATING.hold(key):
                problem = conflict(await observe(self.store, self.kube, *key), body)
                if problem is not None:
                    raise ChildConflict(problem)
                result = await self.kube.apply(controller_revision(group, owner_reference(group), highest + 1, revision))
        else:
            result = await self.kube.patch(KINDS[("apps/v1", "ControllerRevision")], group.namespace, name,
                                           {"revision": highest + 1})
        self.store.upsert(result)
        revisions = [r for r in revisions if r["metadata"]["name"] != name] + [result]
        for old in sorted(revisions, key=lambda r: r.get("revision", 0))[:-HISTORY_LIMIT]:
            await self.kube.delete(KINDS[("apps/v1", "ControllerRevision")], group.namespace, old["metadata"]["name"],
                                   uid=old["metadata"]["uid"])
            self.store.remove("apps/v1", "ControllerRevision", group.namespace, old["metadata"]["name"],
                              old["metadata"]["uid"])

    async def _requeue_pending_pods(self, group_body: dict) -> None:
        """Unbound pods of a replaced gang may sit in the scheduler's backoff for minutes: their
        workload changed under them. They hold nothing yet, so recreate them to be scheduled now."""
        meta = group_body["metadata"]
        for pod in self.store.owned_by_group("v1", "Pod", meta["namespace"], meta["name"]):
            if not pod["spec"].get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                # Never bound, so the restart policies do not count it as lost.
                await delete_pod(self.kube, self.store, pod)

    async def _remove_stale_group_children(self, group_body: dict, wanted: set[tuple[str, str, str]]) -> None:
        """Delete gang objects the group no longer wants (gang scheduling turned off or switched, a
        role's pod group gone with its role or its per-role minimum)."""
        meta = group_body["metadata"]
        for api_version, kind in GANG_KINDS:
            for obj in self.store.owned_by_group(api_version, kind, meta["namespace"], meta["name"]):
                if (api_version, kind, obj["metadata"]["name"]) in wanted or not _owned_by(obj, meta["uid"]):
                    continue
                await self._delete(group_body, obj, f"gang scheduling no longer uses {kind} {obj['metadata']['name']}")

    async def _delete(self, group_body: dict, obj: dict, why: str) -> None:
        meta = obj["metadata"]
        existed = await self.kube.delete(KINDS[(obj["apiVersion"], obj["kind"])], meta["namespace"], meta["name"],
                                         uid=meta["uid"])
        self.store.remove(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"], meta["uid"])
        if not existed:
            return  # someone else deleted it: nothing of ours to report
        await self.recorder.emit(group_body, "Normal", "Deleted", f"deleted {obj['kind']} {meta['name']}: {why}")

    async def _remove_stale_children(self, group_body: dict, role_kinds: dict[str, set[str]]) -> None:
        """Delete children of roles that left the spec, and children of a kind the role no longer has
        (a workload of its old kind, a scaling adapter it no longer enables)."""
        meta = group_body["metadata"]
        for api_version, kind in ROLE_CHILD_KINDS:
            for obj in self.store.owned_by_group(api_version, kind, meta["namespace"], meta["name"]):
                role = obj["metadata"].get("labels", {}).get(naming.LABEL_ROLE)
                if not _owned_by(obj, meta["uid"]):
                    continue  # not ours: never delete what another group or a user made
                if role in role_kinds and kind in role_kinds[role]:
                    continue
                await self._delete(group_body, obj, f"role {role} no longer has it")

    async def _report_problem(self, body: dict, reason: str, message: str) -> None:
        """What failed reaches the user: Ready=False with the reason and message, and a Warning Event
        when that message is new. Best effort: the API server may be what is failing."""
        try:
            # A conflict waits for a person; a refused write is retried, so still in progress.
            stalled = reason == "ChildConflict"
            changed = await self._write_status(body, [
                {"type": "Ready", "status": "False", "reason": reason, "message": message},
                {"type": "Progressing", "status": "False" if stalled else "True", "reason": reason, "message": message},
                {"type": "Reconciling", "status": "False" if stalled else "True", "reason": reason, "message": message},
                {"type": "Stalled", "status": "True" if stalled else "False", "reason": reason, "message": message},
            ], role_statuses=(body.get("status") or {}).get("roleStatuses"))
            if changed:
                await self.recorder.emit(body, "Warning", reason, message)
        except ApiError as error:
            log.warning("could not report %s on %s/%s: %s", reason, body["metadata"]["namespace"],
                        body["metadata"]["name"], error)

    async def _refuse(self, body: dict, error: pydantic.ValidationError) -> None:
        await self._stall(body, "InvalidSpec", f"invalid RoleBasedGroup: {describe(error, prefix='')}")

    async def _stall(self, body: dict, reason: str, message: str) -> None:
        """A group the operator cannot act on until its spec changes: Stalled, and a Warning Event."""
        changed = await self._write_status(body, [
            {"type": "Ready", "status": "False", "reason": reason, "message": message},
            {"type": "Progressing", "status": "False", "reason": reason, "message": message},
            {"type": "Reconciling", "status": "False", "reason": reason, "message": message},
            {"type": "Stalled", "status": "True", "reason": reason, "message": message},
        ], role_statuses=(body.get("status") or {}).get("roleStatuses"))
        if changed:
            await self.recorder.emit(body, "Warning", reason, message)

    async def _report(self, body: dict, group: RoleBasedGroupV2, options: BuildOptions, progress: dict[str, RoleProgress],
                      waiting: dict[str, str], restarts: RestartOutcome,
                      ownership: dict[str, ReplicasOwnership], policy_problems: list[str] | None) -> float | None:
        """Write the conditions; returns the seconds until the progress deadline passes, if it may."""
        roles = [progress[r.name] for r in group.spec.roles]
        deadline, complaint = health.progress_deadline(body["metadata"].get("annotations"), self.progress_deadline)
        if complaint and (body.get("status") or {}).get("observedGeneration") != body["metadata"].get("generation"):
            await self.recorder.emit(body, "Warning", "InvalidAnnotation", complaint)
        blockers = {p.name: health.pod_blockers(self.store.in_role("v1", "Pod", group.namespace, group.name, p.name))
                    for p in roles if not p.is_ready}
        verdict = health.group_health(body.get("status") or {}, body["metadata"].get("generation", 0), roles, waiting,
                                      blockers, restarts.budget_exhausted, deadline,
                                      datetime.datetime.now(datetime.timezone.utc))
        role_statuses = [
            {"name": p.name, "replicas": p.replicas, "readyReplicas": p.ready, "updatedReplicas": p.updated}
            for p in roles
        ]
        ready = verdict.conditions[0]
        previous = conditions.find((body.get("status") or {}).get("conditions"), "Ready")
        overridden = overridden_conditions(group, ownership, (body.get("status") or {}).get("conditions"))
        applied = policy.applied_conditions(group.name, policy_problems, (body.get("status") or {}).get("conditions"))
        minimums = role_minimums_conditions(group, options, (body.get("status") or {}).get("conditions"))
        changed = await self._write_status(body, [*verdict.conditions, *restarts.conditions, *overridden, *applied,
                                                  *minimums], role_statuses, verdict.restamp)
        before_minimums = conditions.find((body.get("status") or {}).get("conditions"), ROLE_MINIMUMS_APPLIED) or {}
        if minimums and minimums[0]["status"] == "False" and before_minimums.get("message") != minimums[0]["message"]:
            await self.recorder.emit(body, "Warning", minimums[0]["reason"], minimums[0]["message"])
        before_policy = conditions.find((body.get("status") or {}).get("conditions"), policy.APPLIED) or {}
        if applied and applied[0]["status"] == "False" and before_policy.get("message") != applied[0]["message"]:
            await self.recorder.emit(body, "Warning", applied[0]["reason"], applied[0]["message"])
        before = conditions.find((body.get("status") or {}).get("conditions"), OVERRIDDEN) or {}
        if overridden and overridden[0]["status"] == "True" and before.get("message") != overridden[0]["message"]:
            await self.recorder.emit(body, "Normal", OVERRIDDEN, overridden[0]["message"])
        # A new group's first "not ready yet" is no news after its Created Event; every later
        # change of reason, and a first status that says more (waiting, given up), is.
        first_and_expected = previous is None and ready["reason"] == "RolesNotReady"
        if changed and not first_and_expected and (previous is None or previous.get("reason") != ready["reason"]):
            stalled = ready["reason"] in (health.DEADLINE_EXCEEDED, "RestartBudgetExhausted")
            await self.recorder.emit(body, "Warning" if stalled else "Normal", ready["reason"], ready["message"])
        return verdict.requeue_after

    async def _write_status(self, body: dict, desired_conditions: list[dict], role_statuses,
                            restamp: set[str] | frozenset = frozenset()) -> bool:
        """Write status only when it differs from what is stored; returns whether it wrote."""
        meta = body["metadata"]
        old = body.get("status") or {}
        status = {
            "observedGeneration": meta.get("generation", 0),
            "conditions": conditions.merge(old.get("conditions"), desired_conditions, meta.get("generation", 0), restamp),
        }
        if role_statuses is not None:
            status["roleStatuses"] = role_statuses
        if contains(old, status):
            return False
        result = await self.kube.apply({
            "apiVersion": naming.API_VERSION, "kind": "RoleBasedGroup",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "status": status,
        }, subresource="status")
        # A spec change that landed after this reconcile read the group comes back in the answer:
        # then the echo of this write must wake this reconcile again.
        self.store.upsert(result, read_generation=meta.get("generation"))
        return True
