"""Webhook flags that would fail only once the operator runs (a 422 from the API server, a URL it
cannot call) are refused at start with one line naming the flag."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from rbg_operator.cli import conversion_service_problem, webhook_configuration_problem, webhook_flags_problem


def flags(**given) -> argparse.Namespace:
    defaults = dict(
        webhook_bind_address="",
        webhook_configuration="",
        register_conversion=False,
        conversion_service="",
        webhook_host="",
        webhook_cert_dir="",
    )
    return argparse.Namespace(**{**defaults, **given})


@pytest.mark.parametrize(
    "name", ["rbg-test", "RBG.example.com", "rbg_test.example.com", "-rbg.example.com", "x." + "a" * 250]
)
def test_webhook_configuration_names_kubernetes_refuses(name):
    problem = webhook_configuration_problem(name)
    assert problem and problem.startswith(f"--webhook-configuration {name!r}:")


def test_a_name_without_a_dot_is_told_why_it_needs_one():
    assert "needs at least one dot" in webhook_configuration_problem("rbg-test")


@pytest.mark.parametrize("name", ["rbg-operator.workloads.x-k8s.io", "rbg-test-1a2b3c.workloads.x-k8s.io", "a.b"])
def test_webhook_configuration_names_kubernetes_takes(name):
    assert webhook_configuration_problem(name) is None


@pytest.mark.parametrize(
    "value", ["ack-rbgs-webhook", "rbgs-system/", "/svc", "rbgs-system/1svc", "NS/svc", "a/b/c", "rbgs-system/svc.x"]
)
def test_conversion_service_must_be_namespace_slash_name(value):
    assert conversion_service_problem(value).startswith(f"--conversion-service {value!r}: not NAMESPACE/NAME")


def test_conversion_service_of_the_chart_is_taken():
    assert conversion_service_problem("rbgs-system/ack-rbgs-webhook") is None


@pytest.mark.parametrize(
    "flag, given",
    [
        ("--webhook-configuration", dict(webhook_configuration="rbg.example.com")),
        ("--register-conversion", dict(register_conversion=True)),
        ("--webhook-host", dict(webhook_host="10.0.0.1")),
        ("--webhook-cert-dir", dict(webhook_cert_dir="/tmp")),
    ],
)
def test_webhook_flags_need_a_webhook_address(flag, given):
    assert (
        webhook_flags_problem(flags(**given)) == f"{flag} needs --webhook-bind-address: the webhooks are served there"
    )


def test_conversion_service_needs_register_conversion():
    problem = webhook_flags_problem(flags(webhook_bind_address=":9443", conversion_service="ns/svc"))
    assert problem.startswith("--conversion-service needs --register-conversion")


def test_a_registered_url_needs_a_host_the_api_server_can_call():
    problem = webhook_flags_problem(flags(webhook_bind_address=":9443", register_conversion=True))
    assert (
        problem.startswith("--register-conversion registers https://HOST:PORT/convert") and "--webhook-host" in problem
    )
    for good in (dict(webhook_host="rbg.local"), dict(conversion_service="rbgs-system/ack-rbgs-webhook")):
        assert webhook_flags_problem(flags(webhook_bind_address=":9443", register_conversion=True, **good)) is None


def test_a_cert_dir_without_the_files_is_refused(tmp_path):
    (tmp_path / "tls.crt").write_text("x")
    problem = webhook_flags_problem(flags(webhook_bind_address="127.0.0.1:9443", webhook_cert_dir=str(tmp_path)))
    assert problem == f"--webhook-cert-dir {tmp_path}: no tls.key there"


def test_what_the_tests_and_the_chart_pass_is_taken(tmp_path):
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    assert webhook_flags_problem(flags()) is None
    assert webhook_flags_problem(flags(webhook_bind_address="127.0.0.1:9443", register_conversion=True)) is None
    assert (
        webhook_flags_problem(
            flags(webhook_bind_address="127.0.0.1:9443", webhook_configuration="rbg-test-ab12cd.workloads.x-k8s.io")
        )
        is None
    )
    assert (
        webhook_flags_problem(
            flags(
                webhook_bind_address=":9443",
                webhook_cert_dir=str(tmp_path),
                register_conversion=True,
                conversion_service="rbgs-system/ack-rbgs-webhook",
            )
        )
        is None
    )


def test_run_refuses_a_dotless_webhook_configuration_in_one_line_before_connecting():
    # No cluster: the refusal comes before any connection is tried.
    result = subprocess.run(
        [sys.executable, "-m", "rbg_operator", "run", "--webhook-configuration", "rbg-test"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "", "KUBECONFIG": "/nonexistent"},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [
        "rbg-operator run: error: --webhook-configuration 'rbg-test': needs at least one dot, as its "
        "webhooks are named validate-KIND.rbg-test and Kubernetes wants three dot-separated parts "
        "(e.g. rbg-operator.workloads.x-k8s.io)"
    ], result.stderr
