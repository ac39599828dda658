"""Scaling: the RoleBasedGroupScalingAdapter behind kubectl scale and an HPA, and RoleBasedGroupSet fleets."""

from __future__ import annotations

import json
import time

from tests.support.kubectl import Kubectl, condition, wait_for

C = [{"name": "main", "image": "example.com/app:v1"}]


def group(name: str, roles: list[dict]) -> dict:
    return {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": roles},
    }


def pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict]:
    return kubectl.get("pods", namespace=namespace, selector=selector)


def test_kubectl_scale_on_adapter_scales_the_role_and_holds(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        group(
            "svc",
            [
                {
                    "name": "decode",
                    "replicas": 1,
                    "scalingAdapter": {"enable": True},
                    "template": {"spec": {"containers": C}},
                },
                {"name": "router", "replicas": 1, "template": {"spec": {"containers": C}}},
            ],
        ),
        namespace,
    )
    adapter = wait_for(
        "adapter bound",
        lambda: (
            (a := kubectl.get("rbgsa", "svc-decode", namespace))
            and (a.get("status") or {}).get("phase") == "Bound"
            and a
        ),
        60,
    )
    assert adapter["metadata"]["ownerReferences"][0]["name"] == "svc"
    assert adapter["spec"] == {"replicas": 1, "scaleTargetRef": {"name": "svc", "role": "decode"}}
    assert kubectl.get("rbgsa", "svc-router", namespace) is None

    kubectl.run("scale", "rbgsa/svc-decode", "--replicas=3", f"-n={namespace}")
    wait_for(
        "3 ready decode pods",
        lambda: (
            len(
                [
                    p
                    for p in pods(kubectl, namespace, "rolebasedgroup.workloads.x-k8s.io/role=decode")
                    if (condition(p, "Ready") or {}).get("status") == "True"
                ]
            )
            == 3
        ),
        60,
    )
    assert kubectl.get("statefulset", "svc-decode", namespace)["spec"]["replicas"] == 3
    assert kubectl.get("rbg", "svc", namespace)["spec"]["roles"][0]["replicas"] == 3

    # The selector in the adapter's status selects exactly the role's pods.
    adapter = wait_for(
        "adapter status",
        lambda: (a := kubectl.get("rbgsa", "svc-decode", namespace)) and a["status"].get("readyReplicas") == 3 and a,
        30,
    )
    selected = {p["metadata"]["name"] for p in pods(kubectl, namespace, adapter["status"]["selector"])}
    assert selected == {"svc-decode-0", "svc-decode-1", "svc-decode-2"}
    assert adapter["status"]["replicas"] == 3 and adapter["status"]["lastScaleTime"]

    # It holds across reconciles of the group (a metadata change wakes it).
    for i in range(3):
        kubectl.run("annotate", "rbg", "svc", f"-n={namespace}", f"example.com/poke={i}", "--overwrite")
    time.sleep(3)
    assert kubectl.get("statefulset", "svc-decode", namespace)["spec"]["replicas"] == 3
    assert kubectl.get("rbgsa", "svc-decode", namespace)["spec"]["replicas"] == 3

    # The scale subresource reads back what an HPA reads.
    scale = json.loads(
        kubectl.run(
            "get",
            "--raw",
            f"/apis/workloads.x-k8s.io/v1alpha1/namespaces/{namespace}/rolebasedgroupscalingadapters/svc-decode/scale",
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == adapter["status"]["selector"]

    # Turning the flag off deletes the adapter.
    kubectl.apply(
        group(
            "svc",
            [
                {"name": "decode", "replicas": 3, "template": {"spec": {"containers": C}}},
                {"name": "router", "replicas": 1, "template": {"spec": {"containers": C}}},
            ],
        ),
        namespace,
    )
    wait_for("adapter deleted", lambda: kubectl.get("rbgsa", "svc-decode", namespace) is None, 30)


def test_hpa_targeting_an_adapter_is_accepted(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        group(
            "auto", [{"name": "decode", "scalingAdapter": {"enable": True}, "template": {"spec": {"containers": C}}}]
        ),
        namespace,
    )
    wait_for(
        "adapter bound",
        lambda: ((kubectl.get("rbgsa", "auto-decode", namespace) or {}).get("status") or {}).get("phase") == "Bound",
        60,
    )
    kubectl.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "auto"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "workloads.x-k8s.io/v1alpha1",
                    "kind": "RoleBasedGroupScalingAdapter",
                    "name": "auto-decode",
                },
                "minReplicas": 1,
                "maxReplicas": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
        namespace,
    )
    hpa = kubectl.get("hpa", "auto", namespace)
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "RoleBasedGroupScalingAdapter"


