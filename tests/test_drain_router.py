"""The operator's drain against the real sglang-router 0.3.2 and the SGLang stand-in, on loopback,
no cluster (docs/drain.md): the router's worker API as the drainer calls it, and the failed
requests of a steady load while a decode server goes away, without and with a drain first.

Each server has its own loopback address (127.0.0.2, .3, .4), as each pod has its own IP, since
the drainer finds a pod's workers in the router by address. The pod writes go to a recording
stand-in of the API client: what is under test here is the HTTP side; the cluster tests check the
writes against the real API server.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client as http_client
import json
import threading
import time
from pathlib import Path

import pytest

from localcluster.cluster import free_port
from rbg_operator.api import drain
from rbg_operator.controller import drain_plan
from rbg_operator.controller.drain import Context, Drainer
from tests.test_standin import MODEL, Proc, http, standin, wait_for

pytestmark = pytest.mark.standin

DELAY = 2.0  # seconds every generation request takes
CONFIG = drain.parse(json.dumps({"router": "router", "roles": ["prefill", "decode"], "timeoutSeconds": 20}))[0]


class Recording:
    """The API client's one call the drainer makes, the merge patch of a pod's drain state, applied
    to the pods it was given and kept."""

    def __init__(self, *pods: dict):
        self.writes: list[dict] = []
        self.pods = {p["metadata"]["name"]: p for p in pods}

    async def patch(self, kind, namespace, name, body, *, manager=None, **_):
        pod = json.loads(json.dumps(self.pods[name]))
        annotations = {**(pod["metadata"].get("annotations") or {}), **body["metadata"]["annotations"]}
        pod["metadata"]["annotations"] = {k: v for k, v in annotations.items() if v is not None}
        pod["metadata"]["resourceVersion"] = str(len(self.writes) + 2)
        self.pods[name] = pod
        self.writes.append(pod)
        return pod


class Events:
    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    async def emit(self, obj, type_, reason, message):
        self.seen.append((reason, message))


def fake_pod(name: str, role: str, ip: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": "1",
            "labels": {"rolebasedgroup.workloads.x-k8s.io/role": role, "controller-revision-hash": "r1"},
        },
        "spec": {"containers": [{"name": "sglang", "image": "v1"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def server(logs: Path, name: str, ip: str, port: int, mode: str, bootstrap: int | None = None) -> Proc:
    args = ["--model-path", MODEL, "--host", ip, "--port", str(port), "--disaggregation-mode", mode]
    if bootstrap:
        args += ["--disaggregation-bootstrap-port", str(bootstrap)]
    return standin(logs / f"{name}.log", name, args, SGLANG_STANDIN_DELAY_SECONDS=str(DELAY))


@pytest.fixture
def pd(tmp_path):
    ports = {"prefill": free_port(), "decode-a": free_port(), "decode-b": free_port(), "router": free_port()}
    bootstrap = free_port()
    ips = {"prefill": "127.0.0.2", "decode-a": "127.0.0.3", "decode-b": "127.0.0.4"}
    procs = {
        "prefill": server(tmp_path, "prefill", ips["prefill"], ports["prefill"], "prefill", bootstrap),
        "decode-a": server(tmp_path, "decode-a", ips["decode-a"], ports["decode-a"], "decode"),
        "decode-b": server(tmp_path, "decode-b", ips["decode-b"], ports["decode-b"], "decode"),
    }
    try:
        for name, ip in ips.items():
            wait_for(lambda: http(f"http://{ip}:{ports[name]}/health")[0] == 200, 10, f"{name} /health")
        router = ["-m", "sglang_router.launch_router", "--pd-disaggregation"]
        router += ["--prefill", f"http://{ips['prefill']}:{ports['prefill']}", str(bootstrap)]
        router += ["--decode", f"http://{ips['decode-a']}:{ports['decode-a']}"]
        router += ["--decode", f"http://{ips['decode-b']}:{ports['decode-b']}"]
        router += ["--host", "127.0.0.1", "--port", str(ports["router"])]
        router += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]
        import sys

        procs["router"] = Proc([sys.executable, *router], tmp_path / "router.log", {"NO_COLOR": "1"})
        url = f"http://127.0.0.1:{ports['router']}"

        def registered():
            status, body = http(f"{url}/workers")
            workers = json.loads(body)["workers"] if status == 200 else []
            return len(workers) == 3 and all(w["is_healthy"] for w in workers)

        wait_for(registered, 30, "the router to register 1 prefill and 2 decode workers")
        yield {"router": url, "ports": ports, "ips": ips, "procs": procs, "logs": tmp_path}
    finally:
        for proc in procs.values():
            proc.stop()


class Load:
    """A steady stream of chat completions through the router from a few threads."""

    def __init__(self, router: str, threads: int = 6):
        self.router, self.results, self.stop = router, [], threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        # Streamed, as chat clients ask: a stream the router has begun cannot be retried elsewhere.
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
        while not self.stop.is_set():
            try:
                status, raw = http(f"{self.router}/v1/chat/completions", body, timeout=30)
            except (OSError, ValueError, http_client.HTTPException) as error:  # a stream broken off
                status, raw = 0, repr(error).encode()
            self.results.append((status, raw[-300:]))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(40)

    def failed(self) -> list:
        # A stream that broke off after its 200 lacks its answer or its end.
        return [r for r in self.results if r[0] != 200 or b"[DONE]" not in r[1] or b"error" in r[1]]


def decode_a_pod(pd) -> dict:
    return fake_pod("g-decode-0", "decode", pd["ips"]["decode-a"]) | {}


def config_for(pd) -> drain.DrainConfig:
    return drain.parse(
        json.dumps(
            {
                "router": "router",
                "timeoutSeconds": 20,
                "roles": {"prefill": {"port": pd["ports"]["prefill"]}, "decode": {"port": pd["ports"]["decode-a"]}},
            }
        )
    )[0]


async def drain_until_done(drainer: Drainer, ctx: Context, pod: dict) -> tuple[dict, float]:
    started = time.monotonic()
    while True:
        now = datetime.datetime.now(datetime.UTC)
        done = await drainer._drain(ctx, pod, drain_plan.BY_POD, now)
        pod = (drainer.kube.writes or [pod])[-1]
        if done:
            return pod, time.monotonic() - started
        await asyncio.sleep(0.3)


def router_urls(pd) -> list[str]:
    return [w["url"] for w in json.loads(http(f"{pd['router']}/workers")[1])["workers"]]


def test_without_a_drain_requests_fail_when_a_decode_server_goes(pd):
    a_url = f"http://{pd['ips']['decode-a']}:{pd['ports']['decode-a']}"
    with Load(pd["router"]) as load:
        time.sleep(DELAY)
        wait_for(lambda: json.loads(http(f"{a_url}/get_load")[1])[0]["num_reqs"] > 0, 20, "a request on decode-a")
        pd["procs"]["decode-a"].stop()  # as a deleted pod: SIGTERM, the server exits at once
        time.sleep(DELAY * 4)
    failed = load.failed()
    print(f"\ndrain off: {len(failed)} of {len(load.results)} requests failed")
    print(failed[:2])
    assert failed, "a server that goes with requests in flight fails them (or the test shows nothing)"


def test_with_a_drain_no_request_fails_and_the_server_rejoins(pd):
    ctx = Context({"metadata": {"name": "g", "namespace": "ns"}}, config_for(pd), (pd["router"],))
    pod = decode_a_pod(pd)
    drainer = Drainer(Recording(pod), Events())
    a_url = f"http://{pd['ips']['decode-a']}:{pd['ports']['decode-a']}"

    async def scenario():
        nonlocal pod
        with Load(pd["router"]) as load:
            await asyncio.sleep(DELAY * 2)
            in_flight_before = json.loads(http(f"{a_url}/get_load")[1])[0]["num_reqs"]
            pod, seconds = await drain_until_done(drainer, ctx, pod)
            assert a_url not in router_urls(pd)
            assert json.loads(http(f"{a_url}/get_load")[1])[0]["num_reqs"] == 0
            pd["procs"]["decode-a"].stop()
            await asyncio.sleep(DELAY * 3)
        await drainer.router.close()
        return load, pod, seconds, in_flight_before

    load, pod, seconds, in_flight_before = asyncio.run(scenario())
    failed = load.failed()
    print(f"\ndrain on: {len(failed)} of {len(load.results)} requests failed (drain took {seconds:.1f}s)")
    assert failed == []
    state = drain_plan.DrainState.of(pod)
    assert state.phase == drain_plan.DRAINED and state.outcome == "Drained" and state.url == a_url
    assert in_flight_before > 0  # requests were in flight when the drain began
    reasons = [r for r, _ in drainer.recorder.seen]
    assert reasons == ["DrainStarted", "Drained"]
    # The pod comes back (updated in place: the same address, restarted): it rejoins once Ready.
    pd["procs"]["decode-a"] = server(pd["logs"], "decode-a2", pd["ips"]["decode-a"], pd["ports"]["decode-a"], "decode")
    wait_for(lambda: http(f"{a_url}/health")[0] == 200, 10, "decode-a again")
    updated = json.loads(json.dumps(pod))
    updated["metadata"]["labels"]["controller-revision-hash"] = "r2"
    updated["status"]["containerStatuses"] = [{"name": "sglang", "restartCount": 1}]
    assert drain_plan.needs_join(updated, ctx.config)

    async def rejoin():
        joined = await drainer._join(ctx, updated, cancelled=False)
        await drainer.router.close()
        return joined

    assert asyncio.run(rejoin())
    assert drain_plan.DrainState.of(drainer.kube.writes[-1]).phase == drain_plan.JOINED
    wait_for(lambda: a_url in router_urls(pd), 10, "decode-a back in the router")


def test_a_router_that_is_down_is_waited_for_until_the_timeout():
    port = free_port()  # nothing listens there
    config = drain.parse(json.dumps({"router": "router", "roles": ["decode"], "timeoutSeconds": 1}))[0]
    ctx = Context({"metadata": {"name": "g", "namespace": "ns"}}, config, (f"http://127.0.0.1:{port}",))
    pod = fake_pod("g-decode-0", "decode", "127.0.0.9")
    drainer = Drainer(Recording(pod), Events())

    async def scenario():
        first = await drainer._drain(ctx, pod, drain_plan.BY_POD, datetime.datetime.now(datetime.UTC))
        waiting = drain_plan.DrainState.of(drainer.kube.writes[-1])
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
        second = await drainer._drain(ctx, drainer.kube.writes[-1], drain_plan.BY_POD, later)
        await drainer.router.close()
        return first, waiting, second

    first, waiting, second = asyncio.run(scenario())
    assert not first and waiting.phase == drain_plan.DRAINING and waiting.why.startswith("router unreachable")
    final = drain_plan.DrainState.of(drainer.kube.writes[-1])
    assert second and final.phase == drain_plan.DRAINED and final.outcome == "RouterUnreachable"
    assert [r for r, _ in drainer.recorder.seen] == ["DrainStarted", "DrainCutShort"]
