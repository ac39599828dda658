"""v1alpha2 served beside v1alpha1 on the real API server, converted by the operator's webhook.

The CRDs are installed a second time under a throwaway group, with their conversion pointed at an
operator process of the test's own (serving /convert over TLS): the shapes test can store objects
of every kind there, and the suite's CRDs and kubectl's view of `rbg` stay as they are.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest
import yaml

from localcluster.components import kubernetes_openapi
from rbg_operator.api import crdgen
from rbg_operator.api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleBasedGroupSpecV2
from rbg_operator.webhook import self_signed_certificate
from tests.conftest import LOG_DIR
from tests.support.kubectl import Kubectl, wait_for
from tests.support.operator import OperatorProcess, free_port
from tests.support.testgroup import OwnDiscoveryCache, crds_under_a_test_group

C = [{"name": "main", "image": "example.com/app:v1"}]
TEMPLATE = {"spec": {"containers": C}}


@pytest.fixture(scope="module")
def api(kubectl: Kubectl, kubeconfig: str, tmp_path_factory):
    """(kubectl with its own discovery cache, the test group) with both versions served."""
    tmp = tmp_path_factory.mktemp("versions")
    group = f"zz{secrets.token_hex(4)}.versions.example.com"
    cert, _ = self_signed_certificate(tmp / "cert", "127.0.0.1")
    port = free_port()
    converter = OperatorProcess(
        kubeconfig,
        LOG_DIR / "conversion-operator.log",
        "--namespace=rbg-conversion-only",
        f"--webhook-bind-address=127.0.0.1:{port}",
        f"--webhook-cert-dir={tmp / 'cert'}",
    ).start()
    client = OwnDiscoveryCache(kubectl, tmp / "kube-cache")
    texts = crds_under_a_test_group(crdgen.render([json.loads(kubernetes_openapi().read_text())]), group)
    names = []
    for text in texts.values():
        crd = yaml.safe_load(text)
        conversion = crd["spec"].get("conversion")
        if conversion:
            conversion["webhook"]["clientConfig"] = {
                "url": f"https://127.0.0.1:{port}/convert",
                "caBundle": base64.b64encode(cert.read_bytes()).decode(),
            }
        client.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(crd))
        names.append(crd["metadata"]["name"])
    try:
        for name in names:
            client.run("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        yield client, group
    finally:
        for name in names:
            client.run("delete", "crd", name, "--ignore-not-found", "--wait=false")
        converter.stop()


def v1_group(group: str, name: str, **spec) -> dict:
    return {
        "apiVersion": f"{group}/v1alpha1",
        "kind": "RoleBasedGroup",
        "metadata": {"name": name},
        "spec": {"roles": [{"name": "web", "replicas": 2, "template": TEMPLATE}], **spec},
    }


def v2(group: str, kind: str, name: str, spec: dict, **metadata) -> dict:
    return {"apiVersion": f"{group}/v1alpha2", "kind": kind, "metadata": {"name": name, **metadata}, "spec": spec}


def test_a_v1alpha1_group_reads_in_the_v1alpha2_shape(api, namespace: str):
    kubectl, group = api
    kubectl.apply(
        v1_group(group, "old", podGroupPolicy={"kubeScheduling": {"scheduleTimeoutSeconds": 30}}),
        namespace,
        "--server-side",
    )
    converted = wait_for(
        "the v1alpha2 view", lambda: kubectl.get(f"rolebasedgroups.v1alpha2.{group}", "old", namespace), 30
    )
    role = converted["spec"]["roles"][0]
    assert converted["apiVersion"] == f"{group}/v1alpha2"
    assert role["standalonePattern"] == {"template": TEMPLATE} and "template" not in role
    assert role["annotations"] == {"rbg.workloads.x-k8s.io/role-workload-type": "apps/v1/StatefulSet"}
    assert converted["metadata"]["annotations"]["rbg.workloads.x-k8s.io/group-gang-scheduling-timeout"] == "30"
    # Stored as v1alpha1, unchanged.
    stored = kubectl.get(f"rolebasedgroups.v1alpha1.{group}", "old", namespace)
    assert stored["spec"]["podGroupPolicy"] == {"kubeScheduling": {"scheduleTimeoutSeconds": 30}}
    assert "annotations" not in stored["metadata"]


def reference_shapes(group: str) -> list[dict]:
    """One manifest for each shape the reference's v1alpha2 examples use."""
    lws = {
        "size": 4,
        "template": TEMPLATE,
        "leaderTemplatePatch": {"metadata": {"labels": {"role": "leader"}}},
        "workerTemplatePatch": {"spec": {"containers": [{"name": "main", "args": ["--worker"]}]}},
        "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
    }
    rolling = {
        "type": "RollingUpdate",
        "rollingUpdate": {
            "type": "InPlaceIfPossible",
            "partition": 2,
            "paused": True,
            "maxUnavailable": 1,
            "maxSurge": 1,
            "inPlaceUpdateStrategy": {"gracePeriodSeconds": 10},
        },
    }
    return [
        v2(
            group,
            "RoleBasedGroup",
            "standalone",
            {
                "roles": [
                    {
                        "name": "router",
                        "standalonePattern": {"template": TEMPLATE},
                        "dependencies": ["prefill", "decode"],
                        "minReadySeconds": 5,
                    },
                    {
                        "name": "prefill",
                        "replicas": 3,
                        "standalonePattern": {"template": TEMPLATE},
                        "rolloutStrategy": rolling,
                        "scalingAdapter": {"enable": True},
                    },
                    {
                        "name": "decode",
                        "replicas": 2,
                        "standalonePattern": {"template": TEMPLATE},
                        "engineRuntimes": [
                            {
                                "profileName": "runtime",
                                "injectContainers": ["main"],
                                "containers": [{"name": "patio", "args": ["--x"]}],
                            }
                        ],
                    },
                ]
            },
        ),
        v2(
            group,
            "RoleBasedGroup",
            "leader-worker",
            {
                "roleTemplates": [{"name": "base", "template": TEMPLATE}],
                "roles": [
                    {"name": "prefill", "leaderWorkerPattern": lws},
                    {
                        "name": "decode",
                        "dependencies": ["prefill"],
                        "leaderWorkerPattern": {
                            "size": 2,
                            "templateRef": {"name": "base", "patch": {"spec": {}}},
                            "restartPolicyConfig": {"type": "None"},
                        },
                    },
                ],
            },
        ),
        v2(
            group,
            "RoleBasedGroup",
            "components",
            {
                "roles": [
                    {
                        "name": "pd",
                        "replicas": 3,
                        "customComponentsPattern": {
                            "restartPolicyConfig": {"type": "RecreateRoleInstanceOnPodRestart"},
                            "components": [
                                {
                                    "name": "leader",
                                    "size": 1,
                                    "template": TEMPLATE,
                                    "annotations": {"rolebasedgroup.workloads.x-k8s.io/component-depends-on": "{}"},
                                },
                                {"name": "worker", "size": 2, "template": TEMPLATE},
                                {"name": "router", "size": 1, "template": TEMPLATE, "labels": {"tier": "router"}},
                            ],
                        },
                        "rolloutStrategy": rolling,
                    }
                ]
            },
        ),
        v2(
            group,
            "RoleBasedGroup",
            "gang",
            {"roles": [{"name": "web", "standalonePattern": {"template": TEMPLATE}}]},
            annotations={
                "rbg.workloads.x-k8s.io/group-gang-scheduling": "true",
                "rbg.workloads.x-k8s.io/group-gang-scheduling-volcano-queue": "default",
            },
        ),
        v2(
            group,
            "RoleBasedGroupSet",
            "fleet",
            {
                "replicas": 2,
                "groupTemplate": {
                    "labels": {"team": "a"},
                    "annotations": {"note": "x"},
                    "spec": {"roles": [{"name": "web", "standalonePattern": {"template": TEMPLATE}}]},
                },
            },
        ),
        v2(
            group,
            "RoleBasedGroupScalingAdapter",
            "adapter",
            {"replicas": 2, "scaleTargetRef": {"name": "standalone", "role": "prefill"}},
        ),
        v2(
            group,
            "ClusterEngineRuntimeProfile",
            f"runtime-{secrets.token_hex(3)}",
            {
                "updateStrategy": "RollingUpdate",
                "initContainers": [{"name": "init", "image": "example.com/init:v1"}],
                "containers": [{"name": "patio", "image": "example.com/patio:v1"}],
                "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
            },
        ),
        v2(
            group,
            "CoordinatedPolicy",
            "standalone",
            {
                "policies": [
                    {
                        "name": "rollout",
                        "roles": ["prefill", "decode"],
                        "strategy": {"rollingUpdate": {"maxSkew": "1%", "maxUnavailable": "10%"}},
                    },
                    {
                        "name": "scale",
                        "roles": ["prefill", "decode"],
                        "strategy": {"scaling": {"maxSkew": "5%", "progression": "OrderReady"}},
                    },
                ]
            },
        ),
    ]


