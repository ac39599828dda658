"""RoleBasedGroupWarmup on the real control plane, with kwok's nodes.

kwok has no kubelet: it turns a pod Running, and its pod-complete stage finishes only pods a Job
owns, so a warmup pod would run for ever. The tests therefore write the end of a pod themselves,
as a kubelet would, through the pod's status subresource (`finish`). Everything else (the
operator's pods, status, Events, deletions, garbage collection) is the real thing.
"""

from __future__ import annotations

import hashlib
import json

from tests.support.kubectl import Kubectl, condition, group_ready, wait_for

V2 = "workloads.x-k8s.io/v1alpha2"
WARMUPS = "rolebasedgroupwarmups.workloads.x-k8s.io"
PRELOAD = {"imagePreload": {"images": ["example.com/model-cache:v1"]}}


def warmup(name: str, spec: dict) -> dict:
    return {"apiVersion": V2, "kind": "RoleBasedGroupWarmup", "metadata": {"name": name}, "spec": spec}


def kwok_nodes(kubectl: Kubectl) -> list[str]:
    return sorted(n["metadata"]["name"] for n in kubectl.get("nodes", selector="type=kwok"))


def warmup_pods(kubectl: Kubectl, name: str, namespace: str) -> list[dict]:
    return [
        p
        for p in kubectl.get("pods", namespace=namespace, selector=f"workloads.x-k8s.io/warmup-name={name}")
        if not p["metadata"].get("deletionTimestamp")
    ]


def running(kubectl: Kubectl, name: str, namespace: str, count: int) -> list[dict]:
    """The warmup's `count` pods once kwok has them all Running (so that a kubelet's end of them
    is not overtaken by kwok's start)."""
    return wait_for(
        f"{count} Running pods of warmup {name}",
        lambda: (
            len(pods := warmup_pods(kubectl, name, namespace)) == count
            and all((p.get("status") or {}).get("phase") == "Running" for p in pods)
            and pods
        ),
        60,
    )


def finish(kubectl: Kubectl, pod: dict, phase: str) -> None:
    """What the node's kubelet would write when the pod's containers exit."""
    kubectl.run(
        "patch",
        "pod",
        pod["metadata"]["name"],
        f"--namespace={pod['metadata']['namespace']}",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": phase}}),
    )


def phase_of(kubectl: Kubectl, name: str, namespace: str, phase: str, timeout: float = 60) -> dict:
    return wait_for(
        f"warmup {name} {phase}",
        lambda: (w := kubectl.get(WARMUPS, name, namespace)) and (w.get("status") or {}).get("phase") == phase and w,
        timeout,
    )


def events(kubectl: Kubectl, name: str, namespace: str) -> list[tuple[str, str]]:
    return [
        (e["type"], e["reason"])
        for e in kubectl.get("events", namespace=namespace)
        if e["involvedObject"].get("kind") == "RoleBasedGroupWarmup" and e["involvedObject"]["name"] == name
    ]


