"""`make demo` then `make test`, the README's two commands in that order: the demo leaves its
operator and the SGLang group running, and the suite runs beside them without either side
acting on the other's groups."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from localcluster import node
from tests.support.kubectl import Kubectl, condition

REPO = Path(__file__).resolve().parents[2]
GROUP, NAMESPACE = "sglang-pd", "default"
SELECTOR = f"rolebasedgroup.workloads.x-k8s.io/name={GROUP}"
DEMO_PODS = pytest.StashKey[dict]()  # the demo's pods when it was Ready, for the check at the end

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("RBG_TEST_KUBECONFIG")), reason="the demo runs on the local cluster only"
)


def _pods(kubectl: Kubectl) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl.get("pods", namespace=NAMESPACE, selector=SELECTOR)
    }


@pytest.mark.demo_first
def test_make_demo_leaves_a_ready_group_running(kubectl: Kubectl, request):
    result = subprocess.run(["make", "demo"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{GROUP}: Ready=True" in result.stdout, result.stdout[-3000:]
    assert (condition(kubectl.get("rbg", GROUP, NAMESPACE), "Ready") or {}).get("status") == "True"
    pods = _pods(kubectl)
    assert len(pods) == 4, pods  # 2 prefill, 1 decode, 1 router
    if os.environ.get("RBG_REAL_NODE", "1") != "0":
        _check_the_chat_completion(kubectl, result.stdout)
    request.config.stash[DEMO_PODS] = pods


def _check_the_chat_completion(kubectl: Kubectl, output: str) -> None:
    """The demo's last step went through the real router to a prefill and a decode server, each a
    real container on the real node, and both logged their part of it."""
    answer = next((line for line in output.splitlines() if line.startswith("answer: ")), None)
    assert answer and "Hello from the RBG stand-in (prefill sglang-pd-prefill-" in answer, output[-3000:]
    prefill = answer.split("prefill ", 1)[1].split(",", 1)[0]
    decode = answer.split("decode ", 1)[1].rstrip(")")
    for pod, role in ((prefill, "prefill"), (decode, "decode")):
        assert kubectl.get("pod", pod, NAMESPACE)["spec"]["nodeName"] == node.NODE_NAME
        logs = kubectl.run("logs", pod, f"--namespace={NAMESPACE}").stdout
        served = [line for line in logs.splitlines() if f"role={role}" in line and "/v1/chat/completions" in line]
        assert served, logs[-2000:]


@pytest.mark.demo_last
def test_the_suite_left_the_demo_alone(kubectl: Kubectl, request):
    before = request.config.stash.get(DEMO_PODS, None)
    if before is None:
        pytest.skip("the demo did not run in this session")
    group = kubectl.get("rbg", GROUP, NAMESPACE)
    assert (condition(group, "Ready") or {}).get("status") == "True"
    # Not one pod recreated: no operator of the session acted on the demo's group, and the
    # demo's operator acted on nothing of the tests' (they would have failed).
    assert _pods(kubectl) == before
