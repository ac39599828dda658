"""v1alpha2 is stored: every v1alpha2 client works without the conversion webhook, clusters that
stored v1alpha1 (charts 0.1/0.2) are migrated once, and the CRD files apply again whatever an
operator registered.

These tests change the suite's CRDs (cluster-wide): each puts them, and the session's conversion
registration, back as it found them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from localcluster import crds
from rbg_operator import storage_migration
from rbg_operator.webhook import CONVERTED_CRDS
from tests.conftest import LOG_DIR
from tests.support.conversion import conversion_given_back
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess, free_port
from tests.support.readme import crd_upgrade_argv

REPO = Path(__file__).resolve().parents[2]
CHART_0_2 = "a6cb268"  # the commit of chart 0.2.0, which stored v1alpha1
GROUP = "workloads.x-k8s.io"
RBG_V1, RBG_V2 = f"rolebasedgroups.v1alpha1.{GROUP}", f"rolebasedgroups.v1alpha2.{GROUP}"
MIGRATED_CRDS = [f"{plural}.{GROUP}" for _, plural, _ in storage_migration.MIGRATED]
WORKLOAD_TYPE = "rbg.workloads.x-k8s.io/role-workload-type"
C = [{"name": "main", "image": "example.com/app:v1"}]
TEMPLATE = {"spec": {"containers": C}}


def v1_group(name: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": [{"name": "web", "replicas": replicas, "template": TEMPLATE}]},
    }


def v2_group(name: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": f"{GROUP}/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {
            "roles": [
                {
                    "name": "web",
                    "replicas": replicas,
                    "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
                    "standalonePattern": {"template": TEMPLATE},
                }
            ]
        },
    }


def as_typed(kubectl: Kubectl, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """kubectl as a user types it: a bare `rbg` is v1alpha2, the version kubectl prefers (the
    suite's Kubectl pins it to v1alpha1)."""
    result = subprocess.run(
        [kubectl.binary, f"--kubeconfig={kubectl.kubeconfig}", *args], capture_output=True, text=True, timeout=180
    )  # beyond a `kubectl wait --timeout=120s`
    assert not check or result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result


def ready(kubectl: Kubectl, name: str, namespace: str, timeout: float = 120) -> dict:
    return wait_for(
        f"group {name} Ready",
        lambda: (
            (g := kubectl.get(RBG_V2, name, namespace)) and (condition(g, "Ready") or {}).get("status") == "True" and g
        ),
        timeout,
    )


def migrate(kubeconfig: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rbg_operator", "migrate-storage"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )


def stored_versions(kubectl: Kubectl, crd: str) -> list[str]:
    return json.loads(kubectl.run("get", "crd", crd, "-o", "json").stdout)["status"]["storedVersions"]


def files_with_live_conversion(kubectl: Kubectl, texts: dict[str, str], directory: Path) -> Path:
    """The CRD files in `directory`, pointing their conversion where it is registered now. With the
    chart the files' Service is the registered one; here the session's webhook is at a URL."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        crd = yaml.safe_load(text)
        webhook = (crd["spec"].get("conversion") or {}).get("webhook")
        if webhook is not None:
            webhook["clientConfig"] = crds.conversion_client_config(kubectl.run, crd["metadata"]["name"])
        (directory / name).write_text(yaml.safe_dump(crd, sort_keys=False))
    return directory


@contextlib.contextmanager
def conversion_unreachable(kubectl: Kubectl):
    """The converted CRDs' webhook pointed at a port nobody serves, until the block ends. Yields a
    probe: whether a read of `resource` in `namespace` fails naming the dead address (the API server
    takes a moment to see the CRD change)."""
    with conversion_given_back(kubectl) as registered:
        dead = f"https://127.0.0.1:{free_port()}/convert"
        for name in CONVERTED_CRDS:
            config = crds.conversion_client_config(kubectl.run, name) or {}
            kubectl.run(
                "patch",
                "crd",
                name,
                "--type=merge",
                "-p",
                json.dumps(
                    {
                        "spec": {
                            "conversion": {
                                "webhook": {
                                    "clientConfig": {"service": None, "url": dead, "caBundle": config.get("caBundle")}
                                }
                            }
                        }
                    }
                ),
            )
        registered()

        def calls_it(resource: str, namespace: str) -> bool:
            read = as_typed(kubectl, "get", resource, "-n", namespace, check=False)
            return read.returncode != 0 and dead.removesuffix("/convert") in read.stderr

        yield calls_it


@pytest.fixture
def session_crds_put_back(kubectl: Kubectl):
    """Afterwards the suite's CRDs from crds/ again, keeping the conversion registered then."""
    yield
    crds.install(kubectl.run, REPO / "crds")


@pytest.fixture
def all_migrated(kubectl: Kubectl, kubeconfig: str, session_crds_put_back):
    """Every object of the cluster stored in v1alpha2, as after an upgrade's migration (objects an
    earlier release stored in v1alpha1 need the webhook on every v1alpha2 read until then)."""
    crds.install(kubectl.run, REPO / "crds")
    result = migrate(kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_migration_stores_every_object_in_v1alpha2_and_restarts_no_pod(
    kubectl: Kubectl, kubeconfig: str, operator, namespace: str, tmp_path: Path, session_crds_put_back
):
    # Chart 0.2.0's CRDs, as a cluster that installed that chart has them: v1alpha1 stored.
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{CHART_0_2}:charts/ack-rbgs/crds"], cwd=REPO, capture_output=True, text=True
    )
    if listed.returncode != 0:
        pytest.fail(
            f"chart 0.2.0's CRDs are not in this clone ({listed.stderr.strip()}); "
            "a shallow clone lacks them: run `git fetch --unshallow`"
        )
    old = {
        name: subprocess.run(
            ["git", "show", f"{CHART_0_2}:charts/ack-rbgs/crds/{name}"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for name in listed.stdout.split()
    }
    kubectl.run(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(files_with_live_conversion(kubectl, old, tmp_path / "crds-0.2.0")),
    )
    for crd in MIGRATED_CRDS:
        wait_for(
            f"{crd} storing v1alpha1",
            lambda: (
                storage_migration.storage_version(json.loads(kubectl.run("get", "crd", crd, "-o", "json").stdout))
                == "v1alpha1"
            ),
            30,
        )

    kubectl.apply(v1_group("written-v1"), namespace)
    kubectl.apply(v2_group("written-v2", replicas=2), namespace)
    kubectl.apply(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "fleet"},
            "spec": {"replicas": 2, "template": {"roles": [{"name": "web", "template": TEMPLATE}]}},
        },
        namespace,
    )
    kubectl.apply(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "RoleBasedGroupScalingAdapter",
            "metadata": {"name": "written-v1-web"},
            "spec": {"replicas": 2, "scaleTargetRef": {"name": "written-v1", "role": "web"}},
        },
        namespace,
    )
    names = ["written-v1", "written-v2", "fleet-0", "fleet-1"]
    for name in names:
        ready(kubectl, name, namespace)
    wait_for(
        "the adapter's 2 pods ready",
        lambda: (
            (kubectl.get("statefulset", "written-v1-web", namespace) or {}).get("status", {}).get("readyReplicas") == 2
        ),
        60,
    )
    for name in names:
        ready(kubectl, name, namespace)
    for crd in MIGRATED_CRDS[:3]:
        assert "v1alpha1" in stored_versions(kubectl, crd), crd

    kinds = [
        RBG_V1,
        RBG_V2,
        f"rolebasedgroupsets.v1alpha1.{GROUP}",
        f"rolebasedgroupsets.v1alpha2.{GROUP}",
        f"rolebasedgroupscalingadapters.v1alpha1.{GROUP}",
        f"rolebasedgroupscalingadapters.v1alpha2.{GROUP}",
    ]

    def specs() -> dict:
        return {
            (kind, o["metadata"]["name"]): (o["spec"], o["metadata"]["generation"])
            for kind in kinds
            for o in kubectl.get(kind, namespace=namespace)
        }

    def pod_uids() -> dict:
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in kubectl.get("pods", namespace=namespace)}

    before, pods_before = specs(), pod_uids()
    assert len(pods_before) == 2 + 2 + 1 + 1

    # The upgrade, with the command the README gives.
    current = {
        name: (REPO / "charts" / "ack-rbgs" / "crds" / name).read_text()
        for name in sorted(p.name for p in (REPO / "charts" / "ack-rbgs" / "crds").glob("*.yaml"))
    }
    kubectl.run(*crd_upgrade_argv(files_with_live_conversion(kubectl, current, tmp_path / "crds-new")))
    for crd in MIGRATED_CRDS:
        wait_for(
            f"{crd} storing v1alpha2",
            lambda: (
                storage_migration.storage_version(json.loads(kubectl.run("get", "crd", crd, "-o", "json").stdout))
                == "v1alpha2"
            ),
            30,
        )

    # An operator started now says what is pending.
    log = tmp_path / "operator.log"
    starting = OperatorProcess(kubeconfig, log, "--namespace=rbg-storage-check-only").start()
    try:
        wait_for(
            "the start-up warning",
            lambda: (
                "may still hold objects stored in v1alpha1" in log.read_text()
                and "rbg-operator migrate-storage" in log.read_text()
            ),
            30,
        )
    finally:
        starting.stop()

    v2_kinds = [kind for kind in kinds if ".v1alpha2." in kind]
    with conversion_unreachable(kubectl) as calls_it:  # stored in v1alpha1: v1alpha2 reads need the webhook
        wait_for("a v1alpha2 read calling the dead webhook", lambda: calls_it(RBG_V2, namespace), 30)

    result = migrate(kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    for crd in MIGRATED_CRDS:
        assert f"{crd}: " in result.stdout, result.stdout
    # Stored in v1alpha2 now: read in it with the webhook unreachable, every spec is there.
    with conversion_unreachable(kubectl) as calls_it:
        wait_for("a v1alpha1 read calling the dead webhook", lambda: calls_it(RBG_V1, namespace), 30)
        for kind in v2_kinds:
            assert {o["metadata"]["name"]: o["spec"] for o in kubectl.get(kind, namespace=namespace)} == {
                name: spec for (k, name), (spec, _) in before.items() if k == kind
            }, kind
        assert stored_versions(kubectl, crd) == ["v1alpha2"], crd
    assert specs() == before  # every spec as it was, in both versions, and no generation bumped
    time.sleep(5)  # a rollout the rewrite set off would have replaced a pod by now
    assert pod_uids() == pods_before
    for name in names:
        assert (condition(kubectl.get(RBG_V2, name, namespace), "Ready") or {}).get("status") == "True", name

    again = migrate(kubeconfig)
    assert again.returncode == 0 and again.stdout.count("nothing to do") == len(MIGRATED_CRDS), again.stdout


def test_the_migration_refuses_before_the_crds_are_upgraded_and_says_how(
    kubectl: Kubectl, kubeconfig: str, tmp_path: Path, session_crds_put_back
):
    crd = yaml.safe_load((REPO / "crds" / f"{GROUP}_rolebasedgroups.yaml").read_text())
    for version in crd["spec"]["versions"]:
        version["storage"] = version["name"] == "v1alpha1"
    crd["spec"]["conversion"]["webhook"]["clientConfig"] = crds.conversion_client_config(kubectl.run, CONVERTED_CRDS[0])
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(crd))
    result = migrate(kubeconfig)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (
        f"error: CRD rolebasedgroups.{GROUP} stores v1alpha1, not v1alpha2: apply this release's CRDs first "
        "(kubectl apply --server-side --force-conflicts -f charts/ack-rbgs/crds/)"
    ) in result.stderr


