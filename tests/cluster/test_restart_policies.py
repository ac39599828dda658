"""Restart policies on the real control plane. A kubelet is simulated by patching a pod's
container restartCount through the API; pod loss is a plain `kubectl delete pod`."""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
import time

from rbg_operator.controller.restarts import decode_state
from tests.conftest import FAST_RESTARTS
from tests.support.kubectl import Kubectl, condition, wait_for

C = [{"name": "main", "image": "example.com/app:v1"}]
GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"
BACKOFF_BASE = float(next(a for a in FAST_RESTARTS if a.startswith("--restart-backoff-base=")).split("=")[1])
BUDGET = int(next(a for a in FAST_RESTARTS if a.startswith("--restart-budget=")).split("=")[1])


def group(name: str, roles: list[dict]) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": roles},
    }


def uids(kubectl: Kubectl, namespace: str, name: str) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}={name}")
    }


def settled(kubectl: Kubectl, namespace: str, name: str, count: int) -> dict[str, str]:
    """Wait for the group Ready with `count` running pods and no recreation under way; return pod UIDs."""

    def probe():
        g = kubectl.get("rbg", name, namespace)
        restarting = (condition(g, "RestartInProgress") or {}).get("status") == "True"
        pods = kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}={name}")
        live = [
            p
            for p in pods
            if not p["metadata"].get("deletionTimestamp") and (condition(p, "Ready") or {}).get("status") == "True"
        ]
        ok = (
            (condition(g, "Ready") or {}).get("status") == "True" and not restarting and len(live) == count == len(pods)
        )
        return ok and {p["metadata"]["name"]: p["metadata"]["uid"] for p in live}

    return wait_for(f"group {name} settled with {count} ready pods", probe, 90)


def restart_container(kubectl: Kubectl, namespace: str, pod: str) -> None:
    current = kubectl.get("pod", pod, namespace)
    count = current["status"]["containerStatuses"][0].get("restartCount", 0)
    patch = {"status": {"containerStatuses": [{"name": "main", "restartCount": count + 1}]}}
    kubectl.run(
        "patch", "pod", pod, f"-n={namespace}", "--subresource=status", "--type=strategic", "-p", json.dumps(patch)
    )


