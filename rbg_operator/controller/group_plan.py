"""Step 2 of a group's reconcile: plan(), pure. From the snapshot (group_snapshot.py), the
options and the time, it decides everything one pass does: the children to apply, layer by
layer of the roles' start order, the deletions, the restart and stuck-pod actions, the status
and the Events, and when to look again. It reads no store and writes nothing: act and report
(reconciler.py) carry the plan out.

A workload this pass writes is judged as its controller will see it: a spec that changes is not
yet observed (its generation moves on), so neither the role nor what depends on it counts as
ready until the workload controller reports on it.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from .. import naming, timestamps
from ..api.v1alpha2 import fields_not_acted_on
from ..desired import creation_layers, engineruntime, group_children, role_children
from ..desired.gang import (
    GANG_KINDS,
    PODGROUP_KINDS,
    ROLE_MINIMUMS_APPLIED,
    applied_gang_size,
    gang_size,
    min_member,
    role_minimums_conditions,
)
from ..desired.gang import backend as gang_backend
from ..desired.meta import owner_reference, pods_get_v2_keys
from ..desired.options import DEFAULT, BuildOptions
from ..desired.ports import ROLE_PORTS
from ..desired.rollout import (
    HISTORY_LIMIT,
    RolePlan,
    RoleRollout,
    controller_revision,
    coordinated_allowance,
    resolve,
    revision_label,
)
from ..desired.workload_kinds import group_revision_of, role_revision
from ..desired.workload_kinds import of as workload_kind
from . import conditions, drain_plan, health, policy
from .control import CONFLICT_RECHECK_SECONDS, conflict
from .diff import applied_digest, contains
from .group_snapshot import ADAPTER, ROLE_CHILD_KINDS, GroupSnapshot
from .ownership import OVERRIDDEN, ReplicasOwnership, overridden_conditions, replicas_ownership
from .progress import RoleProgress, workload_progress
from .restarts import RestartPlan, RestartSettings, plan_restarts
from .steps import Apply, Delete, DeletePod, Emit, RecordRevision, Step, WriteRestartState
from .stuck import stuck_pods

# As a Deployment's progressDeadlineSeconds: long enough for images to pull and models to load.
DEFAULT_PROGRESS_DEADLINE = 600.0
PORTS_RETRY_SECONDS = 30.0  # a group whose port allocations wait for free ports looks again


@dataclasses.dataclass(frozen=True)
class GroupOptions:
    build: BuildOptions = DEFAULT
    progress_deadline: float = DEFAULT_PROGRESS_DEADLINE
    restarts: RestartSettings = RestartSettings()


Lane = tuple[Step, ...]  # steps one after the other
Batch = tuple[Lane, ...]  # lanes side by side


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    notes: tuple[Emit, ...] = ()  # said before any write
    batches: tuple[Batch, ...] = ()  # the writes: batch after batch
    status: dict | None = None  # the status to write; None: the stored one says it already
    events: tuple[Emit, ...] = ()  # said once the status is written
    requeue_after: float | None = None  # seconds until something changes by time alone
    problem: tuple[str, str] | None = None  # (reason, message) that stops the pass after its writes
    refused: bool = False  # the spec cannot be acted on until it changes: only the status is written
    # What the decisions were made from, for the reader and the tests.
    progress: Mapping[str, RoleProgress] = dataclasses.field(default_factory=dict)
    waiting: Mapping[str, str] = dataclasses.field(default_factory=dict)  # role -> the dependency it waits for
    role_plans: Mapping[str, RolePlan] = dataclasses.field(default_factory=dict)
    ownership: Mapping[str, ReplicasOwnership] = dataclasses.field(default_factory=dict)
    restarts: RestartPlan = RestartPlan()

    @property
    def steps(self) -> list[Step]:
        return [step for batch in self.batches for lane in batch for step in lane]

    def applied(self, kind: str | None = None) -> list[dict]:
        """The objects this plan applies (of one kind), in order."""
        return [s.desired for s in self.steps if isinstance(s, Apply) and kind in (None, s.desired["kind"])]


def problem_conditions(reason: str, message: str, stalled: bool) -> list[dict]:
    """What a failure says in the group's conditions. Stalled waits for a person (an invalid
    spec, a name taken); otherwise the operator retries, so work is still in progress."""
    return [
        {"type": "Ready", "status": "False", "reason": reason, "message": message},
        {"type": "Progressing", "status": "False" if stalled else "True", "reason": reason, "message": message},
        {"type": "Reconciling", "status": "False" if stalled else "True", "reason": reason, "message": message},
        {"type": "Stalled", "status": "True" if stalled else "False", "reason": reason, "message": message},
    ]


def planned_status(
    body: dict,
    desired_conditions: list[dict],
    role_statuses: list[dict] | None,
    restamp: set[str] | frozenset = frozenset(),
    at: str | None = None,
) -> dict | None:
    """The group's status with these conditions; None when the stored status says it already."""
    meta = body["metadata"]
    old = body.get("status") or {}
    status = {
        "observedGeneration": meta.get("generation", 0),
        "conditions": conditions.merge(
            old.get("conditions"), desired_conditions, meta.get("generation", 0), restamp, at
        ),
    }
    if role_statuses is not None:
        status["roleStatuses"] = role_statuses
    return None if contains(old, status) else status