def test_crds_apply_again_after_a_local_run_registered_its_url(
    kubectl: Kubectl, kubeconfig: str, namespace: str, session_crds_put_back
):
    with conversion_given_back(kubectl) as registered:
        port = free_port()
        process = OperatorProcess(
            kubeconfig,
            LOG_DIR / "conversion-url.log",
            "--namespace=rbg-conversion-only",
            f"--webhook-bind-address=127.0.0.1:{port}",
            "--register-conversion",
        ).start()
        try:
            url = f"https://127.0.0.1:{port}/convert"
            wait_for(
                "the local run's URL registered",
                lambda: (crds.conversion_client_config(kubectl.run, CONVERTED_CRDS[0]) or {}).get("url") == url,
                30,
            )
            registered()
            applied = kubectl.run(*crd_upgrade_argv(REPO / "crds"), check=False)
            assert applied.returncode == 0, applied.stderr
            registered()  # the files' Service is this block's change now: given back afterwards
            for name in CONVERTED_CRDS:
                config = crds.conversion_client_config(kubectl.run, name)
                assert "url" not in config and config["service"]["name"] == "ack-rbgs-webhook", (name, config)
            # v1alpha2 clients need no webhook.
            kubectl.apply(v2_group("after-apply"), namespace)
            assert "after-apply" in as_typed(kubectl, "get", "rbg", "-n", namespace).stdout
        finally:
            process.stop()


