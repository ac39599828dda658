"""Gang scheduling with the real schedulers on kwok GPU nodes: all pods of a group placed or none."""

from __future__ import annotations

import time

import pytest

from localcluster.cluster import node_shape
from tests.support.kubectl import Kubectl, wait_for

GPUS_PER_NODE = int(node_shape()["capacity"]["nvidia.com/gpu"])
CLUSTER_GPUS = GPUS_PER_NODE * node_shape()["count"]
NATIVE = {"rolebasedgroup.workloads.x-k8s.io/gang-scheduler": "kubernetes"}


def gpu_group(name: str, pods: int, policy: dict | None, annotations: dict | None = None) -> dict:
    """Pods that each take a whole node's GPUs, split over two roles (the gang spans roles)."""
    container = {"name": "main", "image": "example.com/llm:v1",
                 "resources": {"limits": {"nvidia.com/gpu": str(GPUS_PER_NODE)}}}
    spec: dict = {"roles": [
        {"name": "prefill", "replicas": pods - 1, "template": {"spec": {"containers": [container]}}},
        {"name": "decode", "replicas": 1, "template": {"spec": {"containers": [container]}}},
    ]}
    if policy is not None:
        spec["podGroupPolicy"] = policy
    meta = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": meta, "spec": spec}


def bound(kubectl: Kubectl, namespace: str, group: str) -> list[dict]:
    pods = kubectl.get("pods", namespace=namespace, selector=f"rolebasedgroup.workloads.x-k8s.io/name={group}")
    return [p for p in pods if p["spec"].get("nodeName")]


@pytest.fixture
def free_gpus(kubectl: Kubectl):
    """Wait until no pod of another test holds GPUs, so the capacity arithmetic holds."""
    def gpu_pods() -> list[str]:
        return [p["metadata"]["name"] for p in kubectl.get("pods", all_namespaces=True)
                if p["spec"].get("nodeName") and any("nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
                                                     for c in p["spec"]["containers"])]
    wait_for("GPUs free of other tests' pods", lambda: not gpu_pods(), 90)


def test_oversized_gang_gets_no_pod_bound(kubectl: Kubectl, operator, namespace: str, free_gpus):
    pods = CLUSTER_GPUS // GPUS_PER_NODE + 1  # one pod more than the cluster can hold
    kubectl.apply(gpu_group("big", pods, {"kubeScheduling": {"scheduleTimeoutSeconds": 10}}), namespace)
    podgroup = wait_for("PodGroup big", lambda: kubectl.get("podgroups.scheduling.x-k8s.io", "big", namespace), 30)
    assert podgroup["spec"] == {"minMember": pods, "scheduleTimeoutSeconds": 10}
    assert podgroup["metadata"]["ownerReferences"][0]["name"] == "big"
    wait_for("all pods created", lambda: len(kubectl.get(
        "pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=big")) == pods, 30)
    for pod in kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=big"):
        assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "big"
        assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
    time.sleep(20)  # past the permit timeout: a partial gang would have been bound by now
    assert bound(kubectl, namespace, "big") == []


def test_same_group_without_gang_gets_some_pods_bound(kubectl: Kubectl, operator, namespace: str, free_gpus):
    """The control: without podGroupPolicy the scheduler places what fits, so the test above can fail."""
    pods = CLUSTER_GPUS // GPUS_PER_NODE + 1
    kubectl.apply(gpu_group("big", pods, None), namespace)
    placed = wait_for("some pods bound", lambda: bound(kubectl, namespace, "big"), 60)
    assert 0 < len(placed) < pods
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "big", namespace) is None


