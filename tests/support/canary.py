"""A canary Deployment that tells which control-plane component stopped doing its job.

A Deployment's pod passes three components on its way to Ready: the controller-manager
creates it, kube-scheduler binds it and kwok runs it. Where the canary stalls names the
component to blame, so a wedged (running but useless) component can be restarted instead of
failing every test after it for the same cause.
"""

from __future__ import annotations

import secrets
import time

from tests.support.kubectl import Kubectl, condition

NAMESPACE = "rbg-canary"
# The component blamed for each stage the canary can stall at.
STAGES = (("pod created", "kube-controller-manager"), ("pod bound", "kube-scheduler"), ("pod Ready", "kwok"))


def stalled_component(kubectl: Kubectl, timeout: float = 45) -> str | None:
    """Run the canary; None when it reached Ready, else the component of the stage it stalled at."""
    if kubectl.get("namespace", NAMESPACE) is None:
        kubectl.run("create", "namespace", NAMESPACE, check=False)
    name = f"canary-{secrets.token_hex(3)}"
    labels = {"app": name}
    kubectl.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "example.com/canary"}]},
                },
            },
        },
        NAMESPACE,
    )
    reached = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            pods = kubectl.get("pods", namespace=NAMESPACE, selector=f"app={name}") or []
            reached = max(reached, _stage(pods))
            if reached == len(STAGES):
                return None
            time.sleep(1)
        return STAGES[reached][1]
    finally:
        kubectl.delete("deployment", name, NAMESPACE, "--wait=false")


def _stage(pods: list[dict]) -> int:
    """How many of the canary's stages its pods have passed."""
    if not pods:
        return 0
    if not any(p["spec"].get("nodeName") for p in pods):
        return 1
    if not any((condition(p, "Ready") or {}).get("status") == "True" for p in pods):
        return 2
    return 3
