"""On the real node (localcluster/node.py): real containers from the locally built images, so what
kwok only pretends is checked for real: the discovery a process reads, cluster DNS, a restart the
kubelet counts, an in-place image update, and readiness from a probe. The SGLang example serving a
chat completion through the router is checked by `make demo` (test_demo.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import yaml

from tests.support.kubectl import Kubectl, condition, group_ready, wait_for

IMAGE, IMAGE_V2 = "rbg-local/standin:v1", "rbg-local/standin:v2"  # one image, two tags (localcluster/images.py)
SERVE = ["python3", "-m", "http.server", "8080"]
READY_ON_HTTP = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
GROUP_LABEL = "rolebasedgroup.workloads.x-k8s.io/name"


def container(**extra) -> dict:
    return {"name": "main", "image": IMAGE, "command": SERVE, "readinessProbe": READY_ON_HTTP, **extra}


def v1_group(name: str, roles: list[dict]) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": roles},
    }


def role(name: str, replicas: int, **extra) -> dict:
    return {"name": name, "replicas": replicas, "template": {"spec": {"containers": [container()]}}, **extra}


def live_pods(kubectl: Kubectl, namespace: str, group: str) -> dict[str, dict]:
    return {
        p["metadata"]["name"]: p
        for p in kubectl.get("pods", namespace=namespace, selector=f"{GROUP_LABEL}={group}")
        if not p["metadata"].get("deletionTimestamp")
    }


def exec_in(kubectl: Kubectl, namespace: str, pod: str, *command: str) -> str:
    return kubectl.run("exec", pod, f"--namespace={namespace}", "--", *command).stdout


def python_in(kubectl: Kubectl, namespace: str, pod: str, code: str, *args: str) -> str:
    """Python in the container: the image is Debian's python3 and little else (no coreutils)."""
    return exec_in(kubectl, namespace, pod, "python3", "-c", code, *args)


def test_pods_read_the_contracts_environment_and_topology_and_every_peer_answers(
    kubectl: Kubectl, operator, real_namespace: str
):
    ns = real_namespace
    kubectl.apply(v1_group("disc", [role("server", 2), role("client", 1)]), ns)
    group_ready(kubectl, "disc", ns)
    pods = live_pods(kubectl, ns, "disc")
    from localcluster import node

    assert {p["spec"]["nodeName"] for p in pods.values()} == {node.NODE_NAME}

    env = json.loads(python_in(kubectl, ns, "disc-server-1", "import json, os; print(json.dumps(dict(os.environ)))"))
    assert (env["RBG_GROUP_NAME"], env["RBG_ROLE_NAME"], env["RBG_ROLE_INDEX"]) == ("disc", "server", "1")
    assert (env["GROUP_NAME"], env["ROLE_NAME"], env["ROLE_INDEX"]) == ("disc", "server", "1")

    topology = yaml.safe_load(python_in(kubectl, ns, "disc-client-0", "print(open('/etc/rbg/topology.yaml').read())"))
    assert (topology["group"], topology["namespace"]) == ("disc", ns)
    roles = {r["name"]: r for r in topology["roles"]}
    assert roles["server"]["instances"] == ["disc-server-0.s-disc-server", "disc-server-1.s-disc-server"]
    assert roles["client"]["instances"] == ["disc-client-0.s-disc-client"]
    assert (roles["server"]["replicas"], roles["server"]["service"]) == (2, "s-disc-server")
    # the same, in the v1alpha2 contract's refine shape
    config = yaml.safe_load(python_in(kubectl, ns, "disc-client-0", "print(open('/etc/rbg/config.yaml').read())"))
    assert config["group"] == {"name": "disc", "size": 2, "roles": ["server", "client"]}
    assert [i["address"] for i in config["roles"]["server"]["instances"]] == roles["server"]["instances"]

    # From inside a pod, as a process would: every address resolves (cluster DNS, the pod's search
    # path) to that pod's own IP, and answers.
    probe = (
        "import json, socket, sys, urllib.request\n"
        "out = {}\n"
        "for address in sys.argv[1:]:\n"
        "    ip = socket.getaddrinfo(address, 8080, type=socket.SOCK_STREAM)[0][4][0]\n"
        "    status = urllib.request.urlopen(f'http://{address}:8080/', timeout=5).status\n"
        "    out[address] = [ip, status]\n"
        "print(json.dumps(out))\n"
    )
    addresses = [a for r in topology["roles"] for a in r["instances"]]
    answers = json.loads(python_in(kubectl, ns, "disc-client-0", probe, *addresses))
    for address in addresses:
        pod = pods[address.split(".")[0]]
        assert answers[address] == [pod["status"]["podIP"], 200], (address, answers)

    # A ClusterIP Service in front of the servers: its virtual address is routed (kube-proxy).
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "disc-web"},
            "spec": {
                "selector": {GROUP_LABEL: "disc", "rolebasedgroup.workloads.x-k8s.io/role": "server"},
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
        ns,
    )
    through_service = (
        "import time, urllib.request\n"
        "for _ in range(60):\n"
        "    try:\n"
        "        print(urllib.request.urlopen('http://disc-web/', timeout=2).status); break\n"
        "    except OSError:\n"
        "        time.sleep(0.5)\n"
    )
    assert python_in(kubectl, ns, "disc-client-0", through_service).strip() == "200"


