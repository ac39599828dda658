"""Run the real operator as a subprocess against the test cluster, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OperatorProcess:
    def __init__(self, kubeconfig: str, log_path: Path, *extra_args: str):
        self.kubeconfig, self.log_path, self.extra_args = kubeconfig, log_path, extra_args
        self.metrics_port, self.health_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rbg_operator", "run",
             f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
             f"--health-probe-bind-address=127.0.0.1:{self.health_port}", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()  # never leave a half-started operator behind
        raise AssertionError(f"operator did not become healthy in 60s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metrics(self) -> dict[str, float]:
        """Current metric samples as {'name{labels}': value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def write_requests(self) -> float:
        """Write requests (POST, PUT, PATCH, DELETE) this operator has sent so far."""
        return sum(v for k, v in self.metrics().items()
                   if k.startswith("rest_client_requests_total{")
                   and any(f'method="{m}"' in k for m in ("POST", "PUT", "PATCH", "DELETE")))