def problem_plan(
    body: dict,
    reason: str,
    message: str,
    stalled: bool,
    at: str | None = None,
    notes: tuple[Emit, ...] = (),
    refused: bool = False,
) -> GroupPlan:
    """Ready=False with the reason and message, and a Warning Event when that message is new."""
    status = planned_status(
        body, problem_conditions(reason, message, stalled), (body.get("status") or {}).get("roleStatuses"), at=at
    )
    return GroupPlan(
        notes, status=status, events=(Emit("Warning", reason, message),) if status else (), refused=refused
    )


def plan(snapshot: GroupSnapshot, options: GroupOptions, now: datetime.datetime) -> GroupPlan:
    """Everything one pass of the group does, decided from the snapshot alone."""
    body, group = snapshot.body, snapshot.group
    at = timestamps.stamp(now)
    if group is None:
        return problem_plan(body, "InvalidSpec", snapshot.invalid or "invalid RoleBasedGroup", True, at, refused=True)
    notes: tuple[Emit, ...] = ()
    if _new_generation(body):  # once per generation
        notes = tuple(Emit("Warning", "FieldNotActedOn", note) for note in fields_not_acted_on(group))
    missing = engineruntime.missing_profiles(group.spec.roles, snapshot.profiles)
    if missing:  # creating the profile wakes the group (see operator.WAKES)
        return problem_plan(
            body,
            "EngineRuntimeProfileNotFound",
            "; ".join(missing) + ("; create it, or remove the role's engineRuntimes entry"),
            True,
            at,
            notes,
            refused=True,
        )
    build = dataclasses.replace(
        options.build, engine_profiles=dict(snapshot.profiles), composite_pod_groups=snapshot.composite_pod_groups
    )
    if snapshot.ports is not None:
        if _new_generation(body):  # said once per generation, like the fields not acted on
            notes += tuple(Emit("Warning", "InvalidPortAllocator", p) for p in snapshot.ports.problems)
        if snapshot.ports.exhausted:
            notes += (Emit("Warning", "PortsExhausted", f"port allocator: {snapshot.ports.exhausted}"),)
    return _Planner(snapshot, build, options, now, notes).plan()


def _new_generation(body: dict) -> bool:
    return (body.get("status") or {}).get("observedGeneration") != body["metadata"].get("generation")


