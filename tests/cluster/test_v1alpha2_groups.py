"""v1alpha2 groups on the operator: written in v1alpha2, stored as v1alpha1 through the conversion
webhook, reconciled by the machinery that exists."""

from __future__ import annotations

import hashlib
import json

import yaml

from tests.support.kubectl import Kubectl, condition, wait_for

V2 = "workloads.x-k8s.io/v1alpha2"
WORKLOAD_TYPE = "rbg.workloads.x-k8s.io/role-workload-type"
C = [{"name": "main", "image": "example.com/app:v1"}]
TEMPLATE = {"spec": {"containers": C}}


def v2_group(name: str, roles: list[dict], **metadata) -> dict:
    return {
        "apiVersion": V2,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, **metadata},
        "spec": {"roles": roles},
    }


V2_GROUP, V2_ROLE, V2_UID = (
    "rbg.workloads.x-k8s.io/group-name",
    "rbg.workloads.x-k8s.io/role-name",
    "rbg.workloads.x-k8s.io/group-uid",
)
V1_GROUP, V1_ROLE = "rolebasedgroup.workloads.x-k8s.io/name", "rolebasedgroup.workloads.x-k8s.io/role"


def assert_both_key_families(obj: dict, namespace: str, group: str, role: str) -> None:
    labels = obj["metadata"]["labels"]
    assert labels[V1_GROUP] == labels[V2_GROUP] == group, labels
    assert labels[V1_ROLE] == labels[V2_ROLE] == role, labels
    assert labels[V2_UID] == hashlib.sha1(f"{namespace}/{group}".encode()).hexdigest()


def ready(kubectl: Kubectl, name: str, namespace: str, timeout: float = 120) -> dict:
    return wait_for(
        f"group {name} Ready",
        lambda: (
            (g := kubectl.get("rbg", name, namespace)) and (condition(g, "Ready") or {}).get("status") == "True" and g
        ),
        timeout,
    )


def test_v1alpha2_groups_of_every_existing_workload_become_ready(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        v2_group(
            "pd",
            [
                {
                    "name": "router",
                    "annotations": {WORKLOAD_TYPE: "apps/v1/Deployment"},
                    "standalonePattern": {"template": TEMPLATE},
                    "dependencies": ["decode"],
                },
                {
                    "name": "decode",
                    "replicas": 2,
                    "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
                    "standalonePattern": {"template": TEMPLATE},
                },
                {
                    "name": "prefill",
                    "annotations": {WORKLOAD_TYPE: "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"},
                    "leaderWorkerPattern": {
                        "size": 2,
                        "template": TEMPLATE,
                        "workerTemplatePatch": {"metadata": {"labels": {"tier": "worker"}}},
                        "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
                    },
                },
            ],
        ),
        namespace,
    )
    ready(kubectl, "pd", namespace)
    assert kubectl.get("deployment", "pd-router", namespace)["spec"]["replicas"] == 1
    assert kubectl.get("statefulset", "pd-decode", namespace)["spec"]["replicas"] == 2
    lws = kubectl.get("leaderworkersets.leaderworkerset.x-k8s.io", "pd-prefill", namespace)
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"]["labels"]["tier"] == "worker"
    pod = kubectl.get("pod", "pd-decode-0", namespace)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["RBG_GROUP_NAME"] == "pd" and env["RBG_ROLE_NAME"] == "decode"
    # Selectable the way the v1alpha2 docs show, and the way v1alpha1 manifests did.
    for role, count in (("router", 1), ("decode", 2), ("prefill", 2)):
        pods = kubectl.get("pods", namespace=namespace, selector=f"{V2_GROUP}=pd,{V2_ROLE}={role}")
        assert len(pods) == count, (role, [p["metadata"]["name"] for p in pods])
        for pod in pods:
            assert_both_key_families(pod, namespace, "pd", role)
    assert_both_key_families(kubectl.get("service", "s-pd-decode", namespace), namespace, "pd", "decode")
    assert_both_key_families(lws, namespace, "pd", "prefill")
    # Read in either version; the v1alpha2 view is the one written.
    back = kubectl.get("rolebasedgroups.v1alpha2.workloads.x-k8s.io", "pd", namespace)
    assert back["spec"]["roles"][2]["leaderWorkerPattern"]["restartPolicyConfig"] == {
        "type": "RecreateRoleInstanceOnPodRestart"
    }
    assert kubectl.get("rbg", "pd", namespace)["spec"]["roles"][1]["workload"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
    }


