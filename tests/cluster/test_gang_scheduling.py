"""Gang scheduling with the real schedulers on kwok GPU nodes: all pods of a group placed or none."""

from __future__ import annotations

import json
import time

import pytest

from localcluster.cluster import node_shape
from tests.support.kubectl import Kubectl, wait_for

GPUS_PER_NODE = int(node_shape()["capacity"]["nvidia.com/gpu"])
NATIVE = {"rolebasedgroup.workloads.x-k8s.io/gang-scheduler": "kubernetes"}
MINIMUMS = "rolebasedgroup.workloads.x-k8s.io/gang-role-minimums"


def gpu_group(name: str, pods: int, policy: dict | None, annotations: dict | None = None) -> dict:
    """Pods that each take a whole node's GPUs, split over two roles (the gang spans roles)."""
    container = {
        "name": "main",
        "image": "example.com/llm:v1",
        "resources": {"limits": {"nvidia.com/gpu": str(GPUS_PER_NODE)}},
    }
    spec: dict = {
        "roles": [
            {"name": "prefill", "replicas": pods - 1, "template": {"spec": {"containers": [container]}}},
            {"name": "decode", "replicas": 1, "template": {"spec": {"containers": [container]}}},
        ]
    }
    if policy is not None:
        spec["podGroupPolicy"] = policy
    meta = {"name": name, **({"annotations": annotations} if annotations else {})}
    return {"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": meta, "spec": spec}


def bound(kubectl: Kubectl, namespace: str, group: str) -> list[dict]:
    pods = kubectl.get("pods", namespace=namespace, selector=f"rolebasedgroup.workloads.x-k8s.io/name={group}")
    return [p for p in pods if p["spec"].get("nodeName")]


