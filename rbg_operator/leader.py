"""Leader election with a coordination.k8s.io Lease, as controller-runtime does it: the
holder renews the Lease; others take it over once it has not been renewed for a lease
duration. A leader that cannot renew in time exits, so two never reconcile at once."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
import uuid

from . import metrics
from .kube import KINDS, ApiError, Kube

log = logging.getLogger(__name__)
LEASE = KINDS[("coordination.k8s.io/v1", "Lease")]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _micro(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str | None) -> datetime.datetime | None:
    if not stamp:
        return None
    return datetime.datetime.strptime(stamp.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc)


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, *, lease_seconds: int = 10,
                 renew_deadline: float = 8.0, retry_seconds: float = 2.0):
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.lease_seconds, self.renew_deadline, self.retry_seconds = lease_seconds, renew_deadline, retry_seconds
        metrics.leader_election_master_status.labels(name).set(0)

    async def _try(self) -> bool:
        """One attempt to acquire or renew the Lease; True while we hold it."""
        now = _now()
        lease = await self.kube.get(LEASE, self.namespace, self.name)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
                "renewTime": _micro(now)}
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": _micro(now), "leaseTransitions": 0}}
            try:
                await self.kube.create(body)
                return True
            except ApiError as error:
                if error.status == 409:
                    return False
                raise
        held = lease.get("spec") or {}
        renewed = _parse(held.get("renewTime"))
        expired = renewed is None or (now - renewed).total_seconds() > held.get("leaseDurationSeconds", 0)
        if held.get("holderIdentity") != self.identity and not expired:
            return False
        if held.get("holderIdentity") != self.identity:
            spec.update(acquireTime=_micro(now), leaseTransitions=held.get("leaseTransitions", 0) + 1)
        lease["spec"] = {**held, **spec}
        try:  # the resourceVersion in `lease` makes this a compare-and-swap
            await self.kube.replace(lease)
            return True
        except ApiError as error:
            if error.status == 409:
                return False
            raise

    async def acquire(self) -> None:
        log.info("waiting to become the leader (Lease %s/%s) as %s", self.namespace, self.name, self.identity)
        while True:
            try:
                if await self._try():
                    break
            except Exception as error:
                log.warning("leader election attempt failed: %s", error)
            await asyncio.sleep(self.retry_seconds)
        metrics.leader_election_master_status.labels(self.name).set(1)
        log.info("became the leader (Lease %s/%s)", self.namespace, self.name)

    async def keep(self) -> None:
        """Renew until renewal fails for longer than the deadline; then exit the process."""
        last = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.retry_seconds)
            try:
                if await self._try():
                    last = asyncio.get_running_loop().time()
                    continue
                reason = "another process holds the Lease"
            except Exception as error:
                reason = str(error)
            if asyncio.get_running_loop().time() - last > self.renew_deadline or "holds" in reason:
                metrics.leader_election_master_status.labels(self.name).set(0)
                log.error("lost leadership (%s); exiting so that only one operator reconciles", reason)
                os._exit(1)
