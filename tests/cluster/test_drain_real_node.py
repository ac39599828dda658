"""Drain-aware rollouts on the real node (docs/drain.md): the real sglang-router in front of SGLang
stand-in servers whose every request takes DELAY seconds, a steady stream of chat completions
through the router, and the operator updating or removing servers underneath. With the drain
annotation no request fails; without it, some do (each test prints how many)."""

from __future__ import annotations

import json
import time

import pytest

from rbg_operator.api import drain
from rbg_operator.controller import drain_plan
from tests.support.kubectl import Kubectl, group_ready, wait_for
from tests.test_drain_router import Load
from tests.test_standin import MODEL, http

V2 = "workloads.x-k8s.io/v1alpha2"
IMAGE, IMAGE_V2 = "rbg-local/standin:v1", "rbg-local/standin:v2"  # one image, two tags (localcluster/images.py)
DELAY = 2.0  # seconds each generation request takes: requests stay in flight
PROBE = {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1}


def server(mode: str, image: str) -> dict:
    command = ["python3", "-m", "sglang.launch_server", "--model-path", MODEL, "--host", "0.0.0.0", "--port", "8000"]
    command += ["--disaggregation-mode", mode]
    if mode == "prefill":
        command += ["--disaggregation-bootstrap-port", "8998"]
    return {
        "spec": {
            "containers": [
                {
                    "name": "sglang",
                    "image": image,
                    "command": command,
                    "env": [{"name": "SGLANG_STANDIN_DELAY_SECONDS", "value": str(DELAY)}],
                    "readinessProbe": PROBE,
                }
            ]
        }
    }