def test_kubectl_reads_a_v1alpha1_group_in_the_v1alpha2_shape(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "old"},
            "spec": {
                "coordination": [{"name": "pd", "roles": ["web"], "strategy": {"rollingUpdate": {"maxSkew": "50%"}}}],
                "roles": [{"name": "web", "template": TEMPLATE}],
            },
        },
        namespace,
    )
    # What a user sees with a bare `kubectl get rbg`: v1alpha2, the preferred version.
    shown = json.loads(
        kubectl.run("get", "rolebasedgroups.v1alpha2.workloads.x-k8s.io", "old", "-n", namespace, "-o", "json").stdout
    )
    assert shown["apiVersion"] == V2
    assert shown["spec"]["roles"][0]["standalonePattern"] == {"template": TEMPLATE}
    assert json.loads(shown["metadata"]["annotations"]["conversion.workloads.x-k8s.io/v1alpha1-coordination"]) == [
        {"name": "pd", "roles": ["web"], "strategy": {"rollingUpdate": {"maxSkew": "50%"}}}
    ]


def test_v1alpha2_admission_names_v1alpha2_fields(kubectl: Kubectl, admission_webhook, namespace: str):
    bad = v2_group(
        "bad",
        [
            {
                "name": "web",
                "replicas": 2,
                "standalonePattern": {"template": TEMPLATE},
                "rolloutStrategy": {"rollingUpdate": {"partition": 2}},
            }
        ],
    )
    result = kubectl.run(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=yaml.safe_dump(bad), check=False
    )
    assert result.returncode != 0
    assert "spec.roles[0].rolloutStrategy.rollingUpdate.partition: 2 must be less than replicas 2" in result.stderr
    # The same on a role v1alpha1 could have written too: the version the user wrote in decides.
    bad["spec"]["roles"][0]["annotations"] = {WORKLOAD_TYPE: "apps/v1/StatefulSet"}
    result = kubectl.run(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=yaml.safe_dump(bad), check=False
    )
    assert "spec.roles[0].rolloutStrategy.rollingUpdate.partition: 2 must be less than replicas 2" in result.stderr
    v1 = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "held"},
        "spec": {
            "roles": [
                {
                    "name": "web",
                    "replicas": 2,
                    "template": TEMPLATE,
                    "rolloutStrategy": {"rollingUpdate": {"partition": 2}},
                }
            ]
        },
    }
    result = kubectl.run(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=yaml.safe_dump(v1), check=False
    )
    assert result.returncode == 0, result.stderr  # v1alpha1 holds a whole role back this way