def gpu_requests(pod: dict) -> int:
    return sum(
        int(((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
        for c in pod["spec"]["containers"]
    )


@pytest.fixture
def free_nodes(kubectl: Kubectl, namespace: str) -> int:
    """How many GPU nodes have all their GPUs free, once other tests' pods have gone.

    Pods that are not the tests' (the demo's, a user's) stay where they are; the nodes they
    hold GPUs on are simply not counted, so the arithmetic holds on a shared cluster.
    """

    def holding() -> dict[str, str]:
        return {
            p["spec"]["nodeName"]: p["metadata"]["namespace"]
            for p in kubectl.get("pods", all_namespaces=True)
            if p["spec"].get("nodeName") and gpu_requests(p) and p["status"].get("phase") not in ("Succeeded", "Failed")
        }

    def tests_done() -> bool:
        return not any(ns.startswith(("t-", "iso-")) and ns != namespace for ns in holding().values())

    wait_for("GPUs free of other tests' pods", tests_done, 90)
    nodes = [
        n["metadata"]["name"]
        for n in kubectl.get("nodes", selector="type=kwok")
        if int(n["status"]["allocatable"].get("nvidia.com/gpu", 0)) == GPUS_PER_NODE
    ]
    free = len(set(nodes) - set(holding()))
    if free < 3:
        pytest.fail(
            f"only {free} GPU nodes are wholly free; the gang tests need 3 (pods of {sorted(set(holding().values()))} "
            "hold GPUs on the others): delete those groups or `make cluster-down`"
        )
    return free


def test_oversized_gang_gets_no_pod_bound(kubectl: Kubectl, operator, namespace: str, free_nodes: int):
    pods = free_nodes + 1  # one whole-node pod more than the free nodes can hold
    kubectl.apply(gpu_group("big", pods, {"kubeScheduling": {"scheduleTimeoutSeconds": 10}}), namespace)
    podgroup = wait_for("PodGroup big", lambda: kubectl.get("podgroups.scheduling.x-k8s.io", "big", namespace), 30)
    assert podgroup["spec"] == {"minMember": pods, "scheduleTimeoutSeconds": 10}
    assert podgroup["metadata"]["ownerReferences"][0]["name"] == "big"
    wait_for(
        "all pods created",
        lambda: (
            len(kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=big")) == pods
        ),
        30,
    )
    for pod in kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=big"):
        assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "big"
        assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
    time.sleep(20)  # past the permit timeout: a partial gang would have been bound by now
    assert bound(kubectl, namespace, "big") == []


def test_same_group_without_gang_gets_some_pods_bound(kubectl: Kubectl, operator, namespace: str, free_nodes: int):
    """The control: without podGroupPolicy the scheduler places what fits, so the test above can fail."""
    pods = free_nodes + 1
    kubectl.apply(gpu_group("big", pods, None), namespace)
    placed = wait_for("some pods bound", lambda: bound(kubectl, namespace, "big"), 60)
    assert 0 < len(placed) < pods
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "big", namespace) is None


def test_fitting_gang_gets_every_pod_bound_and_turning_it_off_cleans_up(
    kubectl: Kubectl, operator, namespace: str, free_nodes: int
):
    pods = free_nodes - 1
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
    wait_for(
        "minMember 2",
        lambda: (
            (kubectl.get("podgroups.scheduling.x-k8s.io", "grow", namespace) or {}).get("spec", {}).get("minMember")
            == 2
        ),
        30,
    )
    group["spec"]["roles"][0]["replicas"] = 3
    kubectl.apply(group, namespace)
    wait_for(
        "minMember 4",
        lambda: kubectl.get("podgroups.scheduling.x-k8s.io", "grow", namespace)["spec"]["minMember"] == 4,
        30,
    )
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "grow", namespace)["spec"]["scheduleTimeoutSeconds"] == 60


def test_volcano_podgroup_and_pod_annotations(kubectl: Kubectl, operator, namespace: str):
    group = gpu_group("vc", 2, {"volcanoScheduling": {"queue": "inference", "priorityClassName": "high"}})
    group["spec"]["roles"].append(
        {
            "name": "lws",
            "replicas": 2,
            "workload": {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
            "leaderWorkerSet": {"size": 3},
            "template": {"spec": {"containers": [{"name": "c", "image": "example.com/c"}]}},
        }
    )
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


def native_objects(kubectl: Kubectl, namespace: str) -> dict[tuple[str, str], dict]:
    """The native gang objects in the namespace, by (kind, name)."""
    found = {}
    for resource in (
        "workloads.scheduling.k8s.io",
        "podgroups.scheduling.k8s.io",
        "compositepodgroups.scheduling.k8s.io",
    ):
        for obj in kubectl.get(resource, namespace=namespace):
            found[(obj["kind"], obj["metadata"]["name"])] = obj
    return found


def min_count(obj: dict) -> int:
    return obj["spec"]["schedulingPolicy"]["gang"]["minCount"]


def role_bound(kubectl: Kubectl, namespace: str, group: str, role: str) -> int:
    return sum(
        1
        for p in bound(kubectl, namespace, group)
        if p["metadata"]["labels"]["rolebasedgroup.workloads.x-k8s.io/role"] == role
    )


def test_native_kubernetes_gang_scheduling(kubectl: Kubectl, operator, namespace: str, free_nodes: int):
    """The stock kube-scheduler of Kubernetes 1.37 with Workload and PodGroup v1beta1: no pod of an
    oversized gang is bound; shrunk to fit, the gang follows and binds whole."""
    pods = free_nodes + 1
    kubectl.apply(gpu_group("native", pods, {"kubeScheduling": {}}, NATIVE), namespace)
    objects = wait_for(
        "Workload and PodGroup", lambda: (o := native_objects(kubectl, namespace)) and len(o) == 2 and o, 30
    )
    workload, pod_group = objects[("Workload", "native")], objects[("PodGroup", "native")]
    assert workload["apiVersion"] == pod_group["apiVersion"] == "scheduling.k8s.io/v1beta1"
    # (1.37 returns an unset schedulingConstraints as null)
    assert [{k: v for k, v in t.items() if v is not None} for t in workload["spec"]["podGroupTemplates"]] == [
        {"name": "all", "schedulingPolicy": {"gang": {"minCount": pods}}}
    ]
    assert pod_group["spec"]["workloadRef"] == {"workloadName": "native", "templateName": "all"}
    assert min_count(pod_group) == pods
    assert kubectl.get("podgroups.scheduling.x-k8s.io", "native", namespace) is None
    created = wait_for(
        "all pods created",
        lambda: (
            (p := kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=native"))
            and len(p) == pods
            and p
        ),
        30,
    )
    assert all(p["spec"]["schedulingGroup"] == {"podGroupName": "native"} for p in created)
    assert all(p["spec"]["schedulerName"] == "default-scheduler" for p in created)
    time.sleep(15)
    assert bound(kubectl, namespace, "native") == []

    # Shrunk to fit, the same gang's minimum follows and it is placed whole.
    smaller = gpu_group("native", pods - 2, {"kubeScheduling": {}}, NATIVE)
    kubectl.apply(smaller, namespace)
    wait_for("every pod of the smaller gang bound", lambda: len(bound(kubectl, namespace, "native")) == pods - 2, 90)
    assert min_count(kubectl.get("podgroups.scheduling.k8s.io", "native", namespace)) == pods - 2

    # Without the policy, the objects go and the pods leave the gang.
    smaller["spec"].pop("podGroupPolicy")
    kubectl.apply(smaller, namespace)
    wait_for("native gang objects deleted", lambda: native_objects(kubectl, namespace) == {}, 90)
    template = kubectl.get("statefulset", "native-prefill", namespace)["spec"]["template"]
    assert "schedulingGroup" not in template["spec"]


def per_role_group(name: str, prefill: int, minimums: dict) -> dict:
    """Prefill pods take a whole node's GPUs; decode pods (2) take none, so they always fit: whether
    they bind shows what the composite gang decides, not what capacity does."""
    group = gpu_group(name, prefill + 1, {"kubeScheduling": {}}, {**NATIVE, MINIMUMS: json.dumps(minimums)})
    group["spec"]["roles"][1] = {
        "name": "decode",
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "main", "image": "example.com/llm:v1"}]}},
    }
    return group


