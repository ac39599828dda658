"""Leader election with a coordination.k8s.io Lease, with the semantics of client-go's:

- A Lease held by another is taken over only once its record has not changed for a lease
  duration, measured on this process's own monotonic clock from when it saw the record change
  (never by comparing the holder's renewTime with the local wall clock: clocks differ).
- The leader renews every retry period; each attempt is bounded by what is left of the renew
  deadline. A leader that has not renewed for the renew deadline exits, which is before any
  other process can take the Lease (lease duration > renew deadline).
- Renewals use a connection of their own, without the request pool's retries, so reconcile
  traffic can neither delay nor hide a failed renewal.
- A leader that shuts down gracefully releases the Lease, so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from . import kinds, metrics
from .kube import KINDS, ApiError, Kube
from .timestamps import micro_stamp, utc_now

log = logging.getLogger(__name__)
LEASE = KINDS[kinds.LEASE]


RECORD_FIELDS = ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        *,
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry_seconds: float = 2.0,
    ):
        assert lease_seconds > renew_deadline > retry_seconds
        self.kube, self.namespace, self.name = kube, namespace, name
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.lease_seconds, self.renew_deadline, self.retry_seconds = lease_seconds, renew_deadline, retry_seconds
        self.observed: tuple | None = None  # the Lease record last seen...
        self.observed_at = 0.0  # ...and the local monotonic time it last changed
        self.leading = False
        metrics.leader_election_master_status.labels(name).set(0)

    @classmethod
    async def connect(cls, namespace: str, name: str, **timing) -> LeaderElector:
        """An elector on a small client of its own: one connection, one try per request."""
        return cls(await Kube.connect(pool=1, attempts=1), namespace, name, **timing)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _observe(self, spec: dict) -> None:
        record = tuple(spec.get(k) for k in RECORD_FIELDS)
        if record != self.observed:
            self.observed, self.observed_at = record, self._now()

    async def _try(self) -> bool:
        """One attempt to acquire or renew the Lease; True while we hold it."""
        lease = await self.kube.get(LEASE, self.namespace, self.name)
        now = utc_now()
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "renewTime": micro_stamp(now),
        }
        if lease is None:
            body = {
                "apiVersion": LEASE.api_version,
                "kind": LEASE.kind,
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**mine, "acquireTime": micro_stamp(now), "leaseTransitions": 0},
            }
            try:
                self._observe((await self.kube.create(body))["spec"])
                return True
            except ApiError as error:
                if error.status == 409:
                    return False
                raise
        held = lease.get("spec") or {}
        self._observe(held)
        holder = held.get("holderIdentity") or ""
        duration = held.get("leaseDurationSeconds") or self.lease_seconds
        if holder and holder != self.identity and self._now() < self.observed_at + duration:
            return False  # another holder's record changed within its lease duration: still valid
        if holder != self.identity:
            mine.update(acquireTime=micro_stamp(now), leaseTransitions=(held.get("leaseTransitions") or 0) + 1)
        lease["spec"] = {**held, **mine}
        try:  # the resourceVersion in `lease` makes this a compare-and-swap
            self._observe((await self.kube.replace(lease))["spec"])
            return True
        except ApiError as error:
            if error.status == 409:
                return False
            raise

    async def acquire(self) -> None:
        log.info("waiting to become the leader (Lease %s/%s) as %s", self.namespace, self.name, self.identity)
        while True:
            try:
                if await asyncio.wait_for(self._try(), timeout=self.renew_deadline):
                    break
            except Exception as error:
                log.warning("leader election attempt failed: %s", error or type(error).__name__)
            await asyncio.sleep(self.retry_seconds)
        self.leading = True
        metrics.leader_election_master_status.labels(self.name).set(1)
        log.info("became the leader (Lease %s/%s)", self.namespace, self.name)

    async def keep(self) -> None:
        """Renew until a renewal has not succeeded for the renew deadline; then exit the process,
        before the Lease can expire for anyone else."""
        renewed = self._now()
        while True:
            await asyncio.sleep(self.retry_seconds)
            left = renewed + self.renew_deadline - self._now()
            reason = "the renew deadline passed"
            if left > 0:
                try:
                    if await asyncio.wait_for(self._try(), timeout=left):
                        renewed = self._now()
                        continue
                    reason = "another process holds the Lease"
                except TimeoutError:
                    reason = f"no renewal within the renew deadline of {self.renew_deadline:.0f}s"
                except Exception as error:
                    if self._now() - renewed < self.renew_deadline:
                        log.warning("Lease renewal failed, retrying: %s", error)
                        continue
                    reason = str(error)
            self.leading = False
            metrics.leader_election_master_status.labels(self.name).set(0)
            log.error("lost leadership (%s); exiting so that only one operator reconciles", reason)
            os._exit(1)

    async def release(self) -> None:
        """Give the Lease up (on graceful shutdown, after the workers stopped): a standby need not
        wait for it to expire."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await asyncio.wait_for(self.kube.get(LEASE, self.namespace, self.name), timeout=2)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1, renewTime=micro_stamp(utc_now()))
                await asyncio.wait_for(self.kube.replace(lease), timeout=2)
                log.info("released the Lease %s/%s", self.namespace, self.name)
        except Exception as error:  # it expires by itself
            log.warning("could not release the Lease: %s", error)
        finally:
            metrics.leader_election_master_status.labels(self.name).set(0)

    async def close(self) -> None:
        await self.kube.close()
