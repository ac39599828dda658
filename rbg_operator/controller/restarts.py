"""Restart policies: what a container restart or a lost pod recreates.

- RecreateRBGOnPodRestart: every pod of the whole group, once per incident, with backoff
  between recreations and a budget of incidents per window, after which the operator
  stops and keeps the failed pods for debugging.
- RecreateRoleInstanceOnPodRestart: only the affected instance (the single pod; a
  LeaderWorkerSet recreates its own group through its restartPolicy).
- None: the workload controller's own behaviour.

Incidents are seen on pod watch events (a container's restartCount going up, or a pod of a
StatefulSet role lost); what to do about them is decided in the group's reconcile. The
incident history is kept in an annotation on the group so a restarted operator honours it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging

from .. import metrics, naming
from ..api.rolebasedgroup import RoleBasedGroup
from ..events import EventRecorder
from ..kube import KINDS, Kube
from .store import Store

log = logging.getLogger(__name__)

GROUP_WIDE = "RecreateRBGOnPodRestart"
PER_INSTANCE = "RecreateRoleInstanceOnPodRestart"
POD = ("v1", "Pod")


@dataclasses.dataclass(frozen=True)
class RestartSettings:
    backoff_base: float = 10.0  # seconds before the 2nd recreation in a row; doubles each time
    backoff_cap: float = 300.0
    quiet_period: float = 600.0  # no recreation for this long resets the backoff
    budget: int = 5  # group recreations allowed per window...
    budget_window: float = 1800.0  # ...of this many seconds


@dataclasses.dataclass
class Incident:
    pod: str
    uid: str
    role: str
    what: str  # "restarted" or "was lost"


def _restart_count(pod: dict) -> int:
    status = pod.get("status") or {}
    return sum(c.get("restartCount", 0)
               for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str) -> datetime.datetime:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


@dataclasses.dataclass
class RestartOutcome:
    """What the group's status should say about restarts, and when to look again."""

    conditions: list[dict]
    budget_exhausted: str | None = None  # message, when recreation has stopped
    requeue_after: float | None = None