def test_native_per_role_minimums(kubectl: Kubectl, operator, namespace: str, free_nodes: int):
    """Per-role minimums through a CompositePodGroup: a group never starts with less than the minimum
    of every role, starts once each minimum fits, and the minimums follow scaling."""
    prefill = free_nodes + 2  # more prefill pods than GPU nodes
    short = per_role_group("short", prefill, {"prefill": free_nodes + 1, "decode": 1})
    kubectl.apply(short, namespace)
    expected = {
        ("Workload", "short"),
        ("CompositePodGroup", "short"),
        ("PodGroup", "short-prefill"),
        ("PodGroup", "short-decode"),
    }
    objects = wait_for(
        "the composite gang", lambda: (o := native_objects(kubectl, namespace)) and set(o) == expected and o, 30
    )
    assert objects[("CompositePodGroup", "short")]["spec"]["schedulingPolicy"] == {"gang": {"minGroupCount": 2}}
    assert objects[("PodGroup", "short-prefill")]["spec"]["parentCompositePodGroupName"] == "short"
    assert (min_count(objects[("PodGroup", "short-prefill")]), min_count(objects[("PodGroup", "short-decode")])) == (
        free_nodes + 1,
        1,
    )
    wait_for(
        "every pod created",
        lambda: (
            len(kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=short"))
            == prefill + 2
        ),
        30,
    )
    for pod in kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=short"):
        role = pod["metadata"]["labels"]["rolebasedgroup.workloads.x-k8s.io/role"]
        assert pod["spec"]["schedulingGroup"] == {"podGroupName": f"short-{role}"}
    applied = wait_for(
        "GangRoleMinimumsApplied",
        lambda: next(
            (
                c
                for c in (kubectl.get("rbg", "short", namespace).get("status") or {}).get("conditions", [])
                if c["type"] == "GangRoleMinimumsApplied"
            ),
            None,
        ),
        30,
    )
    assert (applied["status"], applied["reason"]) == ("True", "Applied")
    # Prefill's minimum needs one GPU node more than there is: no pod binds, not even decode's, which fit.
    time.sleep(15)
    assert bound(kubectl, namespace, "short") == []
    kubectl.run("delete", "rbg", "short", f"-n={namespace}", "--wait=true")
    wait_for(
        "short's pods gone",
        lambda: not kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=short"),
        60,
    )

    # Minimums that fit: the group starts with at least each role's minimum, though not every pod fits.
    group = per_role_group("roles", prefill, {"prefill": free_nodes - 1, "decode": "50%"})
    kubectl.apply(group, namespace)
    wait_for(
        "the minimum of each role bound",
        lambda: (
            role_bound(kubectl, namespace, "roles", "prefill") >= free_nodes - 1
            and role_bound(kubectl, namespace, "roles", "decode") >= 1
        ),
        90,
    )
    assert min_count(kubectl.get("podgroups.scheduling.k8s.io", "roles-decode", namespace)) == 1

    # A percentage follows the role's replicas.
    group["metadata"]["annotations"][MINIMUMS] = json.dumps({"prefill": "50%", "decode": 1})
    kubectl.apply(group, namespace)
    wait_for(
        "prefill's minimum is half its replicas",
        lambda: min_count(kubectl.get("podgroups.scheduling.k8s.io", "roles-prefill", namespace)) == (prefill + 1) // 2,
        30,
    )
    group["spec"]["roles"][0]["replicas"] = prefill + 2
    kubectl.apply(group, namespace)
    wait_for(
        "prefill's minimum follows its replicas",
        lambda: min_count(kubectl.get("podgroups.scheduling.k8s.io", "roles-prefill", namespace)) == (prefill + 3) // 2,
        30,
    )

    # Without the policy, the Workload, the composite and the role pod groups go. (A PodGroup stays,
    # deleting, while pods still name it: Kubernetes' protection. So the pods must fit to roll.)
    group["spec"].pop("podGroupPolicy")
    group["spec"]["roles"][0]["replicas"] = free_nodes - 1
    kubectl.apply(group, namespace)
    wait_for("native gang objects deleted", lambda: native_objects(kubectl, namespace) == {}, 120)
