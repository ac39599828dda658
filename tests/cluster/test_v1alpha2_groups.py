"""v1alpha2 groups on the operator: written in v1alpha2, stored as v1alpha1 through the conversion
webhook, reconciled by the machinery that exists."""

from __future__ import annotations

import json

import yaml

from tests.support.kubectl import Kubectl, condition, wait_for

V2 = "workloads.x-k8s.io/v1alpha2"
WORKLOAD_TYPE = "rbg.workloads.x-k8s.io/role-workload-type"
C = [{"name": "main", "image": "example.com/app:v1"}]
TEMPLATE = {"spec": {"containers": C}}


def v2_group(name: str, roles: list[dict], **metadata) -> dict:
    return {"apiVersion": V2, "kind": "RoleBasedGroup", "metadata": {"name": name, **metadata}, "spec": {"roles": roles}}


def ready(kubectl: Kubectl, name: str, namespace: str, timeout: float = 120) -> dict:
    return wait_for(f"group {name} Ready", lambda: (g := kubectl.get("rbg", name, namespace))
                    and (condition(g, "Ready") or {}).get("status") == "True" and g, timeout)


def test_v1alpha2_groups_of_every_existing_workload_become_ready(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(v2_group("pd", [
        {"name": "router", "annotations": {WORKLOAD_TYPE: "apps/v1/Deployment"},
         "standalonePattern": {"template": TEMPLATE}, "dependencies": ["decode"]},
        {"name": "decode", "replicas": 2, "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
         "standalonePattern": {"template": TEMPLATE}},
        {"name": "prefill", "annotations": {WORKLOAD_TYPE: "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"},
         "leaderWorkerPattern": {"size": 2, "template": TEMPLATE,
                                 "workerTemplatePatch": {"metadata": {"labels": {"tier": "worker"}}},
                                 "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"}}},
    ]), namespace)
    ready(kubectl, "pd", namespace)
    assert kubectl.get("deployment", "pd-router", namespace)["spec"]["replicas"] == 1
    assert kubectl.get("statefulset", "pd-decode", namespace)["spec"]["replicas"] == 2
    lws = kubectl.get("leaderworkersets.leaderworkerset.x-k8s.io", "pd-prefill", namespace)
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["metadata"]["labels"]["tier"] == "worker"
    pod = kubectl.get("pod", "pd-decode-0", namespace)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["RBG_GROUP_NAME"] == "pd" and env["RBG_ROLE_NAME"] == "decode"
    # Read in either version; the v1alpha2 view is the one written.
    back = kubectl.get(f"rolebasedgroups.v1alpha2.workloads.x-k8s.io", "pd", namespace)
    assert back["spec"]["roles"][2]["leaderWorkerPattern"]["restartPolicyConfig"] == {
        "type": "RecreateRoleInstanceOnPodRestart"}
    assert kubectl.get("rbg", "pd", namespace)["spec"]["roles"][1]["workload"] == {
        "apiVersion": "apps/v1", "kind": "StatefulSet"}


