"""Packaging: the Helm chart (lint, render, install under the restricted Pod Security profile,
upgrade), its RBAC proven sufficient by running the operator as the chart's ServiceAccount,
leader election, metrics, the kubectl plugin, and the installable entrypoint."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.container import container_argv, image_entrypoint_and_cmd
from tests.support.conversion import conversion_given_back
from tests.support.examples import model_volume, sglang_example
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess, free_port
from tests.support.readme import crd_upgrade_argv
from tests.support.testgroup import OwnDiscoveryCache, crds_under_a_test_group

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ack-rbgs"
DOCKERFILE = REPO / "Dockerfile"
C = [{"name": "main", "image": "example.com/app:v1"}]


@pytest.fixture(scope="module")
def helm(kubeconfig: str):
    binary = REPO / ".cluster" / "bin" / "helm"
    if not binary.exists():
        from localcluster import components

        binary = components.build(components.MODULES_BY_NAME["helm"]) / "helm"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(binary), f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True, timeout=180
        )
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
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert "priorityClassName" not in pod
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/rbg-operator:0.1.0"
    assert container_argv(image_entrypoint_and_cmd(DOCKERFILE), container)[:3] == [
        "rbg-operator",
        "run",
        "--leader-elect",
    ]
    assert "--progress-deadline-seconds=600" in container["args"]
    shorter = next(
        d for d in render(helm, "--set", "operator.progressDeadlineSeconds=120") if d["kind"] == "Deployment"
    )
    assert "--progress-deadline-seconds=120" in shorter["spec"]["template"]["spec"]["containers"][0]["args"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    hook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert {w["clientConfig"]["caBundle"] for w in hook["webhooks"]} == {secret["data"]["ca.crt"]}
    assert [w["clientConfig"]["service"]["path"] for w in hook["webhooks"]] == [
        "/validate-rolebasedgroup",
        "/validate-rolebasedgroupset",
        "/validate-roleinstanceset",
    ]
    assert [w["rules"][0]["apiVersions"] for w in hook["webhooks"]] == [["v1alpha2"], ["v1alpha2"], ["v1alpha2"]]


def _rules(role: dict) -> list[tuple]:
    return sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"])


def _by(docs: list[dict], kind: str, name: str, namespace: str | None = None) -> dict:
    return next(
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    )


def test_rbac_allows_blocking_owner_deletion_and_narrows_to_watched_namespaces(helm):
    # Children carry blockOwnerDeletion; OwnerReferencesPermissionEnforcement then wants update on
    # the owner's finalizers subresource.
    cluster_wide = _by(render(helm), "ClusterRole", "ack-rbgs")
    assert (
        ("workloads.x-k8s.io",),
        (
            "rolebasedgroups/finalizers",
            "rolebasedgroupsets/finalizers",
            "roleinstancesets/finalizers",
            "roleinstances/finalizers",
            "rolebasedgroupwarmups/finalizers",
        ),
        ("update",),
    ) in _rules(cluster_wide)
    # The webhook's operator points the conversion of its own two CRDs at itself, and may patch no other CRD.
    patching = [
        r for r in cluster_wide["rules"] if "patch" in r["verbs"] and "customresourcedefinitions" in r["resources"]
    ]
    assert patching == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["rolebasedgroups.workloads.x-k8s.io", "rolebasedgroupsets.workloads.x-k8s.io"],
            "verbs": ["patch"],
        }
    ]
    narrowed = render(helm, "--set", "operator.watchNamespaces={team-a,team-b}")
    cluster_role = _by(narrowed, "ClusterRole", "ack-rbgs")
    roles = {ns: _by(narrowed, "Role", "ack-rbgs", ns) for ns in ("team-a", "team-b")}
    # What the ClusterRole gave on namespaced resources, each watched namespace's Role now gives, and
    # the ClusterRole keeps only cluster-scoped reads (CRDs, namespaces) and the reviews.
    assert (
        _rules(roles["team-a"])
        == _rules(roles["team-b"])
        == sorted(set(_rules(cluster_wide)) - set(_rules(cluster_role)))
    )
    assert {r for group, resources, _ in _rules(cluster_role) for r in resources} <= {
        "customresourcedefinitions",
        "namespaces",
        "clusterengineruntimeprofiles",
        "nodes",
        "tokenreviews",
        "subjectaccessreviews",
    }
    for ns in ("team-a", "team-b"):
        binding = _by(narrowed, "RoleBinding", "ack-rbgs", ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ack-rbgs"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ack-rbgs", "namespace": "rbgs-system"}]
    args = _by(narrowed, "Deployment", "ack-rbgs")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_aggregated_roles_give_namespace_users_the_three_kinds(helm):
    docs = render(helm)
    view, edit = _by(docs, "ClusterRole", "ack-rbgs-view"), _by(docs, "ClusterRole", "ack-rbgs-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    kinds = {"rolebasedgroups", "rolebasedgroupsets", "rolebasedgroupscalingadapters"}
    for role, verbs in ((view, {"get", "list", "watch"}), (edit, {"create", "update", "patch", "delete"})):
        granted = {resource for rule in role["rules"] if verbs <= set(rule["verbs"]) for resource in rule["resources"]}
        assert kinds <= granted, role["rules"]
    assert not any(
        d["metadata"]["name"].endswith(("-view", "-edit"))
        for d in render(helm, "--set", "rbac.aggregateToDefaultRoles=false")
    )


def test_a_new_webhook_certificate_restarts_the_pods(helm):
    def checksum_and_secret(docs: list[dict]) -> tuple[str, dict]:
        annotations = _by(docs, "Deployment", "ack-rbgs")["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/webhook-cert"], _by(docs, "Secret", "ack-rbgs-webhook-cert")["data"]

    first, data = checksum_and_secret(render(helm))
    # The checksum is over exactly the certificate the Secret carries...
    stored = json.dumps({"ca": data["ca.crt"], "cert": data["tls.crt"], "key": data["tls.key"]}, separators=(",", ":"))
    assert first == hashlib.sha256(stored.encode()).hexdigest()
    # ...so a new certificate (offline, each render makes one) changes the pod template.
    second, other = checksum_and_secret(render(helm))
    assert other["tls.crt"] != data["tls.crt"] and second != first


def test_cert_manager_option_replaces_the_generated_certificate(helm):
    docs = render(helm, "--set", "webhook.certManager.enabled=true")
    assert not any(d["kind"] == "Secret" for d in docs)
    certificate = _by(docs, "Certificate", "ack-rbgs-webhook")
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": "ack-rbgs-selfsigned"}
    assert _by(docs, "Issuer", "ack-rbgs-selfsigned")["spec"] == {"selfSigned": {}}
    assert "ack-rbgs-webhook.rbgs-system.svc" in certificate["spec"]["dnsNames"]
    hook = _by(docs, "ValidatingWebhookConfiguration", "ack-rbgs")
    assert hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "rbgs-system/ack-rbgs-webhook"
    assert not any("caBundle" in w["clientConfig"] for w in hook["webhooks"])
    pod = _by(docs, "Deployment", "ack-rbgs")["spec"]["template"]
    assert "checksum/webhook-cert" not in (pod["metadata"].get("annotations") or {})
    assert {v.get("secret", {}).get("secretName") for v in pod["spec"]["volumes"]} >= {
        certificate["spec"]["secretName"]
    }
    own_issuer = render(
        helm,
        "--set",
        "webhook.certManager.enabled=true",
        "--set",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
        "--set",
        "webhook.certManager.issuerRef.name=corp-ca",
    )
    assert not any(d["kind"] == "Issuer" for d in own_issuer)
    assert _by(own_issuer, "Certificate", "ack-rbgs-webhook")["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "corp-ca",
    }


def test_service_monitor_selects_the_metrics_service_only(helm):
    def matches(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    for secure in ("false", "true"):
        docs = render(helm, "--set", "metrics.serviceMonitor.enabled=true", "--set", f"metrics.secure={secure}")
        monitor = _by(docs, "ServiceMonitor", "ack-rbgs")
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = {d["metadata"]["name"]: d["metadata"]["labels"] for d in docs if d["kind"] == "Service"}
        assert [name for name, labels in services.items() if matches(selector, labels)] == ["ack-rbgs-metrics"]
        assert "helm.sh/chart" not in selector and "app.kubernetes.io/version" not in selector  # change on upgrades
        endpoint = monitor["spec"]["endpoints"][0]
        args = _by(docs, "Deployment", "ack-rbgs")["spec"]["template"]["spec"]["containers"][0]["args"]
        reader = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "ack-rbgs-metrics-reader"]
        if secure == "true":
            assert endpoint["scheme"] == "https" and "bearerTokenFile" in endpoint, endpoint
            assert "--metrics-secure" in args
            assert reader and reader[0]["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
            reviews = {r for rule in _by(docs, "ClusterRole", "ack-rbgs")["rules"] for r in rule["resources"]}
            assert {"tokenreviews", "subjectaccessreviews"} <= reviews
        else:
            assert endpoint.get("scheme", "http") == "http" and "--metrics-secure" not in args and not reader


def test_names_image_and_priority_values(helm):
    digest = "sha256:" + "ab" * 32
    docs = render(
        helm,
        "--set",
        "nameOverride=operator",
        "--set",
        f"image.digest={digest}",
        "--set",
        "priorityClassName=system-cluster-critical",
    )
    deployment = _by(docs, "Deployment", "ack-rbgs-operator")  # <release>-<name>, as `helm create` names
    assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "operator"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"registry.example.com/rbg-operator@{digest}"
    assert pod["priorityClassName"] == "system-cluster-critical"
    renamed = render(helm, "--set", "fullnameOverride=rbgs")
    assert {d["metadata"]["name"] for d in renamed if d["kind"] in ("Deployment", "ServiceAccount", "ClusterRole")} == {
        "rbgs",
        "rbgs-view",
        "rbgs-edit",
    }


def test_values_schema_names_the_mistaken_field(helm):
    typo = helm("template", "x", str(CHART), "--set", "operator.wrokers=3", check=False)
    assert typo.returncode != 0 and "wrokers" in typo.stderr, typo.stderr
    wrong_type = helm("template", "x", str(CHART), "--set", "replicaCount=two", check=False)
    assert wrong_type.returncode != 0 and "/replicaCount" in wrong_type.stderr, wrong_type.stderr


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


def _install(helm, kubectl: Kubectl, release: str, namespace: str, *values: str) -> None:
    kubectl.run("create", "namespace", namespace)
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # The local cluster's pods are kwok fakes, so a Service-backed webhook could never answer:
    # the webhook stays off here (its objects are checked in the rendering test).
    helm("install", release, str(CHART), "-n", namespace, "--set", "webhook.enabled=false", "--wait=false", *values)


def test_chart_installs_restricted_and_upgrades_keep_crds_and_groups(helm, kubectl: Kubectl, namespace: str):
    release, home = f"rbgs-{secrets.token_hex(3)}", f"rbgs-system-{secrets.token_hex(3)}"
    _install(helm, kubectl, release, home)
    try:
        pods = wait_for(
            "2 operator pods admitted under restricted",
            lambda: (
                (p := kubectl.get("pods", namespace=home, selector=f"app.kubernetes.io/instance={release}"))
                and len(p) == 2
                and p
            ),
            60,
        )
        assert all(p["spec"]["securityContext"]["runAsNonRoot"] for p in pods)
        kubectl.apply(
            {
                "apiVersion": "workloads.x-k8s.io/v1alpha1",
                "kind": "RoleBasedGroup",
                "metadata": {"name": "keep"},
                "spec": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]},
            },
            namespace,
        )
        helm(
            "upgrade", release, str(CHART), "-n", home, "--set", "webhook.enabled=false", "--set", "operator.workers=4"
        )
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
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": account}}],
                "current-context": "sa",
            }
        )
    )
    return str(path)


def _as_kubernetes_starts(
    container: dict, namespace: str, volumes: dict[str, Path], env: dict[str, str]
) -> tuple[list[str], dict]:
    """The container's argv and environment for a local process: the image's ENTRYPOINT/CMD with the
    pod's command/args, each volume mount's path replaced by the local directory standing for it, the
    env with fieldRef metadata.namespace resolved, and the image's PATH (the virtualenv's bin first)."""
    argv = container_argv(image_entrypoint_and_cmd(DOCKERFILE), container)
    for mount in container.get("volumeMounts") or []:
        argv = [arg.replace(mount["mountPath"], str(volumes[mount["name"]])) for arg in argv]
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", item
            env[item["name"]] = namespace
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return argv, env


def test_the_chart_container_started_as_kubernetes_starts_it_serves_and_reconciles(
    helm, kubectl: Kubectl, namespace: str, tmp_path
):
    """The chart's Deployment, as installed, run the way the kubelet runs it: the image's ENTRYPOINT
    and CMD from the Dockerfile combined with the container's args, the chart's Secret where the chart
    mounts it, and the chart's ServiceAccount for credentials. (The local nodes are kwok fakes, so the
    process runs here instead of in a pod.) It must start, hold the Lease, reconcile, and serve the
    webhook with the chart's certificate."""
    release, home = f"rbgs-{secrets.token_hex(3)}", f"rbgs-system-{secrets.token_hex(3)}"
    health, metrics, webhook_port = free_port(), free_port(), free_port()
    kubectl.run("create", "namespace", home)
    kubectl.run("label", "namespace", home, "pod-security.kubernetes.io/enforce=restricted")
    # The webhook on, as by default; no replica, so the Service has no endpoints and the API server
    # skips its Ignore-policy webhook at once while the process below stands for the pod.
    helm(
        "install",
        release,
        str(CHART),
        "-n",
        home,
        "--wait=false",
        "--set",
        "replicaCount=0",
        "--set",
        f"operator.watchNamespaces={{{namespace}}}",
        "--set",
        f"healthPort={health}",
        "--set",
        f"metrics.port={metrics}",
        "--set",
        f"webhook.port={webhook_port}",
    )
    process = None
    try:
        with conversion_given_back(kubectl):
            deployment = wait_for(
                "the Deployment",
                lambda: (
                    (d := kubectl.get("deployments", namespace=home, selector=f"app.kubernetes.io/instance={release}"))
                    and d[0]
                ),
                30,
            )
            pod = deployment["spec"]["template"]["spec"]
            container = pod["containers"][0]
            volumes = {}
            for volume in pod["volumes"]:
                local = volumes[volume["name"]] = tmp_path / volume["name"]
                local.mkdir()
                if "secret" in volume:
                    secret = kubectl.get("secret", volume["secret"]["secretName"], home)
                    for key, value in secret["data"].items():
                        (local / key).write_bytes(base64.b64decode(value))
            account = pod["serviceAccountName"]
            env = {
                "KUBECONFIG": _service_account_kubeconfig(kubectl, home, account, tmp_path / "kubeconfig"),
                "HOME": str(tmp_path),
            }
            argv, env = _as_kubernetes_starts(container, home, volumes, env)
            log = tmp_path / "operator.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )

            def healthy() -> bool:
                assert process.poll() is None, (
                    f"{shlex.join(argv)} exited with {process.returncode}:\n" + log.read_text()[-3000:]
                )
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as answer:
                        return answer.status == 200
                except OSError:
                    return False

            wait_for("the chart's container healthy", healthy, 60)
            # In v1alpha2, the stored version: the API server cannot reach the chart's Service from
            # here, and needs it only for v1alpha1.
            kubectl.apply(
                {
                    "apiVersion": "workloads.x-k8s.io/v1alpha2",
                    "kind": "RoleBasedGroup",
                    "metadata": {"name": "charted"},
                    "spec": {
                        "roles": [{"name": "web", "standalonePattern": {"template": {"spec": {"containers": C}}}}]
                    },
                },
                namespace,
            )
            stored = "rolebasedgroups.v1alpha2.workloads.x-k8s.io"
            wait_for(
                "the group reconciled by the chart's container",
                lambda: (condition(kubectl.get(stored, "charted", namespace), "Ready") or {}).get("status") == "True",
                90,
            )
            lease = kubectl.get("lease", deployment["metadata"]["name"], home)
            assert lease and lease["spec"]["holderIdentity"], lease
            # The webhook, with the chart's certificate from the mounted Secret: a ConversionReview
            # answered over TLS that the chart's CA verifies.
            context = ssl.create_default_context(cafile=str(volumes["webhook-cert"] / "ca.crt"))
            context.check_hostname = False  # the certificate names the Service, not 127.0.0.1
            review = {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "ConversionReview",
                "request": {
                    "uid": "1",
                    "desiredAPIVersion": "workloads.x-k8s.io/v1alpha1",
                    "objects": [kubectl.get(stored, "charted", namespace)],
                },
            }
            request = urllib.request.Request(
                f"https://127.0.0.1:{webhook_port}/convert",
                data=json.dumps(review).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                converted = json.loads(answer.read())["response"]
            assert converted["result"]["status"] == "Success", converted
            assert converted["convertedObjects"][0]["apiVersion"] == "workloads.x-k8s.io/v1alpha1"
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        helm("uninstall", release, "-n", home, check=False)
        kubectl.run("delete", "namespace", home, "--wait=false")


@pytest.mark.parametrize("scope", ["all-namespaces", "watched-namespace"])
def test_operator_as_the_chart_service_account_meets_no_403(helm, kubectl: Kubectl, namespace: str, tmp_path, scope):
    # The local cluster enforces OwnerReferencesPermissionEnforcement, as hardened clusters do: the
    # children's blockOwnerDeletion needs update on the groups' finalizers, from the ClusterRole or,
    # with operator.watchNamespaces, from the Role in the watched namespace.
    release, home = f"rbgs-{secrets.token_hex(3)}", f"rbgs-system-{secrets.token_hex(3)}"
    watched = scope == "watched-namespace"
    _install(helm, kubectl, release, home, *(["--set", f"operator.watchNamespaces={{{namespace}}}"] if watched else []))
    try:
        wait_for(
            "ServiceAccount",
            lambda: (
                kubectl.get("serviceaccount", release + "-ack-rbgs", home)
                or kubectl.get("serviceaccount", release, home)
            ),
            30,
        )
        account = release if kubectl.get("serviceaccount", release, home) else f"{release}-ack-rbgs"
        config = _service_account_kubeconfig(kubectl, home, account, tmp_path / "kubeconfig")
        whoami = json.loads(kubectl.run("--kubeconfig", config, "auth", "whoami", "-o", "json").stdout)
        assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{home}:{account}"
        # Namespaced to this test, so a 403 cannot come from other tests' namespaces being deleted
        # (writes into a terminating namespace are refused with 403 too); that the identity may
        # also list and watch across namespaces, as the default all-namespaces mode needs, is asked below.
        operator = OperatorProcess(
            config,
            tmp_path / "operator.log",
            "--leader-elect",
            f"--leader-election-namespace={home}",
            f"--namespace={namespace}",
        ).start()
        try:
            kubectl.apply(model_volume(namespace), namespace)
            kubectl.apply(sglang_example(), namespace)
            kubectl.apply(
                {
                    "apiVersion": "workloads.x-k8s.io/v1alpha1",
                    "kind": "RoleBasedGroup",
                    "metadata": {"name": "all-kinds"},
                    "spec": {
                        "podGroupPolicy": {"kubeScheduling": {}},
                        "roles": [
                            {
                                "name": "a",
                                "replicas": 2,
                                "scalingAdapter": {"enable": True},
                                "restartPolicy": "RecreateRBGOnPodRestart",
                                "template": {"spec": {"containers": C}},
                            },
                            {
                                "name": "b",
                                "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
                                "template": {"spec": {"containers": C}},
                            },
                            {
                                "name": "c",
                                "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
                                "leaderWorkerSet": {"size": 2},
                                "template": {"spec": {"containers": C}},
                            },
                        ],
                    },
                },
                namespace,
            )
            for name in ("sglang-pd", "all-kinds"):
                wait_for(
                    f"{name} Ready",
                    lambda: (condition(kubectl.get("rbg", name, namespace), "Ready") or {}).get("status") == "True",
                    120,
                )
            wait_for(
                "this operator holds the Lease",
                lambda: operator.metrics().get('leader_election_master_status{name="rbg-operator"}') == 1.0,
                30,
            )
            identity = f"--as=system:serviceaccount:{home}:{account}"
            where = f"-n={namespace}" if watched else "--all-namespaces"
            for resource in (
                "rolebasedgroups.workloads.x-k8s.io",
                "statefulsets.apps",
                "pods",
                "leaderworkersets.leaderworkerset.x-k8s.io",
                "podgroups.scheduling.x-k8s.io",
                "controllerrevisions.apps",
                "customresourcedefinitions.apiextensions.k8s.io",
            ):
                for verb in ("list", "watch"):
                    assert (
                        kubectl.run("auth", "can-i", verb, resource, where, identity, check=False).stdout.strip()
                        == "yes"
                    ), (verb, resource)
            if watched:  # nothing beyond the watched namespace
                assert (
                    kubectl.run(
                        "auth", "can-i", "list", "pods", "--all-namespaces", identity, check=False
                    ).stdout.strip()
                    == "no"
                )
            assert (
                kubectl.run(
                    "auth", "can-i", "create", "secrets", f"-n={namespace}", identity, check=False
                ).stdout.strip()
                == "no"
            ), "least privilege: no secrets"
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


def test_leader_election_one_reconciles_and_the_other_takes_over(
    kubectl: Kubectl, kubeconfig: str, namespace: str, tmp_path
):
    lease = f"lease-{secrets.token_hex(3)}"
    args = (
        "--leader-elect",
        f"--leader-election-id={lease}",
        f"--leader-election-namespace={namespace}",
        f"--namespace={namespace}",
    )
    first = OperatorProcess(kubeconfig, tmp_path / "first.log", *args).start()
    second = OperatorProcess(kubeconfig, tmp_path / "second.log", *args).start()
    try:

        def leading(process: OperatorProcess) -> bool:
            return process.metrics().get(f'leader_election_master_status{{name="{lease}"}}') == 1.0

        wait_for("a leader", lambda: leading(first) or leading(second), 30)
        leader, follower = (first, second) if leading(first) else (second, first)
        assert not leading(follower)
        kubectl.apply(
            {
                "apiVersion": "workloads.x-k8s.io/v1alpha1",
                "kind": "RoleBasedGroup",
                "metadata": {"name": "le"},
                "spec": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]},
            },
            namespace,
        )

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
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "metered"},
            "spec": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]},
        },
        namespace,
    )
    wait_for(
        "reconciled",
        lambda: (condition(kubectl.get("rbg", "metered", namespace), "Ready") or {}).get("status") == "True",
        60,
    )
    with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics") as response:
        text = response.read().decode()
    for name in (
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_reconcile_time_seconds",
        "workqueue_depth",
        "workqueue_adds_total",
        "workqueue_queue_duration_seconds",
        "rest_client_requests_total",
        "leader_election_master_status",
        "rbg_operator_groups",
        "rbg_operator_group_recreations_total",
        "rbg_operator_cache_bytes",
    ):
        assert f"# TYPE {name} " in text, name
    cached = next(float(line.split()[1]) for line in text.splitlines() if line.startswith("rbg_operator_cache_bytes "))
    assert cached > 1000, "the cache holds at least the group and its children"
    assert 'controller_runtime_reconcile_total{controller="rolebasedgroup",result="success"}' in text
    assert namespace not in text and "metered" not in text


