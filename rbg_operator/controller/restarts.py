"""Restart policies: what a container restart or a lost pod recreates.

- RecreateRBGOnPodRestart: every pod of the whole group, once per incident, with backoff
  between recreations and a budget of incidents per window, after which the operator
  stops and keeps the failed pods for debugging.
- RecreateRoleInstanceOnPodRestart: only the affected instance (the single pod; a
  LeaderWorkerSet recreates its own group through its restartPolicy).
- None: the workload controller's own behaviour.

Level-triggered: in the group's reconcile (so only by the leader), the observed pods are
compared with a per-pod baseline (UID, restart count, revision) persisted in the group's
restart-state annotation (compressed: at the 5,000-pod cap it stays near 80 KB, a third of the
256 KiB the API server allows all annotations). An incident is a difference from the baseline; the baseline moves
on only once the incident is acted on, so a restarted or newly elected operator neither
loses nor replays one. The intent of a recreation (which pods, why, when) is persisted
before any pod is deleted, and the recreation is complete when those UIDs are gone and
their replacements exist: no clocks are compared with pod timestamps.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
import logging
import zlib

import pydantic

from .. import kinds, naming, timestamps
from ..api.common import json_object
from ..api.v1alpha2 import RoleBasedGroupV2
from ..desired.workload_kinds import of as workload_kind
from ..events import EventRecorder
from ..kube import KINDS, Kube
from .steps import CountRecreation, DeletePod, Emit, Step, WriteRestartState
from .store import Store

log = logging.getLogger(__name__)

GROUP_WIDE = "RecreateRBGOnPodRestart"
PER_INSTANCE = "RecreateRoleInstanceOnPodRestart"
ACTING = (GROUP_WIDE, PER_INSTANCE)


def acted_on_policies(roles: list) -> dict[str, str | None]:
    """Each role's restart policy as this tracker acts on it: a group-wide one always, a
    per-instance one where the workload does not recreate its own instances."""
    return {
        role.name: policy if policy == GROUP_WIDE or not workload_kind(role).recreates_instances else None
        for role in roles
        for policy in [role.restart_policy]
    }


POD = ("v1", "Pod")


@dataclasses.dataclass(frozen=True)
class RestartSettings:
    backoff_base: float = 10.0  # seconds before the 2nd recreation in a row; doubles each time
    backoff_cap: float = 300.0
    quiet_period: float = 600.0  # no recreation for this long resets the backoff
    budget: int = 5  # group recreations allowed per window...
    budget_window: float = 1800.0  # ...of this many seconds


def uid_key(uid: str) -> str:
    """A pod's UID as the restart state keeps it: 48 bits of its hash, a third of its length. It
    tells a pod from its same-name successor, and the pods a recreation deleted from their
    replacements; two of up to 5,000 pods share one with a chance of about 1 in 10 million."""
    return hashlib.sha256(uid.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Incident:
    pod: str
    uid: str  # uid_key of the pod
    role: str
    what: str  # "restarted" or "was lost"


@dataclasses.dataclass(frozen=True)
class Baseline:
    """What a pod looked like when the operator last accepted it as normal."""

    uid: str  # uid_key of the pod
    restarts: int
    revision: str  # its controller-revision-hash: a pod replaced by a rolling update was not lost
    role: str

    def encode(self) -> list:
        return [self.uid, self.restarts, self.revision, self.role]

    @classmethod
    def decode(cls, raw) -> Baseline | None:
        try:
            uid, restarts, revision, role = raw
            return cls(str(uid), int(restarts), str(revision), str(role))
        except (TypeError, ValueError):
            return None


def restart_count(pod: dict) -> int:
    status = pod.get("status") or {}
    return sum(
        c.get("restartCount", 0)
        for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    )


def baseline_of(pod: dict, role: str) -> Baseline:
    labels = pod["metadata"].get("labels") or {}
    return Baseline(
        uid_key(pod["metadata"]["uid"]), restart_count(pod), labels.get("controller-revision-hash", ""), role
    )


# The restart-state annotation: "z1:" and the base64 of the zlib-compressed JSON state, whose
# baseline is grouped by role and revision ({role: {revision: [[pod, uid_key, restarts], ...]}}),
# sorted by pod name, so that what repeats compresses away.
STATE_PREFIX = "z1:"
# Decompressed, a state of 5,000 pods is about 300 KB; anything much larger was not written by
# the operator (a hand-made or hostile annotation), and is read as no state rather than inflated.
MAX_STATE_BYTES = 4 * 1024 * 1024


def encode_state(state: dict) -> str:
    packed: dict[str, dict[str, list]] = {}
    for name, raw in sorted((state.get("pods") or {}).items()):
        entry = Baseline.decode(raw)
        if entry is not None:
            packed.setdefault(entry.role, {}).setdefault(entry.revision, []).append([name, entry.uid, entry.restarts])
    text = json.dumps({**state, "pods": packed}, sort_keys=True, separators=(",", ":"))
    return STATE_PREFIX + base64.b64encode(zlib.compress(text.encode())).decode()


def decode_state(text: str | None) -> dict:
    """The state an annotation holds, in the form `RestartTracker` works with ({} if unreadable).
    The uncompressed JSON of earlier releases, with whole UIDs, is read too."""
    if not text or not text.startswith(STATE_PREFIX):
        state = json_object(text)  # earlier releases: {"pods": {name: [uid, restarts, revision, role]}, ...}
        pods = state.get("pods") if isinstance(state.get("pods"), dict) else {}
        state["pods"] = {
            name: [uid_key(str(raw[0])), *raw[1:]]
            for name, raw in pods.items()
            if isinstance(raw, list) and len(raw) == 4
        }
        recreating = state.get("recreating")
        if isinstance(recreating, dict) and isinstance(recreating.get("uids"), list):
            recreating["uids"] = [uid_key(str(uid)) for uid in recreating["uids"]]
        return state
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(base64.b64decode(text[len(STATE_PREFIX) :], validate=True), MAX_STATE_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"more than {MAX_STATE_BYTES} bytes uncompressed")
    except (ValueError, binascii.Error, zlib.error) as error:
        log.warning("unreadable restart state (%s); starting from none", error)
        return {}
    state = json_object(raw.decode(errors="replace"))
    pods = {}
    for role, revisions in (state.get("pods") if isinstance(state.get("pods"), dict) else {}).items():
        for revision, entries in (revisions if isinstance(revisions, dict) else {}).items():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, list) and len(entry) == 3:
                    pods[str(entry[0])] = [entry[1], entry[2], revision, role]
    state["pods"] = pods
    return state


async def delete_pod(kube: Kube, store: Store, pod: dict) -> bool:
    """Delete this very pod (by UID, never a successor of the same name). Returns False when it
    was gone already; then the cache, which still showed it, forgets it."""
    meta = pod["metadata"]
    if await kube.delete(KINDS[POD], meta["namespace"], meta["name"], uid=meta["uid"]):
        return True
    store.remove(*POD, meta["namespace"], meta["name"], meta["uid"])
    return False


def _live(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp")


def was_lost(entry: Baseline, name: str, statefulset: dict | None) -> bool:
    """A StatefulSet pod gone (or replaced) while its StatefulSet still wants it at the revision
    it ran: not a scale-down, not a rolling update, not the StatefulSet's own deletion."""
    if statefulset is None or statefulset["metadata"].get("deletionTimestamp"):
        return False
    ordinal = name.rsplit("-", 1)[-1]
    return (
        ordinal.isdigit()
        and int(ordinal) < statefulset["spec"].get("replicas", 0)
        and entry.revision == (statefulset.get("status") or {}).get("updateRevision")
    )