def _ctr(*args: str) -> subprocess.CompletedProcess:
    from localcluster import cluster, node

    ctr = cluster.state_dir() / "bin" / "ctr"
    return subprocess.run(
        [str(ctr), f"--address={node.socket_path()}", "--namespace=k8s.io", *args],
        capture_output=True,
        text=True,
        check=True,
    )


def test_a_container_the_runtime_kills_recreates_the_whole_group_once(kubectl: Kubectl, operator, real_namespace: str):
    ns = real_namespace
    kubectl.apply(
        v1_group("crash", [role("prefill", 2, restartPolicy="RecreateRBGOnPodRestart"), role("router", 1)]), ns
    )
    group_ready(kubectl, "crash", ns)
    before = {name: p["metadata"]["uid"] for name, p in live_pods(kubectl, ns, "crash").items()}
    assert len(before) == 3

    # Killed from outside, as the OOM killer would: the kubelet sees the exit and restarts it.
    container_id = kubectl.get("pod", "crash-prefill-1", ns)["status"]["containerStatuses"][0]["containerID"]
    _ctr("tasks", "kill", "--signal", "SIGKILL", container_id.split("://", 1)[1])

    def recreated():
        found = live_pods(kubectl, ns, "crash")
        return (
            len(found) == 3
            and not {p["metadata"]["uid"] for p in found.values()} & set(before.values())
            and all((condition(p, "Ready") or {}).get("status") == "True" for p in found.values())
            and found
        )

    after = wait_for("every pod of the group recreated and Ready", recreated, 120)
    group_ready(kubectl, "crash", ns)
    time.sleep(10)  # a second recreation would have started by now
    assert {n: p["metadata"]["uid"] for n, p in live_pods(kubectl, ns, "crash").items()} == {
        n: p["metadata"]["uid"] for n, p in after.items()
    }
    assert all(p["status"]["containerStatuses"][0].get("restartCount", 0) == 0 for p in after.values())
    events = kubectl.get("events", namespace=ns)
    recreations = [
        e for e in events if e["involvedObject"].get("name") == "crash" and "recreat" in e["message"].lower()
    ]
    assert recreations, [e["message"] for e in events if e["involvedObject"].get("name") == "crash"]


def test_an_image_update_in_place_keeps_the_pod_and_restarts_only_the_container(
    kubectl: Kubectl, operator, real_namespace: str
):
    ns = real_namespace

    def apply(image: str) -> None:
        kubectl.apply(
            {
                "apiVersion": "workloads.x-k8s.io/v1alpha2",
                "kind": "RoleBasedGroup",
                "metadata": {"name": "inplace"},
                "spec": {
                    "roles": [
                        {
                            "name": "web",
                            "replicas": 1,
                            "standalonePattern": {"template": {"spec": {"containers": [container(image=image)]}}},
                        }
                    ]
                },
            },
            ns,
        )

    apply(IMAGE)
    group_ready(kubectl, "inplace", ns)
    (pod,) = live_pods(kubectl, ns, "inplace").values()
    first = pod["status"]["containerStatuses"][0]

    apply(IMAGE_V2)

    def updated():
        # The tags name one image, so the runtime may report either name: the restart is the proof.
        found = kubectl.get("pod", pod["metadata"]["name"], ns)
        status = (found or {}).get("status", {}).get("containerStatuses", [{}])[0]
        restarted = status.get("containerID") not in (None, first["containerID"])
        return found["spec"]["containers"][0]["image"] == IMAGE_V2 and restarted and status.get("ready") and found

    now = wait_for("the container restarted on the new image", updated, 90)
    status = now["status"]["containerStatuses"][0]
    assert now["metadata"]["uid"] == pod["metadata"]["uid"], "the pod is kept"
    assert status["restartCount"] == first.get("restartCount", 0) + 1, "only the container restarted"
    assert status["containerID"] != first["containerID"]
    group_ready(kubectl, "inplace", ns)