def router(group: str, prefills: int, decodes: int) -> dict:
    command = ["python3", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
    for i in range(prefills):
        command += ["--prefill", f"http://{group}-prefill-{i}.s-{group}-prefill:8000", "8998"]
    for i in range(decodes):
        command += ["--decode", f"http://{group}-decode-{i}.s-{group}-decode:8000"]
    command += ["--host", "0.0.0.0", "--port", "8000"]
    return {"spec": {"containers": [{"name": "router", "image": IMAGE, "command": command, "readinessProbe": PROBE}]}}


def pd_group(name: str, drained: bool, image: str = IMAGE, prefills: int = 2, decodes: int = 3) -> dict:
    metadata: dict = {"name": name}
    if drained:
        directive = {"router": "router", "roles": ["prefill", "decode"], "timeoutSeconds": 60}
        metadata["annotations"] = {drain.ANNOTATION: json.dumps(directive)}
    return {
        "apiVersion": V2,
        "kind": "RoleBasedGroup",
        "metadata": metadata,
        "spec": {
            "roles": [
                {"name": "prefill", "replicas": prefills, "standalonePattern": {"template": server("prefill", image)}},
                {"name": "decode", "replicas": decodes, "standalonePattern": {"template": server("decode", image)}},
                {
                    "name": "router",
                    "replicas": 1,
                    "dependencies": ["prefill", "decode"],
                    # The router is told the servers it starts with; later changes are the drain's.
                    "standalonePattern": {"template": router(name, 2, 3)},
                },
            ]
        },
    }


def router_url(kubectl: Kubectl, ns: str, group: str) -> str:
    return f"http://{kubectl.get('pod', f'{group}-router-0', ns)['status']['podIP']}:8000"


def workers(url: str) -> list[str]:
    return sorted(w["url"] for w in json.loads(http(f"{url}/workers")[1])["workers"])


def serving_pods(kubectl: Kubectl, ns: str, group: str, role: str) -> list[dict]:
    selector = f"rolebasedgroup.workloads.x-k8s.io/name={group},rolebasedgroup.workloads.x-k8s.io/role={role}"
    return [
        p for p in kubectl.get("pods", namespace=ns, selector=selector) if not p["metadata"].get("deletionTimestamp")
    ]


def chat_works(url: str) -> bool:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    try:
        return http(f"{url}/v1/chat/completions", body, timeout=30)[0] == 200
    except OSError:
        return False


def up(kubectl: Kubectl, ns: str, group: dict) -> str:
    name = group["metadata"]["name"]
    kubectl.apply(group, ns)
    group_ready(kubectl, name, ns, timeout=180)
    url = router_url(kubectl, ns, name)
    wait_for("a chat completion through the router", lambda: chat_works(url), 60)
    return url


def images_are(kubectl: Kubectl, ns: str, group: str, image: str) -> bool:
    """Every server on `image`, restarted in place on it and ready. (Both tags are one image, so
    the container's status may name either: its restart says it runs the new spec.)"""
    pods = [p for role in ("prefill", "decode") for p in serving_pods(kubectl, ns, group, role)]
    return len(pods) == 5 and all(
        p["spec"]["containers"][0]["image"].endswith(image)
        and all(c.get("ready") and c.get("restartCount", 0) >= 1 for c in p["status"].get("containerStatuses", []))
        for p in pods
    )


@pytest.mark.parametrize("drained", [True, False], ids=["drain-on", "drain-off"])
def test_an_image_rollout_of_prefill_and_decode_fails_no_request_with_a_drain(
    kubectl: Kubectl, operator, real_namespace: str, drained: bool
):
    ns, name = real_namespace, "dz"
    url = up(kubectl, ns, pd_group(name, drained))
    with Load(url) as load:
        time.sleep(DELAY * 2)
        kubectl.apply(pd_group(name, drained, image=IMAGE_V2), ns)
        wait_for("every server updated in place and Ready", lambda: images_are(kubectl, ns, name, IMAGE_V2), 240)
        group_ready(kubectl, name, ns, timeout=120)
        if drained:  # each server is back in the router once Ready on the new image
            wait_for("all five servers in the router again", lambda: len(workers(url)) == 5, 60)
        time.sleep(DELAY * 2)
    failed = load.failed()
    print(f"\nimage rollout, drain {'on' if drained else 'off'}: {len(failed)} of {len(load.results)} failed")
    if drained:
        assert failed == [], failed[:3]
        pods = [p for role in ("prefill", "decode") for p in serving_pods(kubectl, ns, name, role)]
        states = [drain_plan.DrainState.of(p) for p in pods]
        assert all(s is not None and s.phase == drain_plan.JOINED for s in states), states
        reasons = [e["reason"] for e in kubectl.get("events", namespace=ns)]
        assert reasons.count("Drained") >= 5, reasons
    else:
        assert failed, "a server updated under load fails its requests (or this test shows nothing)"


@pytest.mark.parametrize("drained", [True, False], ids=["drain-on", "drain-off"])
def test_a_scale_in_of_decode_from_three_to_one_fails_no_request_with_a_drain(
    kubectl: Kubectl, operator, real_namespace: str, drained: bool
):
    ns, name = real_namespace, "dz"
    url = up(kubectl, ns, pd_group(name, drained))
    with Load(url) as load:
        time.sleep(DELAY * 2)
        kubectl.apply(pd_group(name, drained, decodes=1), ns)
        wait_for("one decode server left", lambda: len(serving_pods(kubectl, ns, name, "decode")) == 1, 180)
        if drained:
            try:
                wait_for("the router lists 2 prefill and 1 decode", lambda: len(workers(url)) == 3, 30)
            except AssertionError as error:
                pods = [p for role in ("prefill", "decode") for p in serving_pods(kubectl, ns, name, role)]
                seen = {p["metadata"]["name"]: (p["status"].get("podIP"), drain_plan.DrainState.of(p)) for p in pods}
                raise AssertionError(f"{error}; the router lists {workers(url)}; pods {seen}") from None
        time.sleep(DELAY * 2)
    failed = load.failed()
    print(
        f"\nscale-in of decode 3 -> 1, drain {'on' if drained else 'off'}: {len(failed)} of {len(load.results)} failed"
    )
    assert len(load.results) > 10
    if not drained:
        assert failed, "servers deleted under load fail their requests (or this test shows nothing)"
        return
    assert failed == [], failed[:3]
    drained_pods = [e for e in kubectl.get("events", namespace=ns) if e["reason"] == "Drained"]
    assert {e["involvedObject"]["name"] for e in drained_pods} == {f"{name}-decode-1", f"{name}-decode-2"}
