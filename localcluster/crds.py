"""Installing this project's CRDs on a cluster where an operator may already have pointed their
version conversion at itself: the files carry the chart's placeholder Service, and applying it
over a registered URL would leave the CRD with both (which the API server refuses) or cut the
running operator off. So the live clientConfig is kept."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import yaml

Kubectl = Callable[..., CompletedProcess]  # kubectl(*args, stdin=..., check=...)


def conversion_client_config(kubectl: Kubectl, crd: str) -> dict | None:
    live = kubectl("get", "crd", crd, "-o", "json", check=False)
    if live.returncode != 0:
        return None
    return ((json.loads(live.stdout)["spec"].get("conversion") or {}).get("webhook") or {}).get("clientConfig")


def install(kubectl: Kubectl, directory: Path, timeout: float = 60) -> list[str]:
    """Server-side apply every CRD in `directory`, keeping registered conversion addresses; waits
    until each is Established and returns their names."""
    documents = []
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        webhook = (crd["spec"].get("conversion") or {}).get("webhook")
        if webhook is not None:
            webhook["clientConfig"] = (
                conversion_client_config(kubectl, crd["metadata"]["name"]) or webhook["clientConfig"]
            )
        documents.append(crd)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(documents))
    names = [crd["metadata"]["name"] for crd in documents]
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    for name in names:
        deadline = time.monotonic() + timeout
        while kubectl("get", "crd", name, "-o", jsonpath, check=False).stdout.strip() != "True":
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"CRD {name} is not Established after {timeout:.0f}s: look at `kubectl describe crd {name}`"
                )
            time.sleep(0.5)
    return names