def test_readiness_follows_a_real_probe(kubectl: Kubectl, operator, real_namespace: str):
    ns = real_namespace
    probe = {"exec": {"command": ["python3", "-c", "open('/tmp/ready')"]}, "periodSeconds": 1, "failureThreshold": 1}
    kubectl.apply(
        v1_group(
            "probed",
            [{"name": "web", "replicas": 1, "template": {"spec": {"containers": [container(readinessProbe=probe)]}}}],
        ),
        ns,
    )
    pod = wait_for("the pod running", lambda: kubectl.get("pod", "probed-web-0", ns), 60)
    wait_for(
        "the container started",
        lambda: (
            (p := kubectl.get("pod", "probed-web-0", ns))
            and p["status"].get("containerStatuses", [{}])[0].get("started")
        ),
        60,
    )
    time.sleep(3)
    group = kubectl.get("rbg", "probed", ns)
    assert (condition(group, "Ready") or {}).get("status") != "True", "not Ready while the probe fails"
    assert (condition(kubectl.get("pod", "probed-web-0", ns), "Ready") or {}).get("status") == "False"

    python_in(kubectl, ns, "probed-web-0", "open('/tmp/ready', 'w')")
    group_ready(kubectl, "probed", ns, timeout=60)

    python_in(kubectl, ns, "probed-web-0", "import os; os.remove('/tmp/ready')")
    wait_for(
        "the group not Ready once the probe fails again",
        lambda: (condition(kubectl.get("rbg", "probed", ns), "Ready") or {}).get("status") == "False",
        60,
    )
    assert kubectl.get("pod", "probed-web-0", ns)["metadata"]["uid"] == pod["metadata"]["uid"]


def test_an_all_pod_ready_instance_shows_each_condition_while_its_pods_are_partly_ready(
    kubectl: Kubectl, operator, real_namespace: str
):
    """A leader and a worker whose probe fails: the leader's containers are ready, but its
    InstancePodReady gate keeps it out of its endpoints until the worker is ready too; then both
    become Ready together. The grace period puts InPlaceUpdateReady on both, which the operator
    makes True."""
    ns = real_namespace
    # Ready once the file $READY names exists: the leader's names one that does, the worker's not yet.
    ready_file = "import os; open(os.environ.get('READY', '/tmp/ready'))"
    probe = {"exec": {"command": ["python3", "-c", ready_file]}, "periodSeconds": 1, "failureThreshold": 1}
    leader_ready = {"spec": {"containers": [{"name": "main", "env": [{"name": "READY", "value": "/etc/hostname"}]}]}}
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "gated"},
            "spec": {
                "roles": [
                    {
                        "name": "pd",
                        "replicas": 1,
                        "rolloutStrategy": {"rollingUpdate": {"inPlaceUpdateStrategy": {"gracePeriodSeconds": 2}}},
                        "leaderWorkerPattern": {
                            "size": 2,
                            "template": {"spec": {"containers": [container(readinessProbe=probe)]}},
                            "leaderTemplatePatch": leader_ready,
                        },
                    }
                ]
            },
        },
        ns,
    )
    leader, worker = "gated-pd-0-0", "gated-pd-0-1"

    def status(pod: str, type_: str) -> str | None:
        return (condition(kubectl.get("pod", pod, ns), type_) or {}).get("status")

    wait_for("the leader's containers ready", lambda: status(leader, "ContainersReady") == "True", 90)
    wait_for("the in-place gates made True", lambda: status(leader, "InPlaceUpdateReady") == "True", 30)
    gates = [g["conditionType"] for g in kubectl.get("pod", leader, ns)["spec"]["readinessGates"]]
    assert gates == ["InPlaceUpdateReady", "InstancePodReady"]
    time.sleep(3)
    assert status(leader, "Ready") == "False", "the leader waits for its worker"
    assert status(leader, "InstancePodReady") != "True"
    # A young instance's first "not ready yet" status may be held for a few seconds (first_status.py).
    wait_for(
        "the instance's first status",
        lambda: condition(kubectl.get("roleinstances", "gated-pd-0", ns), "RoleInstanceAllPodsReady"),
        15,
    )
    instance = kubectl.get("roleinstances", "gated-pd-0", ns)
    all_ready = condition(instance, "RoleInstanceAllPodsReady")
    assert (all_ready["status"], all_ready["reason"]) == ("False", "AtLeastOnePodNotReady")
    assert worker in all_ready["message"]
    ready = condition(instance, "RoleInstanceReady")
    assert (ready["status"], ready["reason"]) == ("False", "PodsNotReady")
    assert condition(instance, "RoleInstanceInPlaceUpdateReady")["status"] == "True"

    python_in(kubectl, ns, worker, "open('/tmp/ready', 'w')")
    wait_for("both pods Ready", lambda: status(leader, "Ready") == "True" and status(worker, "Ready") == "True", 60)
    assert status(leader, "InstancePodReady") == status(worker, "InstancePodReady") == "True"
    group_ready(kubectl, "gated", ns, timeout=60)
    instance = kubectl.get("roleinstances", "gated-pd-0", ns)
    assert condition(instance, "RoleInstanceAllPodsReady")["reason"] == "PodsReady"
    assert condition(instance, "RoleInstanceReady")["reason"] == "Ready"

    python_in(kubectl, ns, worker, "import os; os.remove('/tmp/ready')")
    wait_for("the leader leaves its endpoints with its worker", lambda: status(leader, "Ready") == "False", 60)
    assert status(leader, "ContainersReady") == "True"


