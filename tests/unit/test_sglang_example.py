"""examples/sglang_pd.yaml is what users deploy: check its arguments with the real SGLang
router parser and the SGLang server's flag table, and its URLs against the operator's DNS names."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from sglang_router.launch_router import parse_router_args

from rbg_operator.desired.discovery import topology
from tests.support.groups import hub

REPO = Path(__file__).resolve().parents[2]
FLAGS = REPO.parent / "shared" / "reference" / "sglang" / "sglang-0.5.9-server.json"
DOCS = list(yaml.safe_load_all((REPO / "examples" / "sglang_pd.yaml").read_text()))
GROUP = next(d for d in DOCS if d["kind"] == "RoleBasedGroup")
ROLES = {r["name"]: r for r in GROUP["spec"]["roles"]}


def command(role: str) -> list[str]:
    return ROLES[role]["template"]["spec"]["containers"][0]["command"]


def server_options(role: str) -> dict[str, str | None]:
    """Parse a server command against the flag table: exact option strings only, no abbreviations."""
    if not FLAGS.exists():
        pytest.skip("the SGLang flag tables of ../shared/reference are not here")
    table = {opt: entry for entry in json.loads(FLAGS.read_text())["options"] for opt in entry["options"]}
    argv = command(role)
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    parsed: dict[str, str | None] = {}
    rest = iter(argv[3:])
    for token in rest:
        assert token in table, f"{role}: {token} is not an SGLang 0.5.9 server option (abbreviations are refused)"
        entry = table[token]
        value = next(rest) if entry["takes_value"] else None
        if entry["choices"]:
            assert value in entry["choices"], f"{role}: {token} {value} not in {entry['choices']}"
        parsed[entry["dest"]] = value
    return parsed


@pytest.mark.parametrize("role, mode", [("prefill", "prefill"), ("decode", "decode")])
def test_servers_use_real_flags_tp2_gpus_and_erdma(role: str, mode: str):
    options = server_options(role)
    assert options["disaggregation_mode"] == mode
    assert options["tensor_parallel_size"] == "2" and options["host"] == "0.0.0.0"
    assert options["model_path"] == "/models/Qwen3-32B"
    limits = ROLES[role]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2" and "aliyun/erdma" in limits
    spec = ROLES[role]["template"]["spec"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == "llm-model" for v in spec["volumes"])
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in spec["volumes"])
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert {"/models/Qwen3-32B", "/dev/shm"} <= mounts
    probes = spec["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["port"] == 8000 and probes["livenessProbe"]["httpGet"]["port"] == 8000


def test_replica_counts_are_the_published_ones():
    assert (ROLES["prefill"]["replicas"], ROLES["decode"]["replicas"], ROLES["router"]["replicas"]) == (2, 1, 1)
    assert set(ROLES["router"]["dependencies"]) == {"prefill", "decode"}


def test_router_reaches_every_server_by_the_operators_dns_names():
    argv = command("router")
    assert argv[:3] == ["python3", "-m", "sglang_router.launch_router"]
    args = parse_router_args(argv[3:])  # the real sglang-router 0.3.2 parser
    assert args.pd_disaggregation is True
    group = hub({**GROUP, "metadata": {**GROUP["metadata"], "namespace": "default", "uid": "u"}})
    instances = {r["name"]: r.get("instances", []) for r in topology(group)["roles"]}
    bootstrap = int(server_options("prefill")["disaggregation_bootstrap_port"])
    prefill = [(urlparse(url).hostname, urlparse(url).port, port) for url, port in args.prefill_urls]
    assert prefill == [(host, 8000, bootstrap) for host in instances["prefill"]]
    decode = [(urlparse(url).hostname, urlparse(url).port) for url in args.decode_urls]
    assert decode == [(host, 8000) for host in instances["decode"]]
    assert args.port == 8000 and args.host == "0.0.0.0"


def test_a_clusterip_service_fronts_the_router_on_8000():
    service = next(d for d in DOCS if d["kind"] == "Service")
    assert service["metadata"]["name"] == "sglang-pd" and service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 8000
    assert service["spec"]["selector"] == {
        "rolebasedgroup.workloads.x-k8s.io/name": "sglang-pd",
        "rolebasedgroup.workloads.x-k8s.io/role": "router",
    }
