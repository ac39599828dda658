"""The event loop always turns, and a hostile or odd object costs only itself: an object being
deleted under a status write does not freeze the process, a group nested too deep to decode
leaves every other tenant's group reconciling with a live /healthz (at start-up and while
running), and a child that leaves and re-enters the label selector is cached again.

Each test runs its own operator, in namespaces the session's operator ignores."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from localcluster import cluster
from tests.support.faultproxy import FaultProxy
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess

IMAGE = "example.com/app:v1"
GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"
V1 = "workloads.x-k8s.io/v1alpha1"


def group(name: str, replicas: int = 1, **extra) -> dict:
    return {
        "apiVersion": V1,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, **extra},
        "spec": {
            "roles": [
                {
                    "name": "a",
                    "replicas": replicas,
                    "template": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}},
                }
            ]
        },
    }


def healthz(operator: OperatorProcess) -> tuple[int, str]:
    """The status and body of /healthz, or (0, why) when it does not answer within 5 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, f"no answer: {error}"


def reconciles(operator: OperatorProcess) -> float:
    return sum(
        v
        for k, v in operator.metrics().items()
        if k.startswith('controller_runtime_reconcile_total{controller="rolebasedgroup"')
    )


def settled(proxy: FaultProxy, quiet: float = 2.0) -> None:
    """Wait until the operator has written nothing for `quiet` seconds."""
    count, since = len(proxy.writes), time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the operator never stopped writing"
        time.sleep(0.2)
        if len(proxy.writes) != count:
            count, since = len(proxy.writes), time.monotonic()


