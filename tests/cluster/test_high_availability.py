"""Two operator replicas with leader election, failover during and after a group recreation,
a leader whose connection stalls, a RoleBasedGroupSet member with a restart policy and a
scaling adapter, and an incident that happens while no operator runs.

Tests that run their own operators use a namespace the session's operator ignores."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

from localcluster import cluster
from rbg_operator.controller.restarts import decode_state
from tests.cluster.test_restart_policies import (
    BACKOFF_BASE,
    BUDGET,
    C,
    UidSampler,
    events,
    group,
    restart_container,
    settled,
    uids,
)
from tests.conftest import FAST_RESTARTS
from tests.support.faultproxy import FaultProxy
from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess

STATE = "rolebasedgroup.workloads.x-k8s.io/restart-state"
GROUP_WIDE_ROLES = [
    {
        "name": "prefill",
        "replicas": 2,
        "restartPolicy": "RecreateRBGOnPodRestart",
        "template": {"spec": {"containers": C}},
    },
    {"name": "router", "replicas": 1, "template": {"spec": {"containers": C}}},
]


def replica(kubeconfig: str, log: Path, namespace: str, lease: str) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig,
        log,
        f"--namespace={namespace}",
        "--leader-elect",
        f"--leader-election-id={lease}",
        f"--leader-election-namespace={namespace}",
        *FAST_RESTARTS,
    )


def leading(process: OperatorProcess) -> bool:
    try:
        return any(v == 1 for k, v in process.metrics().items() if k.startswith("leader_election_master_status{"))
    except OSError:
        return False


def the_leader(processes: list[OperatorProcess], timeout: float = 40) -> OperatorProcess:
    return wait_for(
        "a leader", lambda: next((p for p in processes if p.proc.poll() is None and leading(p)), None), timeout
    )


def kill_9(process: OperatorProcess) -> None:
    process.proc.kill()
    process.proc.wait()


def baseline_recorded(kubectl: Kubectl, namespace: str, name: str, pods: int) -> bool:
    raw = (kubectl.get("rbg", name, namespace)["metadata"].get("annotations") or {}).get(STATE)
    return bool(raw) and len(decode_state(raw).get("pods") or {}) == pods


def test_failover_during_and_after_a_recreation_recreates_the_group_exactly_once(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns, lease = isolated_namespace, f"rbg-ha-{secrets.token_hex(3)}"
    first, second = (replica(kubeconfig, tmp_path / f"{n}.log", ns, lease).start() for n in ("first", "second"))
    processes = [first, second]
    try:
        leader = the_leader(processes)
        kubectl.apply(group("ha", GROUP_WIDE_ROLES), ns)
        before = settled(kubectl, ns, "ha", 3)
        wait_for("the pod baseline persisted", lambda: baseline_recorded(kubectl, ns, "ha", 2), 30)
        with UidSampler(kubectl, ns, "ha") as sampler:
            restart_container(kubectl, ns, "ha-prefill-0")
            wait_for(
                "the recreation under way",
                lambda: any(u != before.get(p) for p, u in uids(kubectl, ns, "ha").items()),
                30,
            )
            kill_9(leader)  # in the middle of the recreation
            standby = next(p for p in processes if p is not leader)
            assert the_leader([standby], 60) is standby
            after = settled(kubectl, ns, "ha", 3)
            # Once settled, the leader is killed again and a fresh replica takes over.
            restarted = replica(kubeconfig, tmp_path / "third.log", ns, lease).start()
            processes.append(restarted)
            kill_9(standby)
            assert the_leader([restarted], 60) is restarted
            time.sleep(BACKOFF_BASE + 3)  # time enough for a wrongful recreation to show
        assert uids(kubectl, ns, "ha") == after, "the new leader deleted pods of a settled group"
        assert {pod: len(seen) for pod, seen in sampler.seen.items()} == {p: 2 for p in before}, (
            "every pod replaced exactly once"
        )
        assert len(events(kubectl, ns, "RecreatingGroup")) == 1
        assert condition(kubectl.get("rbg", "ha", ns), "RestartInProgress")["reason"] == "RecreateComplete"
    finally:
        for process in processes:
            process.stop()


def test_a_leader_whose_connection_stalls_stops_before_the_standby_takes_over(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns, lease = isolated_namespace, f"rbg-ha-{secrets.token_hex(3)}"
    proxies = [FaultProxy(kubeconfig, cluster.state_dir() / "pki").start() for _ in range(2)]
    processes = [
        replica(proxy.kubeconfig(tmp_path / f"kubeconfig-{i}"), tmp_path / f"op-{i}.log", ns, lease).start()
        for i, proxy in enumerate(proxies)
    ]
    try:
        leader = the_leader(processes)
        stalled_proxy, standby_proxy = (proxies[0], proxies[1]) if leader is processes[0] else (proxies[1], proxies[0])
        standby = next(p for p in processes if p is not leader)
        kubectl.apply(group("stall", [{"name": "a", "replicas": 1, "template": {"spec": {"containers": C}}}]), ns)
        wait_for(
            "stall Ready",
            lambda: (condition(kubectl.get("rbg", "stall", ns), "Ready") or {}).get("status") == "True",
            60,
        )
        stalled_proxy.stall()
        stalled_at = time.monotonic()
        kubectl.run(
            "patch",
            "rbg",
            "stall",
            "-n",
            ns,
            "--type=json",
            "-p",
            '[{"op": "replace", "path": "/spec/roles/0/replicas", "value": 2}]',
        )
        exited_at = wait_for(
            "the stalled leader to give up", lambda: leader.proc.poll() is not None and time.monotonic(), 30
        )
        took_over_at = wait_for("the standby to lead", lambda: leading(standby) and time.monotonic(), 60)
        assert exited_at < took_over_at, "the standby led while the stalled leader was still running"
        assert exited_at - stalled_at < 15, "the stalled leader outlived its renew deadline"
        wait_for(
            "the change reconciled by the new leader",
            lambda: (kubectl.get("statefulset", "stall-a", ns) or {}).get("spec", {}).get("replicas") == 2,
            60,
        )

        def group_writes(proxy: FaultProxy) -> list[float]:
            return [at for at, _, path, _, _ in proxy.writes if "/leases/" not in path]

        old, new = group_writes(stalled_proxy), group_writes(standby_proxy)
        assert old and new
        assert max(old) < stalled_at <= min(new), "writes of the two replicas overlapped"
    finally:
        for process in processes:
            process.stop()
        for proxy in proxies:
            proxy.stop()


def test_a_set_member_keeps_its_restart_backoff_budget_and_adapter_replicas(kubectl: Kubectl, operator, namespace: str):
    def set_manifest(image: str) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "s"},
            "spec": {
                "replicas": 1,
                "template": {
                    "roles": [
                        {
                            "name": "prefill",
                            "replicas": 1,
                            "restartPolicy": "RecreateRBGOnPodRestart",
                            "scalingAdapter": {"enable": True},
                            "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
                        }
                    ]
                },
            },
        }

    kubectl.apply(set_manifest("example.com/app:v1"), namespace)
    wait_for("adapter", lambda: kubectl.get("rolebasedgroupscalingadapter", "s-0-prefill", namespace), 60)
    kubectl.run("scale", "rolebasedgroupscalingadapter", "s-0-prefill", "-n", namespace, "--replicas=2")
    settled(kubectl, namespace, "s-0", 2)

    def recreations() -> list[str]:
        raw = (kubectl.get("rbg", "s-0", namespace)["metadata"].get("annotations") or {}).get(STATE)
        return decode_state(raw).get("recreations", [])

    for n in range(1, BUDGET + 1):
        restart_container(kubectl, namespace, "s-0-prefill-0")
        wait_for(f"recreation {n} recorded on the member", lambda: len(recreations()) == n, 60)
        settled(kubectl, namespace, "s-0", 2)
    restart_container(kubectl, namespace, "s-0-prefill-0")
    wait_for(
        "the member's budget exhausted",
        lambda: (
            (condition(kubectl.get("rbg", "s-0", namespace), "Ready") or {}).get("reason") == "RestartBudgetExhausted"
        ),
        30,
    )
    assert len(recreations()) == BUDGET

    # A template change re-applies the member: the adapter's replicas stay. (The set updates a
    # member only while all are Ready, so the budget is re-armed first.)
    kubectl.run("annotate", "rbg", "s-0", f"-n={namespace}", "rolebasedgroup.workloads.x-k8s.io/restart-budget-reset=1")
    wait_for(
        "the member Ready again",
        lambda: (condition(kubectl.get("rbg", "s-0", namespace), "Ready") or {}).get("status") == "True",
        30,
    )
    # Every version of the member is watched: the adapter would put its value back at once, so a
    # reset shows only as a flap.
    watch = subprocess.Popen(
        [
            kubectl.binary,
            f"--kubeconfig={kubectl.kubeconfig}",
            "get",
            "rbg",
            "s-0",
            f"-n={namespace}",
            "--watch",
            "-o",
            'jsonpath={.spec.roles[0].replicas}{"\\n"}',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)
        kubectl.apply(set_manifest("example.com/app:v2"), namespace)
        wait_for(
            "member updated",
            lambda: (
                kubectl.get("rbg", "s-0", namespace)["spec"]["roles"][0]["template"]["spec"]["containers"][0]["image"]
                == "example.com/app:v2"
            ),
            60,
        )
        time.sleep(3)
    finally:
        watch.terminate()
    seen = [line.strip() for line in watch.communicate()[0].splitlines() if line.strip()]
    assert seen and set(seen) == {"2"}, f"the member's replicas went through {seen}"


def test_an_incident_while_no_operator_runs_is_handled_once_when_one_is_back(
    kubectl: Kubectl, kubeconfig: str, isolated_namespace: str, tmp_path: Path
):
    ns = isolated_namespace
    operator = OperatorProcess(kubeconfig, tmp_path / "before.log", f"--namespace={ns}", *FAST_RESTARTS).start()
    try:
        kubectl.apply(group("down", GROUP_WIDE_ROLES), ns)
        before = settled(kubectl, ns, "down", 3)
        wait_for("the pod baseline persisted", lambda: baseline_recorded(kubectl, ns, "down", 2), 30)
    finally:
        kill_9(operator)
    restart_container(kubectl, ns, "down-prefill-1")
    time.sleep(1)
    with UidSampler(kubectl, ns, "down") as sampler:
        back = OperatorProcess(kubeconfig, tmp_path / "after.log", f"--namespace={ns}", *FAST_RESTARTS).start()
        try:
            wait_for(
                "every pod replaced",
                lambda: (u := uids(kubectl, ns, "down")) and len(u) == 3 and all(u[p] != before[p] for p in before),
                60,
            )
            after = settled(kubectl, ns, "down", 3)
            back.stop()  # and once more: the incident is not replayed
            again = OperatorProcess(kubeconfig, tmp_path / "again.log", f"--namespace={ns}", *FAST_RESTARTS).start()
            time.sleep(BACKOFF_BASE + 3)
            again.stop()
        finally:
            back.stop()
    assert uids(kubectl, ns, "down") == after
    assert {pod: len(seen) for pod, seen in sampler.seen.items()} == {p: 2 for p in before}
    assert len(events(kubectl, ns, "RecreatingGroup")) == 1
