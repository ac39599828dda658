"""Drain-aware removal of serving pods, the pure part (docs/drain.md).

A pod of a worker role of a group with the drain annotation (api/drain.py) is taken out of the
router before the operator deletes it or updates it in place, and goes once its own load says no
request is in flight, or once the drain timeout has passed. Every decision here is made from the
pod's persisted drain state (the pod annotation `rbg.workloads.x-k8s.io/drain-state`) and what the
router and the pod answer now, never from the operator's memory: a new leader continues a drain
from its start time, and a pod whose drain is recorded as finished is never drained again.

Phases of the state:
- `Draining`: since `started`, the pod is being taken out of the router and its in-flight requests
  counted; `by` says which controller wants it gone (`pod`: a RoleInstance deleting or updating it
  in place, `instance`: a RoleInstanceSet deleting its instance).
- `Drained`: finished (`outcome`: Drained, TimedOut or RouterUnreachable); the pod at `revision`
  may go. If it is still there on another revision (updated in place) and serving, it rejoins.
- `Joined`: the router has it (found there, or added once the pod was Ready).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from .. import naming, timestamps
from ..api import drain
from . import conditions, pod_readiness

STATE_ANNOTATION = naming.ANNOTATION_DRAIN_STATE
FIELD_MANAGER = "rbg-operator-drain"
CONDITION = "Draining"
DRAINING, DRAINED, JOINED = "Draining", "Drained", "Joined"
BY_POD, BY_INSTANCE = "pod", "instance"
POLL_SECONDS = 1.0  # how often a drain in progress is looked at again
JOIN_RETRY_SECONDS = 5.0  # a Ready pod the router could not be told about yet
# A router serves (and lists workers) before it has added the servers on its command line: it adds
# each once that one answers its health check, seconds later. A pod seen by no router is joined only
# once every router has been Ready this long, so it is not added a second time, by its address.
ROUTER_SETTLE_SECONDS = 15.0


@dataclasses.dataclass(frozen=True)
class DrainState:
    phase: str
    started: str | None = None
    revision: str | None = None
    by: str | None = None
    finished: str | None = None
    outcome: str | None = None
    in_flight: int | None = None
    restarts: int | None = None  # the pod's container restarts when its drain began
    images: str | None = None  # the pod's images then: an in-place update that changes none restarts nothing
    url: str | None = None  # the router's URL of the pod, as it was found there
    why: str | None = None  # why the drain is still waiting (router unreachable, requests in flight)

    def text(self) -> str:
        raw = {
            "phase": self.phase,
            "started": self.started,
            "revision": self.revision,
            "by": self.by,
            "finished": self.finished,
            "outcome": self.outcome,
            "inFlight": self.in_flight,
            "restarts": self.restarts,
            "images": self.images,
            "url": self.url,
            "why": self.why,
        }
        return json.dumps({k: v for k, v in raw.items() if v is not None}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def of(cls, pod: dict) -> DrainState | None:
        text = (pod["metadata"].get("annotations") or {}).get(STATE_ANNOTATION)
        try:
            raw = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(raw, dict) or raw.get("phase") not in (DRAINING, DRAINED, JOINED):
            return None

        def get(key, kind):
            value = raw.get(key)
            return value if isinstance(value, kind) and not isinstance(value, bool) else None

        return cls(
            raw["phase"],
            get("started", str),
            get("revision", str),
            get("by", str),
            get("finished", str),
            get("outcome", str),
            get("inFlight", int),
            get("restarts", int),
            get("images", str),
            get("url", str),
            get("why", str),
        )


def revision(pod: dict) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(naming.LABEL_CONTROLLER_REVISION)


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def images(pod: dict) -> str:
    return ",".join(
        sorted(f"{c.get('name')}={c.get('image')}" for c in (pod.get("spec") or {}).get("containers") or [])
    )


def pod_ip(pod: dict) -> str | None:
    return (pod.get("status") or {}).get("podIP") or None


def serving(pod: dict) -> bool:
    """Running and Ready with an address: the router may be sending it requests."""
    status = pod.get("status") or {}
    return (
        not pod["metadata"].get("deletionTimestamp")
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and pod_readiness.condition(pod, "Ready") == "True"
    )


def worker_role(pod: dict, config: drain.DrainConfig | None) -> drain.WorkerRole | None:
    if config is None:
        return None
    return config.roles.get((pod["metadata"].get("labels") or {}).get(naming.LABEL_ROLE) or "")


def may_go(pod: dict, config: drain.DrainConfig | None) -> bool:
    """Whether the operator may delete or update the pod now: it is no worker of a drained role,
    its drain finished for the revision it runs, or it serves nothing and has no drain under way
    (a pod that never became Ready, a failed one)."""
    if worker_role(pod, config) is None:
        return True
    state = DrainState.of(pod)
    if state is not None and state.phase == DRAINED and state.revision == revision(pod):
        return True
    if state is not None and state.phase == DRAINING and state.revision == revision(pod):
        return False
    return not serving(pod)


def start(pod: dict, by: str, now: datetime.datetime) -> DrainState:
    return DrainState(DRAINING, timestamps.stamp(now), revision(pod), by, restarts=restarts(pod), images=images(pod))


def elapsed(state: DrainState, now: datetime.datetime) -> float:
    try:
        started = timestamps.parse_or_none(state.started)
    except ValueError:  # a hand-edited start: counted as just begun would never end, so as long over
        return float("inf")
    return 0.0 if started is None else max(0.0, (now - started).total_seconds())


@dataclasses.dataclass(frozen=True)
class Seen:
    """What the routers and the pod answered in this pass."""

    routers: int  # router pods with an address
    removed: int  # of those, the ones that now do not list the pod (it was removed, or was never there)
    router_errors: tuple[str, ...] = ()
    in_flight: int | None = None  # the pod's own count; None when it did not answer
    load_error: str | None = None
    url: str | None = None  # the pod's URL in a router, when one listed it


@dataclasses.dataclass(frozen=True)
class Finish:
    state: DrainState
    seconds: float


@dataclasses.dataclass(frozen=True)
class Wait:
    state: DrainState  # with `why`; written only when `why` changed


def decide(state: DrainState, seen: Seen, timeout_seconds: int, now: datetime.datetime) -> Finish | Wait:
    """A drain in progress, one pass: finished once every router is rid of the pod and the pod
    counts no request in flight (or has stopped answering: nothing it holds can finish then);
    cut short once the timeout has passed, saying why."""
    seconds = elapsed(state, now)
    out_of_routers = seen.routers > 0 and seen.removed == seen.routers
    idle = seen.in_flight == 0 or (seen.in_flight is None and seen.load_error is not None and out_of_routers)
    url = state.url or seen.url
    if out_of_routers and idle:
        return Finish(_finished(state, "Drained", 0, now, url), seconds)
    if seen.routers == 0 or seen.router_errors:
        why = "router unreachable: " + ("no router pod has an address" if seen.routers == 0 else seen.router_errors[0])
    elif not out_of_routers:
        why = f"{seen.routers - seen.removed} router(s) still list the pod"
    elif seen.in_flight is None:
        why = f"the pod's load is unknown: {seen.load_error}"
    else:
        why = f"{seen.in_flight} request(s) in flight"
    if seconds >= timeout_seconds:
        outcome = "RouterUnreachable" if why.startswith("router unreachable") else "TimedOut"
        return Finish(_finished(dataclasses.replace(state, why=why), outcome, seen.in_flight, now, url), seconds)
    return Wait(dataclasses.replace(state, why=why, url=url))


def _finished(state: DrainState, outcome: str, in_flight: int | None, now, url) -> DrainState:
    return dataclasses.replace(
        state, phase=DRAINED, finished=timestamps.stamp(now), outcome=outcome, in_flight=in_flight, url=url
    )


def needs_join(pod: dict, config: drain.DrainConfig | None) -> bool:
    """A serving worker the router may not have: never seen there (a new pod, which joins only
    once Ready), or drained for a revision it no longer runs (updated in place) and restarted on
    the new one, or whose drain nobody wants any more (`cancelled`, decided by the caller)."""
    if worker_role(pod, config) is None or not serving(pod):
        return False
    state = DrainState.of(pod)
    if state is None:
        return True
    if state.phase == JOINED or state.revision == revision(pod):
        return False
    # Updated in place: its containers must have restarted on the new images first (Ready alone
    # may still be the old container's); an update that changed no image restarts nothing.
    return images(pod) == state.images or restarts(pod) > (state.restarts or 0)


def cancelled(pod: dict, config: drain.DrainConfig | None, by: str, going: Iterable[str]) -> bool:
    """A drain that `by` started on a pod it no longer wants gone (a scale-in undone, a rollout
    rolled back): the pod rejoins the router."""
    state = DrainState.of(pod)
    return (
        worker_role(pod, config) is not None
        and state is not None
        and state.phase in (DRAINING, DRAINED)
        and state.by == by
        and state.revision == revision(pod)
        and pod["metadata"]["name"] not in set(going)
        and serving(pod)
    )


def matches(worker_url: str, pod: dict) -> bool:
    """Whether a router's worker URL points at the pod: by its address, or by its DNS name
    (`{hostname}.{subdomain}...`, how the example's router names its workers)."""
    try:
        host = urlsplit(worker_url).hostname or ""
    except ValueError:
        return False
    if host and host == pod_ip(pod):
        return True
    spec = pod.get("spec") or {}
    labels = host.split(".")
    hostname = spec.get("hostname") or pod["metadata"]["name"]
    if labels[0] != hostname:
        return False
    return len(labels) == 1 or labels[1] == spec.get("subdomain") or labels[1] == pod["metadata"].get("namespace")


def join_url(pod: dict, role: drain.WorkerRole) -> str:
    """The URL a pod rejoins by: its address, which names this pod alone (a DNS name could still
    resolve to the pod it replaced in the router's cache)."""
    return f"http://{pod_ip(pod)}:{role.port}"


def draining_condition(pods: Iterable[dict], previous: list[dict] | None, now: datetime.datetime) -> list[dict]:
    """`Draining=True` naming each role with a pod being drained (and why it waits), False once
    none is; absent on a group that never drained."""
    by_role: dict[str, list[str]] = {}
    for pod in pods:
        state = DrainState.of(pod)
        if state is None or state.phase != DRAINING or pod["metadata"].get("deletionTimestamp"):
            continue
        role = (pod["metadata"].get("labels") or {}).get(naming.LABEL_ROLE) or "?"
        why = f" ({state.why})" if state.why else ""
        by_role.setdefault(role, []).append(f"{pod['metadata']['name']} for {elapsed(state, now):.0f}s{why}")
    if by_role:
        message = "; ".join(f"role {role}: draining {', '.join(sorted(p))}" for role, p in sorted(by_role.items()))
        reason = "RouterUnreachable" if "router unreachable" in message else "DrainingPods"
        return [{"type": CONDITION, "status": "True", "reason": reason, "message": message[:1024]}]
    if conditions.find(previous, CONDITION) is not None:
        return [{"type": CONDITION, "status": "False", "reason": "NoDrain", "message": "no pod is being drained"}]
    return []


def router_addresses(pods: Iterable[dict], config: drain.DrainConfig) -> list[str]:
    """`http://ip:port` of every running router pod: each keeps its own worker list."""
    found = []
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get(naming.LABEL_ROLE) != config.router or pod["metadata"].get("deletionTimestamp"):
            continue
        if (pod.get("status") or {}).get("phase") == "Running" and pod_ip(pod):
            found.append(f"http://{pod_ip(pod)}:{config.router_port}")
    return sorted(found)


def routers_ready_since(pods: Iterable[dict], config: drain.DrainConfig) -> datetime.datetime | None:
    """When the last of the router pods became Ready (their Ready condition's transition time), or
    None while there is none, or one is not Ready."""
    since = None
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get(naming.LABEL_ROLE) != config.router or pod["metadata"].get("deletionTimestamp"):
            continue
        ready = conditions.find((pod.get("status") or {}).get("conditions"), "Ready") or {}
        at = timestamps.parse_or_none(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None
        if at is None:
            return None
        since = at if since is None else max(since, at)
    return since


def join_wait(pod: dict, ready_since: datetime.datetime | None, now: datetime.datetime) -> float | None:
    """Seconds before a pod may be joined to the routers, None: now. A pod the routers never had
    (no drain state) waits for the routers to settle (ROUTER_SETTLE_SECONDS); a pod that was drained
    rejoins at once."""
    if DrainState.of(pod) is not None:
        return None
    if ready_since is None:
        return JOIN_RETRY_SECONDS
    left = ROUTER_SETTLE_SECONDS - (now - ready_since).total_seconds()
    return left if left > 0 else None


def group_of(obj: dict) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(naming.LABEL_GROUP_NAME)


def state_patch(pod: dict, state: DrainState | None) -> dict:
    """A merge patch of the pod's drain state, conditional on the version read (a second writer,
    such as an old leader, gets a conflict instead of overwriting it)."""
    return {
        "metadata": {
            "resourceVersion": pod["metadata"].get("resourceVersion"),
            "annotations": {STATE_ANNOTATION: None if state is None else state.text()},
        }
    }


def pods_by_name(pods: Iterable[dict]) -> Mapping[str, dict]:
    return {p["metadata"]["name"]: p for p in pods}


def held_back(planned, removes, may_go: frozenset[str], requeue: float | None):
    """A plan (RoleInstancePlan) without the actions on pods that may not go yet, looking again
    after `requeue`. `removes(action)`: the pod an action deletes or changes, or None."""
    kept = tuple(a for a in planned.actions if (n := removes(a)) is None or n in may_go)
    look_again = planned.look_again if requeue is None else (*planned.look_again, requeue)
    return dataclasses.replace(planned, actions=kept, look_again=look_again)
