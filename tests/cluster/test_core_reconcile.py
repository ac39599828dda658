"""Core reconcile on the real control plane: role workloads of every kind, discovery, start
order, restoring hand-made changes, zero writes when nothing changes, and cleanup."""

from __future__ import annotations

import hashlib
import time

import yaml

from tests.support.kubectl import Kubectl, condition, wait_for
from tests.support.operator import OperatorProcess

GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"
C = [{"name": "main", "image": "example.com/app:v1"}]


def rbg(name: str, roles: list[dict], **spec) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": roles, **spec},
    }


def role(name: str, **fields) -> dict:
    return {"name": name, "template": {"spec": {"containers": C}}, **fields}


def ready(kubectl: Kubectl, name: str, namespace: str, timeout: float = 90) -> dict:
    return wait_for(
        f"group {name} Ready",
        lambda: (
            (g := kubectl.get("rbg", name, namespace)) and (condition(g, "Ready") or {}).get("status") == "True" and g
        ),
        timeout,
    )


def env_of(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_every_workload_kind_gets_its_objects(kubectl: Kubectl, operator, namespace: str):
    group = rbg(
        "core",
        [
            role(
                "sts",
                replicas=2,
                labels={"team": "serving"},
                annotations={"owner": "ml"},
                servicePorts=[{"name": "http", "port": 8000}],
                template={
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "example.com/app:v1",
                                "env": [{"name": "RBG_ROLE_NAME", "value": "mine"}],
                            }
                        ]
                    }
                },
            ),
            {
                "name": "deploy",
                "replicas": 2,
                "workload": {"apiVersion": "apps/v1", "kind": "Deployment"},
                "templateRef": {"name": "base"},
                "templatePatch": {"spec": {"containers": [{"name": "main", "args": ["--deploy"]}]}},
            },
            role(
                "lws",
                replicas=1,
                workload={"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
                leaderWorkerSet={
                    "size": 2,
                    "patchLeaderTemplate": {"spec": {"containers": [{"name": "main", "args": ["--leader"]}]}},
                    "patchWorkerTemplate": {"spec": {"containers": [{"name": "main", "args": ["--worker"]}]}},
                },
            ),
        ],
        roleTemplates=[
            {"name": "base", "template": {"spec": {"containers": [{"name": "main", "image": "example.com/base:v2"}]}}}
        ],
    )
    kubectl.apply(group, namespace)
    ready(kubectl, "core", namespace)

    sts = kubectl.get("statefulset", "core-sts", namespace)
    labels = sts["metadata"]["labels"]
    revision = labels.pop("rolebasedgroup.workloads.x-k8s.io/role-revision-hash-sts")
    assert len(revision) == 10 and labels.pop("rbg.workloads.x-k8s.io/role-revision-sts") == revision
    assert labels == {
        "team": "serving",
        GROUP_LABEL: "core",
        "rolebasedgroup.workloads.x-k8s.io/role": "sts",
        "rbg.workloads.x-k8s.io/group-name": "core",
        "rbg.workloads.x-k8s.io/role-name": "sts",
        "rbg.workloads.x-k8s.io/group-uid": hashlib.sha1(f"{namespace}/core".encode()).hexdigest(),
    }
    assert sts["metadata"]["annotations"]["owner"] == "ml"
    assert sts["metadata"]["ownerReferences"][0]["controller"] is True
    assert (sts["spec"]["serviceName"], sts["spec"]["podManagementPolicy"]) == ("s-core-sts", "Parallel")
    pod_meta = sts["spec"]["template"]["metadata"]
    assert pod_meta["labels"]["team"] == "serving" and pod_meta["annotations"]["owner"] == "ml"
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    assert env["RBG_GROUP_NAME"] == env["GROUP_NAME"] == "core"
    assert env["RBG_ROLE_NAME"] == "mine", "a user's variable of the same name wins"
    assert env["ROLE_NAME"] == "sts"
    assert env["RBG_ROLE_INDEX"] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    names = [e["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("RBG_ROLE_NAME") == 1
    mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "rbg-topology", "mountPath": "/etc/rbg", "readOnly": True} in mounts

    deploy = kubectl.get("deployment", "core-deploy", namespace)
    main = deploy["spec"]["template"]["spec"]["containers"][0]
    assert (main["image"], main["args"]) == ("example.com/base:v2", ["--deploy"]), "templateRef + templatePatch"
    assert deploy["status"]["readyReplicas"] == 2

    lws = kubectl.get("leaderworkerset", "core-lws", namespace)
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2
    assert lwt["leaderTemplate"]["spec"]["containers"][0]["args"] == ["--leader"]
    assert lwt["workerTemplate"]["spec"]["containers"][0]["args"] == ["--worker"]
    lws_env = env_of(lwt["workerTemplate"]["spec"]["containers"][0])
    assert lws_env["RBG_LWP_GROUP_SIZE"] == "2"
    assert lws_env["RBG_LWP_LEADER_ADDRESS"] == f"core-lws-$(RBG_ROLE_INDEX).core-lws.{namespace}"
    assert (
        lws_env["RBG_ROLE_INDEX"]["fieldRef"]["fieldPath"]
        == "metadata.labels['leaderworkerset.sigs.k8s.io/group-index']"
    )

    for name in ("sts", "deploy", "lws"):
        service = kubectl.get("service", f"s-core-{name}", namespace)
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
        assert service["spec"]["selector"] == {GROUP_LABEL: "core", "rolebasedgroup.workloads.x-k8s.io/role": name}

    topology = yaml.safe_load(kubectl.get("configmap", "core", namespace)["data"]["topology.yaml"])
    assert topology["group"] == "core" and topology["namespace"] == namespace
    by_role = {r["name"]: r for r in topology["roles"]}
    assert by_role["sts"]["instances"] == ["core-sts-0.s-core-sts", "core-sts-1.s-core-sts"]
    assert by_role["sts"]["servicePorts"] == [{"name": "http", "port": 8000}]
    assert "instances" not in by_role["deploy"]
    assert by_role["lws"]["instances"] == ["core-lws-0.core-lws"] and by_role["lws"]["size"] == 2

    pods = kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/role=lws")
    assert len(pods) == 2 and all(condition(p, "Ready")["status"] == "True" for p in pods)


def test_roles_start_in_dependency_order(kubectl: Kubectl, operator, namespace: str):
    # `a` cannot schedule at first, so `b` and `c` must wait for it visibly.
    blocked = {"spec": {"nodeSelector": {"example.com/nowhere": "true"}, "containers": C}}
    kubectl.apply(
        rbg(
            "order",
            [
                role("c", dependencies=["b"]),
                role("b", dependencies=["a"], replicas=2),
                role("a", replicas=2, template=blocked),
            ],
        ),
        namespace,
    )
    waiting = wait_for(
        "group waiting for a",
        lambda: (
            (g := kubectl.get("rbg", "order", namespace))
            and (condition(g, "Ready") or {}).get("reason") == "WaitingForDependencies"
            and g
        ),
        30,
    )
    assert "role b waits for role a" in condition(waiting, "Ready")["message"]
    assert "role c waits for role b" in condition(waiting, "Ready")["message"]
    assert condition(waiting, "Progressing")["status"] == "True"
    wait_for(
        "WaitingForDependencies event",
        lambda: [e for e in kubectl.get("events", namespace=namespace) if e["reason"] == "WaitingForDependencies"],
        30,
    )
    time.sleep(2)
    assert kubectl.get("statefulset", "order-b", namespace) is None
    assert kubectl.get("statefulset", "order-c", namespace) is None

    kubectl.apply(
        rbg("order", [role("c", dependencies=["b"]), role("b", dependencies=["a"], replicas=2), role("a", replicas=2)]),
        namespace,
    )
    ready(kubectl, "order", namespace)

    def ready_since(role_name: str) -> str:
        pods = kubectl.get("pods", namespace=namespace, selector=f"rolebasedgroup.workloads.x-k8s.io/role={role_name}")
        return max(condition(p, "Ready")["lastTransitionTime"] for p in pods)

    created = {r: kubectl.get("statefulset", f"order-{r}", namespace)["metadata"]["creationTimestamp"] for r in "abc"}
    assert created["b"] >= ready_since("a"), (created, ready_since("a"))
    assert created["c"] >= ready_since("b"), (created, ready_since("b"))


def test_hand_deleted_and_hand_edited_children_are_restored(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(rbg("heal", [role("web", replicas=1)]), namespace)
    ready(kubectl, "heal", namespace)
    old_uid = kubectl.get("statefulset", "heal-web", namespace)["metadata"]["uid"]

    kubectl.delete("statefulset", "heal-web", namespace)
    restored = wait_for(
        "StatefulSet recreated",
        lambda: (s := kubectl.get("statefulset", "heal-web", namespace)) and s["metadata"]["uid"] != old_uid and s,
        30,
    )
    assert restored["spec"]["serviceName"] == "s-heal-web"

    kubectl.run("set", "image", "statefulset/heal-web", "main=example.com/tampered:v9", f"-n={namespace}")
    wait_for(
        "image restored",
        lambda: (
            kubectl.get("statefulset", "heal-web", namespace)["spec"]["template"]["spec"]["containers"][0]["image"]
            == "example.com/app:v1"
        ),
        30,
    )

    kubectl.run(
        "patch",
        "service",
        "s-heal-web",
        f"-n={namespace}",
        "--type=merge",
        "-p",
        '{"spec":{"publishNotReadyAddresses":false}}',
    )
    wait_for(
        "service restored",
        lambda: kubectl.get("service", "s-heal-web", namespace)["spec"].get("publishNotReadyAddresses") is True,
        30,
    )

    kubectl.delete("configmap", "heal", namespace)
    wait_for("ConfigMap recreated", lambda: kubectl.get("configmap", "heal", namespace), 30)


def test_reconcile_that_changes_nothing_writes_nothing(
    kubectl: Kubectl, operator, namespace: str, kubeconfig, tmp_path
):
    kubectl.apply(
        rbg(
            "quiet",
            [
                role("a", replicas=2),
                role("b", dependencies=["a"]),
                role("c", workload={"apiVersion": "apps/v1", "kind": "Deployment"}),
                role(
                    "d",
                    workload={"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet"},
                    leaderWorkerSet={"size": 2},
                ),
            ],
        ),
        namespace,
    )
    ready(kubectl, "quiet", namespace)
    # A second operator for this namespace only, so its request counts are this group's alone.
    # Starting up, it reconciles a group that is already as desired: that must not write either.
    isolated = OperatorProcess(kubeconfig, tmp_path / "operator.log", f"--namespace={namespace}").start()
    try:

        def reconciles() -> float:
            return sum(
                v
                for k, v in isolated.metrics().items()
                if k.startswith('controller_runtime_reconcile_total{controller="rolebasedgroup",result="success"')
            )

        wait_for("the start-up reconcile", lambda: reconciles() >= 1, 30)
        for i in range(3):  # metadata-only changes wake the group but change nothing it owns
            kubectl.run("annotate", "rbg", "quiet", f"-n={namespace}", f"example.com/poke={i}", "--overwrite")
            time.sleep(1)
        wait_for("the pokes to be reconciled", lambda: reconciles() >= 4, 30)
        assert isolated.write_requests() == 0, {
            k: v for k, v in isolated.metrics().items() if k.startswith("rbg_operator_api_requests_total")
        }
    finally:
        isolated.stop()


def test_scaled_workload_replicas_stand_until_the_role_changes(kubectl: Kubectl, operator, namespace: str):
    gang = {"podGroupPolicy": {"kubeScheduling": {"scheduleTimeoutSeconds": 30}}}
    kubectl.apply(rbg("scaled", [role("web", replicas=1)], **gang), namespace)
    ready(kubectl, "scaled", namespace)
    kubectl.run("scale", "statefulset/scaled-web", "--replicas=3", f"-n={namespace}")

    def overridden() -> dict | None:
        return condition(kubectl.get("rbg", "scaled", namespace), "ReplicasOverridden")

    held = wait_for("ReplicasOverridden", lambda: (c := overridden()) and c["status"] == "True" and c, 30)
    assert "role web: 3 replicas set by kubectl" in held["message"], held
    # The topology lists the instances that run, not the role's one.
    wait_for(
        "topology of 3",
        lambda: (
            yaml.safe_load(kubectl.get("configmap", "scaled", namespace)["data"]["topology.yaml"])["roles"][0][
                "replicas"
            ]
            == 3
        ),
        30,
    )
    # The gang too counts the pods that run.
    wait_for(
        "a gang of 3",
        lambda: kubectl.get("podgroups.scheduling.x-k8s.io", "scaled", namespace)["spec"]["minMember"] == 3,
        60,
    )
    kubectl.run("annotate", "rbg", "scaled", f"-n={namespace}", "example.com/poke=1")
    time.sleep(3)
    assert kubectl.get("statefulset", "scaled-web", namespace)["spec"]["replicas"] == 3

    # A change of the role's replicas is newer than the override: the role takes them back.
    kubectl.apply(rbg("scaled", [role("web", replicas=2)], **gang), namespace)
    wait_for(
        "the role's 2 replicas",
        lambda: (
            kubectl.get("statefulset", "scaled-web", namespace)["spec"]["replicas"] == 2
            and (overridden() or {}).get("status") == "False"
        ),
        30,
    )
    ready(kubectl, "scaled", namespace)
    sts = kubectl.get("statefulset", "scaled-web", namespace)
    assert "rolebasedgroup.workloads.x-k8s.io/yielded-replicas" not in (sts["metadata"].get("annotations") or {})
    # And later role changes keep applying, as before any override.
    kubectl.apply(rbg("scaled", [role("web", replicas=1)], **gang), namespace)
    wait_for(
        "the role's 1 replica", lambda: kubectl.get("statefulset", "scaled-web", namespace)["spec"]["replicas"] == 1, 30
    )


def test_removed_role_is_cleaned_up_and_group_deletion_cascades(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        rbg("trim", [role("keep"), role("drop", workload={"apiVersion": "apps/v1", "kind": "Deployment"})]), namespace
    )
    ready(kubectl, "trim", namespace)
    assert kubectl.get("deployment", "trim-drop", namespace) is not None

    kubectl.apply(rbg("trim", [role("keep")]), namespace)
    wait_for(
        "role drop cleaned up",
        lambda: (
            kubectl.get("deployment", "trim-drop", namespace) is None
            and kubectl.get("service", "s-trim-drop", namespace) is None
        ),
        30,
    )
    assert kubectl.get("statefulset", "trim-keep", namespace) is not None
    topology = yaml.safe_load(kubectl.get("configmap", "trim", namespace)["data"]["topology.yaml"])
    assert [r["name"] for r in topology["roles"]] == ["keep"]

    kubectl.delete("rbg", "trim", namespace)
    wait_for(
        "children garbage-collected",
        lambda: (
            not any(
                kubectl.get(kind, namespace=namespace, selector=f"{GROUP_LABEL}=trim")
                for kind in ("statefulsets", "deployments", "services", "configmaps", "pods")
            )
        ),
        60,
    )