def test_manifests_in_every_reference_shape_are_accepted_and_survive_storage(api, namespace: str):
    kubectl, group = api
    for manifest in reference_shapes(group):
        dry = dry_run(kubectl, manifest, namespace)
        assert dry.returncode == 0, (manifest["metadata"]["name"], dry.stderr)
    models = {
        "RoleBasedGroup": ("rolebasedgroups", RoleBasedGroupSpecV2),
        "RoleBasedGroupSet": ("rolebasedgroupsets", RoleBasedGroupSetSpecV2),
    }
    for manifest in reference_shapes(group):
        if manifest["kind"] not in models:
            continue
        kubectl.apply(manifest, namespace, "--server-side")
        plural, model = models[manifest["kind"]]
        name = manifest["metadata"]["name"]
        # Stored as v1alpha1 and read back as v1alpha2: nothing lost on the way. The API server fills
        # in the schema's defaults, which are the model's.
        back = kubectl.get(f"{plural}.v1alpha2.{group}", name, namespace)
        assert back["spec"] == model.model_validate(manifest["spec"]).wire(), name
        carried = {
            k: v for k, v in (back["metadata"].get("annotations") or {}).items() if not k.startswith("conversion.")
        }
        assert carried == manifest["metadata"].get("annotations", {}), name