def test_user_created_adapter_scales_its_target(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(group("manual", [{"name": "web", "replicas": 1, "template": {"spec": {"containers": C}}}]), namespace)
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroupScalingAdapter",
            "metadata": {"name": "web-scaler"},
            "spec": {"replicas": 2, "scaleTargetRef": {"name": "manual", "role": "web"}},
        },
        namespace,
    )
    wait_for(
        "role scaled to 2",
        lambda: (s := kubectl.get("statefulset", "manual-web", namespace)) and s["spec"]["replicas"] == 2,
        60,
    )


def test_set_scales_out_and_in_from_the_highest_index(kubectl: Kubectl, operator, namespace: str):
    group_set = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "fleet"},
        "spec": {"replicas": 2, "template": {"roles": [{"name": "web", "template": {"spec": {"containers": C}}}]}},
    }
    kubectl.apply(group_set, namespace)
    wait_for(
        "2 groups ready",
        lambda: (kubectl.get("rbgs", "fleet", namespace).get("status") or {}).get("readyReplicas") == 2,
        60,
    )
    member = kubectl.get("rbg", "fleet-0", namespace)
    assert member["metadata"]["labels"] == {
        "rolebasedgroupset.workloads.x-k8s.io/name": "fleet",
        "rolebasedgroupset.workloads.x-k8s.io/rbg-index": "0",
        "rbg.workloads.x-k8s.io/groupset-name": "fleet",
        "rbg.workloads.x-k8s.io/groupset-index": "0",
    }
    assert member["metadata"]["ownerReferences"][0]["kind"] == "RoleBasedGroupSet"

    kubectl.run("scale", "rbgs/fleet", "--replicas=3", f"-n={namespace}")
    wait_for(
        "3 groups ready",
        lambda: (kubectl.get("rbgs", "fleet", namespace).get("status") or {}).get("readyReplicas") == 3,
        60,
    )
    assert sorted(g["metadata"]["name"] for g in kubectl.get("rbg", namespace=namespace)) == [
        "fleet-0",
        "fleet-1",
        "fleet-2",
    ]

    uid0 = kubectl.get("rbg", "fleet-0", namespace)["metadata"]["uid"]
    kubectl.run("scale", "rbgs/fleet", "--replicas=1", f"-n={namespace}")
    wait_for(
        "only fleet-0 left",
        lambda: [g["metadata"]["name"] for g in kubectl.get("rbg", namespace=namespace)] == ["fleet-0"],
        60,
    )
    assert kubectl.get("rbg", "fleet-0", namespace)["metadata"]["uid"] == uid0
    status = wait_for(
        "status 1/1",
        lambda: (
            (s := kubectl.get("rbgs", "fleet", namespace)["status"])
            and s["replicas"] == 1
            and s["readyReplicas"] == 1
            and s
        ),
        30,
    )
    assert condition({"status": status}, "Ready")["status"] == "True"


def test_set_rolls_a_template_change_one_group_at_a_time(kubectl: Kubectl, operator, namespace: str):
    def fleet(image: str) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "roll"},
            "spec": {
                "replicas": 3,
                "template": {
                    "roles": [
                        {
                            "name": "web",
                            "replicas": 2,
                            "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
                        }
                    ]
                },
            },
        }

    kubectl.apply(fleet("example.com/app:v1"), namespace)
    wait_for(
        "3 groups ready",
        lambda: (kubectl.get("rbgs", "roll", namespace).get("status") or {}).get("readyReplicas") == 3,
        60,
    )
    kubectl.apply(fleet("example.com/app:v2"), namespace)

    def images() -> list[str]:
        return [
            g["spec"]["roles"][0]["template"]["spec"]["containers"][0]["image"]
            for g in sorted(kubectl.get("rbg", namespace=namespace), key=lambda g: g["metadata"]["name"])
        ]

    most_in_flight = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        groups = kubectl.get("rbg", namespace=namespace)
        in_flight = [
            g
            for g in groups
            if g["spec"]["roles"][0]["template"]["spec"]["containers"][0]["image"].endswith("v2")
            and not (
                (condition(g, "Ready") or {}).get("status") == "True"
                and g["status"].get("observedGeneration") == g["metadata"]["generation"]
            )
        ]
        most_in_flight = max(most_in_flight, len(in_flight))
        if images() == ["example.com/app:v2"] * 3 and not in_flight:
            break
        time.sleep(0.3)
    assert images() == ["example.com/app:v2"] * 3
    assert most_in_flight <= 1