class RestartTracker:
    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder, settings: RestartSettings):
        self.kube, self.store, self.recorder, self.settings = kube, store, recorder, settings
        self.pending: dict[tuple[str, str], list[Incident]] = {}
        self.expected_deletions: set[str] = set()  # pod UIDs the operator deleted itself
        # Groups being recreated: only their pods' comings and goings tell when that is done,
        # so only their pod events wake them (other pod events carry nothing a reconcile reads).
        self.awaiting_pods: set[tuple[str, str]] = set()

    # -- seeing incidents (called from pod watch events, before the store is updated) --

    def observe(self, event_type: str | None, pod: dict) -> tuple[str, str] | None:
        """Record an incident if this pod event is one; returns the group to reconcile."""
        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        group_name, role_name = labels.get(naming.LABEL_GROUP_NAME), labels.get(naming.LABEL_ROLE)
        if not group_name or not role_name:
            return None
        key = (meta["namespace"], group_name)
        old = self.store.get(*POD, meta["namespace"], meta["name"])
        if event_type == "DELETED":
            if meta.get("uid") in self.expected_deletions:
                self.expected_deletions.discard(meta["uid"])
                return None
            if self._policy(key, role_name) == GROUP_WIDE and self._lost(pod):
                self.pending.setdefault(key, []).append(Incident(meta["name"], meta["uid"], role_name, "was lost"))
                return key
            return None
        if old is None or old["metadata"].get("uid") != meta.get("uid"):
            return None
        if _restart_count(pod) > _restart_count(old) and self._policy(key, role_name) in (GROUP_WIDE, PER_INSTANCE):
            self.pending.setdefault(key, []).append(Incident(meta["name"], meta["uid"], role_name, "restarted"))
            return key
        return None

    def _policy(self, key: tuple[str, str], role_name: str) -> str | None:
        group = self.store.get(naming.API_VERSION, "RoleBasedGroup", *key)
        if group is None or group["metadata"].get("deletionTimestamp"):
            return None
        role = next((r for r in (group.get("spec") or {}).get("roles", []) if r.get("name") == role_name), None)
        return (role or {}).get("restartPolicy")

    def _lost(self, pod: dict) -> bool:
        """A StatefulSet pod deleted while its StatefulSet still wants it at this revision
        (not a scale-down, not a rolling update): lost, not replaced on purpose."""
        owner = next((o for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "StatefulSet"), None)
        if owner is None:
            return False
        sts = self.store.get("apps/v1", "StatefulSet", pod["metadata"]["namespace"], owner["name"])
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return False
        index = (pod["metadata"].get("labels") or {}).get(naming.STATEFULSET_POD_INDEX)
        revision = (pod["metadata"].get("labels") or {}).get("controller-revision-hash")
        return (index is not None and int(index) < sts["spec"].get("replicas", 0)
                and revision == (sts.get("status") or {}).get("updateRevision"))

    # -- acting on them (called from the group's reconcile) --

    async def reconcile(self, body: dict, group: RoleBasedGroup, all_ready: bool) -> RestartOutcome:
        key = (group.namespace, group.name)
        incidents = self.pending.pop(key, [])
        state = self._load(body)
        now = _now()
        outcome = RestartOutcome(conditions=[])
        generation = body["metadata"].get("generation", 0)
        reset_token = (body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RESTART_RESET, "")
        if state.get("generation") != generation or state.get("reset", "") != reset_token:
            # A spec change or the reset annotation starts the budget afresh.
            state = {"generation": generation, "reset": reset_token, "recreations": [], "recreating": None}

        policies = {r.name: (r.restart_policy, r.workload.kind) for r in group.spec.roles}
        for incident in incidents:
            policy, kind = policies.get(incident.role, (None, None))
            if policy == PER_INSTANCE and kind != "LeaderWorkerSet":  # a LeaderWorkerSet recreates its own group
                await self._delete_pods(group.namespace, [incident.pod])
                await self.recorder.emit(body, "Normal", "RecreatingInstance",
                                         f"pod {incident.pod} {incident.what}; recreating that instance")
        group_incidents = [i for i in incidents if policies.get(i.role, (None,))[0] == GROUP_WIDE]

        recreating = state.get("recreating")
        self.awaiting_pods.discard(key)
        if recreating and all_ready and self._all_pods_newer(group, _parse(recreating["since"])):
            state["recreating"] = None
            outcome.conditions.append({"type": "RestartInProgress", "status": "False", "reason": "RecreateComplete",
                                       "message": f"group recreated after pod {recreating['pod']} {recreating['what']}"})
        elif recreating:
            self.awaiting_pods.add(key)
            group_incidents = []  # restarts caused by the recreation itself start nothing new
            outcome.conditions.append({"type": "RestartInProgress", "status": "True", "reason": "RecreatingGroup",
                                       "message": f"recreating every pod after pod {recreating['pod']} {recreating['what']}"})

        recent = [s for s in state["recreations"] if (now - _parse(s)).total_seconds() < self.settings.budget_window]
        if state.get("exhausted") or (group_incidents and len(recent) >= self.settings.budget):
            state["exhausted"] = True
            outcome.budget_exhausted = (
                f"{len(recent)} group recreations within {int(self.settings.budget_window)}s; not recreating again "
                f"and keeping the failed pods. Change the spec or set the annotation "
                f"{naming.ANNOTATION_RESTART_RESET} to a new value to re-arm.")
            if group_incidents and not state.get("exhausted_reported"):
                state["exhausted_reported"] = True
                await self.recorder.emit(body, "Warning", "RestartBudgetExhausted", outcome.budget_exhausted)
        elif group_incidents:
            delay = self._backoff(state, now)
            if delay > 0:
                self.pending.setdefault(key, []).extend(group_incidents)  # act on them when the backoff ends
                outcome.requeue_after = delay
            else:
                first = group_incidents[0]
                await self._recreate_group(body, group, first)
                state["recreations"] = recent + [_stamp(now)]
                state["recreating"] = {"since": _stamp(now), "pod": first.pod, "what": first.what}
                self.awaiting_pods.add(key)
                outcome.conditions.append({"type": "RestartInProgress", "status": "True", "reason": "RecreatingGroup",
                                           "message": f"recreating every pod after pod {first.pod} {first.what}"})
        await self._save(body, state)
        return outcome

    def _backoff(self, state: dict, now: datetime.datetime) -> float:
        """Exponential wait since the last recreation, reset after a quiet period."""
        if not state["recreations"]:
            return 0.0
        last = _parse(state["recreations"][-1])
        since = (now - last).total_seconds()
        if since >= self.settings.quiet_period:
            return 0.0
        streak = 1
        stamps = [_parse(s) for s in state["recreations"]]
        for earlier, later in zip(reversed(stamps[:-1]), reversed(stamps[1:])):
            if (later - earlier).total_seconds() >= self.settings.quiet_period:
                break
            streak += 1
        wait = min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (streak - 1))
        return max(0.0, wait - since)

    def _all_pods_newer(self, group: RoleBasedGroup, since: datetime.datetime) -> bool:
        pods = self.store.owned_by_group(*POD, group.namespace, group.name)
        return bool(pods) and all(_parse(p["metadata"]["creationTimestamp"]) >= since for p in pods)

    async def _recreate_group(self, body: dict, group: RoleBasedGroup, trigger: Incident) -> None:
        pods = self.store.owned_by_group(*POD, group.namespace, group.name)
        metrics.group_recreations.inc()
        await self.recorder.emit(body, "Warning", "RecreatingGroup",
                                 f"pod {trigger.pod} {trigger.what}; recreating all {len(pods)} pods of the group")
        await self._delete_pods(group.namespace, [p["metadata"]["name"] for p in pods])

    async def _delete_pods(self, namespace: str, names: list[str]) -> None:
        for name in names:
            pod = self.store.get(*POD, namespace, name)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                continue
            self.expected_deletions.add(pod["metadata"]["uid"])
            if not await self.kube.delete(KINDS[POD], namespace, name, uid=pod["metadata"]["uid"]):
                self.store.remove(*POD, namespace, name, pod["metadata"]["uid"])

    def _load(self, body: dict) -> dict:
        raw = (body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RESTART_STATE)
        try:
            state = json.loads(raw) if raw else {}
        except ValueError:
            state = {}
        state.setdefault("recreations", [])
        return state

    async def _save(self, body: dict, state: dict) -> None:
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        if (body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RESTART_STATE) == text:
            return
        if not state["recreations"] and not state.get("recreating") and not state.get("exhausted") \
                and naming.ANNOTATION_RESTART_STATE not in (body["metadata"].get("annotations") or {}):
            return  # nothing worth recording yet: no write
        meta = body["metadata"]
        result = await self.kube.apply({
            "apiVersion": naming.API_VERSION, "kind": "RoleBasedGroup",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "annotations": {naming.ANNOTATION_RESTART_STATE: text}},
        })
        self.store.upsert(result, read_generation=meta.get("generation"))