def detect(
    baseline: dict[str, Baseline], pods: list[dict], policies: dict[str, str], statefulsets: dict[str, dict]
) -> tuple[list[Incident], dict[str, Baseline]]:
    """Incidents (pure): each difference between the observed pods and the baseline that a
    role's policy acts on. Returns them with the baseline as it would be if they were accepted:
    pods of acting roles that are bound to a node, with their current restart counts.

    `pods`: the group's pods; `policies`: role -> restartPolicy; `statefulsets`: role -> its
    StatefulSet, for roles that run as one."""
    by_name = {p["metadata"]["name"]: p for p in pods}
    incidents = []
    for name, entry in baseline.items():
        policy = policies.get(entry.role)
        if policy not in ACTING:
            continue
        pod = by_name.get(name)
        if pod is not None and uid_key(pod["metadata"]["uid"]) == entry.uid:
            if restart_count(pod) > entry.restarts:
                incidents.append(Incident(name, entry.uid, entry.role, "restarted"))
        elif policy == GROUP_WIDE and was_lost(entry, name, statefulsets.get(entry.role)):
            incidents.append(Incident(name, entry.uid, entry.role, "was lost"))
    accepted = {}
    for pod in pods:
        role = (pod["metadata"].get("labels") or {}).get(naming.LABEL_ROLE)
        # A pod that never reached a node ran nothing: losing it (a gang replaced, a stuck pod
        # cleared) is no incident, so only bound pods enter the baseline.
        bound = (pod.get("spec") or {}).get("nodeName")
        if policies.get(role) in ACTING and _live(pod) and bound and not naming.restart_ignored(pod):
            accepted[pod["metadata"]["name"]] = baseline_of(pod, role)
    return incidents, accepted