def test_v1alpha2_gang_annotations_schedule_the_group_as_one(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        v2_group(
            "gang",
            [
                {
                    "name": "web",
                    "replicas": 2,
                    "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
                    "standalonePattern": {"template": TEMPLATE},
                }
            ],
            annotations={
                "rbg.workloads.x-k8s.io/group-gang-scheduling": "true",
                "rbg.workloads.x-k8s.io/group-gang-scheduling-timeout": "45",
            },
        ),
        namespace,
    )
    ready(kubectl, "gang", namespace)
    podgroup = kubectl.get("podgroups.scheduling.x-k8s.io", "gang", namespace)
    assert podgroup["spec"]["minMember"] == 2 and podgroup["spec"]["scheduleTimeoutSeconds"] == 45
    assert kubectl.get("pod", "gang-web-0", namespace)["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "gang"


def test_engine_runtime_profiles_add_their_sidecars_and_roll_when_changed(kubectl: Kubectl, operator, namespace: str):
    name = f"{namespace}-patio"  # profiles are cluster-scoped: one per test namespace

    def profile(image: str) -> dict:
        return {
            "apiVersion": V2,
            "kind": "ClusterEngineRuntimeProfile",
            "metadata": {"name": name},
            "spec": {
                "updateStrategy": "RollingUpdate",
                "containers": [{"name": "patio", "image": image}],
                "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
            },
        }

    def patio_image() -> str | None:
        pod = kubectl.get("pod", "engine-web-0", namespace)
        return next(
            (c["image"] for c in (pod or {}).get("spec", {}).get("containers", []) if c["name"] == "patio"), None
        )

    kubectl.apply(
        v2_group(
            "engine",
            [
                {
                    "name": "web",
                    "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
                    "standalonePattern": {"template": TEMPLATE},
                    "engineRuntimes": [
                        {
                            "profileName": name,
                            "injectContainers": ["main"],
                            "containers": [{"name": "patio", "args": ["--port=9"]}],
                        }
                    ],
                }
            ],
        ),
        namespace,
    )
    try:
        # No such profile yet: the group says which field names it, and waits.
        group = wait_for(
            "a verdict",
            lambda: (
                (g := kubectl.get("rbg", "engine", namespace))
                and (condition(g, "Stalled") or {}).get("status") == "True"
                and g
            ),
            30,
        )
        assert condition(group, "Ready")["reason"] == "EngineRuntimeProfileNotFound"
        assert (
            f"spec.roles[0].engineRuntimes[0].profileName: ClusterEngineRuntimeProfile '{name}' not found"
            in condition(group, "Ready")["message"]
        )
        assert kubectl.get("statefulset", "engine-web", namespace) is None

        kubectl.apply(profile("example.com/patio:1"))  # wakes the group
        ready(kubectl, "engine", namespace, timeout=60)
        pod = kubectl.get("pod", "engine-web-0", namespace)
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        assert list(containers) == ["main", "patio"]
        assert containers["patio"]["args"] == ["--port=9"]
        assert "shm" in {v["name"] for v in pod["spec"]["volumes"]}

        kubectl.apply(profile("example.com/patio:2"))  # a profile change rolls the role onto it
        wait_for("the sidecar on patio:2", lambda: patio_image() == "example.com/patio:2", 90)
    finally:
        kubectl.delete("clusterengineruntimeprofiles.workloads.x-k8s.io", name)


def test_an_upgrade_adds_the_v2_keys_to_pods_only_when_they_are_replaced(kubectl: Kubectl, operator, namespace: str):
    def group(image: str, replicas: int) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroup",
            "metadata": {"name": "up"},
            "spec": {
                "roles": [
                    {
                        "name": "web",
                        "replicas": replicas,
                        "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
                    }
                ]
            },
        }

    def settled(replicas: int) -> dict:
        def probe():
            sts = kubectl.get("statefulset", "up-web", namespace)
            status = sts.get("status") or {}
            pods = kubectl.get("pods", namespace=namespace, selector=f"{V1_GROUP}=up")
            return (
                status.get("observedGeneration") == sts["metadata"]["generation"]
                and status.get("updatedReplicas") == status.get("readyReplicas") == replicas
                and status.get("currentRevision") == status.get("updateRevision")
                and len(pods) == replicas
                and not any(p["metadata"].get("deletionTimestamp") for p in pods)
                and {p["metadata"]["name"]: p for p in pods}
            )

        return wait_for(f"{replicas} pods of up-web settled", probe, 90)

    # A group made today: the pods carry both key families from the start.
    kubectl.apply(group("example.com/app:v1", 2), namespace)
    ready(kubectl, "up", namespace)
    for pod in settled(2).values():
        assert_both_key_families(pod, namespace, "up", "web")

    # What a workload made by an operator from before the v1alpha2 keys looks like.
    removals = [
        {"op": "remove", "path": f"/spec/template/metadata/labels/{key.replace('/', '~1')}"}
        for key in (V2_GROUP, V2_ROLE, V2_UID)
    ]
    kubectl.run("patch", "statefulset", "up-web", "-n", namespace, "--type=json", "-p", json.dumps(removals))
    before = settled(2)
    generation = kubectl.get("statefulset", "up-web", namespace)["metadata"]["generation"]

    # A change that restarts no pod: the pods are not replaced to add the keys.
    kubectl.apply(group("example.com/app:v1", 3), namespace)
    wait_for(
        "the scale-up seen",
        lambda: (
            (g := kubectl.get("rbg", "up", namespace))
            and g["status"].get("observedGeneration") == g["metadata"]["generation"]
            and (condition(g, "Ready") or {}).get("status") == "True"
        ),
        90,
    )
    after = settled(3)
    sts = kubectl.get("statefulset", "up-web", namespace)
    assert V2_GROUP not in sts["spec"]["template"]["metadata"]["labels"]
    assert sts["metadata"]["generation"] == generation + 1  # the replicas, nothing else
    assert {n: p["metadata"]["uid"] for n, p in after.items() if n in before} == {
        n: p["metadata"]["uid"] for n, p in before.items()
    }
    assert_both_key_families(sts, namespace, "up", "web")  # the workload's own labels restart nothing

    # A new image replaces the pods anyway: now they get the keys.
    kubectl.apply(group("example.com/app:v2", 3), namespace)
    wait_for(
        "pods on v2 with the v2 keys",
        lambda: (
            (pods := kubectl.get("pods", namespace=namespace, selector=f"{V2_GROUP}=up,{V2_ROLE}=web"))
            and len(pods) == 3
            and all(p["spec"]["containers"][0]["image"] == "example.com/app:v2" for p in pods)
        ),
        120,
    )


