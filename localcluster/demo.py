"""`make demo`: the local cluster, the operator, the SGLang example, and its status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import cluster, crds

REPO = Path(__file__).resolve().parent.parent
GROUP = "sglang-pd"
GROUP_API = "workloads.x-k8s.io"
ROUTER_SELECTOR = f"rolebasedgroup.workloads.x-k8s.io/name={GROUP},rolebasedgroup.workloads.x-k8s.io/role=router"
TEST_NAMESPACES = ("t-*", "iso-*")  # the globs of the namespaces the test suite makes (tests/conftest.py)


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _fail(message: str) -> None:
    _say(message)
    sys.exit(1)


def _wait_for_conversion(example: Path, log: Path) -> None:
    """The example is v1alpha1: the API server converts it to v1alpha2 through the operator's webhook,
    which is registered and listening a moment after the operator starts. A server-side dry run
    goes through the same conversion without creating anything."""
    deadline = time.monotonic() + 60
    while True:
        dry_run = cluster.kubectl("apply", "--dry-run=server", "-f", str(example), check=False)
        if dry_run.returncode == 0:
            return
        if not cluster.process_alive("rbg-operator"):
            _fail(f"the operator exited; the end of its log ({log}):\n" + _tail(log))
        if time.monotonic() > deadline:
            _fail(
                f"the API server still cannot convert v1alpha1 through the operator's webhook after 60s: "
                f"{dry_run.stderr.strip()}\nLook at the operator log ({log})."
            )
        time.sleep(0.5)


CHAT = {"model": "/models/Qwen3-32B", "messages": [{"role": "user", "content": "Hello"}]}


def _chat_through_the_router() -> None:
    """The example's own last step: port-forward svc/sglang-pd and send one chat completion, which the
    router splits between a prefill and a decode server."""
    port = cluster.free_port()
    forward_log = cluster.state_dir() / "logs" / "port-forward.log"
    _say(f"kubectl port-forward svc/{GROUP} {port}:8000, then POST /v1/chat/completions")
    with forward_log.open("w") as log:
        forward = subprocess.Popen(
            [
                str(cluster.state_dir() / "bin" / "kubectl"),
                f"--kubeconfig={cluster.kubeconfig_path()}",
                "port-forward",
                f"svc/{GROUP}",
                f"{port}:8000",
            ],
            # Its output goes to a log nobody has to drain (a pipe left unread could fill and stall it).
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        answer = _post_chat(port, time.monotonic() + 60, forward_log)
    finally:
        forward.terminate()
        forward.wait(10)
    print()
    print(f"$ curl http://localhost:{port}/v1/chat/completions -d '{json.dumps(CHAT)}'")
    print(json.dumps(answer, indent=2))
    print(f"answer: {answer['choices'][0]['message']['content']}")
    print()


def _post_chat(port: int, deadline: float, forward_log: Path) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(CHAT).encode(),
        headers={"Content-Type": "application/json"},
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except (OSError, ValueError) as error:  # the forward is not listening yet, or the router is warming
            if time.monotonic() > deadline:
                _fail(
                    f"no chat completion through svc/{GROUP} within 60s: {error}. Look at "
                    f"`kubectl logs -l {ROUTER_SELECTOR}`, the prefill and decode logs, and {forward_log}."
                )
            time.sleep(1)


def main() -> None:
    cluster.up()
    _say("installing the RoleBasedGroup CRDs from crds/")
    crds.install(cluster.kubectl, REPO / "crds")

    log = cluster.state_dir() / "logs" / "rbg-operator.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())}
    # Every namespace but the ones `make test` creates (t-*, iso-*): the test suite runs its own
    # operators there, and two operators on one group would each act on it (a restart recreated twice).
    # Free ports picked now: the operator refuses port 0 (its probes would land on a port nobody knows).
    # It also serves the CRDs' version conversion (v1alpha2 reads go through it), as the chart's does.
    metrics_port, health_port, webhook_port = cluster.free_port(), cluster.free_port(), cluster.free_port()
    pid = cluster.start_process(
        "rbg-operator",
        [
            sys.executable,
            "-m",
            "rbg_operator",
            "run",
            *[f"--ignore-namespace={glob}" for glob in TEST_NAMESPACES],
            f"--metrics-bind-address=127.0.0.1:{metrics_port}",
            f"--health-probe-bind-address=127.0.0.1:{health_port}",
            f"--webhook-bind-address=127.0.0.1:{webhook_port}",
            "--register-conversion",
        ],
        env=env,
    )
    _say(f"operator running (pid {pid}), log: {log}")

    example = REPO / "examples" / "sglang_pd.yaml"
    _wait_for_conversion(example, log)
    _say("applying examples/llm-model.yaml and examples/sglang_pd.yaml")
    cluster.kubectl("apply", "-f", str(REPO / "examples" / "llm-model.yaml"))
    cluster.kubectl("apply", "-f", str(example))

    deadline = time.monotonic() + 180
    last = ""
    while time.monotonic() < deadline:
        # In v1alpha2, the stored version: reading it needs no conversion.
        group = json.loads(cluster.kubectl("get", f"rolebasedgroups.v1alpha2.{GROUP_API}", GROUP, "-o", "json").stdout)
        ready = next((c for c in (group.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)
        line = f"Ready={ready['status']} ({ready['reason']}: {ready['message']})" if ready else "no status yet"
        if line != last:
            _say(f"{GROUP}: {line}")
            last = line
        if ready and ready["status"] == "True":
            break
        if not cluster.process_alive("rbg-operator"):
            _fail(f"the operator exited; the end of its log ({log}):\n" + _tail(log))
        time.sleep(1)
    else:
        _fail(
            f"{GROUP} is not Ready after 180s. Look at `kubectl describe rbg {GROUP}` and the operator "
            f"log ({log}); `make cluster-down` and `make demo` start afresh."
        )

    print()
    print(cluster.kubectl("get", "rbg", GROUP).stdout)
    print(
        cluster.kubectl("get", "statefulsets,services", "-l", f"rolebasedgroup.workloads.x-k8s.io/name={GROUP}").stdout
    )
    print(cluster.kubectl("get", "pods", "-o", "wide", "-l", f"rolebasedgroup.workloads.x-k8s.io/name={GROUP}").stdout)
    if cluster.real_node_wanted():
        _chat_through_the_router()
    print(f"Try it yourself:  export KUBECONFIG={cluster.kubeconfig_path()} PATH={cluster.state_dir() / 'bin'}:$PATH")
    print("                   kubectl get rbg; kubectl describe rbg sglang-pd")
    print("Stop everything:   make cluster-down")


if __name__ == "__main__":
    main()