class UidSampler:
    """Samples the group's pods from single list calls, to count how often each pod was replaced,
    and watches the group, to see every condition it passes through."""

    def __init__(self, kubectl: Kubectl, namespace: str, name: str):
        self.kubectl, self.namespace, self.name = kubectl, namespace, name
        self.seen: dict[str, set[str]] = {}
        self.restart_in_progress_seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._watch = subprocess.Popen(
            [
                kubectl.binary,
                f"--kubeconfig={kubectl.kubeconfig}",
                "get",
                "rbg",
                name,
                f"-n={namespace}",
                "--watch",
                "--output-watch-events",
                "-o",
                'jsonpath={.object.status.conditions}{"\\n"}',
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._watcher = threading.Thread(target=self._follow, daemon=True)

    def _follow(self) -> None:
        assert self._watch.stdout is not None
        for line in self._watch.stdout:
            if line.strip() and any(
                c["type"] == "RestartInProgress" and c["status"] == "True" for c in json.loads(line)
            ):
                self.restart_in_progress_seen = True

    def _run(self) -> None:
        while not self._stop.is_set():
            for pod, uid in uids(self.kubectl, self.namespace, self.name).items():
                self.seen.setdefault(pod, set()).add(uid)
            time.sleep(0.2)

    def __enter__(self) -> UidSampler:
        self._thread.start()
        self._watcher.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._watch.terminate()
        self._watcher.join(timeout=5)


def events(kubectl: Kubectl, namespace: str, reason: str) -> list[dict]:
    return [e for e in kubectl.get("events", namespace=namespace) if e["reason"] == reason]


def test_group_wide_policy_recreates_every_pod_once_and_none_role_moves_nothing(
    kubectl: Kubectl, operator, namespace: str
):
    kubectl.apply(
        group(
            "pd",
            [
                {
                    "name": "prefill",
                    "replicas": 2,
                    "restartPolicy": "RecreateRBGOnPodRestart",
                    "template": {"spec": {"containers": C}},
                },
                {"name": "router", "replicas": 1, "restartPolicy": "None", "template": {"spec": {"containers": C}}},
            ],
        ),
        namespace,
    )
    before = settled(kubectl, namespace, "pd", 3)

    # A restart in the None role moves nothing.
    restart_container(kubectl, namespace, "pd-router-0")
    time.sleep(4)
    assert uids(kubectl, namespace, "pd") == before

    # A restart in the group-wide role recreates every pod of the group, exactly once.
    with UidSampler(kubectl, namespace, "pd") as sampler:
        restart_container(kubectl, namespace, "pd-prefill-0")
        after = wait_for(
            "every pod replaced",
            lambda: (
                (u := uids(kubectl, namespace, "pd")) and len(u) == 3 and all(u[p] != before[p] for p in before) and u
            ),
            60,
        )
        after = settled(kubectl, namespace, "pd", 3)
        time.sleep(BACKOFF_BASE + 2)  # long enough for a second, wrongful recreation to show
    assert uids(kubectl, namespace, "pd") == after
    assert {pod: len(seen) for pod, seen in sampler.seen.items()} == {
        "pd-prefill-0": 2,
        "pd-prefill-1": 2,
        "pd-router-0": 2,
    }
    assert sampler.restart_in_progress_seen
    g = kubectl.get("rbg", "pd", namespace)
    assert condition(g, "RestartInProgress")["status"] == "False"
    assert condition(g, "RestartInProgress")["reason"] == "RecreateComplete"
    recreating = events(kubectl, namespace, "RecreatingGroup")
    assert len(recreating) == 1 and "pod pd-prefill-0 restarted" in recreating[0]["message"]


def test_lost_pod_recreates_the_group(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        group(
            "lost",
            [
                {
                    "name": "decode",
                    "replicas": 2,
                    "restartPolicy": "RecreateRBGOnPodRestart",
                    "template": {"spec": {"containers": C}},
                },
                {"name": "prefill", "replicas": 1, "template": {"spec": {"containers": C}}},
            ],
        ),
        namespace,
    )
    before = settled(kubectl, namespace, "lost", 3)
    kubectl.delete("pod", "lost-decode-1", namespace, "--wait=false")
    wait_for(
        "every pod replaced",
        lambda: (u := uids(kubectl, namespace, "lost")) and len(u) == 3 and all(u[p] != before[p] for p in before),
        60,
    )
    settled(kubectl, namespace, "lost", 3)
    assert "pod lost-decode-1 was lost" in events(kubectl, namespace, "RecreatingGroup")[0]["message"]


def test_role_instance_policy_recreates_only_that_pod(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        group(
            "inst",
            [
                {
                    "name": "worker",
                    "replicas": 3,
                    "restartPolicy": "RecreateRoleInstanceOnPodRestart",
                    "template": {"spec": {"containers": C}},
                },
                {
                    "name": "lws",
                    "replicas": 1,
                    "restartPolicy": "RecreateRoleInstanceOnPodRestart",
                    "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
                    "leaderWorkerSet": {"size": 2},
                    "template": {"spec": {"containers": C}},
                },
            ],
        ),
        namespace,
    )
    before = settled(kubectl, namespace, "inst", 5)
    lws = kubectl.get("leaderworkerset", "inst-lws", namespace)
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"

    restart_container(kubectl, namespace, "inst-worker-1")
    after = wait_for(
        "worker-1 replaced",
        lambda: (
            (u := uids(kubectl, namespace, "inst")).get("inst-worker-1") not in (None, before["inst-worker-1"]) and u
        ),
        30,
    )
    time.sleep(2)
    after = uids(kubectl, namespace, "inst")
    assert {p for p in before if after.get(p) != before[p]} == {"inst-worker-1"}


def test_backoff_spacing_and_restart_budget(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        group(
            "flaky",
            [
                {
                    "name": "prefill",
                    "replicas": 2,
                    "restartPolicy": "RecreateRBGOnPodRestart",
                    "template": {"spec": {"containers": C}},
                }
            ],
        ),
        namespace,
    )
    current = settled(kubectl, namespace, "flaky", 2)

    def recreations() -> list[datetime.datetime]:
        raw = (
            kubectl.get("rbg", "flaky", namespace)["metadata"]
            .get("annotations", {})
            .get("rolebasedgroup.workloads.x-k8s.io/restart-state")
        )
        return [
            datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in decode_state(raw).get("recreations", [])
        ]

    for n in range(1, BUDGET + 1):
        restart_container(kubectl, namespace, "flaky-prefill-0")
        wait_for(f"recreation {n}", lambda: len(recreations()) == n, 60)
        current = settled(kubectl, namespace, "flaky", 2)
    times = recreations()
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    # Each wait is at least the backoff: base, then twice the base (1 s stamps, hence the slack).
    assert gaps[0] >= BACKOFF_BASE - 1 and gaps[1] >= 2 * BACKOFF_BASE - 1, gaps

    # One incident more than the budget: no recreation, Ready=False, failed pods kept.
    restart_container(kubectl, namespace, "flaky-prefill-0")
    exhausted = wait_for(
        "budget exhausted",
        lambda: (
            (g := kubectl.get("rbg", "flaky", namespace))
            and (condition(g, "Ready") or {}).get("reason") == "RestartBudgetExhausted"
            and g
        ),
        30,
    )
    assert condition(exhausted, "Ready")["status"] == "False"
    wait_for("budget event", lambda: events(kubectl, namespace, "RestartBudgetExhausted"), 30)
    time.sleep(2 * BACKOFF_BASE)
    assert uids(kubectl, namespace, "flaky") == current
    assert len(recreations()) == BUDGET

    # The reset annotation re-arms it.
    kubectl.run(
        "annotate", "rbg", "flaky", f"-n={namespace}", "rolebasedgroup.workloads.x-k8s.io/restart-budget-reset=1"
    )
    wait_for(
        "Ready again",
        lambda: (condition(kubectl.get("rbg", "flaky", namespace), "Ready") or {}).get("status") == "True",
        30,
    )
    restart_container(kubectl, namespace, "flaky-prefill-1")
    wait_for(
        "recreated after the reset",
        lambda: all(uids(kubectl, namespace, "flaky").get(p) not in (None, current[p]) for p in current),
        60,
    )