def test_set_replaces_a_bad_template_with_a_fix_and_recreates_a_deleted_member(
    kubectl: Kubectl, operator, namespace: str
):
    def fleet(spec: dict) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "fix"},
            "spec": {"replicas": 2, "template": {"roles": [{"name": "web", "template": {"spec": spec}}]}},
        }

    def status() -> dict:
        return kubectl.get("rbgs", "fix", namespace).get("status") or {}

    kubectl.apply(fleet({"containers": C}), namespace)
    wait_for("2 groups ready", lambda: status().get("readyReplicas") == 2 and status()["observedGeneration"] == 1, 60)
    # A template whose pods can never be scheduled: the first member takes it and never becomes Ready,
    # so the rollout holds there and the other member keeps serving.
    kubectl.apply(fleet({"containers": C, "nodeSelector": {"example.com/no-such-node": "true"}}), namespace)
    wait_for(
        "fix-0 on the bad template",
        lambda: (condition(kubectl.get("rbg", "fix-0", namespace), "Ready") or {}).get("status") == "False",
        30,
    )
    time.sleep(3)
    assert (condition(kubectl.get("rbg", "fix-1", namespace), "Ready") or {}).get("status") == "True"
    assert "nodeSelector" not in kubectl.get("rbg", "fix-1", namespace)["spec"]["roles"][0]["template"]["spec"]
    # The fix reaches the member that is not Ready at once, although not every member is Ready.
    kubectl.apply(fleet({"containers": [{**C[0], "image": "example.com/app:v2"}]}), namespace)
    wait_for(
        "every member on the fix and Ready",
        lambda: status().get("readyReplicas") == 2 and condition({"status": status()}, "Ready")["status"] == "True",
        90,
    )
    for name in ("fix-0", "fix-1"):
        spec = kubectl.get("rbg", name, namespace)["spec"]["roles"][0]["template"]["spec"]
        assert spec["containers"][0]["image"] == "example.com/app:v2" and "nodeSelector" not in spec

    # A deleted member comes back at once, woken by its deletion (not by the 10-minute resync).
    uid = kubectl.get("rbg", "fix-1", namespace)["metadata"]["uid"]
    kubectl.run("delete", "rbg", "fix-1", f"-n={namespace}", "--wait=false")
    wait_for(
        "fix-1 re-created", lambda: (g := kubectl.get("rbg", "fix-1", namespace)) and g["metadata"]["uid"] != uid, 15
    )


def test_set_member_reapply_keeps_the_replicas_its_adapter_set(kubectl: Kubectl, operator, namespace: str):
    def fleet(image: str) -> dict:
        return {
            "apiVersion": "workloads.x-k8s.io/v1alpha1",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "keep"},
            "spec": {
                "replicas": 1,
                "template": {
                    "roles": [
                        {
                            "name": "web",
                            "replicas": 1,
                            "scalingAdapter": {"enable": True},
                            "template": {"spec": {"containers": [{"name": "main", "image": image}]}},
                        }
                    ]
                },
            },
        }

    def member_role() -> dict:
        return kubectl.get("rbg", "keep-0", namespace)["spec"]["roles"][0]

    kubectl.apply(fleet("example.com/app:v1"), namespace)
    wait_for(
        "adapter bound",
        lambda: ((kubectl.get("rbgsa", "keep-0-web", namespace) or {}).get("status") or {}).get("phase") == "Bound",
        60,
    )
    kubectl.run("scale", "rbgsa/keep-0-web", "--replicas=2", f"-n={namespace}")
    wait_for("the member's role at 2", lambda: member_role()["replicas"] == 2, 30)
    scaled_at = wait_for(
        "the adapter's scale time",
        lambda: (kubectl.get("rbgsa", "keep-0-web", namespace).get("status") or {}).get("lastScaleTime"),
        30,
    )
    time.sleep(1.5)  # a second scaling would carry a later time
    # A template change re-applies the member: the adapter's replicas must survive it, without the
    # adapter having to scale the role back (a dip to the template's 1 replica in between).
    kubectl.apply(fleet("example.com/app:v2"), namespace)
    wait_for(
        "the member on v2",
        lambda: member_role()["template"]["spec"]["containers"][0]["image"] == "example.com/app:v2",
        60,
    )
    assert member_role()["replicas"] == 2
    wait_for(
        "2 pods",
        lambda: (
            len(
                [
                    p
                    for p in pods(kubectl, namespace, "rolebasedgroup.workloads.x-k8s.io/name=keep-0")
                    if not p["metadata"].get("deletionTimestamp")
                ]
            )
            == 2
        ),
        60,
    )
    time.sleep(2)
    adapter = kubectl.get("rbgsa", "keep-0-web", namespace)
    assert member_role()["replicas"] == 2 and adapter["spec"]["replicas"] == 2
    assert adapter["status"]["lastScaleTime"] == scaled_at, "the adapter had to scale the role again"