def _owned_by(obj: dict, uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences", []) or [])


def _live(obj: dict) -> bool:
    return not obj["metadata"].get("deletionTimestamp")


def after_apply(observed: dict | None, desired: dict) -> dict:
    """The workload as its write will leave it: a new one not yet seen by its controller; a
    changed spec at the next generation, its status still about the last one. The spec changes
    when it lacks something we want, or when the pod templates do (a field removed from them
    shows only in their revision label)."""
    if observed is None:
        return {**desired, "metadata": {**desired["metadata"], "generation": 1}}
    revision = {k: v for k, v in desired["metadata"]["labels"].items() if k.startswith(naming.LABEL_REVISION_PREFIX)}
    if contains(observed.get("spec") or {}, desired.get("spec") or {}) and contains(
        observed["metadata"].get("labels") or {}, revision
    ):
        return observed  # labels or annotations only: the generation stays
    meta = {**observed["metadata"], "generation": observed["metadata"].get("generation", 0) + 1}
    return {**observed, "metadata": meta, "spec": {**(observed.get("spec") or {}), **desired["spec"]}}


class _Conflict(Exception):
    """A child's name is taken by an object this group does not control."""


class _Planner:
    def __init__(
        self,
        snapshot: GroupSnapshot,
        build: BuildOptions,
        options: GroupOptions,
        now: datetime.datetime,
        notes: tuple[Emit, ...],
    ):
        self.snap, self.group, self.body = snapshot, snapshot.group, snapshot.body
        self.build, self.options, self.now, self.notes = build, options, now, notes
        self.batches: list[list[Lane]] = []
        self.progress: dict[str, RoleProgress] = {}
        self.waiting: dict[str, str] = {}
        self.after: dict[str, dict | None] = {}  # each applied role's workload as its write leaves it
        self.look_again: list[float | None] = []
        self.role_plans: dict[str, RolePlan] = {}
        self.ownership: dict[str, ReplicasOwnership] = {}

    def _batch(self) -> list[Lane]:
        self.batches.append([])
        return self.batches[-1]

    def _frozen_batches(self) -> tuple[Batch, ...]:
        return tuple(tuple(batch) for batch in self.batches if batch)

    def plan(self) -> GroupPlan:
        """The decisions, in the order their writes go:
        1. coordination (policy rules, paced partitions and replicas) and who owns each role's replicas;
        2. the revision record and the group's own children (topology ConfigMap, gang objects);
        3. gang objects no longer wanted;
        4. layer by layer of the start order, each role whose dependencies are ready (or whose
           workload exists): its Service, adapter and workload, then its stuck pods;
        5. children of roles or kinds no longer in the spec;
        6. the restart policies (their state write goes first of all);
        7. the status, its Events, and when to look again."""
        try:
            policy_problems = self._children()
        except _Conflict as problem:
            return GroupPlan(
                self.notes,
                self._frozen_batches(),
                requeue_after=CONFLICT_RECHECK_SECONDS,
                problem=("ChildConflict", str(problem)),
                role_plans=self.role_plans,
                ownership=self.ownership,
            )
        self._remove_stale_role_children()
        restarts = self._restarts()
        if self.snap.ports is not None and self.snap.ports.exhausted:
            self.look_again.append(PORTS_RETRY_SECONDS)  # ports free up only as other objects go
        status, events, requeue = self._report(restarts, policy_problems)
        return GroupPlan(
            self.notes,
            self._frozen_batches(),
            status,
            tuple(events),
            min((t for t in (restarts.requeue_after, requeue, *self.look_again) if t is not None), default=None),
            progress=self.progress,
            waiting=self.waiting,
            role_plans=self.role_plans,
            ownership=self.ownership,
            restarts=restarts,
        )

    # -- the children, in their order -------------------------------------------------------

    def _children(self) -> list[str] | None:
        group = self.group
        rules, policy_problems = self._policy_rules()
        self.role_plans = self._coordinate(rules)
        self.ownership = {
            role.name: replicas_ownership(self.snap.workload(role), role.replicas, {naming.FIELD_MANAGER})
            for role in group.spec.roles
        }
        applied = self._applied_replicas()
        wanted = group_children(group, self._gang_size(applied), applied, self.build)
        batch = self._batch()
        revision = self._record_revision()
        if revision is not None:
            batch.append((revision,))
        for child in wanted:
            step, _ = self._apply(child)
            if step is not None:
                batch.append((step,))
        self._remove_stale_group_children({(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in wanted})
        for layer in creation_layers(group):
            ready_to_go = []
            for role_name in layer:
                role = group.spec.role(role_name)
                blocker = next((d for d in role.dependencies or [] if not self.progress[d].is_ready), None)
                if blocker is not None and self.snap.workload(role) is None:
                    self.waiting[role_name] = blocker
                    self.progress[role_name] = RoleProgress(role_name, role.replicas)
                else:
                    ready_to_go.append(role)
            # Roles of one layer do not depend on each other: applied side by side.
            batch = self._batch()
            for role in ready_to_go:
                lane = self._role(role)
                if lane:
                    batch.append(lane)
        return policy_problems

    def _apply(self, desired: dict) -> tuple[Apply | None, dict]:
        """The write `desired` needs, if any, and the object as it will be. Matching means:
        everything we want is there (a hand edit is not), and the object was last applied from
        this very configuration (a field we stopped setting is not gone until we apply again,
        so a subset check alone would miss removals)."""
        meta = desired["metadata"]
        observed = self.snap.child(desired["apiVersion"], desired["kind"], meta["name"])
        problem = conflict(observed, self.body)
        if problem is not None:
            raise _Conflict(problem)
        meta.setdefault("annotations", {})[naming.ANNOTATION_APPLIED] = applied_digest(desired)
        if observed is not None and contains(observed, desired):
            return None, observed
        return Apply(desired, observed), after_apply(observed, desired)

    def _role(self, role) -> Lane:
        """One role's children in order, its workload last; then its stuck pods."""
        group, lane = self.group, []
        observed = self.snap.workload(role)
        role_plan = self.role_plans.get(role.name, RolePlan())
        children = role_children(group, role.name, self.build, role_plan)
        # The revision leaves the v1alpha2 keys out, so the children built with them carry it.
        key = revision_label(role.name)
        if not pods_get_v2_keys(observed, key, children[-1]["metadata"]["labels"][key]):
            children = role_children(group, role.name, self.build, role_plan, v2_pod_keys=False)
        role_ports = self.snap.ports.annotations.get(role.name) if self.snap.ports is not None else None
        if role_ports is not None:  # the RoleScoped allocations the set carries (desired/ports.py)
            children[-1]["metadata"].setdefault("annotations", {})[ROLE_PORTS] = role_ports
        workload = None
        for child in children:
            if child is children[-1] and not self.ownership[role.name].apply:  # the workload comes last
                # Another writer's value stands: leave the field to it, and remember the role's
                # value now, so a later change of the role takes it back.
                child["spec"].pop("replicas")
                child["metadata"].setdefault("annotations", {})[naming.ANNOTATION_YIELDED_REPLICAS] = str(role.replicas)
            step, workload = self._apply(child)
            if step is not None:
                lane.append(step)
        self.after[role.name] = workload
        if workload is not None and workload_kind(role).ordinal_pods:
            lane += self._unstick(role.name, workload)
        progress = workload_progress(role.name, role.replicas, workload)
        update = role.rollout_strategy.rolling_update if role.rollout_strategy else None
        progress.paused = bool(update and update.paused)
        if role_plan.replicas is not None:
            progress.desired = role.replicas  # still growing in paced steps: not there yet
        self.progress[role.name] = progress
        return tuple(lane)

    def _unstick(self, role_name: str, sts: dict) -> list[Step]:
        """Replace pods an ordinal rollout (a StatefulSet's) would wait on for ever (see stuck.py), within the
        rollout's maxUnavailable; and look again when pods not stuck yet would be."""
        status = sts.get("status") or {}
        if status.get("observedGeneration") != sts["metadata"]["generation"] or not status.get("updateRevision"):
            return []
        if status.get("updateRevision") == status.get("currentRevision"):
            return []
        rolling = (sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        found = stuck_pods(
            self.snap.role_pods(role_name),
            status["updateRevision"],
            rolling.get("partition", 0),
            resolve(rolling.get("maxUnavailable"), sts["spec"].get("replicas", 1), default=1) or 1,
            self.now,
        )
        self.look_again.append(found.requeue_after)
        # On an old revision, so the restart policies do not count it as lost.
        return [
            DeletePod(
                pod,
                Emit(
                    "Normal",
                    "ReplacedStuckPod",
                    f"pod {pod['metadata']['name']} never became ready on the old revision; "
                    f"replacing it with the new one",
                ),
            )
            for pod in found.replace
        ]

    def _record_revision(self) -> RecordRevision | None:
        """Keep a ControllerRevision of the role templates for every revision, newest numbered highest."""
        group = self.group
        revisions = [r for r in self.snap.revisions if _owned_by(r, self.snap.uid)]
        revision = group_revision_of(group, self.build)
        name = f"{group.name}-{revision}"
        highest = max((r.get("revision", 0) for r in revisions), default=0)
        current = next((r for r in revisions if r["metadata"]["name"] == name), None)
        if current is not None and current.get("revision", 0) == highest:
            return None
        # A new revision, or an old one coming back (an undo): it becomes the newest. A revision's
        # data is immutable, so an old one is renumbered with a patch of that field alone.
        kept = [r for r in revisions if r["metadata"]["name"] != name]
        prune = tuple(sorted(kept, key=lambda r: r.get("revision", 0))[: max(0, len(kept) + 1 - HISTORY_LIMIT)])
        if current is None:
            return RecordRevision(
                controller_revision(group, owner_reference(group), highest + 1, revision), None, prune
            )
        return RecordRevision(None, (name, highest + 1), prune)

    def _remove_stale_group_children(self, wanted: set[tuple[str, str, str]]) -> None:
        """Delete gang objects the group no longer wants (gang scheduling turned off or switched, a
        role's pod group gone with its role or its per-role minimum)."""
        lane = [
            Delete(obj, f"gang scheduling no longer uses {kind} {obj['metadata']['name']}")
            for api_version, kind in GANG_KINDS
            for obj in self.snap.labelled_children(api_version, kind)
            if (api_version, kind, obj["metadata"]["name"]) not in wanted and _owned_by(obj, self.snap.uid)
        ]
        if lane:
            self._batch().append(tuple(lane))

    def _remove_stale_role_children(self) -> None:
        """Delete children of roles that left the spec, and children of a kind the role no longer has
        (a workload of its old kind, a scaling adapter it no longer enables)."""
        role_kinds = {
            r.name: {"Service", r.workload.kind}
            | ({ADAPTER[1]} if r.scaling_adapter and r.scaling_adapter.enable else set())
            for r in self.group.spec.roles
        }
        lane = []
        for api_version, kind in ROLE_CHILD_KINDS:
            for obj in self.snap.labelled_children(api_version, kind):
                role = obj["metadata"].get("labels", {}).get(naming.LABEL_ROLE)
                if not _owned_by(obj, self.snap.uid):
                    continue  # not ours: never delete what another group or a user made
                if role in role_kinds and kind in role_kinds[role]:
                    continue
                lane.append(Delete(obj, f"role {role} no longer has it"))
        if lane:
            self._batch().append(tuple(lane))

    # -- sizes and coordination ------------------------------------------------------------

    def _applied_replicas(self) -> dict[str, int]:
        """Replicas the workloads run with where they differ from the spec: another writer's value
        that stands, or a coordinated step. The topology and the gang follow these."""
        applied = {}
        for role in self.group.spec.roles:
            decision = self.ownership[role.name]
            if not decision.apply and decision.running is not None:
                applied[role.name] = decision.running
            elif self.role_plans.get(role.name, RolePlan()).replicas is not None:
                applied[role.name] = self.role_plans[role.name].replicas
        return applied

    def _gang_size(self, applied: dict[str, int]) -> int | None:
        """The pods the gang counts: the replicas applied, raised only as far as the pods exist
        (gang_size)."""
        backend = gang_backend(self.group)
        if backend is None:
            return None
        observed = self.snap.controlled(*PODGROUP_KINDS[backend], self.group.name)
        pods = sum(1 for p in self.snap.pods if _live(p))
        return gang_size(min_member(self.group, applied), applied_gang_size(observed), pods)

    def _policy_rules(self) -> tuple[list, list[str] | None]:
        """The rules of the CoordinatedPolicy named like the group, and what of it cannot be used
        (None: there is no policy)."""
        if self.snap.policy is None:
            return [], None
        return policy.policy_rules(self.snap.policy, [r.name for r in self.group.spec.roles])

    def _coordinate(self, policy_rules: list) -> dict[str, RolePlan]:
        """What coordination rules decide for their roles this time round:
        - rollingUpdate: StatefulSet partitions that keep updated-and-ready fractions within maxSkew,
          and the rule's maxUnavailable;
        - scaling: replicas raised in steps that keep the roles' scheduled (or ready) fractions within
          maxSkew. Decreases are never paced."""
        group = self.group
        plans: dict[str, dict] = {}
        for rule in [*group.coordination, *policy_rules]:
            strategy = rule.strategy
            update = strategy.rolling_update if strategy else None
            if update is not None:
                observed: list[RoleRollout] = []
                for role_name in rule.roles:
                    role = group.spec.role(role_name)
                    # Paced by partitions: only workloads that update by ordinal above one.
                    workload = self.snap.workload(role) if workload_kind(role).coordinated_rollout else None
                    if workload is None:
                        continue  # a role being created starts on the newest revision anyway
                    observed.append(self._rollout_of(role, workload))
                    if update.max_unavailable:
                        plans.setdefault(role_name, {})["max_unavailable"] = update.max_unavailable
                for name, allowed in coordinated_allowance(observed, update.max_skew, update.partition).items():
                    plans.setdefault(name, {})["partition"] = group.spec.role(name).replicas - allowed
            scaling = strategy.scaling if strategy else None
            if scaling is not None:
                growing = [self._growth_of(group.spec.role(n), scaling.progression) for n in rule.roles]
                growing = [g for g in growing if g is not None]
                for name, allowed in coordinated_allowance(growing, scaling.max_skew, None).items():
                    plans.setdefault(name, {})["replicas"] = allowed
        return {name: RolePlan(**fields) for name, fields in plans.items()}

    def _growth_of(self, role, progression: str) -> RoleRollout | None:
        """A role growing towards its replicas: how many pods exist and how many are scheduled (or ready)."""
        current = (self.snap.workload(role) or {}).get("spec", {}).get("replicas", 0)
        if current >= role.replicas or not workload_kind(role).paced_growth:
            return None
        pods = [p for p in self.snap.role_pods(role.name) if _live(p)]
        if progression == "OrderReady":
            done = sum(1 for p in pods if conditions.is_ready(p))
        else:
            done = sum(1 for p in pods if p["spec"].get("nodeName"))
        return RoleRollout(role.name, role.replicas, min(done, role.replicas), current)

    def _rollout_of(self, role, sts: dict) -> RoleRollout:
        replicas = role.replicas
        labels = sts["metadata"].get("labels") or {}
        if labels.get(revision_label(role.name)) != role_revision(self.group, role, self.build):
            return RoleRollout(role.name, replicas, 0, 0)  # a new revision: nothing is allowed onto it yet
        status = sts.get("status") or {}
        if sts["kind"] == "RoleInstanceSet":  # instances, each updated and ready as a whole
            partition = (sts["spec"].get("updateStrategy") or {}).get("partition", 0)
            seen = status.get("observedGeneration") == sts["metadata"]["generation"]
            updated_ready = status.get("updatedReadyReplicas", 0) if seen else 0
            return RoleRollout(role.name, replicas, min(updated_ready, replicas), max(0, replicas - partition))
        partition = ((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
        revision = (
            status.get("updateRevision") if status.get("observedGeneration") == sts["metadata"]["generation"] else None
        )
        updated_ready = sum(
            1
            for pod in self.snap.role_pods(role.name)
            if revision
            and pod["metadata"]["labels"].get("controller-revision-hash") == revision
            and _live(pod)
            and conditions.is_ready(pod)
        )
        return RoleRollout(role.name, replicas, min(updated_ready, replicas), max(0, replicas - partition))

    # -- restarts and status ---------------------------------------------------------------

    def _restarts(self) -> RestartPlan:
        # Only the group's own StatefulSets, as this pass leaves them: one of that name that
        # another owner holds says nothing about this group's pods.
        statefulsets = {}
        for role in self.group.spec.roles:
            if not workload_kind(role).ordinal_pods:
                continue  # a pod can be lost (gone below replicas) only where pods have ordinals
            sts = self.after.get(role.name) if role.name in self.after else self.snap.workload(role)
            if sts is not None:
                statefulsets[role.name] = sts
        restarts = plan_restarts(
            self.body, self.group, list(self.snap.pods), statefulsets, self.options.restarts, self.now
        )
        # The restart state, which holds a recreation's intent, goes before every other write of
        # the pass, so no delete of it (a stale child, a stuck pod, a doomed pod) comes first.
        intent = tuple(s for s in restarts.steps if isinstance(s, WriteRestartState))
        rest = tuple(s for s in restarts.steps if not isinstance(s, WriteRestartState))
        if intent:
            self.batches.insert(0, [intent])
        if rest:
            self._batch().append(rest)
        return restarts

    def _report(
        self, restarts: RestartPlan, policy_problems: list[str] | None
    ) -> tuple[dict | None, list[Emit], float | None]:
        """The status to write, the Events it brings, and the seconds until the progress deadline
        passes, if it may."""
        group, body = self.group, self.body
        previous_status = body.get("status") or {}
        previous_conditions = previous_status.get("conditions")
        events: list[Emit] = []
        roles = [self.progress[r.name] for r in group.spec.roles]
        deadline, complaint = health.progress_deadline(
            body["metadata"].get("annotations"), self.options.progress_deadline
        )
        if complaint and _new_generation(body):
            events.append(Emit("Warning", "InvalidAnnotation", complaint))
        blockers = {p.name: health.pod_blockers(self.snap.role_pods(p.name)) for p in roles if not p.is_ready}
        verdict = health.group_health(
            previous_status,
            body["metadata"].get("generation", 0),
            roles,
            self.waiting,
            blockers,
            restarts.budget_exhausted,
            deadline,
            self.now,
        )
        role_statuses = [
            {"name": p.name, "replicas": p.replicas, "readyReplicas": p.ready, "updatedReplicas": p.updated}
            for p in roles
        ]
        ready = verdict.conditions[0]
        previous = conditions.find(previous_conditions, "Ready")
        overridden = overridden_conditions(group, self.ownership, previous_conditions)
        applied = policy.applied_conditions(group.name, policy_problems, previous_conditions)
        minimums = role_minimums_conditions(group, self.build, previous_conditions)
        draining = drain_plan.draining_condition(self.snap.pods, previous_conditions, self.now)
        status = planned_status(
            body,
            [*verdict.conditions, *restarts.conditions, *overridden, *applied, *minimums, *draining],
            role_statuses,
            verdict.restamp,
            timestamps.stamp(self.now),
        )
        before_minimums = conditions.find(previous_conditions, ROLE_MINIMUMS_APPLIED) or {}
        if minimums and minimums[0]["status"] == "False" and before_minimums.get("message") != minimums[0]["message"]:
            events.append(Emit("Warning", minimums[0]["reason"], minimums[0]["message"]))
        before_policy = conditions.find(previous_conditions, policy.APPLIED) or {}
        if applied and applied[0]["status"] == "False" and before_policy.get("message") != applied[0]["message"]:
            events.append(Emit("Warning", applied[0]["reason"], applied[0]["message"]))
        before = conditions.find(previous_conditions, OVERRIDDEN) or {}
        if overridden and overridden[0]["status"] == "True" and before.get("message") != overridden[0]["message"]:
            events.append(Emit("Normal", OVERRIDDEN, overridden[0]["message"]))
        # A new group's first "not ready yet" is no news after its Created Event; every later
        # change of reason, and a first status that says more (waiting, given up), is.
        first_and_expected = previous is None and ready["reason"] == "RolesNotReady"
        if (
            status is not None
            and not first_and_expected
            and (previous is None or previous.get("reason") != ready["reason"])
        ):
            stalled = ready["reason"] in (health.DEADLINE_EXCEEDED, "RestartBudgetExhausted")
            events.append(Emit("Warning" if stalled else "Normal", ready["reason"], ready["message"]))
        return status, events, verdict.requeue_after