def recreation_done(recreating: dict, pods: list[dict], wanted_pods: int) -> bool:
    """Every pod the recreation deleted is gone, and replacements exist: as many live pods as
    were deleted, or as the spec wants now if that is fewer (it may have shrunk meanwhile)."""
    deleted = set(recreating.get("uids") or [])  # uid_keys
    present = {uid_key(p["metadata"]["uid"]) for p in pods}
    if deleted & present:
        return False
    live = sum(1 for p in pods if _live(p))
    return live >= min(len(deleted), wanted_pods)


@dataclasses.dataclass(frozen=True)
class RestartPlan:
    """What the restart policies decide in one pass: the writes in their order (the state
    annotation, holding the intent, always before a pod is deleted), what the group's status
    should say, and when to look again."""

    steps: tuple[Step, ...] = ()
    conditions: tuple[dict, ...] = ()
    budget_exhausted: str | None = None  # message, when recreation has stopped
    requeue_after: float | None = None


def load_state(body: dict) -> dict:
    state = decode_state((body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RESTART_STATE))
    state.setdefault("recreations", [])
    return state


def _save(body: dict, state: dict) -> tuple[Step, ...]:
    """The write of `state`, if it says anything new."""
    text = encode_state(state)
    annotations = body["metadata"].get("annotations") or {}
    if annotations.get(naming.ANNOTATION_RESTART_STATE) == text:
        return ()
    if (
        not state["recreations"]
        and not state.get("recreating")
        and not state.get("exhausted")
        and not state.get("pods")
        and naming.ANNOTATION_RESTART_STATE not in annotations
    ):
        return ()  # nothing worth recording yet: no write
    return (WriteRestartState(text),)


def _delete_uids(pods: list[dict], uids: set[str]) -> tuple[Step, ...]:
    """Delete the live pods whose uid_key is in `uids`."""
    return tuple(DeletePod(pod) for pod in pods if uid_key(pod["metadata"]["uid"]) in uids and _live(pod))


def backoff(settings: RestartSettings, recreations: list[str], now: datetime.datetime) -> float:
    """Exponential wait since the last recreation, reset after a quiet period."""
    if not recreations:
        return 0.0
    last = timestamps.parse(recreations[-1])
    since = (now - last).total_seconds()
    if since >= settings.quiet_period:
        return 0.0
    streak = 1
    stamps = [timestamps.parse(s) for s in recreations]
    for earlier, later in zip(reversed(stamps[:-1]), reversed(stamps[1:]), strict=True):
        if (later - earlier).total_seconds() >= settings.quiet_period:
            break
        streak += 1
    wait = min(settings.backoff_cap, settings.backoff_base * 2 ** (streak - 1))
    return max(0.0, wait - since)


