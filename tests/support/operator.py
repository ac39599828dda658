"""Run the real operator as a subprocess against the test cluster, as a user would."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from localcluster.cluster import free_port


class OperatorProcess:
    def __init__(self, kubeconfig: str, log_path: Path, *extra_args: str):
        self.kubeconfig, self.log_path, self.extra_args = kubeconfig, log_path, extra_args
        self.metrics_port, self.health_port = free_port(), free_port()
        # --metrics-secure serves HTTPS (self-signed unless --metrics-cert-dir) and wants a bearer token.
        self.metrics_secure = "--metrics-secure" in extra_args
        self.proc: subprocess.Popen | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rbg_operator",
                "run",
                f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
                *self.extra_args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
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

    @property
    def metrics_url(self) -> str:
        return f"{'https' if self.metrics_secure else 'http'}://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self, token: str | None = None) -> dict[str, float]:
        """Current metric samples as {'name{labels}': value}; `token` for a --metrics-secure operator."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.metrics_url, headers=headers)
        context = None
        if self.metrics_secure:  # the tests check the certificate themselves where it matters
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def write_requests(self) -> float:
        """Write requests (POST, PUT, PATCH, DELETE) this operator has sent so far."""
        return sum(
            v
            for k, v in self.metrics().items()
            if k.startswith("rest_client_requests_total{")
            and any(f'method="{m}"' in k for m in ("POST", "PUT", "PATCH", "DELETE"))
        )