def test_a_role_on_the_default_workload_says_it_is_not_run_yet(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(v2_group("ris", [{"name": "web", "standalonePattern": {"template": TEMPLATE}}]), namespace)
    group = wait_for("a verdict", lambda: (g := kubectl.get("rbg", "ris", namespace))
                     and condition(g, "Ready") and g, 30)
    ready_condition = condition(group, "Ready")
    assert ready_condition["status"] == "False" and ready_condition["reason"] == "WorkloadNotSupported"
    assert "role web would run as a RoleInstanceSet" in ready_condition["message"]
    assert condition(group, "Stalled")["status"] == "True"
    assert kubectl.get("statefulsets", namespace=namespace) == []


def test_kubectl_reads_a_v1alpha1_group_in_the_v1alpha2_shape(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply({"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": {"name": "old"},
                   "spec": {"coordination": [{"name": "pd", "roles": ["web"],
                                              "strategy": {"rollingUpdate": {"maxSkew": "50%"}}}],
                            "roles": [{"name": "web", "template": TEMPLATE}]}}, namespace)
    # What a user sees with a bare `kubectl get rbg`: v1alpha2, the preferred version.
    shown = json.loads(kubectl.run("get", "rolebasedgroups.v1alpha2.workloads.x-k8s.io", "old", "-n", namespace,
                                   "-o", "json").stdout)
    assert shown["apiVersion"] == V2
    assert shown["spec"]["roles"][0]["standalonePattern"] == {"template": TEMPLATE}
    assert json.loads(shown["metadata"]["annotations"]["conversion.workloads.x-k8s.io/v1alpha1-coordination"]) == [
        {"name": "pd", "roles": ["web"], "strategy": {"rollingUpdate": {"maxSkew": "50%"}}}]


def test_v1alpha2_admission_names_v1alpha2_fields(kubectl: Kubectl, admission_webhook, namespace: str):
    bad = v2_group("bad", [{"name": "web", "replicas": 2, "standalonePattern": {"template": TEMPLATE},
                            "rolloutStrategy": {"rollingUpdate": {"partition": 2}}}])
    result = kubectl.run("apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-",
                         stdin=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    assert "spec.roles[0].rolloutStrategy.rollingUpdate.partition: 2 must be less than replicas 2" in result.stderr
    # The same on a role v1alpha1 could have written too: the version the user wrote in decides.
    bad["spec"]["roles"][0]["annotations"] = {WORKLOAD_TYPE: "apps/v1/StatefulSet"}
    result = kubectl.run("apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-",
                         stdin=yaml.safe_dump(bad), check=False)
    assert "spec.roles[0].rolloutStrategy.rollingUpdate.partition: 2 must be less than replicas 2" in result.stderr
    v1 = {"apiVersion": "workloads.x-k8s.io/v1alpha1", "kind": "RoleBasedGroup", "metadata": {"name": "held"},
          "spec": {"roles": [{"name": "web", "replicas": 2, "template": TEMPLATE,
                              "rolloutStrategy": {"rollingUpdate": {"partition": 2}}}]}}
    result = kubectl.run("apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-",
                         stdin=yaml.safe_dump(v1), check=False)
    assert result.returncode == 0, result.stderr  # v1alpha1 holds a whole role back this way


def test_v1alpha2_gang_annotations_schedule_the_group_as_one(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(v2_group("gang", [
        {"name": "web", "replicas": 2, "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
         "standalonePattern": {"template": TEMPLATE}}],
        annotations={"rbg.workloads.x-k8s.io/group-gang-scheduling": "true",
                     "rbg.workloads.x-k8s.io/group-gang-scheduling-timeout": "45"}), namespace)
    ready(kubectl, "gang", namespace)
    podgroup = kubectl.get("podgroups.scheduling.x-k8s.io", "gang", namespace)
    assert podgroup["spec"]["minMember"] == 2 and podgroup["spec"]["scheduleTimeoutSeconds"] == 45
    assert kubectl.get("pod", "gang-web-0", namespace)["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "gang"


def test_an_engine_runtime_profile_and_a_role_naming_it_are_accepted(kubectl: Kubectl, admission_webhook,
                                                                    namespace: str):
    profile = {"apiVersion": V2, "kind": "ClusterEngineRuntimeProfile", "metadata": {"name": "nvidia-runtime"},
               "spec": {"updateStrategy": "RollingUpdate", "containers": [{"name": "patio", "image": "example.com/p"}],
                        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}]}}
    group = v2_group("engine", [{"name": "web", "annotations": {WORKLOAD_TYPE: "apps/v1/StatefulSet"},
                                 "standalonePattern": {"template": TEMPLATE},
                                 "engineRuntimes": [{"profileName": "nvidia-runtime", "injectContainers": ["main"]}]}])
    for manifest in (profile, group):
        result = kubectl.run("apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-",
                             stdin=yaml.safe_dump(manifest), check=False)
        assert result.returncode == 0 and "(server dry run)" in result.stdout, result.stderr
    # Not injected yet: the warning names the field.
    assert "spec.roles[0].engineRuntimes: engine runtime sidecars are not injected" in result.stderr