def plan_restarts(
    body: dict,
    group: RoleBasedGroupV2,
    pods: list[dict],
    statefulsets: dict[str, dict],
    settings: RestartSettings,
    now: datetime.datetime,
) -> RestartPlan:
    """Pure: the group as stored (its restart-state annotation), its pods, and its own
    StatefulSets by role in; the restart policies' decisions out."""
    policies = acted_on_policies(group.spec.roles)
    state = load_state(body)
    if not any(p in ACTING for p in policies.values()) and not state.get("recreating"):
        if state.get("pods"):
            state["pods"] = {}
            return RestartPlan(_save(body, state))
        return RestartPlan()
    generation = body["metadata"].get("generation", 0)
    reset_token = (body["metadata"].get("annotations") or {}).get(naming.ANNOTATION_RESTART_RESET, "")
    if state.get("generation") != generation or state.get("reset", "") != reset_token:
        # A spec change or the reset annotation starts the budget afresh; a recreation under
        # way and the baseline carry over, so neither is dropped nor replayed.
        state = {
            "generation": generation,
            "reset": reset_token,
            "recreations": [],
            "recreating": state.get("recreating"),
            "pods": state.get("pods", {}),
        }
    baseline = {
        name: entry for name, raw in (state.get("pods") or {}).items() if (entry := Baseline.decode(raw)) is not None
    }
    incidents, accepted = detect(baseline, pods, policies, statefulsets)

    recreating = state.get("recreating")
    if recreating:
        doomed = _delete_uids(pods, set(recreating.get("uids") or []))  # left by a crash
        wanted = sum(r.replicas * r.pods_per_replica for r in group.spec.roles)
        if recreation_done(recreating, pods, wanted):
            state["recreating"] = None
            state["pods"] = {name: e.encode() for name, e in accepted.items()}
            condition = {
                "type": "RestartInProgress",
                "status": "False",
                "reason": "RecreateComplete",
                "message": f"group recreated after pod {recreating['pod']} {recreating['what']}",
            }
        else:
            # Pods the recreation deletes or restarts start nothing new.
            condition = {
                "type": "RestartInProgress",
                "status": "True",
                "reason": "RecreatingGroup",
                "message": f"recreating every pod after pod {recreating['pod']} {recreating['what']}",
            }
        return RestartPlan((*_save(body, state), *doomed), (condition,))

    per_instance = [i for i in incidents if policies.get(i.role) == PER_INSTANCE]
    group_wide = [i for i in incidents if policies.get(i.role) == GROUP_WIDE]
    recent = [s for s in state["recreations"] if (now - timestamps.parse(s)).total_seconds() < settings.budget_window]

    told: tuple[Step, ...] = ()
    exhausted = None
    if state.get("exhausted") or (group_wide and len(recent) >= settings.budget):
        state["exhausted"] = True
        exhausted = (
            f"{len(recent)} group recreations within {int(settings.budget_window)}s; not recreating again "
            f"and keeping the failed pods. Change the spec or set the annotation "
            f"{naming.ANNOTATION_RESTART_RESET} to a new value to re-arm."
        )
        if group_wide and not state.get("exhausted_reported"):
            state["exhausted_reported"] = True
            told = (Emit("Warning", "RestartBudgetExhausted", exhausted),)
        group_wide = []  # seen, and deliberately not acted on: the baseline moves past them
    elif group_wide and (delay := backoff(settings, state["recreations"], now)) > 0:
        # Not yet: the baseline stays, so the incident is still there when the backoff ends,
        # whichever operator looks then.
        return RestartPlan(_save(body, state), requeue_after=delay)

    if group_wide:
        first = group_wide[0]
        live = [p for p in pods if _live(p)]
        state["recreations"] = recent + [timestamps.stamp(now)]
        state["recreating"] = {
            "since": timestamps.stamp(now),
            "pod": first.pod,
            "what": first.what,
            "uids": sorted(uid_key(p["metadata"]["uid"]) for p in live),
        }
        state["pods"] = {}
        return RestartPlan(
            (
                *_save(body, state),  # the intent first: a crash after it finishes the job
                CountRecreation(),
                Emit(
                    "Warning",
                    "RecreatingGroup",
                    f"pod {first.pod} {first.what}; recreating all {len(live)} pods of the group",
                ),
                *_delete_uids(pods, set(state["recreating"]["uids"])),
            ),
            (
                {
                    "type": "RestartInProgress",
                    "status": "True",
                    "reason": "RecreatingGroup",
                    "message": f"recreating every pod after pod {first.pod} {first.what}",
                },
            ),
        )

    # Per-instance incidents: the baseline forgets the pod before it is deleted, so its
    # replacement is simply a new pod to the next pass, whatever happens in between.
    for incident in per_instance:
        accepted.pop(incident.pod, None)
    state["pods"] = {name: e.encode() for name, e in accepted.items()}
    steps = [*told, *_save(body, state)]
    for incident in per_instance:
        steps += [
            *_delete_uids(pods, {incident.uid}),
            Emit("Normal", "RecreatingInstance", f"pod {incident.pod} {incident.what}; recreating that instance"),
        ]
    return RestartPlan(tuple(steps), budget_exhausted=exhausted)


class RestartTracker:
    """Whether a group's reconcile reads its pods, and the restart settings; the decisions are
    plan_restarts', and nothing is kept in memory between passes."""

    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder, settings: RestartSettings):
        self.kube, self.store, self.recorder, self.settings = kube, store, recorder, settings
        # Per group: (resourceVersion, has a role with a restart policy). Asked on every pod event,
        # so the group is decoded once per version, not once per event.
        self._policy_by_version: dict[tuple[str, str], tuple[int, bool]] = {}

    def reads_pods(self, namespace: str, group_name: str) -> bool:
        """Whether the group's reconcile acts on its pods' changes (a role with a restart policy)."""
        key = (namespace, group_name)
        version = self.store.version_of(kinds.API_VERSION, "RoleBasedGroup", namespace, group_name)
        if version is None:
            self._policy_by_version.pop(key, None)
            return False
        cached = self._policy_by_version.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        group = self.store.get(kinds.API_VERSION, "RoleBasedGroup", namespace, group_name) or {}
        try:
            roles = RoleBasedGroupV2.model_validate(group, context={"structure_only": True}).spec.roles
        except pydantic.ValidationError:
            roles = []  # the group's reconcile reports it
        acting = any(p in ACTING for p in acted_on_policies(roles).values())
        self._policy_by_version[key] = (version, acting)
        return acting
