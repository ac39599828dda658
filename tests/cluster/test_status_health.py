"""Status that GitOps tools trust: kstatus' conditions (Ready, Progressing, Reconciling, Stalled,
observedGeneration), the progress deadline, RollingUpdateInProgress only on a revision change, and
the repository's Argo CD health checks evaluated on the live objects."""

from __future__ import annotations

import time

from tests.support.argocd import argocd_health
from tests.support.kubectl import Kubectl, condition, wait_for

C = [{"name": "main", "image": "example.com/app:v1"}]
API = "workloads.x-k8s.io/v1alpha1"
DEADLINE = "rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds"


def group(name: str, roles: list[dict], annotations: dict | None = None) -> dict:
    return {
        "apiVersion": API,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"roles": roles},
    }


def kstatus(obj: dict) -> dict[str, str]:
    return {t: (condition(obj, t) or {}).get("status", "") for t in ("Ready", "Progressing", "Reconciling", "Stalled")}


def test_creation_and_scale_up_are_no_rolling_update_and_end_healthy(operator, kubectl: Kubectl, namespace: str):
    # minReadySeconds paces the StatefulSet's rollout below (kwok pods are ready at once), so the
    # rolling update lasts long enough to be seen.
    kubectl.apply(
        group("fresh", [{"name": "web", "replicas": 3, "minReadySeconds": 2, "template": {"spec": {"containers": C}}}]),
        namespace,
    )
    seen = set()

    def ready() -> dict | None:
        obj = kubectl.get("rbg", "fresh", namespace)
        seen.add((condition(obj, "RollingUpdateInProgress") or {}).get("status"))
        return obj if (condition(obj, "Ready") or {}).get("status") == "True" else None

    obj = wait_for("Ready", ready, 60, interval=0.2)
    kubectl.run(
        "patch",
        "rbg",
        "fresh",
        f"-n={namespace}",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/roles/0/replicas", "value": 5}]',
    )
    wait_for(
        "scaled and Ready", lambda: (o := ready()) and o["status"]["observedGeneration"] == 2 and o, 60, interval=0.2
    )
    assert "True" not in seen, seen
    obj = kubectl.get("rbg", "fresh", namespace)
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert kstatus(obj) == {"Ready": "True", "Progressing": "False", "Reconciling": "False", "Stalled": "False"}
    assert argocd_health("RoleBasedGroup", obj)["status"] == "Healthy"

    # A template change is a rolling update, reported while the pods are replaced. First every pod
    # must be available (past minReadySeconds): from Kubernetes 1.37 a Parallel StatefulSet replaces
    # unavailable old pods all at once, and such a rollout can end between two looks.
    wait_for(
        "every pod available",
        lambda: (kubectl.get("statefulset", "fresh-web", namespace).get("status") or {}).get("availableReplicas") == 5,
        30,
    )
    kubectl.run(
        "patch",
        "rbg",
        "fresh",
        f"-n={namespace}",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/roles/0/template/spec/containers/0/image", "value": "example.com/app:v2"}]',
    )
    wait_for(
        "RollingUpdateInProgress",
        lambda: (
            (condition(kubectl.get("rbg", "fresh", namespace), "RollingUpdateInProgress") or {}).get("status") == "True"
        ),
        30,
        interval=0.1,
    )
    wait_for("updated and Ready", lambda: ready(), 90)


