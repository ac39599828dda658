"""`--metrics-secure`: /metrics over HTTPS, for callers whose token the API server authenticates
(TokenReview) and whose user RBAC lets `get` the non-resource URL /metrics (SubjectAccessReview).
Everything is checked against the real API server with real ServiceAccount tokens."""

from __future__ import annotations

import dataclasses
import http.client
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rbg_operator import kubeconfig as kubeconfig_module
from rbg_operator import metrics_server, webhook
from tests.support.kubectl import Kubectl, wait_for
from tests.support.operator import OperatorProcess, free_port


def get(
    port: str | int, token: str | None = None, context: ssl.SSLContext | None = None, path: str = "/metrics"
) -> tuple[int, dict[str, str], str]:
    """GET over HTTPS; status, headers and body, whatever the status."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed
    connection = http.client.HTTPSConnection("127.0.0.1", int(port), context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token is not None else {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def sample(body: str, key: str) -> float:
    for line in body.splitlines():
        if line.startswith(key + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def scrapers(kubectl: Kubectl, isolated_namespace: str):
    """Tokens of two ServiceAccounts: one bound to a ClusterRole that may get /metrics, one not."""
    ns = isolated_namespace
    role = f"rbg-test-metrics-reader-{secrets.token_hex(3)}"
    kubectl.run("create", "serviceaccount", "scraper", f"--namespace={ns}")
    kubectl.run("create", "serviceaccount", "stranger", f"--namespace={ns}")
    try:
        kubectl.apply(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": role},
                    "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": role},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                    "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": ns}],
                },
            ]
        )
        # The API server's RBAC cache must hold the binding before the first scrape, or the
        # operator would (rightly) cache a denial for a few seconds.
        wait_for(
            "the binding to take effect",
            lambda: (
                kubectl.run(
                    "auth", "can-i", "get", "/metrics", f"--as=system:serviceaccount:{ns}:scraper", check=False
                ).stdout.strip()
                == "yes"
            ),
            30,
            0.2,
        )
        tokens = {
            sa: kubectl.run("create", "token", sa, f"--namespace={ns}", "--duration=10m").stdout.strip()
            for sa in ("scraper", "stranger")
        }
        yield tokens
    finally:
        kubectl.delete("clusterrolebinding", role)
        kubectl.delete("clusterrole", role)


def test_secure_metrics_need_a_token_that_rbac_allows(
    kubeconfig: str, isolated_namespace: str, scrapers: dict[str, str], tmp_path: Path
):
    operator = OperatorProcess(
        kubeconfig, tmp_path / "operator.log", f"--namespace={isolated_namespace}", "--metrics-secure"
    ).start()
    try:
        port = operator.metrics_port
        status, headers, body = get(port)
        assert status == 401, body
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
        status, _, body = get(port, "not-a-real-token")
        assert status == 401, body
        status, _, body = get(port, scrapers["stranger"])
        assert status == 403, body
        assert f"system:serviceaccount:{isolated_namespace}:stranger" in body

        status, headers, body = get(port, scrapers["scraper"])
        assert status == 200, body
        assert "controller_runtime_reconcile_total" in body
        assert headers["Content-Type"].startswith("text/plain")
        assert operator.metrics(scrapers["scraper"])  # the shared helper speaks HTTPS with a token too

        # The decision is cached: more scrapes with the same token send no more reviews (201 Created).
        reviews = 'rest_client_requests_total{code="201",method="POST"}'
        before = sample(body, reviews)
        assert before >= 2  # the TokenReview and the SubjectAccessReview of the first allowed scrape
        for _ in range(3):
            status, _, body = get(port, scrapers["scraper"])
            assert status == 200
        assert sample(body, reviews) == before

        # Only /metrics is served.
        assert get(port, scrapers["scraper"], path="/debug")[0] == 404

        # HTTPS only: a plain HTTP request gets no answer, and the server keeps serving after it.
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((OSError, http.client.HTTPException)):
            plain.request("GET", "/metrics")
            plain.getresponse().read()
        plain.close()
        # A client that connects and never says anything does not hold up the others.
        with socket.create_connection(("127.0.0.1", port)):
            started = time.monotonic()
            assert get(port, scrapers["scraper"])[0] == 200
            assert time.monotonic() - started < 5
    finally:
        operator.stop()


def test_metrics_cert_dir_is_served(kubeconfig: str, isolated_namespace: str, tmp_path: Path):
    cert_dir = tmp_path / "certs"
    cert, _ = webhook.self_signed_certificate(cert_dir, "127.0.0.1")
    operator = OperatorProcess(
        kubeconfig,
        tmp_path / "operator.log",
        f"--namespace={isolated_namespace}",
        "--metrics-secure",
        f"--metrics-cert-dir={cert_dir}",
    ).start()
    try:
        # Verified against exactly that certificate (as CA, with the host name checked).
        context = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", operator.metrics_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                served = tls.getpeercert(binary_form=True)
        assert served == ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert get(operator.metrics_port, context=context)[0] == 401
    finally:
        operator.stop()


def test_unreadable_cert_dir_stops_the_operator_naming_the_flag(kubeconfig: str, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rbg_operator",
            "run",
            "--namespace=iso-none",
            "--metrics-secure",
            f"--metrics-cert-dir={empty}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
        ],
        env={**os.environ, "KUBECONFIG": kubeconfig},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert f"--metrics-cert-dir={empty}" in result.stderr, result.stderr


def test_review_failures_are_server_errors_not_denials(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, scrapers: dict[str, str]
):
    """The reviews as an identity without RBAC for them (500), and with the API server unreachable
    (503); neither answer is cached, so the next scrape tries again."""
    admin = kubeconfig_module.load(kubeconfig=kubeconfig).info
    weak = kubeconfig_module.Credentials(
        dataclasses.replace(
            admin,
            certificate_path=None,
            certificate_data=None,
            private_key_path=None,
            private_key_data=None,
            token=scrapers["stranger"],
        )
    )
    reviewer = metrics_server.Reviewer(weak)
    decision = reviewer.decide(scrapers["scraper"])
    assert decision.status == 500, decision
    assert "TokenReview" in decision.message and "forbidden" in decision.message.lower()
    assert reviewer.decide(scrapers["scraper"]).status == 500
    assert not reviewer._cache

    gone = dataclasses.replace(admin, server=f"https://127.0.0.1:{free_port()}")
    unreachable = metrics_server.Reviewer(kubeconfig_module.Credentials(gone))
    decision = unreachable.decide(scrapers["scraper"])
    assert decision.status == 503, decision
    assert "unreachable" in decision.message

    # And with the operator's real identity the same token is allowed (the reviewer itself works).
    assert (
        metrics_server.Reviewer(kubeconfig_module.load(kubeconfig=kubeconfig)).decide(scrapers["scraper"]).status == 200
    )
