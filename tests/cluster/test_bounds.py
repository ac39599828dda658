"""Bounds on every amplifier, on the real control plane (issue #39, review N-6, N-7, N-8a, N-13):
each is refused at admission with the limit named, or (where admission cannot measure it) refused
by the controller before it fans out; and what stays allowed no longer costs the operator its
event loop or its state. Quotas keep the shared API server light: nothing here makes more than a
handful of objects."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from rbg_operator.controller.restarts import decode_state
from tests.cluster.test_restart_policies import restart_container
from tests.support.kubectl import Kubectl, condition, wait_for

V1 = "workloads.x-k8s.io/v1alpha1"
V2 = "workloads.x-k8s.io/v1alpha2"
C = [{"name": "main", "image": "example.com/app:v1"}]
STATE = "rolebasedgroup.workloads.x-k8s.io/restart-state"


def template(image: str = "example.com/app:v1", env_bytes: int = 0) -> dict:
    env = [{"name": "BLOB", "value": "x" * env_bytes}] if env_bytes else []
    return {"spec": {"containers": [{"name": "main", "image": image, **({"env": env} if env else {})}]}}


def components(count: int, size: int, tmpl: dict | None = None) -> list[dict]:
    return [{"name": f"c{i}", "size": size, "template": tmpl or template()} for i in range(count)]


def instance_set(name: str, replicas: int = 1, **spec) -> dict:
    return {
        "apiVersion": V2,
        "kind": "RoleInstanceSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "roleInstanceTemplate": {"components": components(1, 1)}, **spec},
    }


def v2_group(name: str, roles: list[dict]) -> dict:
    return {"apiVersion": V2, "kind": "RoleBasedGroup", "metadata": {"name": name}, "spec": {"roles": roles}}


ROLE_INSTANCES = "count/roleinstances.workloads.x-k8s.io"


def hard_quota(kubectl: Kubectl, namespace: str, hard: dict[str, int]) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "bounds"},
            "spec": {"hard": {k: str(v) for k, v in hard.items()}},
        },
        namespace,
    )
    wait_for(
        "the quota in force",
        lambda: (kubectl.get("resourcequota", "bounds", namespace) or {}).get("status", {}).get("hard"),
        30,
    )


# CEL and schema: no webhook needed.
REFUSED = {
    "N-6 a RoleInstanceSet's maxSurge over the replicas cap": (
        instance_set("s", updateStrategy={"maxSurge": 30_000_000}),
        ["spec.updateStrategy.maxSurge", "from 0 to 5000", "0% to 100%"],
    ),
    "N-6 a RoleInstanceSet's maxSurge over 100%": (
        instance_set("s", updateStrategy={"maxSurge": "9999999%"}),
        ["spec.updateStrategy.maxSurge", "0% to 100%"],
    ),
    "N-6 a v1alpha1 role's maxSurge": (
        {
            "apiVersion": V1,
            "kind": "RoleBasedGroup",
            "metadata": {"name": "g"},
            "spec": {
                "roles": [
                    {"name": "a", "template": template(), "rolloutStrategy": {"rollingUpdate": {"maxSurge": "200%"}}}
                ]
            },
        },
        ["spec.roles[0].rolloutStrategy.rollingUpdate.maxSurge", "0% to 100%"],
    ),
    "N-6 a v1alpha2 role's maxSurge": (
        v2_group(
            "g",
            [
                {
                    "name": "a",
                    "standalonePattern": {"template": template()},
                    "rolloutStrategy": {"rollingUpdate": {"maxSurge": 30_000_000}},
                }
            ],
        ),
        ["spec.roles[0].rolloutStrategy.rollingUpdate.maxSurge", "from 0 to 5000"],
    ),
    "N-7 a RoleInstance of 64 x 256 pods": (
        {
            "apiVersion": V2,
            "kind": "RoleInstance",
            "metadata": {"name": "ri"},
            "spec": {"components": components(64, 256)},
        },
        ["spec.components", "at most 5000"],
    ),
    "N-7 a RoleInstanceSet of more pods than a group may have": (
        {
            **instance_set("s", replicas=21),
            "spec": {"replicas": 21, "roleInstanceTemplate": {"components": components(20, 12)}},
        },
        ["spec.replicas", "at most 5000"],
    ),
    "N-7 a v1alpha2 group whose custom components pass the pod cap": (
        v2_group("g", [{"name": "cc", "replicas": 40, "customComponentsPattern": {"components": components(4, 64)}}]),
        ["spec.roles", "at most 5000"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_admission_refuses_each_amplifier_naming_the_limit(kubectl: Kubectl, namespace: str, case: str):
    manifest, words = REFUSED[case]
    kubectl.refuses(manifest, namespace, words, case)


# Before the tests that register the admission webhook (a module fixture): this one needs a set that
# only the controller judges.
def test_a_role_instance_set_made_directly_is_not_fanned_out_past_32_mib(kubectl: Kubectl, operator, namespace: str):
    """N-8a for a RoleInstanceSet created directly (no webhook sees it): the controller makes no
    instance, and says why, naming the limit."""
    hard_quota(kubectl, namespace, {ROLE_INSTANCES: 5})
    big = instance_set("big", replicas=1000)
    big["spec"]["roleInstanceTemplate"]["components"][0]["template"] = template(env_bytes=100_000)
    kubectl.run("create", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(big))
    kubectl.apply(instance_set("small", replicas=2), namespace)

    def refused():
        found = condition(kubectl.get("roleinstanceset", "big", namespace), "FailedScale") or {}
        return found.get("status") == "True" and found

    refusal = wait_for("the set's FailedScale condition", refused, 60)
    assert "at most 33554432 bytes (32 MiB)" in refusal["message"] and refusal["message"].startswith("spec.replicas")
    assert any(
        "32 MiB" in e["message"]
        for e in kubectl.get("events", namespace=namespace)
        if e["reason"] == "TemplateCopiesTooLarge"
    )
    wait_for(
        "the small set's instances",
        lambda: (
            len(
                [
                    i
                    for i in kubectl.get("roleinstances", namespace=namespace)
                    if i["metadata"]["name"].startswith("small-")
                ]
            )
            == 2
        ),
        60,
    )
    time.sleep(2)
    assert not [
        i for i in kubectl.get("roleinstances", namespace=namespace) if i["metadata"]["name"].startswith("big-")
    ], "instances of the refused set were made"


def test_template_copies_past_32_mib_are_refused_by_the_webhook(kubectl: Kubectl, admission_webhook, namespace: str):
    """N-8a: replicas x template bytes; CEL cannot measure bytes, the webhook's models can."""
    fan = v2_group(
        "fan", [{"name": "r", "replicas": 1000, "standalonePattern": {"template": template(env_bytes=100_000)}}]
    )
    result = kubectl.run(
        "create", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(fan), check=False
    )
    assert result.returncode != 0, "1,000 copies of a 100 KB template were accepted"
    assert "spec.roles" in result.stderr and "at most 33554432 bytes (32 MiB)" in result.stderr, result.stderr
    group_set = {
        "apiVersion": V1,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "many"},
        "spec": {"replicas": 1000, "template": {"roles": [{"name": "r", "template": template(env_bytes=40_000)}]}},
    }
    result = kubectl.run(
        "create", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(group_set), check=False
    )
    assert result.returncode != 0, "1,000 members of a 40 KB group were accepted"
    assert "spec.replicas" in result.stderr and "32 MiB" in result.stderr, result.stderr
    # What a real group needs passes.
    fine = v2_group(
        "fine", [{"name": "r", "replicas": 100, "standalonePattern": {"template": template(env_bytes=20_000)}}]
    )
    kubectl.run("create", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(fine))


