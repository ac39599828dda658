"""Packaging: the Helm chart (lint, render, install under the restricted Pod Security profile,
upgrade), its RBAC proven sufficient by running the operator as the chart's ServiceAccount,
leader election, metrics, the kubectl plugin, and the installable entrypoint."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.examples import model_volume, sglang_example
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ack-rbgs"
C = [{"name": "main", "image": "example.com/app:v1"}]


@pytest.fixture(scope="module")
def helm(kubeconfig: str):
    binary = REPO / ".cluster" / "bin" / "helm"
    if not binary.exists():
        from localcluster import components
        binary = components.build(components.MODULES_BY_NAME["helm"]) / "helm"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(binary), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                                timeout=180)
        assert not check or result.returncode == 0, result.stderr
        return result
    return run


def render(helm, *values: str) -> list[dict]:
    # As a GitOps pipeline renders it: offline, with no --kube-version.
    out = helm("template", "ack-rbgs", str(CHART), "-n", "rbgs-system", *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_chart_lints_and_renders_least_privilege_restricted_objects(helm):
    lint = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout
    docs = render(helm)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role", "RoleBinding",
                     "Secret", "Service", "Service", "ServiceAccount", "ValidatingWebhookConfiguration"]
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    container = pod["containers"][0]
    assert container["args"][:2] == ["run", "--leader-elect"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    hook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert {w["clientConfig"]["caBundle"] for w in hook["webhooks"]} == {secret["data"]["ca.crt"]}
    assert [w["clientConfig"]["service"]["path"] for w in hook["webhooks"]] == \
        ["/validate-rolebasedgroup", "/validate-rolebasedgroupset"]
    monitored = render(helm, "--set", "metrics.serviceMonitor.enabled=true")
    assert any(d["kind"] == "ServiceMonitor" for d in monitored)


def test_every_value_is_documented_in_the_chart_readme():
    readme = (CHART / "README.md").read_text()

    def keys(tree: dict, prefix: str = "") -> list[str]:
        out = []
        for key, value in tree.items():
            path = f"{prefix}{key}"
            documented_whole = f"`{path}`" in readme  # e.g. `resources`, documented as one value
            out += keys(value, f"{path}.") if isinstance(value, dict) and value and not documented_whole else [path]
        return out

    missing = [k for k in keys(yaml.safe_load((CHART / "values.yaml").read_text())) if f"`{k}`" not in readme]
    assert not missing, missing


def _install(helm, kubectl: Kubectl, release: str, namespace: str) -> None:
    kubectl.run("create", "namespace", namespace)
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # The local cluster's pods are kwok fakes, so a Service-backed webhook could never answer:
    # the webhook stays off here (its objects are checked in the rendering test).
    helm("install", release, str(CHART), "-n", namespace, "--set", "webhook.enabled=false", "--wait=false")


def test_chart_installs_restricted_and_upgrades_keep_crds_and_groups(helm, kubectl: Kubectl, namespace: str):
    release, home = f"rbgs-{secrets.token_hex(3)}", f"rbgs-system-{secrets.token_hex(3)}"
    _install(helm, kubectl, release, home)
    try:
        pods = wait_for("2 operator pods admitted under restricted", lambda: (p := kubectl.get(
            "pods", namespace=home, selector=f"app.kubernetes.io/instance={release}")) and len(p) == 2 and p, 60)
        assert all(p["spec"]["securityContext"]["runAsNonRoot"] for p in pods)
        kubectl.apply({"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": {"name": "keep"},
                       "spec": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]}}, namespace)
        helm("upgrade", release, str(CHART), "-n", home, "--set", "webhook.enabled=false", "--set", "operator.workers=4")
        helm("uninstall", release, "-n", home)
        for crd in ("rolebasedgroups", "rolebasedgroupsets", "rolebasedgroupscalingadapters"):
            assert kubectl.get("crd", f"{crd}.workloads.x-k8s.io") is not None
        assert kubectl.get("rbg", "keep", namespace) is not None
    finally:
        helm("uninstall", release, "-n", home, check=False)
        kubectl.run("delete", "namespace", home, "--wait=false")


def _service_account_kubeconfig(kubectl: Kubectl, namespace: str, account: str, path: Path) -> str:
    token = kubectl.run("create", "token", account, f"-n={namespace}", "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(kubectl.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": "sa"}))
    return str(path)


def test_operator_as_the_chart_service_account_meets_no_403(helm, kubectl: Kubectl, namespace: str, tmp_path):
    release, home = f"rbgs-{secrets.token_hex(3)}", f"rbgs-system-{secrets.token_hex(3)}"
    _install(helm, kubectl, release, home)
    try:
        wait_for("ServiceAccount", lambda: kubectl.get("serviceaccount", release + "-ack-rbgs", home)
                 or kubectl.get("serviceaccount", release, home), 30)
        account = release if kubectl.get("serviceaccount", release, home) else f"{release}-ack-rbgs"
        config = _service_account_kubeconfig(kubectl, home, account, tmp_path / "kubeconfig")
        whoami = json.loads(kubectl.run("--kubeconfig", config, "auth", "whoami", "-o", "json").stdout)
        assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{home}:{account}"
        # Namespaced to this test, so a 403 cannot come from other tests' namespaces being deleted
        # (writes into a terminating namespace are refused with 403 too); that the identity may
        # also list and watch across namespaces, as the default all-namespaces mode needs, is asked below.
        operator = OperatorProcess(config, tmp_path / "operator.log", "--leader-elect",
                                   f"--leader-election-namespace={home}", f"--namespace={namespace}").start()
        try:
            kubectl.apply(model_volume(namespace), namespace)
            kubectl.apply(sglang_example(), namespace)
            kubectl.apply({"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup",
                           "metadata": {"name": "all-kinds"}, "spec": {
                               "podGroupPolicy": {"kubeScheduling": {}},
                               "roles": [
                                   {"name": "a", "replicas": 2, "scalingAdapter": {"enable": True},
                                    "restartPolicy": "RecreateRBGOnPodRestart", "template": {"spec": {"containers": C}}},
                                   {"name": "b", "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
                                    "template": {"spec": {"containers": C}}},
                                   {"name": "c", "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1",
                                                              "kind": "LeaderWorkerSet"},
                                    "leaderWorkerSet": {"size": 2}, "template": {"spec": {"containers": C}}}]}},
                          namespace)
            for name in ("sglang-pd", "all-kinds"):
                wait_for(f"{name} Ready", lambda: (condition(kubectl.get("rbg", name, namespace), "Ready") or {})
                         .get("status") == "True", 120)
            wait_for("this operator holds the Lease", lambda: operator.metrics().get(
                f'leader_election_master_status{{name="rbg-operator"}}') == 1.0, 30)
            identity = f"--as=system:serviceaccount:{home}:{account}"
            for resource in ("rolebasedgroups.workloads.x-k8s.io", "statefulsets.apps", "pods", "leaderworkersets.leaderworkerset.x-k8s.io",
                             "podgroups.scheduling.x-k8s.io", "controllerrevisions.apps", "customresourcedefinitions.apiextensions.k8s.io"):
                for verb in ("list", "watch"):
                    assert kubectl.run("auth", "can-i", verb, resource, "--all-namespaces", identity,
                                       check=False).stdout.strip() == "yes", (verb, resource)
            assert kubectl.run("auth", "can-i", "create", "secrets", f"-n={namespace}", identity,
                               check=False).stdout.strip() == "no", "least privilege: no secrets"
            codes = {k: v for k, v in operator.metrics().items() if k.startswith("rest_client_requests_total")}
            assert codes and not any('code="403"' in k for k in codes), codes
            assert any(v > 0 for v in codes.values())
        finally:
            operator.stop()
        log = (tmp_path / "operator.log").read_text()
        refused = [line for line in log.splitlines() if re.search(r"\b403\b|[Ff]orbidden", line.split(" ", 2)[-1])]
        assert not refused, refused[:5]
    finally:
        helm("uninstall", release, "-n", home, check=False)
        kubectl.run("delete", "namespace", home, "--wait=false")


def test_leader_election_one_reconciles_and_the_other_takes_over(kubectl: Kubectl, kubeconfig: str, namespace: str,
                                                                 tmp_path):
    lease = f"lease-{secrets.token_hex(3)}"
    args = ("--leader-elect", f"--leader-election-id={lease}", f"--leader-election-namespace={namespace}",
            f"--namespace={namespace}")
    first = OperatorProcess(kubeconfig, tmp_path / "first.log", *args).start()
    second = OperatorProcess(kubeconfig, tmp_path / "second.log", *args).start()
    try:
        def leading(process: OperatorProcess) -> bool:
            return process.metrics().get(f'leader_election_master_status{{name="{lease}"}}') == 1.0

        wait_for("a leader", lambda: leading(first) or leading(second), 30)
        leader, follower = (first, second) if leading(first) else (second, first)
        assert not leading(follower)
        kubectl.apply({"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": {"name": "le"},
                       "spec": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]}}, namespace)

        def reconciles(process: OperatorProcess) -> float:
            return sum(v for k, v in process.metrics().items() if k.startswith("controller_runtime_reconcile_total{"))

        wait_for("the leader reconciles", lambda: reconciles(leader) > 0, 30)
        time.sleep(2)
        assert reconciles(follower) == 0

        leader.proc.kill()  # kill -9: no chance to hand the Lease over
        killed = time.monotonic()
        # The Lease lasts 15 s from when the follower last saw it renewed; it retries every 2 s.
        wait_for("the follower takes over", lambda: leading(follower), 25)
        assert time.monotonic() - killed <= 20
        kubectl.run("annotate", "rbg", "le", f"-n={namespace}", "example.com/poke=1")
        wait_for("the new leader reconciles", lambda: reconciles(follower) > 0, 15)

        # A graceful stop releases the Lease: the standby need not wait for it to expire.
        first = standby = OperatorProcess(kubeconfig, tmp_path / "third.log", *args).start()
        stopped = time.monotonic()
        follower.stop()
        wait_for("the standby takes over a released Lease", lambda: leading(standby), 10)
        assert time.monotonic() - stopped <= 8
    finally:
        first.stop()
        second.stop()


def test_metrics_use_controller_runtime_names_and_no_object_names(operator, kubectl: Kubectl, namespace: str):
    kubectl.apply({"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup",
                   "metadata": {"name": "metered"},
                   "spec": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]}}, namespace)
    wait_for("reconciled", lambda: (condition(kubectl.get("rbg", "metered", namespace), "Ready") or {})
             .get("status") == "True", 60)
    with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics") as response:
        text = response.read().decode()
    for name in ("controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
                 "controller_runtime_reconcile_time_seconds", "workqueue_depth", "workqueue_adds_total",
                 "workqueue_queue_duration_seconds", "rest_client_requests_total", "leader_election_master_status",
                 "rbg_operator_groups", "rbg_operator_group_recreations_total"):
        assert f"# TYPE {name} " in text, name
    assert 'controller_runtime_reconcile_total{controller="rolebasedgroup",result="success"}' in text
    assert namespace not in text and "metered" not in text


def test_kubectl_rbg_status_prints_the_tree(operator, kubectl: Kubectl, kubeconfig: str, namespace: str):
    kubectl.apply({"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": {"name": "tree"},
                   "spec": {"roles": [{"name": "prefill", "replicas": 2, "template": {"spec": {"containers": C}}},
                                      {"name": "router", "dependencies": ["prefill"],
                                       "template": {"spec": {"containers": C}}}]}}, namespace)
    wait_for("Ready", lambda: (condition(kubectl.get("rbg", "tree", namespace), "Ready") or {}).get("status") == "True", 60)
    result = subprocess.run([sys.executable, "-m", "rbg_operator.kubectl_plugin", "-n", namespace, "status", "tree"],
                            capture_output=True, text=True, env={**os.environ, "KUBECONFIG": kubeconfig}, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"RoleBasedGroup {namespace}/tree: Ready=True")
    assert lines[1].startswith("├─ role prefill: StatefulSet tree-prefill ready 2/2 revision ")
    assert lines[2].startswith("│  ├─ pod tree-prefill-0: Running, ready, restarts 0, node kwok-")
    assert lines[4].startswith("└─ role router: StatefulSet tree-router ready 1/1")


def test_pip_install_into_a_clean_virtualenv_gives_the_dockerfile_entrypoint(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-c", str(REPO / "constraints.txt"),
                          str(REPO)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    entrypoint = json.loads(next(line for line in (REPO / "Dockerfile").read_text().splitlines()
                                 if line.startswith("ENTRYPOINT")).removeprefix("ENTRYPOINT").strip())
    assert entrypoint == ["rbg-operator", "run"]
    shown = subprocess.run([str(venv / "bin" / entrypoint[0]), *entrypoint[1:], "--help"], capture_output=True,
                           text=True, timeout=60)
    assert shown.returncode == 0 and "--leader-elect" in shown.stdout, shown.stderr
    plugin = subprocess.run([str(venv / "bin" / "kubectl-rbg"), "--help"], capture_output=True, text=True, timeout=60)
    assert plugin.returncode == 0 and "rollout" in plugin.stdout
