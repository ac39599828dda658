"""Rolling updates on the real control plane: per-role strategies, coordinated prefill/decode
rollouts under maxSkew, no deadlock at small sizes, updates during updates, and rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.support.kubectl import Kubectl, condition, group_ready, wait_for

GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"
ROLE_LABEL = "rolebasedgroup.workloads.x-k8s.io/role"


def pd_group(name: str, image: str, replicas: int, max_skew: str | None = "25%", **role_fields) -> dict:
    def role(role_name: str) -> dict:
        return {
            "name": role_name,
            "replicas": replicas,
            **role_fields,
            "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
        }

    spec: dict = {"roles": [role("prefill"), role("decode")]}
    if max_skew:
        spec["coordination"] = [
            {"name": "pd", "roles": ["prefill", "decode"], "strategy": {"rollingUpdate": {"maxSkew": max_skew}}}
        ]
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": spec,
    }


def fractions(pods: list[dict], image: str, replicas: int, label: tuple[str, str] | None = None) -> dict[str, float]:
    """Per role: the share of its pods that run `image` (and carry `label`) and are ready, from one list call."""
    done: dict[str, int] = {"prefill": 0, "decode": 0}
    for pod in pods:
        labelled = label is None or pod["metadata"]["labels"].get(label[0]) == label[1]
        if (
            pod["spec"]["containers"][0]["image"] == image
            and labelled
            and not pod["metadata"].get("deletionTimestamp")
            and (condition(pod, "Ready") or {}).get("status") == "True"
        ):
            done[pod["metadata"]["labels"][ROLE_LABEL]] += 1
    return {role: count / replicas for role, count in done.items()}


def run_rollout(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    image: str,
    replicas: int,
    max_skew: float | None,
    timeout: float = 120,
    label: tuple[str, str] | None = None,
) -> list[dict[str, float]]:
    """Sample both roles until every pod runs `image` and is ready; assert the skew at every sample."""
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        share = fractions(
            kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}={name}"), image, replicas, label
        )
        samples.append(share)
        if max_skew is not None:
            assert abs(share["prefill"] - share["decode"]) <= max_skew + 1e-9, samples
        if share == {"prefill": 1.0, "decode": 1.0}:
            return samples
        time.sleep(0.1)
    raise AssertionError(f"rollout to {image} did not finish; last samples {samples[-5:]}")


def test_coordinated_rollout_keeps_prefill_and_decode_within_max_skew(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(pd_group("pd", "example.com/sglang:v1", 4), namespace)
    group_ready(kubectl, "pd", namespace)
    kubectl.apply(pd_group("pd", "example.com/sglang:v2", 4), namespace)
    samples = run_rollout(kubectl, namespace, "pd", "example.com/sglang:v2", 4, 0.25)
    assert len(samples) >= 3, "the rollout was sampled while it ran"
    assert any(0 < s["prefill"] < 1 for s in samples), "prefill moved in steps"
    group = group_ready(kubectl, "pd", namespace)
    assert condition(group, "RollingUpdateInProgress")["status"] == "False"
    assert {r["name"]: r["updatedReplicas"] for r in group["status"]["roleStatuses"]} == {"prefill": 4, "decode": 4}


def test_small_rollouts_finish(kubectl: Kubectl, operator, namespace: str):
    for replicas in (1, 2):
        name = f"small{replicas}"
        kubectl.apply(pd_group(name, "example.com/app:v1", replicas), namespace)
        group_ready(kubectl, name, namespace)
        kubectl.apply(pd_group(name, "example.com/app:v2", replicas), namespace)
        run_rollout(kubectl, namespace, name, "example.com/app:v2", replicas, None)
    # and without coordination, with the role's own strategy
    kubectl.apply(pd_group("solo", "example.com/app:v1", 1, None), namespace)
    group_ready(kubectl, "solo", namespace)
    kubectl.apply(pd_group("solo", "example.com/app:v2", 1, None), namespace)
    run_rollout(kubectl, namespace, "solo", "example.com/app:v2", 1, None)


def test_change_during_a_rollout_converges_to_the_newest(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(pd_group("twice", "example.com/app:v1", 4), namespace)
    group_ready(kubectl, "twice", namespace)
    kubectl.apply(pd_group("twice", "example.com/app:v2", 4), namespace)
    wait_for(
        "rollout to v2 under way",
        lambda: any(
            p["spec"]["containers"][0]["image"].endswith("v2")
            for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}=twice")
        ),
        30,
    )
    kubectl.apply(pd_group("twice", "example.com/app:v3", 4), namespace)
    run_rollout(kubectl, namespace, "twice", "example.com/app:v3", 4, 0.25)
    group_ready(kubectl, "twice", namespace)


def test_replicas_only_change_keeps_every_pod(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(pd_group("steady", "example.com/app:v1", 2), namespace)
    group_ready(kubectl, "steady", namespace)
    before = {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}=steady")
    }
    kubectl.apply(pd_group("steady", "example.com/app:v1", 3), namespace)
    group_ready(kubectl, "steady", namespace)
    after = {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}=steady")
    }
    assert len(after) == 6
    assert {name: after[name] for name in before} == before
    kubectl.run("annotate", "rbg", "steady", f"-n={namespace}", "example.com/note=x")
    kubectl.run("label", "rbg", "steady", f"-n={namespace}", "example.com/team=a")
    time.sleep(2)
    assert {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}=steady")
    } == after


def test_role_strategies_map_onto_each_workload(kubectl: Kubectl, operator, namespace: str):
    rolling = {"rollingUpdate": {"partition": "50%", "maxUnavailable": "50%", "maxSurge": 1}}
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "strat"},
            "spec": {
                "roles": [
                    {
                        "name": "sts",
                        "replicas": 4,
                        "rolloutStrategy": rolling,
                        "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}},
                    },
                    {
                        "name": "dep",
                        "replicas": 4,
                        "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
                        "rolloutStrategy": rolling,
                        "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}},
                    },
                    {
                        "name": "held",
                        "replicas": 2,
                        "rolloutStrategy": {"rollingUpdate": {"paused": True}},
                        "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}},
                    },
                    {
                        "name": "surge",
                        "replicas": 2,
                        "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
                        "rolloutStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                        "template": {"spec": {"containers": [{"name": "m", "image": "i"}]}},
                    },
                ]
            },
        },
        namespace,
    )
    sts = wait_for("StatefulSet", lambda: kubectl.get("statefulset", "strat-sts", namespace), 30)
    assert sts["spec"]["updateStrategy"]["rollingUpdate"] == {"partition": 2, "maxUnavailable": 2}
    dep = wait_for("Deployment", lambda: kubectl.get("deployment", "strat-dep", namespace), 30)
    # A Deployment resolves percentages itself: passed through as written.
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": "50%"}
    # No pod unavailable during a rollout, surging one at a time: honoured, not raised to 1.
    surge = wait_for("surging Deployment", lambda: kubectl.get("deployment", "strat-surge", namespace), 30)
    assert surge["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    held = wait_for("held StatefulSet", lambda: kubectl.get("statefulset", "strat-held", namespace), 30)
    assert held["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2


def kubectl_rbg(kubeconfig: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rbg_operator.kubectl_plugin", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
        timeout=60,
    )


def test_history_and_undo_restore_the_previous_image(kubectl: Kubectl, operator, namespace: str, kubeconfig: str):
    kubectl.apply(pd_group("undo", "example.com/app:v1", 2, None), namespace)
    group_ready(kubectl, "undo", namespace)
    kubectl.apply(pd_group("undo", "example.com/app:v2", 2, None), namespace)
    run_rollout(kubectl, namespace, "undo", "example.com/app:v2", 2, None)
    kubectl.run("scale", "statefulset/undo-decode", "--replicas=2", f"-n={namespace}")  # unchanged: still 2

    listed = kubectl_rbg(kubeconfig, "-n", namespace, "rollout", "history", "undo")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:2] == ["REVISION", "NAME"]
    assert [r.split()[0] for r in rows[1:]] == ["1", "2"]
    assert "prefill=example.com/app:v1" in rows[1] and "prefill=example.com/app:v2" in rows[2]

    result = kubectl_rbg(kubeconfig, "-n", namespace, "rollout", "undo", "undo")
    assert result.returncode == 0, result.stderr
    assert "rolled back to revision 1" in result.stdout
    run_rollout(kubectl, namespace, "undo", "example.com/app:v1", 2, None)
    group = kubectl.get("rbg", "undo", namespace)
    assert [r["replicas"] for r in group["spec"]["roles"]] == [2, 2]
    wait_for(
        "revision 1 renumbered 3",
        lambda: (
            [
                r.split()[0]
                for r in kubectl_rbg(kubeconfig, "-n", namespace, "rollout", "history", "undo").stdout.splitlines()[1:]
            ]
            == ["2", "3"]
        ),
        30,
    )

    missing = kubectl_rbg(kubeconfig, "-n", namespace, "rollout", "undo", "undo", "--to-revision", "9")
    assert missing.returncode == 1 and "has no revision 9" in missing.stderr


def test_a_role_label_change_is_a_coordinated_undoable_revision(
    kubectl: Kubectl, operator, namespace: str, kubeconfig: str
):
    # Role labels reach the pod template, so changing them restarts every pod: that must be a
    # revision like an image change, paced by maxSkew, recorded, and undone by `rollout undo`.
    kubectl.apply(pd_group("relabel", "example.com/app:v1", 4, labels={"example.com/tier": "a"}), namespace)
    group_ready(kubectl, "relabel", namespace)
    kubectl.apply(pd_group("relabel", "example.com/app:v1", 4, labels={"example.com/tier": "b"}), namespace)
    samples = run_rollout(kubectl, namespace, "relabel", "example.com/app:v1", 4, 0.25, label=("example.com/tier", "b"))
    assert any(0 < s["prefill"] < 1 or 0 < s["decode"] < 1 for s in samples), "the change was not paced"
    wait_for(
        "two revisions",
        lambda: (
            [
                r.split()[0]
                for r in kubectl_rbg(kubeconfig, "-n", namespace, "rollout", "history", "relabel").stdout.splitlines()[
                    1:
                ]
            ]
            == ["1", "2"]
        ),
        30,
    )

    result = kubectl_rbg(kubeconfig, "-n", namespace, "rollout", "undo", "relabel")
    assert result.returncode == 0, result.stderr
    run_rollout(kubectl, namespace, "relabel", "example.com/app:v1", 4, 0.25, label=("example.com/tier", "a"))
    assert {r["labels"]["example.com/tier"] for r in kubectl.get("rbg", "relabel", namespace)["spec"]["roles"]} == {"a"}


def paced_group(name: str, replicas: int, **spec) -> dict:
    """prefill and decode growing together under coordinated scaling (maxSkew 25%, OrderReady)."""
    group = pd_group(name, "example.com/app:v1", replicas, None)
    group["spec"].update(
        spec,
        coordination=[
            {
                "name": "pd",
                "roles": ["prefill", "decode"],
                "strategy": {"scaling": {"maxSkew": "25%", "progression": "OrderReady"}},
            }
        ],
    )
    return group


def test_coordinated_scaling_paces_replica_increases(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(paced_group("grow", 1), namespace)
    group_ready(kubectl, "grow", namespace)
    kubectl.apply(paced_group("grow", 4), namespace)
    samples = run_rollout(kubectl, namespace, "grow", "example.com/app:v1", 4, 0.25)
    assert any(0 < s["prefill"] < 1 for s in samples)
    group_ready(kubectl, "grow", namespace)


def test_a_gang_grows_with_the_replicas_coordination_applies(kubectl: Kubectl, operator, namespace: str):
    gang = {"podGroupPolicy": {"kubeScheduling": {"scheduleTimeoutSeconds": 60}}}
    kubectl.apply(paced_group("ganged", 1, **gang), namespace)
    group_ready(kubectl, "ganged", namespace)
    kubectl.apply(paced_group("ganged", 4, **gang), namespace)
    sizes = set()

    def done() -> bool:
        sizes.add(kubectl.get("podgroups.scheduling.x-k8s.io", "ganged", namespace)["spec"]["minMember"])
        g = kubectl.get("rbg", "ganged", namespace)
        return (condition(g, "Ready") or {}).get("status") == "True" and g["status"]["observedGeneration"] == 2

    # A gang of the final 8 while the replicas grow in steps would wait for pods that do not exist
    # yet, and the steps wait for those pods to be ready: neither would ever move.
    wait_for("grown to 4 + 4 and Ready", done, 120, interval=0.2)
    assert any(2 < size < 8 for size in sizes), sizes
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "ganged", namespace)["spec"]["minMember"] == 8


def test_a_rollout_is_not_held_by_a_never_ready_pod_and_the_operator_spares_a_once_ready_one(
    kubectl: Kubectl, operator, namespace: str
):
    # Two groups whose pod 0 is not Ready on the old revision: in "dud" it never was (its Ready
    # condition has not moved since the pod started); in "blip" it was, and a probe fails now. A
    # rollout waits on both. Only dud's may be replaced, once a minute has passed: that moment
    # brings no event, so only a timed look notices it.
    def group(name: str, image: str) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": name},
            "spec": {
                "roles": [
                    {
                        "name": "web",
                        "replicas": 2,
                        "template": {"spec": {"containers": [{"name": "m", "image": image}]}},
                    }
                ]
            },
        }

    for name in ("dud", "blip"):
        kubectl.apply(group(name, "example.com/app:v1"), namespace)
    for name in ("dud", "blip"):
        group_ready(kubectl, name, namespace)
    uids = {}
    time.sleep(4)  # so that blip's failure is clearly later than its start
    for name in ("dud", "blip"):
        pod = kubectl.get("pod", f"{name}-web-0", namespace)
        uids[name] = pod["metadata"]["uid"]
        changed = pod["status"]["startTime"] if name == "dud" else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kubectl.run(
            "patch",
            "pod",
            f"{name}-web-0",
            f"-n={namespace}",
            "--subresource=status",
            "--type=strategic",
            "-p",
            json.dumps(
                {"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": changed}]}}
            ),
        )
        kubectl.apply(group(name, "example.com/app:v2"), namespace)

    def uid(name: str) -> str | None:
        return (kubectl.get("pod", f"{name}-web-0", namespace) or {}).get("metadata", {}).get("uid")

    wait_for("dud's never-ready pod replaced", lambda: uid("dud") not in (None, uids["dud"]), 120, interval=1)

    def replaced_by_us(name: str) -> bool:
        return any(
            e["reason"] == "ReplacedStuckPod"
            for e in kubectl.get("events", namespace=namespace)
            if e["involvedObject"]["name"] == name
        )

    if server_minor(kubectl) >= 37:
        # The StatefulSet controller replaces every unavailable old-revision pod of a Parallel set
        # first, blip's too: neither rollout is held, and the operator never touches blip's pod.
        wait_for("blip's pod replaced by its StatefulSet", lambda: uid("blip") not in (None, uids["blip"]), 60)
        for name in ("dud", "blip"):
            group_ready(kubectl, name, namespace)
        assert not replaced_by_us("blip")
        return
    blip = kubectl.get("pod", "blip-web-0", namespace)
    time.sleep(5)
    assert uid("blip") == uids["blip"], f"blip-web-0 was Ready once and must be left alone: {blip.get('status')}"
    assert replaced_by_us("dud")


def server_minor(kubectl: Kubectl) -> int:
    version = json.loads(kubectl.run("version", "-o", "json").stdout)["serverVersion"]
    return int(version["minor"].rstrip("+"))


def test_a_coordinated_policy_of_the_groups_name_holds_its_max_skew(kubectl: Kubectl, operator, namespace: str):
    # decode's new template cannot be scheduled, so decode never advances: under the policy's maxSkew
    # of 25%, prefill may take one pod of four onto the new image and no more. Without the policy
    # prefill would roll all four.
    def group(decode_spec: dict) -> dict:
        manifest = pd_group("policed", "example.com/app:v1", 4, None)
        prefill, decode = manifest["spec"]["roles"]
        decode["template"]["spec"].update(decode_spec)
        return manifest

    kubectl.apply(group({}), namespace)
    group_ready(kubectl, "policed", namespace)
    policy = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "CoordinatedPolicy",
        "metadata": {"name": "policed"},
        "spec": {
            "policies": [
                {"name": "pd", "roles": ["prefill", "decode"], "strategy": {"rollingUpdate": {"maxSkew": "25%"}}}
            ]
        },
    }
    kubectl.apply(policy, namespace)
    wait_for(
        "the policy in force",
        lambda: (
            (condition(kubectl.get("rbg", "policed", namespace), "CoordinatedPolicyApplied") or {}).get("status")
            == "True"
        ),
        30,
    )
    stuck = group({"nodeSelector": {"example.com/no-such-node": "true"}})
    stuck["spec"]["roles"][0]["template"]["spec"]["containers"][0]["image"] = "example.com/app:v2"
    kubectl.apply(stuck, namespace)
    most = 0.0
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        share = fractions(
            kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}=policed"), "example.com/app:v2", 4
        )
        most = max(most, share["prefill"])
        time.sleep(0.3)
    assert most == 0.25, f"prefill reached {most:.0%} of the new image while decode stayed at 0%"

    # A rule the operator cannot use is named on the group.
    policy["spec"]["policies"][0]["roles"] = ["prefil", "decode"]
    kubectl.apply(policy, namespace)
    refused = wait_for(
        "the policy refused",
        lambda: (
            (c := condition(kubectl.get("rbg", "policed", namespace), "CoordinatedPolicyApplied"))
            and c["status"] == "False"
            and c
        ),
        30,
    )
    assert "spec.policies[0].roles: no role prefil" in refused["message"]


def test_a_coordinated_policy_partition_holds_role_instance_set_ordinals_through_a_rollout(
    kubectl: Kubectl, operator, namespace: str
):
    # v1alpha2's default workload, two roles under one policy: a partition of 2 keeps instances 0 and 1 of
    # both on the old image while 2 and 3 take the new one (a policy speaks in shares: 50% of 4).
    def group(image: str) -> dict:
        template = {"spec": {"containers": [{"name": "main", "image": image}]}}
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "held"},
            "spec": {
                "roles": [
                    {"name": name, "replicas": 4, "standalonePattern": {"template": template}}
                    for name in ("prefill", "decode")
                ]
            },
        }

    kubectl.apply(group("example.com/app:v1"), namespace)
    group_ready(kubectl, "held", namespace)
    policy = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "CoordinatedPolicy",
        "metadata": {"name": "held"},
        "spec": {
            "policies": [
                {
                    "name": "pd",
                    "roles": ["prefill", "decode"],
                    "strategy": {"rollingUpdate": {"partition": "50%", "maxUnavailable": "50%"}},
                }
            ]
        },
    }
    kubectl.apply(policy, namespace)
    wait_for(
        "the policy in force",
        lambda: (
            (condition(kubectl.get("rbg", "held", namespace), "CoordinatedPolicyApplied") or {}).get("status") == "True"
        ),
        30,
    )
    kubectl.apply(group("example.com/app:v2"), namespace)

    def images() -> dict[str, str]:
        return {
            p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
            for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}=held")
            if not p["metadata"].get("deletionTimestamp")
        }

    want = {f"held-{r}-{i}": f"example.com/app:v{1 if i < 2 else 2}" for r in ("prefill", "decode") for i in range(4)}
    wait_for("ordinals 2 and 3 on the new image, 0 and 1 held", lambda: images() == want, 90)
    time.sleep(5)
    assert images() == want, "the partition holds"