def test_a_sets_group_template_metadata_reaches_every_member(kubectl: Kubectl, operator, namespace: str):
    # As the reference's rbgs-base example writes it; the contract's direct fields still win.
    kubectl.apply(
        {
            "apiVersion": V2,
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "meta"},
            "spec": {
                "replicas": 2,
                "groupTemplate": {
                    "metadata": {"labels": {"app": "sglang", "team": "x"}, "annotations": {"owner": "serving"}},
                    "labels": {"team": "direct"},
                    "spec": {"roles": [{"name": "web", "replicas": 1, "standalonePattern": {"template": TEMPLATE}}]},
                },
            },
        },
        namespace,
    )
    for name in ("meta-0", "meta-1"):
        member = wait_for(f"member {name}", lambda n=name: kubectl.get("rbg", n, namespace), 60)
        assert (member["metadata"]["labels"]["app"], member["metadata"]["labels"]["team"]) == ("sglang", "direct")
        assert member["metadata"]["annotations"]["owner"] == "serving"
    kept = kubectl.get("rolebasedgroupsets.v1alpha2.workloads.x-k8s.io", "meta", namespace)
    assert kept["spec"]["groupTemplate"]["metadata"]["labels"] == {"app": "sglang", "team": "x"}


def test_exclusive_topology_puts_each_group_alone_in_one_domain(kubectl: Kubectl, operator, namespace: str):
    """Two racks, made for this test by labelling two kwok nodes no group's pod is on; each group's
    pods land together in one rack, and the other group's in the other (the reference's rules select
    on a label no pod has, and its pods stay Pending: its quirk Q1)."""
    rack = f"rbg-operator.test/rack-{namespace[-6:]}"
    busy = {
        p["spec"].get("nodeName")
        for p in kubectl.get("pods", selector=V2_UID, all_namespaces=True)
        if not p["metadata"].get("deletionTimestamp")
    }
    free = sorted(
        n["metadata"]["name"] for n in kubectl.get("nodes", selector="type=kwok") if n["metadata"]["name"] not in busy
    )
    assert len(free) >= 2, f"two kwok nodes without any group's pods are needed, free: {free}"
    racks = dict(zip(("a", "b"), free[:2], strict=True))
    for value, node in racks.items():
        kubectl.run("label", "node", node, f"{rack}={value}", "--overwrite")
    try:
        annotations = {"rbg.workloads.x-k8s.io/group-exclusive-topology": rack}
        kubectl.apply(
            v2_group(
                "ex-a",
                [{"name": "web", "replicas": 2, "standalonePattern": {"template": TEMPLATE}}],
                annotations=annotations,
            ),
            namespace,
        )
        kubectl.apply(
            v2_group(
                "ex-b",
                [
                    {
                        "name": "web",
                        "replicas": 2,
                        "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
                        "standalonePattern": {"template": TEMPLATE},
                    }
                ],
                annotations=annotations,
            ),
            namespace,
        )

        def placed(group: str):
            def probe():
                pods = kubectl.get("pods", namespace=namespace, selector=f"{V2_GROUP}={group}")
                nodes = {p["spec"].get("nodeName") for p in pods}
                return len(pods) == 2 and None not in nodes and nodes

            return probe

        a = wait_for("group ex-a placed", placed("ex-a"), 90)
        b = wait_for("group ex-b placed", placed("ex-b"), 90)
        assert len(a) == 1 and len(b) == 1, f"each group in one rack: {a}, {b}"
        assert a | b == set(racks.values()), f"the groups share no rack: {a}, {b}"
        pod = kubectl.get("pods", namespace=namespace, selector=f"{V2_GROUP}=ex-a")[0]
        assert pod["metadata"]["annotations"]["rbg.workloads.x-k8s.io/group-exclusive-topology"] == rack
    finally:
        for node in racks.values():
            kubectl.run("label", "node", node, f"{rack}-")