def test_without_any_conversion_webhook_v1alpha2_groups_run(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, all_migrated
):
    with conversion_given_back(kubectl) as given_back:
        # The files as they are: conversion through Service rbgs-system/ack-rbgs-webhook, which is not there.
        kubectl.run(*crd_upgrade_argv(REPO / "crds"))
        given_back()
        assert as_typed(kubectl, "get", "service", "ack-rbgs-webhook", "-n", "rbgs-system", check=False).returncode != 0
        process = OperatorProcess(
            kubeconfig, LOG_DIR / "no-webhook-operator.log", f"--namespace={isolated_namespace}"
        ).start()
        try:
            kubectl.apply(v2_group("plain", replicas=2), isolated_namespace)
            # Waits for the operator to watch v1alpha2 (the lead's part of issue 33).
            as_typed(kubectl, "wait", "--for=condition=Ready", "rbg/plain", "-n", isolated_namespace, "--timeout=120s")
            listed = as_typed(kubectl, "get", "rbg", "-n", isolated_namespace)
            assert "plain" in listed.stdout and "True" in listed.stdout, listed.stdout
            assert kubectl.get("statefulset", "plain-web", isolated_namespace)["spec"]["replicas"] == 2
        finally:
            process.stop()


def test_with_the_webhook_down_only_v1alpha1_clients_fail(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, all_migrated
):
    process = OperatorProcess(kubeconfig, LOG_DIR / "outage-operator.log", f"--namespace={isolated_namespace}")
    with conversion_given_back(kubectl) as registered:
        port = free_port()
        webhook = OperatorProcess(
            kubeconfig,
            LOG_DIR / "outage-webhook.log",
            "--namespace=rbg-conversion-only",
            f"--webhook-bind-address=127.0.0.1:{port}",
            "--register-conversion",
        ).start()
        try:
            wait_for(
                "the webhook registered",
                lambda: (
                    (crds.conversion_client_config(kubectl.run, CONVERTED_CRDS[0]) or {}).get("url")
                    == f"https://127.0.0.1:{port}/convert"
                ),
                30,
            )
            registered()
            process.start()
            kubectl.apply(v2_group("kept", replicas=2), isolated_namespace)
            kubectl.apply(v2_group("doomed"), isolated_namespace)
            for name in ("kept", "doomed"):
                ready(kubectl, name, isolated_namespace)
            assert kubectl.get(RBG_V1, "kept", isolated_namespace)  # v1alpha1 clients work while it is up
        finally:
            webhook.stop()  # the outage: the registration stays, nothing answers there
        try:

            def refused_in_v1alpha1(*what: str) -> bool:
                failed = as_typed(kubectl, "get", RBG_V1, *what, "-n", isolated_namespace, check=False)
                return (
                    failed.returncode != 0
                    and "conversion webhook" in failed.stderr
                    and f"127.0.0.1:{port}" in failed.stderr
                )

            # A v1alpha1 client gets the API server's error naming the webhook. (Its watch cache of
            # v1alpha1 was converted while the webhook was up: a LIST fails once an object changes.)
            wait_for("a v1alpha1 read refused naming the webhook", lambda: refused_in_v1alpha1("kept"), 30)

            assert "kept" in as_typed(kubectl, "get", "rbg", "-n", isolated_namespace).stdout

            # The garbage collector removes a deleted group's children.
            as_typed(kubectl, "delete", "rbg", "doomed", "-n", isolated_namespace, "--wait=false")
            wait_for(
                "the deleted group's StatefulSet collected",
                lambda: kubectl.get("statefulset", "doomed-web", isolated_namespace) is None,
                60,
            )

            # Deleting a namespace holding a group completes.
            doomed_ns = f"iso-{secrets.token_hex(4)}"
            kubectl.run("create", "namespace", doomed_ns)
            kubectl.apply(v2_group("inside"), doomed_ns)
            kubectl.run("delete", "namespace", doomed_ns, "--wait=false")
            wait_for(f"namespace {doomed_ns} gone", lambda: kubectl.get("namespace", doomed_ns) is None, 90)

            # v1alpha2 writes, and the operator acting on them: a new group Ready; the StatefulSet
            # scaled and the status of the new generation. (Server-side apply compares the object in
            # every version its field managers wrote in: they must all be v1alpha2, the operator's too.)
            kubectl.apply(v2_group("new"), isolated_namespace)
            ready(kubectl, "new", isolated_namespace)
            kubectl.apply(v2_group("kept", replicas=3), isolated_namespace, "--server-side", "--force-conflicts")
            wait_for(
                "the role scaled to 3",
                lambda: (
                    (kubectl.get("statefulset", "kept-web", isolated_namespace) or {})
                    .get("status", {})
                    .get("readyReplicas")
                    == 3
                ),
                120,
            )
            wait_for(
                "status of the new generation",
                lambda: (
                    (g := kubectl.get(RBG_V2, "kept", isolated_namespace))
                    and g["status"].get("observedGeneration") == g["metadata"]["generation"]
                    and (condition(g, "Ready") or {}).get("status") == "True"
                ),
                60,
            )
            wait_for("a v1alpha1 list refused naming the webhook", lambda: refused_in_v1alpha1(), 30)
        finally:
            process.stop()