def dry_run(kubectl: Kubectl, manifest: dict, namespace: str):
    return kubectl.run(
        "apply",
        f"--namespace={namespace}",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump(manifest),
        check=False,
    )


def test_v1alpha2_rules_refuse_with_the_field_named(api, namespace: str):
    kubectl, group = api
    both = v2(
        group,
        "RoleBasedGroup",
        "both",
        {
            "roles": [
                {
                    "name": "web",
                    "standalonePattern": {"template": TEMPLATE},
                    "leaderWorkerPattern": {"template": TEMPLATE},
                }
            ]
        },
    )
    refused = dry_run(kubectl, both, namespace)
    assert (
        refused.returncode != 0
        and "spec.roles[0]: Invalid value: role web sets more than one pattern" in refused.stderr
    ), refused.stderr
    delays = v2(
        group,
        "RoleBasedGroup",
        "delays",
        {
            "roles": [
                {
                    "name": "web",
                    "leaderWorkerPattern": {
                        "template": TEMPLATE,
                        "restartPolicyConfig": {"baseDelaySeconds": 60, "maxDelaySeconds": 30},
                    },
                }
            ]
        },
    )
    refused = dry_run(kubectl, delays, namespace)
    assert (
        refused.returncode != 0
        and "maxDelaySeconds must be greater than or equal to baseDelaySeconds" in refused.stderr
    ), refused.stderr