def test_a_group_that_cannot_progress_stalls_at_its_deadline_and_recovers(operator, kubectl: Kubectl, namespace: str):
    nowhere = {"nodeSelector": {"example.com/no-such-node": "true"}, "containers": C}
    kubectl.apply(
        group("stuck", [{"name": "decode", "replicas": 2, "template": {"spec": nowhere}}], {DEADLINE: "8"}), namespace
    )
    progressing = wait_for(
        "Reconciling",
        lambda: (o := kubectl.get("rbg", "stuck", namespace)) and kstatus(o)["Reconciling"] == "True" and o,
        30,
    )
    assert kstatus(progressing)["Stalled"] == "False"
    assert argocd_health("RoleBasedGroup", progressing)["status"] == "Progressing"
    # Nothing but the deadline's requeue wakes the operator now: the pods stay Pending.
    stalled = wait_for(
        "Stalled", lambda: (o := kubectl.get("rbg", "stuck", namespace)) and kstatus(o)["Stalled"] == "True" and o, 40
    )
    stall = condition(stalled, "Stalled")
    assert stall["reason"] == "ProgressDeadlineExceeded"
    assert "role decode: 0/2 ready" in stall["message"] and "pod stuck-decode-0 Unschedulable" in stall["message"]
    assert condition(stalled, "Progressing")["status"] == "False"
    assert condition(stalled, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    assert kstatus(stalled)["Reconciling"] == "False"
    health = argocd_health("RoleBasedGroup", stalled)
    assert health["status"] == "Degraded" and "ProgressDeadlineExceeded" in health["message"]
    assert wait_for(
        "a Warning Event",
        lambda: [
            e
            for e in kubectl.get("events", namespace=namespace)
            if e["reason"] == "ProgressDeadlineExceeded" and e["type"] == "Warning"
        ],
        15,
    )
    # The stall holds without rewriting status (nothing changed).
    version = stalled["metadata"]["resourceVersion"]
    time.sleep(3)
    assert kubectl.get("rbg", "stuck", namespace)["metadata"]["resourceVersion"] == version

    # A fix is a new spec: progressing again, then Ready and Healthy.
    kubectl.run(
        "patch",
        "rbg",
        "stuck",
        f"-n={namespace}",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/spec/roles/0/template/spec/nodeSelector"}]',
    )
    wait_for("Ready after the fix", lambda: kstatus(kubectl.get("rbg", "stuck", namespace))["Ready"] == "True", 120)
    fixed = kubectl.get("rbg", "stuck", namespace)
    assert kstatus(fixed)["Stalled"] == "False"
    assert argocd_health("RoleBasedGroup", fixed)["status"] == "Healthy"


def test_a_paused_rollout_is_suspended_not_stalled(operator, kubectl: Kubectl, namespace: str):
    roles = [{"name": "web", "replicas": 2, "template": {"spec": {"containers": C}}}]
    kubectl.apply(group("held", roles, {DEADLINE: "5"}), namespace)
    wait_for("Ready", lambda: kstatus(kubectl.get("rbg", "held", namespace))["Ready"] == "True", 60)
    roles[0]["rolloutStrategy"] = {"rollingUpdate": {"paused": True}}
    roles[0]["template"]["spec"]["containers"] = [{**C[0], "image": "example.com/app:v2"}]
    kubectl.apply(group("held", roles, {DEADLINE: "5"}), namespace)
    paused = wait_for(
        "RolloutPaused",
        lambda: (
            (o := kubectl.get("rbg", "held", namespace))
            and (condition(o, "Ready") or {}).get("reason") == "RolloutPaused"
            and o
        ),
        30,
    )
    assert argocd_health("RoleBasedGroup", paused)["status"] == "Suspended"
    time.sleep(8)  # past the deadline: a pause is not a stall
    still = kubectl.get("rbg", "held", namespace)
    assert kstatus(still)["Stalled"] == "False" and argocd_health("RoleBasedGroup", still)["status"] == "Suspended"
    roles[0]["rolloutStrategy"] = {"rollingUpdate": {"paused": False}}
    kubectl.apply(group("held", roles, {DEADLINE: "5"}), namespace)
    wait_for(
        "Healthy once resumed",
        lambda: argocd_health("RoleBasedGroup", kubectl.get("rbg", "held", namespace))["status"] == "Healthy",
        90,
    )


def test_set_and_adapter_health_checks_on_live_objects(operator, kubectl: Kubectl, namespace: str):
    kubectl.apply(
        {
            "apiVersion": API,
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "fleet"},
            "spec": {"replicas": 2, "template": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]}},
        },
        namespace,
    )
    kubectl.apply(
        group(
            "scaled", [{"name": "decode", "scalingAdapter": {"enable": True}, "template": {"spec": {"containers": C}}}]
        ),
        namespace,
    )
    wait_for(
        "set Healthy",
        lambda: (
            argocd_health("RoleBasedGroupSet", kubectl.get("rolebasedgroupset", "fleet", namespace))["status"]
            == "Healthy"
        ),
        90,
    )
    adapter = wait_for("adapter", lambda: kubectl.get("rolebasedgroupscalingadapter", "scaled-decode", namespace), 30)
    wait_for(
        "adapter Healthy",
        lambda: (
            argocd_health(
                "RoleBasedGroupScalingAdapter", kubectl.get("rolebasedgroupscalingadapter", "scaled-decode", namespace)
            )["status"]
            == "Healthy"
        ),
        30,
    )
    assert adapter["spec"]["scaleTargetRef"] == {"name": "scaled", "role": "decode"}