def test_fitting_gang_gets_every_pod_bound_and_turning_it_off_cleans_up(kubectl: Kubectl, operator, namespace: str,
                                                                        free_gpus):
    pods = CLUSTER_GPUS // GPUS_PER_NODE - 1
    group = gpu_group("fits", pods, {"kubeScheduling": {"scheduleTimeoutSeconds": 30}})
    kubectl.apply(group, namespace)
    wait_for("every pod bound", lambda: len(bound(kubectl, namespace, "fits")) == pods, 60)

    group["spec"].pop("podGroupPolicy")
    kubectl.apply(group, namespace)
    wait_for("PodGroup deleted", lambda: kubectl.get("podgroups.scheduling.x-k8s.io", "fits", namespace) is None, 30)
    sts = kubectl.get("statefulset", "fits-prefill", namespace)
    assert "scheduling.x-k8s.io/pod-group" not in sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["template"]["spec"].get("schedulerName", "default-scheduler") == "default-scheduler"


def test_min_member_follows_replicas(kubectl: Kubectl, operator, namespace: str):
    group = gpu_group("grow", 2, {"kubeScheduling": {}})
    kubectl.apply(group, namespace)
    wait_for("minMember 2", lambda: (kubectl.get("podgroups.scheduling.x-k8s.io", "grow", namespace) or {})
             .get("spec", {}).get("minMember") == 2, 30)
    group["spec"]["roles"][0]["replicas"] = 3
    kubectl.apply(group, namespace)
    wait_for("minMember 4", lambda: kubectl.get("podgroups.scheduling.x-k8s.io", "grow", namespace)
             ["spec"]["minMember"] == 4, 30)
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "grow", namespace)["spec"]["scheduleTimeoutSeconds"] == 60


def test_volcano_podgroup_and_pod_annotations(kubectl: Kubectl, operator, namespace: str):
    group = gpu_group("vc", 2, {"volcanoScheduling": {"queue": "inference", "priorityClassName": "high"}})
    group["spec"]["roles"].append({
        "name": "lws", "replicas": 2, "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
        "leaderWorkerSet": {"size": 3}, "template": {"spec": {"containers": [{"name": "c", "image": "example.com/c"}]}}})
    kubectl.apply(group, namespace)
    podgroup = wait_for("Volcano PodGroup", lambda: kubectl.get("podgroups.scheduling.volcano.sh", "vc", namespace), 30)
    assert podgroup["spec"]["minMember"] == 1 + 1 + 2 * 3
    assert (podgroup["spec"]["queue"], podgroup["spec"]["priorityClassName"]) == ("inference", "high")
    sts = wait_for("StatefulSet", lambda: kubectl.get("statefulset", "vc-prefill", namespace), 30)
    template = sts["spec"]["template"]
    assert template["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "vc"
    assert template["spec"]["schedulerName"] == "volcano"
    lws = wait_for("LeaderWorkerSet", lambda: kubectl.get("leaderworkerset", "vc-lws", namespace), 30)
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    assert worker["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "vc"


def test_native_kubernetes_gang_scheduling(kubectl: Kubectl, operator, namespace: str, free_gpus):
    """The stock kube-scheduler with the Workload API: no pod of an oversized gang is bound."""
    pods = CLUSTER_GPUS // GPUS_PER_NODE + 1
    kubectl.apply(gpu_group("native", pods, {"kubeScheduling": {}}, NATIVE), namespace)
    workload = wait_for("Workload", lambda: kubectl.get("workloads.scheduling.k8s.io", "native", namespace), 30)
    assert workload["spec"]["podGroups"] == [{"name": "all", "policy": {"gang": {"minCount": pods}}}]
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "native", namespace) is None
    created = wait_for("all pods created", lambda: (p := kubectl.get(
        "pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=native")) and len(p) == pods and p, 30)
    assert all(p["spec"]["workloadRef"] == {"name": "native", "podGroup": "all"} for p in created)
    assert all(p["spec"]["schedulerName"] == "default-scheduler" for p in created)
    time.sleep(15)
    assert bound(kubectl, namespace, "native") == []

    # Shrunk to fit, the same gang is placed whole.
    smaller = gpu_group("native", pods - 2, {"kubeScheduling": {}}, NATIVE)
    kubectl.apply(smaller, namespace)
    wait_for("every pod of the smaller gang bound", lambda: len(bound(kubectl, namespace, "native")) == pods - 2, 90)
