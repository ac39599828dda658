"""The CRDs' conversion webhook is cluster-wide: a test (or the session) that lets an operator
register itself gives it back afterwards to whoever had it before."""

from __future__ import annotations

import contextlib
import json
import time

from localcluster import crds
from rbg_operator.webhook import CONVERTED_CRDS
from tests.support.kubectl import Kubectl


@contextlib.contextmanager
def conversion_given_back(client: Kubectl):
    """Yields nothing; afterwards, if the conversion changed hands meanwhile, points it back at what
    it was (unless someone else registered since the change this block made: it is theirs now)."""
    before = crds.conversion_client_config(client.run, CONVERTED_CRDS[0])
    changed = []

    def mark() -> dict | None:
        """Call once the block's own registration is seen: what it registered."""
        changed.append(crds.conversion_client_config(client.run, CONVERTED_CRDS[0]))
        return changed[-1]

    try:
        yield mark
    finally:
        current = crds.conversion_client_config(client.run, CONVERTED_CRDS[0])
        if before is not None and current != before and (not changed or current == changed[-1]):
            for name in CONVERTED_CRDS:
                client.run(
                    "patch",
                    "crd",
                    name,
                    "--type=merge",
                    "-p",
                    json.dumps(
                        {
                            "spec": {
                                "conversion": {
                                    "webhook": {
                                        "clientConfig": {"url": None, "service": None, "caBundle": None, **before}
                                    }
                                }
                            }
                        }
                    ),
                )
            _until_v1alpha1_reads(client)


def _until_v1alpha1_reads(client: Kubectl, timeout: float = 30) -> None:
    """The API server takes a moment to see a CRD's new conversion address: until v1alpha1 lists work
    again, the next test's reads would still go to the address this block put there."""
    deadline = time.monotonic() + timeout
    for name in CONVERTED_CRDS:
        plural, _, group = name.partition(".")
        while (
            client.run("get", f"{plural}.v1alpha1.{group}", "--all-namespaces", "-o", "name", check=False).returncode
            != 0
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