def test_a_warmup_runs_one_pod_per_node_retries_a_failed_node_and_completes(kubectl: Kubectl, operator, namespace):
    nodes = kwok_nodes(kubectl)[:3]
    spec = {
        "targetNodes": {"nodeNames": nodes, **PRELOAD},
        "policies": {"backoffLimitPerNode": 2, "maxFailedNodes": 0},
        "tolerations": [{"key": "example.com/dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    }
    kubectl.apply(warmup("cache", spec), namespace)
    pods = running(kubectl, "cache", namespace, 3)
    uid = kubectl.get(WARMUPS, "cache", namespace)["metadata"]["uid"]
    by_node = {p["metadata"]["labels"]["workloads.x-k8s.io/node-name"]: p for p in pods}
    assert sorted(by_node) == nodes
    for node, pod in by_node.items():
        meta, pod_spec = pod["metadata"], pod["spec"]
        assert meta["name"].startswith("cache-") and meta["labels"]["workloads.x-k8s.io/warmup-uid"] == uid
        assert [(o["kind"], o["uid"], o["controller"]) for o in meta["ownerReferences"]] == [
            ("RoleBasedGroupWarmup", uid, True)
        ]
        assert (pod_spec["restartPolicy"], pod_spec["nodeSelector"], pod_spec["nodeName"]) == (
            "Never",
            {"kubernetes.io/hostname": node},
            node,
        )
        assert spec["tolerations"][0] in pod_spec["tolerations"]
        (container,) = pod_spec["containers"]
        assert (container["name"], container["command"], container["imagePullPolicy"]) == (
            "image-preload-0",
            ["sh", "-c", "exit 0"],
            "IfNotPresent",
        )

    # One node's pod fails: after the first backoff (10 s) that node gets a second pod.
    failed = by_node[nodes[0]]
    finish(kubectl, failed, "Failed")
    retry = wait_for(
        f"a second pod on {nodes[0]}",
        lambda: [
            p
            for p in warmup_pods(kubectl, "cache", namespace)
            if p["metadata"]["labels"]["workloads.x-k8s.io/node-name"] == nodes[0]
            and p["metadata"]["uid"] != failed["metadata"]["uid"]
        ],
        45,
    )
    assert kubectl.get("pod", failed["metadata"]["name"], namespace)["status"]["phase"] == "Failed"  # kept: the count
    assert kubectl.get(WARMUPS, "cache", namespace)["status"]["phase"] == "Running"

    wait_for(
        f"the retry on {nodes[0]} Running",
        lambda: kubectl.get("pod", retry[0]["metadata"]["name"], namespace)["status"].get("phase") == "Running",
    )
    for pod in [retry[0], by_node[nodes[1]], by_node[nodes[2]]]:
        finish(kubectl, pod, "Succeeded")
    done = phase_of(kubectl, "cache", namespace, "Completed")
    status = done["status"]
    assert (status["desired"], status["succeeded"], status["failed"], status["active"]) == (3, 3, 0, 0)
    assert status["startTime"] <= status["completionTime"]
    complete = condition(done, "Complete")
    assert (complete["status"], complete["reason"]) == ("True", "WarmupCompleted")
    wait_for("the WarmupCompleted Event", lambda: ("Normal", "WarmupCompleted") in events(kubectl, "cache", namespace))
    columns = kubectl.run("get", "rbgwarmup", "cache", f"--namespace={namespace}").stdout.split()
    assert columns[:5] == ["NAME", "PHASE", "DESIRED", "SUCCEEDED", "FAILED"] and "Completed" in columns


def test_a_warmup_past_its_global_timeout_stops_its_pods_and_fails(kubectl: Kubectl, operator, namespace):
    node = kwok_nodes(kubectl)[0]
    spec = {"targetNodes": {"nodeNames": [node], **PRELOAD}, "policies": {"globalTimeoutSeconds": 8}}
    kubectl.apply(warmup("slow", spec), namespace)
    (pod,) = running(kubectl, "slow", namespace, 1)  # kwok keeps it Running: it never finishes
    failed = phase_of(kubectl, "slow", namespace, "Failed", timeout=40)
    reason = condition(failed, "Failed")
    assert (reason["status"], reason["reason"]) == ("True", "GlobalTimeoutExceeded")
    assert failed["status"]["active"] == 0
    wait_for("the timed-out pod gone", lambda: kubectl.get("pod", pod["metadata"]["name"], namespace) is None, 30)
    wait_for("the WarmupFailed Event", lambda: ("Warning", "WarmupFailed") in events(kubectl, "slow", namespace))


def test_a_warmup_that_matches_no_node_completes_at_once(kubectl: Kubectl, operator, namespace):
    spec = {"targetNodes": {"nodeSelector": {"example.com/no-such-pool": "x"}, **PRELOAD}}
    kubectl.apply(warmup("nowhere", spec), namespace)
    done = phase_of(kubectl, "nowhere", namespace, "Completed", timeout=20)
    assert (condition(done, "Complete") or {}).get("reason") == "NoNodesMatched"
    assert done["status"]["desired"] == 0 and warmup_pods(kubectl, "nowhere", namespace) == []


def test_a_finished_warmup_is_deleted_after_its_ttl_and_its_pods_with_it(kubectl: Kubectl, operator, namespace):
    node = kwok_nodes(kubectl)[1]
    spec = {"targetNodes": {"nodeNames": [node], **PRELOAD}, "policies": {"ttlSecondsAfterFinished": 3}}
    kubectl.apply(warmup("brief", spec), namespace)
    (pod,) = running(kubectl, "brief", namespace, 1)
    finish(kubectl, pod, "Succeeded")
    phase_of(kubectl, "brief", namespace, "Completed")
    wait_for("the warmup deleted by its TTL", lambda: kubectl.get(WARMUPS, "brief", namespace) is None, 30)
    wait_for("its pod garbage-collected", lambda: kubectl.get("pod", pod["metadata"]["name"], namespace) is None, 60)


def test_a_warmup_of_a_group_warms_the_nodes_of_its_pods_with_each_roles_actions(kubectl: Kubectl, operator, namespace):
    template = {"spec": {"containers": [{"name": "main", "image": "example.com/app:v1"}]}}
    group = {
        "apiVersion": V2,
        "kind": "RoleBasedGroup",
        "metadata": {"name": "pd"},
        "spec": {
            "roles": [
                {"name": "prefill", "replicas": 2, "standalonePattern": {"template": template}},
                {"name": "decode", "replicas": 1, "standalonePattern": {"template": template}},
            ]
        },
    }
    kubectl.apply(group, namespace)
    group_ready(kubectl, "pd", namespace)
    placed: dict[str, set[str]] = {}
    for p in kubectl.get("pods", namespace=namespace, selector="rbg.workloads.x-k8s.io/group-name=pd"):
        placed.setdefault(p["spec"]["nodeName"], set()).add(p["metadata"]["labels"]["rbg.workloads.x-k8s.io/role-name"])
    spec = {
        "targetRoleBasedGroup": {
            "name": "pd",
            "roles": {
                "prefill": {"imagePreload": {"images": ["example.com/prefill:v1", "example.com/shared:v1"]}},
                "decode": {"imagePreload": {"images": ["example.com/shared:v1", "example.com/decode:v1"]}},
            },
        }
    }
    kubectl.apply(warmup("pd-images", spec), namespace)
    pods = running(kubectl, "pd-images", namespace, len(placed))
    wanted = {
        "prefill": ["example.com/prefill:v1", "example.com/shared:v1"],
        "decode": ["example.com/shared:v1", "example.com/decode:v1"],
    }
    for pod in pods:
        node = pod["spec"]["nodeName"]
        expected: list[str] = []
        for role in ("decode", "prefill"):  # by role name
            if role in placed[node]:
                expected += [i for i in wanted[role] if i not in expected]
        assert [c["image"] for c in pod["spec"]["containers"]] == expected, (node, placed[node])
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(placed)


def test_admission_refuses_what_the_contract_refuses_with_its_messages(kubectl: Kubectl, namespace):
    cases = [
        ({}, "either targetNodes or targetRoleBasedGroup must be specified"),
        (
            {
                "targetNodes": {"nodeNames": ["a"], **PRELOAD},
                "targetRoleBasedGroup": {"name": "g", "roles": {"r": PRELOAD}},
            },
            "targetNodes and targetRoleBasedGroup are mutually exclusive",
        ),
        (
            {"targetNodes": {"nodeNames": ["a"], **PRELOAD}, "policies": {"maxFailedNodes": 1}},
            "backoffLimitPerNode must be set when maxFailedNodes is specified",
        ),
        ({"targetNodes": {"nodeNames": ["a"]}}, "at least one of imagePreload or customizedAction must be specified"),
        (
            {"targetRoleBasedGroup": {"name": "g", "roles": {"r": {}}}},
            "at least one of imagePreload or customizedAction must be specified",
        ),
        ({"targetNodes": PRELOAD}, "exactly one of nodeNames or nodeSelector must be specified"),
    ]
    for spec, message in cases:
        kubectl.refuses(warmup("bad", spec), namespace, [message], json.dumps(spec))
    named = {"targetNodes": {"nodeNames": ["a"], **PRELOAD}}
    kubectl.refuses(warmup("w" * 64, named), namespace, ["at most 63 characters"], "a 64-character name")
    result = kubectl.run(
        "create",
        "--dry-run=server",
        f"--namespace={namespace}",
        "-f",
        "-",
        stdin=json.dumps(warmup("good", {"targetNodes": {"nodeSelector": {"type": "kwok"}, **PRELOAD}})),
    )
    assert "created (server dry run)" in result.stdout


def test_a_node_name_longer_than_a_label_value_gets_a_pod_the_api_server_accepts(kubectl: Kubectl, operator, namespace):
    """A 253-character node name (allowed for nodes) cannot be a label or nodeSelector value: the
    pod carries a shortened, hashed label, is pinned by the node's name instead, and later passes
    find it by that label (no second pod)."""
    long_name = ".".join(["n" * 63] * 4)[:253]
    node = kwok_nodes(kubectl)[0]
    kubectl.apply(warmup("long", {"targetNodes": {"nodeNames": [long_name, node], **PRELOAD}}), namespace)
    pods = wait_for("two warmup pods", lambda: len(p := warmup_pods(kubectl, "long", namespace)) == 2 and p, 60)
    by_label = {p["metadata"]["labels"]["workloads.x-k8s.io/node-name"]: p for p in pods}
    shortened = f"{long_name[:54].rstrip('-._')}-{hashlib.sha256(long_name.encode()).hexdigest()[:8]}"
    assert sorted(by_label) == sorted([shortened, node])
    pinned = by_label[shortened]["spec"]
    assert "nodeSelector" not in pinned and not pinned.get("nodeName")  # no such node: it waits unscheduled
    term = pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [long_name]}]}]
    finish(kubectl, running_on(kubectl, "long", namespace, node), "Succeeded")
    status = wait_for(
        "the warmup counts one node done and one at work",
        lambda: (
            (s := kubectl.get(WARMUPS, "long", namespace).get("status") or {})
            and (s.get("phase"), s.get("desired"), s.get("active"), s.get("succeeded")) == ("Running", 2, 1, 1)
            and s
        ),
        30,
    )
    assert status["failed"] == 0
    assert {p["metadata"]["uid"] for p in warmup_pods(kubectl, "long", namespace)} == {
        p["metadata"]["uid"] for p in pods
    }, "the pod of the long-named node was found again, not made twice"


def running_on(kubectl: Kubectl, name: str, namespace: str, node: str) -> dict:
    return wait_for(
        f"the pod of warmup {name} Running on {node}",
        lambda: next(
            (
                p
                for p in warmup_pods(kubectl, name, namespace)
                if (p.get("spec") or {}).get("nodeName") == node and (p.get("status") or {}).get("phase") == "Running"
            ),
            None,
        ),
        60,
    )
