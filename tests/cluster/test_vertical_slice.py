"""First vertical slice: a RoleBasedGroup with one StatefulSet role becomes Ready pods on kwok nodes."""

from __future__ import annotations

from tests.support.kubectl import Kubectl, condition, wait_for

GROUP = {
    "apiVersion": "workloads.x-k8s.io/v1alpha1",
    "kind": "RoleBasedGroup",
    "metadata": {"name": "slice"},
    "spec": {
        "roles": [
            {
                "name": "server",
                "replicas": 2,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "example.com/server:v1",
                                "resources": {"limits": {"nvidia.com/gpu": "1"}},
                            }
                        ]
                    }
                },
            }
        ]
    },
}


def test_statefulset_role_reaches_ready_pods(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(GROUP, namespace)

    sts = wait_for("StatefulSet slice-server", lambda: kubectl.get("statefulset", "slice-server", namespace), 30)
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == "s-slice-server"
    owner = sts["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("RoleBasedGroup", "slice", True)

    group = wait_for(
        "group slice Ready=True",
        lambda: (
            (g := kubectl.get("rbg", "slice", namespace))
            and (condition(g, "Ready") or {}).get("status") == "True"
            and g
        ),
        90,
    )
    assert group["status"]["observedGeneration"] == group["metadata"]["generation"]
    assert group["status"]["roleStatuses"] == [
        {"name": "server", "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}
    ]

    pods = kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/role=server")
    assert sorted(p["metadata"]["name"] for p in pods) == ["slice-server-0", "slice-server-1"]
    for pod in pods:
        assert pod["spec"]["nodeName"].startswith("kwok-")
        assert condition(pod, "Ready")["status"] == "True"

    # `kubectl wait` works on the group, as users and GitOps tools use it.
    kubectl.run("wait", "--for=condition=Ready", "rbg/slice", f"-n={namespace}", "--timeout=10s")
    printed = kubectl.run("get", "rbg", "slice", f"-n={namespace}").stdout
    assert "READY" in printed.splitlines()[0] and "True" in printed.splitlines()[1]