def test_a_role_instance_set_past_32_mib_is_refused_by_the_webhook(kubectl: Kubectl, admission_webhook, namespace: str):
    big = instance_set("big", replicas=1000)
    big["spec"]["roleInstanceTemplate"]["components"][0]["template"] = template(env_bytes=100_000)
    result = kubectl.run(
        "create", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(big), check=False
    )
    assert result.returncode != 0, "1,000 copies of a 100 KB template were accepted"
    assert "spec.replicas" in result.stderr and "at most 33554432 bytes (32 MiB)" in result.stderr, result.stderr
    kubectl.run(
        "create",
        "--dry-run=server",
        f"--namespace={namespace}",
        "-f",
        "-",
        stdin=json.dumps(instance_set("small", replicas=2)),
    )


def test_a_large_max_surge_surges_at_most_replicas(kubectl: Kubectl, operator, namespace: str):
    """N-6: maxSurge 5000 is admitted (the cap), and a one-replica role surges one instance, not
    5000. A quota of 3 RoleInstances keeps a regression from flooding the API server."""
    hard_quota(kubectl, namespace, {ROLE_INSTANCES: 3})

    def apply(image: str) -> None:
        kubectl.apply(
            v2_group(
                "surge",
                [
                    {
                        "name": "web",
                        "replicas": 1,
                        "standalonePattern": {"template": template(image)},
                        "rolloutStrategy": {
                            "rollingUpdate": {"type": "RecreatePod", "maxSurge": 5000, "maxUnavailable": 0}
                        },
                    }
                ],
            ),
            namespace,
        )

    def instances() -> list[str]:
        return [i["metadata"]["name"] for i in kubectl.get("roleinstances", namespace=namespace)]

    def rolled() -> bool:
        pods = kubectl.get("pods", namespace=namespace, selector="rbg.workloads.x-k8s.io/group-name=surge")
        group = kubectl.get("rbg", "surge", namespace)
        return (
            len(pods) == 1
            and pods[0]["spec"]["containers"][0]["image"] == "example.com/app:v2"
            and (condition(group, "Ready") or {}).get("status") == "True"
            and instances() == ["surge-web-0"]
        )

    apply("example.com/app:v1")
    wait_for(
        "the group Ready",
        lambda: (condition(kubectl.get("rbg", "surge", namespace), "Ready") or {}).get("status") == "True",
        120,
    )
    apply("example.com/app:v2")
    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not rolled():
        most = max(most, len(instances()))
        assert most <= 2, f"{most} instances: the surge went past replicas"
        time.sleep(0.3)
    assert rolled(), "the rollout did not finish"


