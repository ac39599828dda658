"""Reconciler of RoleBasedGroupWarmup: one pod per target node (§4.18).

The decisions are in warmup_plan; here the cache is read once (observe_warmup) and the plan's
writes are made: pod deletions, pod creations, the status and its Events, the TTL deletion.
"""

from __future__ import annotations

import datetime
import logging

import pydantic

from .. import kinds, naming
from ..api.errors import describe
from ..api.warmup import RoleBasedGroupWarmupSpec
from ..events import EventRecorder
from ..kube import KINDS, Kube
from .control import controlled_by
from .status import report
from .store import Store
from .warmup_plan import WARMUP, WarmupSnapshot, plan_warmup

log = logging.getLogger(__name__)

MANAGER = naming.FIELD_MANAGER_WARMUP
POD = KINDS[kinds.POD]


def observe_warmup(store: Store, namespace: str, name: str) -> WarmupSnapshot | None:
    """The warmup, decoded, the pods it controls, the nodes it may need and (for a group target)
    the group's pods, from the cache: the pass's only read of it. None when the warmup is gone or
    going, or its spec does not validate (said in the log; admission refuses such a spec)."""
    body = store.get(*WARMUP, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = RoleBasedGroupWarmupSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError as error:
        log.warning("%s/%s: %s", namespace, name, describe(error))
        return None
    uid = body["metadata"]["uid"]
    pods = tuple(p for p in store.warmup_pods(namespace, name) if controlled_by(p, uid))
    group_pods: tuple[dict, ...] = ()
    if spec.target_role_based_group is not None:
        group_pods = tuple(store.owned_by_group(*kinds.POD, namespace, spec.target_role_based_group.name))
    if spec.target_nodes is not None and spec.target_nodes.node_selector is not None:
        names = [n for _, n in store.keys(*kinds.NODE)]
    else:
        # Only for their hostname labels: the named nodes, or those of the group's pods.
        names = spec.target_nodes.node_names if spec.target_nodes is not None else []
        names = [*names, *((p.get("spec") or {}).get("nodeName") for p in group_pods)]
    nodes = {n: node for n in dict.fromkeys(filter(None, names)) if (node := store.get(*kinds.NODE, "", n))}
    return WarmupSnapshot(body, spec, pods, nodes, group_pods)


class WarmupReconciler:
    """One pass over a RoleBasedGroupWarmup:

    1. observe: the warmup, its pods, the nodes and the target group's pods, read once;
    2. plan: the targets, each node's state from its pods, the pods to create and delete, the
       phase, conditions and Events, and when time next decides something;
    3. act: delete pods, then create pods (each answer kept in the cache at once, so that the next
       pass counts it), or delete the warmup once its TTL has passed;
    4. report: the Events, the status when it changed, then the Events that say what it records.
    """

    def __init__(self, kube: Kube, store: Store, recorder: EventRecorder):
        self.kube, self.store, self.recorder = kube, store, recorder

    async def reconcile(self, namespace: str, name: str) -> float | None:
        snapshot = observe_warmup(self.store, namespace, name)
        if snapshot is None:
            return None
        planned = plan_warmup(snapshot, datetime.datetime.now(datetime.UTC))
        for pod, uid in planned.delete:
            if not await self.kube.delete(POD, namespace, pod, uid=uid):
                self.store.remove(*kinds.POD, namespace, pod, uid)
        for pod in planned.create:
            self.store.upsert(await self.kube.create(pod, POD, manager=MANAGER))
        if planned.status is not None:
            await report(self.kube, self.store, self.recorder, snapshot.body, planned.status, planned.events, MANAGER)
        if planned.delete_warmup:
            meta = snapshot.body["metadata"]
            # Its pods go with it (owner references); the UID keeps a new warmup of the name safe.
            if not await self.kube.delete(KINDS[WARMUP], namespace, name, uid=meta["uid"]):
                self.store.remove(*WARMUP, namespace, name, meta["uid"])
            return None
        return planned.requeue
