"""The SGLang stand-in and the real sglang-router 0.3.2 on loopback, no cluster.

Two prefill and one decode stand-in run as the example runs them (`python3 -m sglang.launch_server`, here
from the host's python with the stand-in on PYTHONPATH), the real router in front in PD mode; a chat
completion through the router must name the prefill and the decode pod that served it, and both logs
must show their half of the bootstrap handshake.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from localcluster.cluster import free_port
from localcluster.images import STANDIN, STANDIN_FLAGS, standin_flags

pytestmark = pytest.mark.standin

REPO = Path(__file__).resolve().parents[1]
MODEL = "/models/Qwen3-32B"
KV_WAIT = 2  # seconds decode waits for a room that prefill never registers


def http(url: str, body: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Proc:
    """One process with its output in a file, ended (and waited for) by stop()."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
            )

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def standin(log: Path, hostname: str, args: list[str], **env: str) -> Proc:
    return Proc(
        [sys.executable, "-m", "sglang.launch_server", *args],
        log,
        {"PYTHONPATH": str(STANDIN), "HOSTNAME": hostname, **env},
    )


def server_args(port: int, mode: str, bootstrap: int | None = None) -> list[str]:
    # The example's command line, on loopback ports.
    args = ["--model-path", MODEL, "--tp-size", "2", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--disaggregation-mode", mode]
    if bootstrap is not None:
        args += ["--disaggregation-bootstrap-port", str(bootstrap)]
    return [*args, "--disaggregation-ib-device", "erdma_0", "--trust-remote-code"]


@pytest.fixture(scope="module")
def pd(tmp_path_factory):
    """prefill-0, prefill-1, decode-0 and the router, all on loopback; yields their ports and processes."""
    logs = tmp_path_factory.mktemp("standin")
    procs: dict[str, Proc] = {}
    ports = {"prefill-0": free_port(), "prefill-1": free_port(), "decode-0": free_port(), "router": free_port()}
    bootstrap = {"prefill-0": free_port(), "prefill-1": free_port()}
    try:
        for name in ("prefill-0", "prefill-1"):
            args = server_args(ports[name], "prefill", bootstrap[name])
            procs[name] = standin(logs / f"{name}.log", name, args)
        procs["decode-0"] = standin(
            logs / "decode-0.log",
            "decode-0",
            server_args(ports["decode-0"], "decode"),
            SGLANG_STANDIN_KV_WAIT_SECONDS=str(KV_WAIT),
        )
        for name in ("prefill-0", "prefill-1", "decode-0"):
            wait_for(lambda: http(f"http://127.0.0.1:{ports[name]}/health")[0] == 200, 10, f"{name} /health")
        router = [sys.executable, "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        for name in ("prefill-0", "prefill-1"):
            router += ["--prefill", f"http://127.0.0.1:{ports[name]}", str(bootstrap[name])]
        router += [
            "--decode",
            f"http://127.0.0.1:{ports['decode-0']}",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["router"]),
        ]
        router += ["--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]
        procs["router"] = Proc(router, logs / "router.log", {"NO_COLOR": "1"})

        def registered():
            status, body = http(f"http://127.0.0.1:{ports['router']}/workers")
            workers = json.loads(body)["workers"] if status == 200 else []
            return len(workers) == 3 and all(w["is_healthy"] for w in workers)

        wait_for(registered, 30, "the router to register 2 prefill and 1 decode workers")
        yield {"ports": ports, "bootstrap": bootstrap, "procs": procs}
    finally:
        for proc in procs.values():
            proc.stop()


def log_line(proc: Proc, pattern: str) -> str:
    """The process's log line matching pattern (the line is written as the request is answered)."""
    return wait_for(lambda: re.search(pattern, proc.text(), re.M), 5, f"{pattern!r} in {proc.log.name}").group(0)


ANSWER = re.compile(r"Hello from the RBG stand-in \(prefill (prefill-[01]), decode (decode-0)\)")


def test_a_chat_completion_through_the_real_router_names_prefill_and_decode(pd):
    router = f"http://127.0.0.1:{pd['ports']['router']}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    status, raw = http(f"{router}/v1/chat/completions", body)
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["model"] == MODEL and answer["object"] == "chat.completion"
    match = ANSWER.fullmatch(answer["choices"][0]["message"]["content"])
    assert match, answer
    prefill, decode = match.group(1), match.group(2)
    procs = pd["procs"]
    # The decode log names the room and the prefill bootstrap server it fetched from ...
    line = log_line(procs[decode], rf"^rbg-standin role=decode pod={decode} path=/v1/chat/completions room=\d+ .*$")
    room = re.search(r"room=(\d+)", line).group(1)
    assert f"prefill=127.0.0.1:{pd['bootstrap'][prefill]} status=200" in line
    # ... and that prefill served the same room and handed its KV to this decode.
    log_line(
        procs[prefill], rf"^rbg-standin role=prefill pod={prefill} path=/v1/chat/completions room={room} status=200$"
    )
    log_line(
        procs[prefill], rf"^rbg-standin role=prefill pod={prefill} path=/kv/{room} room={room} decode={decode} .*$"
    )
    other = "prefill-1" if prefill == "prefill-0" else "prefill-0"
    assert f"room={room}" not in procs[other].text()


def test_streaming_and_native_generate_through_the_router(pd):
    router = f"http://127.0.0.1:{pd['ports']['router']}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    status, raw = http(f"{router}/v1/chat/completions", body)
    assert status == 200, raw
    events = [line[len("data: ") :] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert ANSWER.fullmatch(text), text
    status, raw = http(f"{router}/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 8}})
    assert status == 200 and ANSWER.fullmatch(json.loads(raw)["text"]), raw


def test_decode_fails_clearly_when_prefill_never_registers_the_room(pd):
    decode = f"http://127.0.0.1:{pd['ports']['decode-0']}"
    bootstrap = pd["bootstrap"]["prefill-0"]
    body = {"messages": [{"role": "user", "content": "Hi"}], "bootstrap_host": "127.0.0.1"}
    body |= {"bootstrap_port": bootstrap, "bootstrap_room": 424242}
    started = time.monotonic()
    status, raw = http(f"{decode}/v1/chat/completions", body)
    assert status == 503 and time.monotonic() - started >= KV_WAIT
    message = json.loads(raw)["message"]
    assert f"no KV for bootstrap room 424242 from prefill 127.0.0.1:{bootstrap}" in message
    status, raw = http(f"{decode}/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})
    assert status == 400 and b"bootstrap_room" in raw


def test_the_models_and_info_endpoints_give_the_model_path(pd):
    server = f"http://127.0.0.1:{pd['ports']['prefill-0']}"
    assert json.loads(http(f"{server}/v1/models")[1])["data"][0]["id"] == MODEL
    assert json.loads(http(f"{server}/get_model_info")[1])["model_path"] == MODEL
    info = json.loads(http(f"{server}/get_server_info")[1])
    assert info["disaggregation_mode"] == "prefill" and info["tensor_parallel_size"] == info["tp_size"] == 2
    assert http(f"{server}/health_generate")[0] == 200


def run_standin(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(STANDIN)}
    return subprocess.run(
        [sys.executable, "-m", "sglang.launch_server", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("flag", ["--no-such-flag", "--tp"])  # --tp: an abbreviation the real parser would take
def test_an_unknown_flag_exits_non_zero_naming_it(flag: str):
    done = run_standin("--model-path", MODEL, flag, "2")
    assert done.returncode == 2
    assert f"unrecognized arguments: {flag} 2" in done.stderr
    assert len(done.stderr.splitlines()) <= 3  # the error is not buried under the usage of 300 options


def test_the_examples_server_command_lines_parse():
    group = next(d for d in yaml.safe_load_all((REPO / "examples" / "sglang_pd.yaml").read_text()) if d)
    code = (
        "import json, sys; from sglang.launch_server import parser; "
        "print(json.dumps(vars(parser().parse_args(sys.argv[1:]))))"
    )
    env = {**os.environ, "PYTHONPATH": str(STANDIN)}
    for role in group["spec"]["roles"]:
        command = role["template"]["spec"]["containers"][0]["command"]
        if command[:3] != ["python3", "-m", "sglang.launch_server"]:
            continue
        out = subprocess.run(
            [sys.executable, "-c", code, *command[3:]], env=env, capture_output=True, text=True, check=True
        ).stdout
        parsed = json.loads(out)
        assert parsed["disaggregation_mode"] == role["name"] and parsed["host"] == "0.0.0.0" and parsed["port"] == 8000
        assert parsed["disaggregation_bootstrap_port"] == 8998


def test_the_delay_keeps_a_request_in_flight(tmp_path):
    port = free_port()
    args = ["--model-path", MODEL, "--host", "127.0.0.1", "--port", str(port)]
    proc = standin(tmp_path / "plain.log", "plain-0", args, SGLANG_STANDIN_DELAY_SECONDS="1.5")
    try:
        server = f"http://127.0.0.1:{port}"
        wait_for(lambda: http(f"{server}/health")[0] == 200, 10, "the plain stand-in")
        answers: list = []
        started = time.monotonic()
        body = {"messages": [{"role": "user", "content": "Hi"}]}
        thread = threading.Thread(target=lambda: answers.append(http(f"{server}/v1/chat/completions", body)))
        thread.start()
        load = wait_for(
            lambda: json.loads(http(f"{server}/get_load")[1])[0]["num_reqs"] == 1, 1, "one request in flight"
        )
        assert load
        assert http(f"{server}/health")[0] == 200  # probes are answered while it waits
        thread.join(10)
        assert time.monotonic() - started >= 1.5
        status, raw = answers[0]
        assert status == 200 and "plain plain-0" in json.loads(raw)["choices"][0]["message"]["content"]
        assert json.loads(http(f"{server}/get_load")[1])[0]["num_reqs"] == 0
        log_line(proc, r"^rbg-standin role=null pod=plain-0 path=/v1/chat/completions status=200$")
    finally:
        proc.stop()


def test_the_shipped_flag_table_is_derived_from_the_reference_one():
    reference = REPO.parent / "shared" / "reference" / "sglang" / "sglang-0.5.9-server.json"
    if not reference.exists():
        pytest.skip("the SGLang flag tables of ../shared/reference are not here")
    assert json.loads(STANDIN_FLAGS.read_text()) == standin_flags(json.loads(reference.read_text()))