@pytest.mark.cluster_last
def test_cluster_down_leaves_nothing_behind(kubeconfig: str):
    from localcluster import cluster, node
    from tests.conftest import session_started_the_cluster

    if not session_started_the_cluster():
        pytest.skip("the cluster was up before the suite (make demo): stopping it is its owner's call")
    binaries = [str(p) for p in cluster._load_state().get("binaries", {}).values()]
    cluster.down()
    assert node.leftovers() == []
    still = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe in binaries:
            still.append((pid, exe))
    assert still == []


def test_a_component_pod_annotated_ignore_fails_without_recreating_its_instance(
    kubectl: Kubectl, operator, real_namespace: str
):
    ns = real_namespace
    pod_template = {"spec": {"containers": [container()]}}
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "mix"},
            "spec": {
                "roles": [
                    {
                        "name": "engine",
                        "replicas": 1,
                        "customComponentsPattern": {
                            "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
                            "components": [
                                {"name": "server", "size": 1, "template": pod_template},
                                {
                                    "name": "sidecar",
                                    "size": 1,
                                    "annotations": {"rbg.workloads.x-k8s.io/restart-trigger-policy": "Ignore"},
                                    "template": pod_template,
                                },
                            ],
                        },
                    }
                ]
            },
        },
        ns,
    )
    group_ready(kubectl, "mix", ns)
    before = {n: p["metadata"]["uid"] for n, p in live_pods(kubectl, ns, "mix").items()}
    sidecar = next(n for n in before if "sidecar" in n)
    server = next(n for n in before if "server" in n)

    def kill(pod: str) -> int:
        status = kubectl.get("pod", pod, ns)["status"]["containerStatuses"][0]
        _ctr("tasks", "kill", "--signal", "SIGKILL", status["containerID"].split("://", 1)[1])
        return status.get("restartCount", 0)

    restarts = kill(sidecar)
    wait_for(
        "the kubelet restarting the ignored pod's container",
        lambda: kubectl.get("pod", sidecar, ns)["status"]["containerStatuses"][0].get("restartCount", 0) > restarts,
        60,
    )
    group_ready(kubectl, "mix", ns)
    time.sleep(5)  # a recreation would have deleted the pods by now
    assert {n: p["metadata"]["uid"] for n, p in live_pods(kubectl, ns, "mix").items()} == before

    kill(server)  # the same failure of a pod that is not ignored recreates the instance
    wait_for(
        "the instance recreated",
        lambda: (
            (found := live_pods(kubectl, ns, "mix"))
            and not {p["metadata"]["uid"] for p in found.values()} & set(before.values())
        ),
        120,
    )