def test_kubectl_rbg_status_prints_the_tree(operator, kubectl: Kubectl, kubeconfig: str, namespace: str):
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "tree"},
            "spec": {
                "roles": [
                    {"name": "prefill", "replicas": 2, "template": {"spec": {"containers": C}}},
                    {"name": "router", "dependencies": ["prefill"], "template": {"spec": {"containers": C}}},
                ]
            },
        },
        namespace,
    )
    wait_for(
        "Ready", lambda: (condition(kubectl.get("rbg", "tree", namespace), "Ready") or {}).get("status") == "True", 60
    )
    result = subprocess.run(
        [sys.executable, "-m", "rbg_operator.kubectl_plugin", "-n", namespace, "status", "tree"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"RoleBasedGroup {namespace}/tree: Ready=True")
    assert lines[1].startswith("├─ role prefill: StatefulSet tree-prefill ready 2/2 revision ")
    assert lines[2].startswith("│  ├─ pod tree-prefill-0: Running, ready, restarts 0, node kwok-")
    assert lines[4].startswith("└─ role router: StatefulSet tree-router ready 1/1")


PREVIOUS_CHART = "68dea14"  # chart 0.1.0: its CRDs lack the bounds added since (test_storage_version starts at 0.2.0)


def test_crds_of_the_previous_chart_upgrade_in_place_as_the_readme_says(
    helm, kubectl: Kubectl, namespace: str, tmp_path
):
    files = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{PREVIOUS_CHART}:charts/ack-rbgs/crds"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.fail(
            f"the previous chart's CRDs are not in this clone ({listed.stderr.strip()}); "
            "a shallow clone lacks them: run `git fetch --unshallow`"
        )
    previous = {}
    for name in listed.stdout.split():  # kinds added since (CoordinatedPolicy) are new installs
        shown = subprocess.run(
            ["git", "show", f"{PREVIOUS_CHART}:charts/ack-rbgs/crds/{name}"], cwd=REPO, capture_output=True, text=True
        )
        if shown.returncode != 0:
            pytest.fail(
                f"the previous chart's CRDs are not in this clone ({shown.stderr.strip()}); "
                "a shallow clone lacks them: run `git fetch --unshallow`"
            )
        previous[name] = shown.stdout
    group = f"zz{secrets.token_hex(4)}.upgrade.example.com"  # sorts after workloads.x-k8s.io: lower priority
    kubectl = OwnDiscoveryCache(kubectl, tmp_path / "kube-cache")
    old = crds_under_a_test_group(previous, group)
    new = crds_under_a_test_group({name: (CHART / "crds" / name).read_text() for name in files}, group)

    # Installed as a user did: by Helm, from the chart's crds/.
    chart = tmp_path / "previous-chart"
    (chart / "crds").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: ack-rbgs\nversion: 0.1.0\n")
    for name, text in old.items():
        (chart / "crds" / name).write_text(text)
    release = f"up-{secrets.token_hex(3)}"
    helm("install", release, str(chart), "-n", namespace)
    crd_names = [yaml.safe_load(text)["metadata"]["name"] for text in old.values()]
    try:
        for crd in crd_names:
            kubectl.run("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        group_of = lambda replicas: {  # noqa: E731
            "apiVersion": f"{group}/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "kept"},
            "spec": {"roles": [{"name": "web", "replicas": replicas, "template": {"spec": {"containers": C}}}]},
        }
        kubectl.apply(group_of(2), namespace, "--server-side")
        kept = kubectl.get(f"rolebasedgroups.v1alpha1.{group}", "kept", namespace)
        # The old schema has no cap on replicas; the new one refuses more than 5000.
        assert kubectl.apply(group_of(6000), namespace, "--server-side", "--dry-run=server").returncode == 0

        target = tmp_path / "crds"
        target.mkdir()
        for name, text in new.items():
            (target / name).write_text(text)
        kubectl.run(*crd_upgrade_argv(target))

        stored = kubectl.get(f"rolebasedgroups.v1alpha1.{group}", "kept", namespace)
        assert stored["metadata"]["uid"] == kept["metadata"]["uid"]
        assert stored["spec"]["roles"][0]["replicas"] == 2
        # A new group in the storage version (v1alpha2): the test group has no conversion webhook.
        capped = {
            "apiVersion": f"{group}/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "capped"},
            "spec": {
                "roles": [
                    {"name": "web", "replicas": 6000, "standalonePattern": {"template": {"spec": {"containers": C}}}}
                ]
            },
        }
        refused = kubectl.run(
            "apply",
            f"--namespace={namespace}",
            "--server-side",
            "--dry-run=server",
            "-f",
            "-",
            stdin=yaml.safe_dump(capped),
            check=False,
        )
        assert refused.returncode != 0 and "spec.roles[0].replicas" in refused.stderr, refused.stderr
    finally:
        helm("uninstall", release, "-n", namespace, check=False)
        for crd in sorted({*crd_names, *(yaml.safe_load(text)["metadata"]["name"] for text in new.values())}):
            # The test group has no conversion webhook, and its group stored in v1alpha1 is read in
            # v1alpha2 now: the CRD's deletion would hang on it, and with it every namespace deletion
            # of the cluster (the namespace controller lists every resource). Without conversion it reads.
            kubectl.run(
                "patch",
                "crd",
                crd,
                "--type=merge",
                "-p",
                json.dumps({"spec": {"conversion": {"strategy": "None", "webhook": None}}}),
                check=False,
            )
            kubectl.run("delete", "crd", crd, "--ignore-not-found", "--wait=false", check=False)