def test_an_object_deleted_under_its_status_write_does_not_freeze_the_operator(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    """The status write's answer carries the generation the deletion bumped; the next pass finds
    the object being deleted and writes nothing. That must not requeue it for ever."""
    ns = isolated_namespace
    proxy = FaultProxy(kubeconfig, cluster.state_dir() / "pki").start()
    operator = OperatorProcess(
        proxy.kubeconfig(tmp_path / "kubeconfig"), tmp_path / "operator.log", f"--namespace={ns}"
    ).start()
    try:
        kubectl.apply(group("g", finalizers=["example.com/hold"]), ns)
        wait_for("g Ready", lambda: (condition(kubectl.get("rbg", "g", ns), "Ready") or {}).get("status") == "True", 60)
        settled(proxy)  # so that the status write held below is the one of generation 2
        proxy.hold_status_writes = True
        kubectl.run(
            "patch",
            "rbg",
            "g",
            "-n",
            ns,
            "--type=json",
            "-p",
            json.dumps([{"op": "replace", "path": "/spec/roles/0/replicas", "value": 2}]),
        )
        wait_for("the status write of generation 2 held", lambda: proxy.held_status_writes >= 1, 30)
        # A foreground delete: the finalizers keep the group, deletionTimestamp bumps its generation.
        kubectl.run("delete", "rbg", "g", "-n", ns, "--cascade=foreground", "--wait=false")
        wait_for("g being deleted", lambda: kubectl.get("rbg", "g", ns)["metadata"].get("deletionTimestamp"), 10)
        # The write's answer comes before its watch echo (which would otherwise take its place).
        proxy.watch_delay, proxy.watch_delay_on = 2.0, "/rolebasedgroups"
        passes = reconciles(operator)
        proxy.release_status_writes()
        for _ in range(3):
            time.sleep(1)
            status, body = healthz(operator)
            assert status == 200, f"/healthz: {status} {body}"
        # Not frozen, and not spinning either: the group is not reconciled again and again.
        assert reconciles(operator) - passes < 10, "the group being deleted was requeued without end"
        # The workers still serve other groups.
        kubectl.apply(group("after"), ns)
        wait_for("the next group's StatefulSet", lambda: kubectl.get("statefulset", "after-a", ns), 30)
        assert healthz(operator)[0] == 200
    finally:
        kubectl.run(
            "patch",
            "rbg",
            "g",
            "-n",
            ns,
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
            check=False,
        )
        operator.stop()
        proxy.stop()


def create_raw(kubectl: Kubectl, namespace: str, body: str, name: str, tmp_path: Path) -> None:
    """POST the object as it is: no client-side decoding, no admission webhook (none is registered
    for this operator's namespaces: as when the webhook is down or bypassed)."""
    path = tmp_path / f"{name}.json"
    path.write_text(body)
    kubectl.run("create", "--raw", f"/apis/{V1}/namespaces/{namespace}/rolebasedgroups", "-f", str(path))


def deep_group(name: str, levels: int) -> str:
    """A group whose role's templatePatch is nested `levels` deep: about 6 bytes a level."""
    body = group(name, replicas=0)
    body["spec"]["roles"][0]["templatePatch"] = "NESTED"
    return json.dumps(body).replace('"NESTED"', '{"a":' * levels + "{}" + "}" * levels)


def warnings_about(kubectl: Kubectl, namespace: str, name: str, reason: str) -> list[str]:
    return [
        e.get("message", "")
        for e in kubectl.get("events", namespace=namespace)
        if e.get("reason") == reason and e["involvedObject"].get("name") == name
    ]


def test_a_group_nested_too_deep_leaves_every_other_tenants_group_reconciling_with_a_live_healthz(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    hostile, tenant = isolated_namespace, f"{isolated_namespace}-b"
    kubectl.run("create", "namespace", tenant)
    operator = None
    try:
        # 1,100 levels: past the JSON decoder's limit (1,024). 300: it decodes, but the cache
        # cannot encode it (255). Both are there before the operator starts.
        create_raw(kubectl, hostile, deep_group("deep", 1100), "deep", tmp_path)
        create_raw(kubectl, hostile, deep_group("deep300", 300), "deep300", tmp_path)
        kubectl.apply(group("innocent"), tenant)
        # One cluster-wide watch per kind (a glob), as an operator of the whole cluster has.
        operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", f"--namespace={hostile}*").start()
        wait_for(
            "the other tenant's group reconciled at start-up",
            lambda: kubectl.get("statefulset", "innocent-a", tenant),
            60,
        )
        status, body = healthz(operator)
        assert status == 200, f"/healthz: {status} {body}"
        for name in ("deep", "deep300"):
            message = wait_for(
                f"a Warning Event on {name}", lambda: warnings_about(kubectl, hostile, name, "ObjectUnreadable"), 30
            )[0]
            assert f"RoleBasedGroup {hostile}/{name} is not reconciled" in message, message

        # While running: a new hostile group arrives by the watch, and the watch goes on.
        create_raw(kubectl, hostile, deep_group("deep-late", 1100), "deep-late", tmp_path)
        wait_for(
            "a Warning Event on deep-late",
            lambda: warnings_about(kubectl, hostile, "deep-late", "ObjectUnreadable"),
            30,
        )
        kubectl.apply(group("innocent-late"), tenant)
        wait_for(
            "a group created afterwards reconciled", lambda: kubectl.get("statefulset", "innocent-late-a", tenant), 30
        )
        kubectl.apply(group("innocent", replicas=2), tenant)
        wait_for(
            "a change of the first group reconciled",
            lambda: kubectl.get("statefulset", "innocent-a", tenant)["spec"]["replicas"] == 2,
            30,
        )
        metrics = operator.metrics()
        assert metrics.get('rbg_operator_unreadable_objects_total{resource="rolebasedgroups"}', 0) >= 3, {
            k: v for k, v in metrics.items() if "unreadable" in k
        }
        status, body = healthz(operator)
        assert status == 200, f"/healthz: {status} {body}"
    finally:
        if operator is not None:
            operator.stop()
        for name in ("deep", "deep300", "deep-late"):  # before anything else lists them at v1alpha2
            kubectl.run(
                "delete",
                "rolebasedgroups.v1alpha1.workloads.x-k8s.io",
                name,
                "-n",
                hostile,
                "--ignore-not-found",
                "--wait=false",
                check=False,
            )
        kubectl.run("delete", "namespace", tenant, "--wait=false", check=False)


def test_a_child_that_leaves_the_label_selector_and_comes_back_is_watched_again(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", f"--namespace={ns}").start()
    try:
        kubectl.apply(group("g"), ns)
        wait_for("g Ready", lambda: (condition(kubectl.get("rbg", "g", ns), "Ready") or {}).get("status") == "True", 60)
        kubectl.run("label", "statefulset", "g-a", "-n", ns, f"{GROUP_LABEL}-")
        wait_for(
            "the label restored by the operator",
            lambda: (kubectl.get("statefulset", "g-a", ns)["metadata"].get("labels") or {}).get(GROUP_LABEL) == "g",
            30,
        )
        time.sleep(2)
        kubectl.run("scale", "statefulset/g-a", "--replicas=2", f"-n={ns}")
        wait_for(
            "the scale seen at once (the StatefulSet's events wake the group again)",
            lambda: (condition(kubectl.get("rbg", "g", ns), "ReplicasOverridden") or {}).get("status") == "True",
            15,
        )

        def gets() -> float:
            return operator.metrics().get('rbg_operator_api_requests_total{resource="statefulsets",verb="get"}', 0)

        def reconciles() -> float:
            return operator.metrics().get(
                'controller_runtime_reconcile_total{controller="rolebasedgroup",result="success"}', 0
            )

        before, passes = gets(), reconciles()
        for i in range(3):
            kubectl.run("annotate", "rbg", "g", f"-n={ns}", f"example.com/poke={i}", "--overwrite")
            time.sleep(1)
        wait_for("the pokes reconciled", lambda: reconciles() >= passes + 3, 30)
        assert gets() == before, "the StatefulSet is read from the API server on every pass: it is not cached"
    finally:
        operator.stop()


def test_a_progress_deadline_that_is_not_a_plain_number_is_reported_and_the_group_still_reconciles(
    kubectl: Kubectl, operator, namespace: str
):
    # "²" passes str.isdigit but not int(); 5,000 digits pass neither int() nor any sane deadline.
    for name, value in (("superscript", "\u00b2"), ("huge", "9" * 5000)):
        kubectl.apply(
            group(name, annotations={"rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds": value}), namespace
        )
    for name in ("superscript", "huge"):
        wait_for(
            f"{name} Ready",
            lambda: (condition(kubectl.get("rbg", name, namespace), "Ready") or {}).get("status") == "True",
            60,
        )
        message = wait_for(
            f"an InvalidAnnotation Event on {name}",
            lambda: warnings_about(kubectl, namespace, name, "InvalidAnnotation"),
            30,
        )[0]
        assert "progress-deadline-seconds" in message and "whole number of seconds" in message, message


def test_healthz_turns_red_naming_the_watches_that_have_had_no_list_for_too_long(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    """The API server stops answering this operator (the connection hangs): its watches go silent
    and its lists never come back, so its cache says less and less. /healthz must say so."""
    ns = isolated_namespace
    proxy = FaultProxy(kubeconfig, cluster.state_dir() / "pki").start()
    operator = OperatorProcess(
        proxy.kubeconfig(tmp_path / "kubeconfig"),
        tmp_path / "operator.log",
        f"--namespace={ns}",
        "--watch-inactivity-timeout=2",
        "--healthz-reflector-seconds=5",
    ).start()
    try:
        kubectl.apply(group("g"), ns)
        wait_for("g's StatefulSet", lambda: kubectl.get("statefulset", "g-a", ns), 30)
        assert healthz(operator)[0] == 200
        proxy.stall()
        status, body = wait_for("/healthz red", lambda: (answer := healthz(operator))[0] == 503 and answer, 30)
        assert "has had no complete list for" in body and "limit 5s" in body, body
    finally:
        operator.stop()
        proxy.stop()
