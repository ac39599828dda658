"""The CRDs accept every manifest shape of the reference API and reject bad ones at admission,
with a message that names the field (CEL in the schema; a webhook for what CEL cannot say)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.kubectl import Kubectl, wait_for

MANIFESTS = Path(__file__).parent / "manifests"
REPO = Path(__file__).resolve().parents[2]
VALID = sorted((MANIFESTS / "valid").glob("*.yaml")) + [REPO / "examples" / "sglang_pd.yaml"]
INVALID = yaml.safe_load((MANIFESTS / "invalid.yaml").read_text())["cases"]


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_manifest_is_accepted(kubectl: Kubectl, admission_webhook, namespace: str, path: Path):
    result = kubectl.run("apply", "--dry-run=server", f"--namespace={namespace}", "-f", str(path))
    assert "(server dry run)" in result.stdout


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["name"])
def test_invalid_manifest_is_rejected_naming_the_field(kubectl: Kubectl, admission_webhook, namespace: str, case: dict):
    manifest = {
        "apiVersion": "workloads.x-k8s.io/v1alpha1",
        "kind": case.get("kind", "RoleBasedGroup"),
        "metadata": {"name": case["name"].lower()},
        "spec": case["spec"],
    }
    result = kubectl.run(
        "apply", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=yaml.safe_dump(manifest), check=False
    )
    assert result.returncode != 0, f"{case['name']} was accepted"
    assert case["expect"] in result.stderr


def test_invalid_corpus_is_large_enough():
    assert len(INVALID) >= 20


@pytest.mark.parametrize(
    "version, field, text",
    [
        ("v1alpha1", "rbg.spec.roles.dependencies", "Roles that must be Ready before this role is created"),
        ("v1alpha1", "rbg.spec.podGroupPolicy", "Gang scheduling policy"),
        ("v1alpha1", "rbgsa.spec.scaleTargetRef", "The group and role to scale"),
        ("v1alpha1", "rbgs.spec.template", "Spec of every RoleBasedGroup of the set"),
        ("v1alpha2", "rbg.spec.roles.leaderWorkerPattern.size", "Pods per instance, the leader included"),
        ("v1alpha2", "rbgs.spec.groupTemplate", "Every member group's labels, annotations and spec"),
        ("v1alpha2", "cpolicy.spec.policies", "The rules"),
    ],
)
def test_kubectl_explain_describes_fields(kubectl: Kubectl, version: str, field: str, text: str):
    # The API server publishes a new CRD's OpenAPI a few seconds after it is established.
    wait_for(
        f"kubectl explain {field}",
        lambda: (
            text in kubectl.run("explain", field, f"--api-version=workloads.x-k8s.io/{version}", check=False).stdout
        ),
        60,
    )


def test_printer_columns_and_short_names(kubectl: Kubectl, namespace: str):
    kubectl.apply(yaml.safe_load((MANIFESTS / "valid" / "rolebasedgroupset.yaml").read_text()), namespace)
    kubectl.apply(yaml.safe_load((MANIFESTS / "valid" / "scaling-adapter.yaml").read_text()), namespace)
    kubectl.apply(yaml.safe_load((MANIFESTS / "valid" / "statefulset-minimal.yaml").read_text()), namespace)
    header = kubectl.run("get", "rbgs", f"-n={namespace}").stdout.splitlines()[0].split()
    assert header == ["NAME", "DESIRED", "READY", "AGE"]
    header = kubectl.run("get", "rbgsa", f"-n={namespace}").stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "REPLICAS", "READY_REPLICAS", "AGE"]  # v1alpha2's, the preferred version
    header = kubectl.run("get", "rbg", f"-n={namespace}").stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "AGE"]
    # The scale subresources answer as kubectl scale and an HPA use them.
    kubectl.run("scale", "rbgs/fleet", "--replicas=5", f"-n={namespace}")
    assert kubectl.get("rbgs", "fleet", namespace)["spec"]["replicas"] == 5
    kubectl.run("scale", "rbgsa/sglang-pd-decode", "--replicas=4", f"-n={namespace}")
    assert kubectl.get("rbgsa", "sglang-pd-decode", namespace)["spec"]["replicas"] == 4


@pytest.mark.parametrize("version", ["v1alpha1", "v1alpha2"])
@pytest.mark.parametrize("kind", ["RoleBasedGroup", "RoleBasedGroupSet"])
def test_a_name_with_a_dot_is_refused_naming_the_service_it_would_break(
    kubectl: Kubectl, namespace: str, version: str, kind: str
):
    # `a.b` is a valid object name, but `s-a.b-web` can never be a Service: refused at once, not a
    # group that never becomes Ready. Refused by the schema itself, with no webhook in the way.
    roles = (
        [{"name": "web", "template": {"spec": {"containers": [{"name": "main", "image": "example.com/app:v1"}]}}}]
        if version == "v1alpha1"
        else [{"name": "web", "standalonePattern": {"template": {"spec": {"containers": [{"name": "main"}]}}}}]
    )
    spec = {"roles": roles} if kind == "RoleBasedGroup" else {"replicas": 1, "template": {"roles": roles}}
    if kind == "RoleBasedGroupSet" and version == "v1alpha2":
        spec = {"replicas": 1, "groupTemplate": {"spec": {"roles": roles}}}
    manifest = {"apiVersion": f"workloads.x-k8s.io/{version}", "kind": kind, "metadata": {"name": "a.b"}, "spec": spec}
    kubectl.refuses(manifest, namespace, ["metadata.name", "must not contain '.'", "s-{name}-{role}"], "a.b")


def test_a_replicas_change_under_an_enabled_scaling_adapter_is_refused_and_other_edits_pass(
    kubectl: Kubectl, operator, admission_webhook, namespace: str
):
    container = {"name": "main", "image": "example.com/app:v1"}
    role = {
        "name": "web",
        "replicas": 1,
        "scalingAdapter": {"enable": True},
        "standalonePattern": {"template": {"spec": {"containers": [container]}}},
    }
    group = {"apiVersion": "workloads.x-k8s.io/v1alpha2", "kind": "RoleBasedGroup", "metadata": {"name": "locked"}}
    kubectl.apply({**group, "spec": {"roles": [role]}}, namespace)
    adapters = "rolebasedgroupscalingadapters.v1alpha2.workloads.x-k8s.io"
    wait_for(
        "the adapter seeded with the role's replicas",
        lambda: ((kubectl.get(adapters, "locked-web", namespace) or {}).get("spec") or {}).get("replicas") == 1,
        60,
    )
    refused = kubectl.run(
        "patch", "rolebasedgroups.v1alpha2.workloads.x-k8s.io", "locked", f"--namespace={namespace}",
        "--type=json", "-p", '[{"op": "replace", "path": "/spec/roles/0/replicas", "value": 3}]', check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    for words in ("spec.roles[0].replicas", "locked-web", "kubectl scale rbgsa"):
        assert words in refused.stderr, refused.stderr
    env = [{"name": "MODE", "value": "b"}]
    edited = {**role, "standalonePattern": {"template": {"spec": {"containers": [{**container, "env": env}]}}}}
    kubectl.apply({**group, "spec": {"roles": [edited]}}, namespace)  # any other edit passes
    kubectl.run("scale", adapters, "locked-web", "--replicas=2", f"--namespace={namespace}")
    wait_for(
        "the operator's own write of the adapter's replicas passes the lock",
        lambda: (
            kubectl.get("rolebasedgroups.v1alpha2.workloads.x-k8s.io", "locked", namespace)["spec"]["roles"][0][
                "replicas"
            ]
            == 2
        ),
        60,
    )


def test_a_role_instance_set_role_whose_pod_names_would_be_too_long_is_refused_naming_the_pod(
    kubectl: Kubectl, admission_webhook, namespace: str
):
    role = {"name": "r" * 60, "standalonePattern": {"template": {"spec": {"containers": [{"name": "main"}]}}}}
    manifest = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "g"},
        "spec": {"roles": [role]},
    }
    kubectl.refuses(
        manifest, namespace, ["spec.roles[0].name", f"g-{'r' * 60}-4999", "at most 63 characters"], "a long role"
    )


@pytest.mark.parametrize(
    "annotations, role_annotations, words",
    [
        (
            {},
            {"rbg.workloads.x-k8s.io/role-inplace-scheduling": "Sometimes"},
            ["spec.roles[0].annotations[rbg.workloads.x-k8s.io/role-inplace-scheduling]", "Preferred, Required"],
        ),
        (
            {},
            {"rbg.workloads.x-k8s.io/role-instance-pattern": "Cloned"},
            ["spec.roles[0].annotations[rbg.workloads.x-k8s.io/role-instance-pattern]", "Stateful, Stateless"],
        ),
        (
            {
                "rbg.workloads.x-k8s.io/group-gang-scheduling": "true",
                "rbg.workloads.x-k8s.io/role-instance-gang-scheduling": "true",
            },
            {},
            ["metadata.annotations", "cannot both be set on a group"],
        ),
    ],
)
def test_v1alpha2_directive_annotations_with_bad_values_are_refused_naming_them(
    kubectl: Kubectl, admission_webhook, namespace: str, annotations: dict, role_annotations: dict, words: list[str]
):
    role = {
        "name": "web",
        "annotations": role_annotations,
        "standalonePattern": {"template": {"spec": {"containers": [{"name": "main", "image": "example.com/a:1"}]}}},
    }
    manifest = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "directives", "annotations": annotations},
        "spec": {"roles": [role]},
    }
    kubectl.refuses(manifest, namespace, words, "directives")
