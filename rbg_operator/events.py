"""Kubernetes Events for the operator's decisions, attached to the group they concern."""

from __future__ import annotations

import logging
import secrets

from .controller.conditions import now
from .kube import Kube, namespace_terminating

log = logging.getLogger(__name__)
COMPONENT = "rbg-operator"


class EventRecorder:
    def __init__(self, kube: Kube):
        self.kube = kube

    async def emit(self, obj: dict, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        log.info("%s/%s: %s: %s", meta["namespace"], meta["name"], reason, message)
        try:
            await self.kube.create(event)
        except Exception as error:  # an Event that cannot be posted must not fail the reconcile
            if namespace_terminating(error):
                return
            log.warning("could not post event %s for %s: %s", reason, meta["name"], error)
