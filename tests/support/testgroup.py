"""A copy of the API under a throwaway group: tests that install CRDs of their own (an upgrade,
a second version) leave the suite's CRDs, and kubectl's view of them, untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.kubectl import Kubectl


def crds_under_a_test_group(texts: dict[str, str], group: str) -> dict[str, str]:
    """The CRDs under a group of the test's own, so the suite's CRDs and groups are untouched, and
    without short names and categories: kubectl would otherwise resolve `rbg` to the test's group
    (same version, and groups of equal priority sort by name) for as long as its discovery cache
    remembers it, after the CRDs are gone."""
    out = {}
    for name, text in texts.items():
        crd = yaml.safe_load(text.replace("workloads.x-k8s.io", group))
        crd["spec"]["names"].pop("shortNames", None)
        crd["spec"]["names"].pop("categories", None)
        out[name] = yaml.safe_dump(crd, sort_keys=False)
    return out


class OwnDiscoveryCache(Kubectl):
    """kubectl with a discovery cache of its own, so the suite's cache never learns the test's group."""

    def __init__(self, kubectl: Kubectl, cache: Path):
        super().__init__(kubectl.binary, kubectl.kubeconfig)
        self.cache = cache

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return super().run(f"--cache-dir={self.cache}", *args, **kwargs)