def healthz_seconds(port: int) -> float:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30):
            pass
    except OSError:
        pass
    return time.monotonic() - started


def test_an_instance_at_the_pod_cap_never_holds_the_event_loop(kubectl: Kubectl, operator, namespace: str):
    """N-7: a RoleInstance of 5,000 pods with 6 KB templates (a pod quota of 0 keeps them from
    being made; each refusal is retried). The operator answers /healthz promptly throughout."""
    hard_quota(kubectl, namespace, {"pods": 0})
    tmpl = {
        "spec": {
            "containers": [
                {
                    "name": f"c{i}",
                    "image": "registry.k8s.io/pause:3.10",
                    "env": [{"name": f"E{j}", "value": "v" * 20} for j in range(40)],
                }
                for i in range(3)
            ]
        }
    }
    instance = {
        "apiVersion": V2,
        "kind": "RoleInstance",
        "metadata": {"name": "ri"},
        "spec": {"components": components(20, 250, tmpl)},
    }
    kubectl.run("create", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(instance))
    slowest = 0.0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        slowest = max(slowest, healthz_seconds(operator.health_port))
        time.sleep(0.1)
    kubectl.delete("roleinstance", "ri", namespace, "--wait=false")
    assert slowest < 1.0, f"/healthz took {slowest:.1f}s: a reconcile held the event loop"


def test_the_restart_state_fits_beside_other_annotations_and_the_policy_keeps_working(
    kubectl: Kubectl, operator, namespace: str
):
    """N-13: the restart state used to take about 100 bytes per bound pod (about 500 KB at the
    5,000-pod cap). Twenty pods and annotations that leave 1,500 bytes of the 256 KiB limit
    reproduce the refusal without thousands of pods; compressed, the state fits."""
    pods = 20
    key = "example.com/padding"
    group = {
        "apiVersion": V1,
        "kind": "RoleBasedGroup",
        "metadata": {"name": "pad", "annotations": {key: "p" * (256 * 1024 - len(key) - 1500)}},
        "spec": {
            "roles": [
                {
                    "name": "a",
                    "replicas": pods,
                    "restartPolicy": "RecreateRBGOnPodRestart",
                    "template": {"spec": {"containers": C}},
                }
            ]
        },
    }
    kubectl.run("create", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(group))

    def recorded() -> dict | None:
        body = kubectl.get("rbg", "pad", namespace)
        ready = condition(body, "Ready") or {}
        assert "Too long" not in ready.get("message", ""), ready["message"][:300]
        state = decode_state((body["metadata"].get("annotations") or {}).get(STATE))
        return len(state.get("pods") or {}) == pods and ready.get("status") == "True" and body

    body = wait_for(f"the baseline of all {pods} pods recorded and the group Ready", recorded, 180)
    print(f"restart state: {len(body['metadata']['annotations'][STATE])} bytes for {pods} pods")
    before = {
        p["metadata"]["name"]: p["metadata"]["uid"]
        for p in kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=pad")
    }
    restart_container(kubectl, namespace, "pad-a-0")
    wait_for(
        "every pod recreated",
        lambda: all(
            p["metadata"]["uid"] != before.get(p["metadata"]["name"])
            for p in kubectl.get("pods", namespace=namespace, selector="rolebasedgroup.workloads.x-k8s.io/name=pad")
        ),
        120,
    )
