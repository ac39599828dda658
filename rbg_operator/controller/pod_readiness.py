"""The readiness gates of a RoleInstance's pods (the contract's §4.10 and §4.19), as pure functions.

- `InPlaceUpdateReady` is False from the start of an in-place update's grace period until the
  pod runs its new images, so the pod leaves its Services' endpoints before its containers restart.
- `InstancePodReady` is True on every pod of an instance with `readyPolicy: AllPodReady` once all of
  its pods are runtime-ready (containers ready, no in-place update under way), and False on all of
  them otherwise, so the instance's pods take traffic together.

A pod carries a gate only where the gate has work to do: `InPlaceUpdateReady` when the instance has an
in-place grace period, `InstancePodReady` when the instance has more than one pod. The reference puts
both on every pod, which makes every pod's readiness wait for a status write of the operator's, for no
change in behaviour. A gate's condition that was never written counts as False, so the first write of
each gated pod is the one that makes it True. A pod's gates cannot change: they are fixed when it is
created and an in-place update keeps them.
"""

from __future__ import annotations

from . import conditions

IN_PLACE_UPDATE_READY = "InPlaceUpdateReady"
INSTANCE_POD_READY = "InstancePodReady"


def gates_for(total_pods: int, grace_seconds: int, ready_policy: str | None) -> list[dict]:
    gates = []
    if grace_seconds > 0:
        gates.append({"conditionType": IN_PLACE_UPDATE_READY})
    if total_pods > 1 and ready_policy != "None":
        gates.append({"conditionType": INSTANCE_POD_READY})
    return gates


def gated(pod: dict, gate: str) -> bool:
    return any(g.get("conditionType") == gate for g in (pod.get("spec") or {}).get("readinessGates") or [])


def condition(pod: dict, type_: str) -> str | None:
    """The status of the pod's condition `type_`: "True", "False", or None when absent."""
    return (conditions.find((pod.get("status") or {}).get("conditions"), type_) or {}).get("status")


def containers_ready(pod: dict) -> bool:
    if (pod.get("status") or {}).get("phase") not in (None, "Running"):
        return False
    found = condition(pod, "ContainersReady")
    # A kubelet reports ContainersReady; a fake node may report Ready only.
    return found == "True" if found is not None else condition(pod, "Ready") == "True"


def runtime_ready(pod: dict) -> bool:
    """Ready as far as the pod itself goes: its containers are ready and no in-place update holds
    it. Unlike the pod's Ready condition, this does not wait for the instance's other pods."""
    return containers_ready(pod) and condition(pod, IN_PLACE_UPDATE_READY) != "False"


def in_place_ready(pod: dict, updating: bool, baseline: dict | None) -> bool:
    """Whether a pod's InPlaceUpdateReady should be True: not while its in-place update waits or
    runs (`updating`), and after one only once every container in its recorded baseline restarted
    past it (the new images run; an update that changed no image has none to wait for) and its
    containers are ready again."""
    if updating:
        return False
    if condition(pod, IN_PLACE_UPDATE_READY) in (None, "True"):
        return True
    counts = {c.get("name"): c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or []}
    restarted = all(
        counts.get(name, 0) > (entry or {}).get("restartCount", 0) for name, entry in (baseline or {}).items()
    )
    return restarted and containers_ready(pod)


def wanted_conditions(
    pod: dict, *, in_place_ready_now: bool, instance_ready: bool, ready_policy: str | None
) -> list[dict]:
    """Every gate condition of the pod, when one of them should change (empty: nothing to write).
    An absent condition already counts as False, so a False alone is written only over a True. All
    of them go in each write: a server-side apply that left one out would remove it."""
    wanted = {}
    if gated(pod, IN_PLACE_UPDATE_READY):
        wanted[IN_PLACE_UPDATE_READY] = in_place_ready_now
    if gated(pod, INSTANCE_POD_READY):
        wanted[INSTANCE_POD_READY] = instance_ready and ready_policy != "None"
    changed = False
    for type_, want in wanted.items():
        have = condition(pod, type_)
        changed = changed or (want and have != "True") or (not want and have == "True")
    return [{"type": t, "status": "True" if want else "False"} for t, want in wanted.items()] if changed else []
