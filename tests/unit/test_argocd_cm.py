"""`make argocd-cm` gives Argo CD's ConfigMap entries with exactly the health checks the tests run."""

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_the_snippet_carries_each_health_check_unchanged():
    out = subprocess.run(["make", "-s", "argocd-cm"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    data = yaml.safe_load(out)["data"]
    for kind in ("RoleBasedGroup", "RoleBasedGroupSet", "RoleBasedGroupScalingAdapter"):
        script = (REPO / "argocd" / "health" / f"{kind.lower()}.lua").read_text()
        assert data[f"resource.customizations.health.workloads.x-k8s.io_{kind}"] == script
    assert len(data) == 3
