"""The local control plane is made of real, working components."""

from __future__ import annotations

from localcluster.cluster import node_shape
from tests.support.kubectl import Kubectl, wait_for


def test_fake_gpu_nodes_are_ready_with_the_declared_shape(kubectl: Kubectl):
    shape = node_shape()
    nodes = [n for n in kubectl.get("nodes") if n["metadata"]["name"].startswith(shape["namePrefix"])]
    assert len(nodes) == shape["count"]
    for node in nodes:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", node["metadata"]["name"]
        for resource in ("nvidia.com/gpu", "rdma/hca", "aliyun/erdma"):
            assert node["status"]["allocatable"][resource] == shape["capacity"][resource]


def test_plain_deployment_gets_ready_pods(kubectl: Kubectl, namespace: str):
    """controller-manager, scheduler and kwok together: Deployment -> ReplicaSet -> bound, Ready pods."""
    kubectl.run("create", "deployment", "web", "--image=example.com/web:1", "--replicas=3", f"-n={namespace}")
    deployment = wait_for(
        "deployment web to have 3 ready replicas",
        lambda: (d := kubectl.get("deployment", "web", namespace)) and d["status"].get("readyReplicas") == 3 and d,
        timeout=60,
    )
    assert deployment["status"]["readyReplicas"] == 3
    pods = kubectl.get("pods", namespace=namespace, selector="app=web")
    assert len(pods) == 3
    assert all(p["spec"].get("nodeName", "").startswith(node_shape()["namePrefix"]) for p in pods)


def test_garbage_collection_cascades_through_owner_references(kubectl: Kubectl, namespace: str):
    kubectl.run("create", "deployment", "gc", "--image=example.com/gc:1", f"-n={namespace}")
    wait_for("replicaset of gc", lambda: kubectl.get("replicasets", namespace=namespace, selector="app=gc"), 30)
    kubectl.delete("deployment", "gc", namespace)
    wait_for(
        "replicaset and pods of gc to be collected",
        lambda: (
            not kubectl.get("replicasets", namespace=namespace, selector="app=gc")
            and not kubectl.get("pods", namespace=namespace, selector="app=gc")
        ),
        60,
    )


def test_third_party_crds_are_served(kubectl: Kubectl):
    for crd in ("leaderworkersets.leaderworkerset.x-k8s.io", "podgroups.scheduling.x-k8s.io"):
        assert kubectl.get("crd", crd) is not None, crd


def test_leaderworkerset_controller_runs_with_its_webhooks(kubectl: Kubectl, namespace: str):
    kubectl.apply(
        {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "metadata": {"name": "lws"},
            "spec": {
                "replicas": 2,
                "leaderWorkerTemplate": {
                    "size": 3,
                    "workerTemplate": {"spec": {"containers": [{"name": "w", "image": "example.com/w:1"}]}},
                },
            },
        },
        namespace,
    )
    pods = wait_for(
        "6 ready LeaderWorkerSet pods",
        lambda: (
            (p := kubectl.get("pods", namespace=namespace, selector="leaderworkerset.sigs.k8s.io/name=lws"))
            and len(p) == 6
            and all(
                (c := [x for x in q["status"].get("conditions", []) if x["type"] == "Ready"])
                and c[0]["status"] == "True"
                for q in p
            )
            and p
        ),
        60,
    )
    # The pod webhook ran: it labels each pod with its group and worker index.
    indexes = sorted(
        (
            q["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/group-index"],
            q["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"],
        )
        for q in pods
    )
    assert indexes == [(g, w) for g in "01" for w in "012"]
