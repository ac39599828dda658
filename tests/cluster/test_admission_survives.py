"""The admission webhook on the real API server answers every review, whatever its body: a group
nested far deeper than any decoder's default, an UPDATE review over kopf's 1 MiB, hostile
conversion annotations. Each is refused naming the field; none gets an HTTP 500 or a 413, which
the chart's failurePolicy Ignore would turn into an unvalidated write."""

from __future__ import annotations

import json

import pytest

from tests.cluster.test_conversion_survives import RBG_V2, V1, C, deep_group, plain_group
from tests.support.kubectl import Kubectl


def dry_run(kubectl: Kubectl, namespace: str, text: str, *resource: str):
    return kubectl.run("create", "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=text, check=False)


def test_a_group_nested_1100_deep_is_refused_naming_the_field(kubectl: Kubectl, admission_webhook, namespace: str):
    result = dry_run(kubectl, namespace, deep_group("deep"))
    assert result.returncode != 0, "the deep group was admitted (the webhook failed and was ignored)"
    assert "spec.roles[0].templatePatch: nested 1101 levels deep, at most 24" in result.stderr, result.stderr
    # Written in v1alpha2, named as v1alpha2 spells it.
    v2 = (
        deep_group("deep")
        .replace(V1, "workloads.x-k8s.io/v1alpha2")
        .replace(
            '"templateRef":{"name":"t"},"templatePatch":', '"standalonePattern":{"templateRef":{"name":"t","patch":'
        )[:-3]
        + "}}]}}"
    )
    result = dry_run(kubectl, namespace, v2)
    assert result.returncode != 0, "the deep v1alpha2 group was admitted"
    assert "spec.roles[0].standalonePattern.templateRef.patch: nested 1101 levels deep, at most 24" in result.stderr, (
        result.stderr
    )


def test_an_update_review_over_one_mebibyte_is_still_validated(kubectl: Kubectl, admission_webhook, namespace: str):
    blob = {**C[0], "env": [{"name": "B", "value": "x" * 600_000}]}
    group = plain_group("cyc")
    group["spec"]["roles"] = [
        {"name": "a", "replicas": 0, "template": {"spec": {"containers": [blob]}}},
        {"name": "b", "replicas": 0, "template": {"spec": {"containers": C}}},
    ]
    kubectl.run("create", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(group))
    cycle = [
        {"op": "add", "path": "/spec/roles/0/dependencies", "value": ["b"]},
        {"op": "add", "path": "/spec/roles/1/dependencies", "value": ["a"]},
    ]
    result = kubectl.run(
        "patch", "rbg", "cyc", f"--namespace={namespace}", "--type=json", "-p", json.dumps(cycle), check=False
    )
    assert result.returncode != 0, "a dependency cycle was admitted in a 1.2 MB UPDATE review"
    assert "cycle" in result.stderr, result.stderr


HOSTILE = ["[]", "null", "1", '"x"', "{"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_conversion_annotations_are_refused_naming_them(
    kubectl: Kubectl, admission_webhook, namespace: str, value: str
):
    key = "conversion.workloads.x-k8s.io/v1alpha2-group-template"
    group_set = {
        "apiVersion": V1,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": "s", "annotations": {key: value}},
        "spec": {"replicas": 0, "template": {"roles": [{"name": "a", "template": {"spec": {"containers": C}}}]}},
    }
    result = dry_run(kubectl, namespace, json.dumps(group_set))
    assert result.returncode != 0 and f"metadata.annotations[{key}]: " in result.stderr, result.stderr
    role_key = "conversion.workloads.x-k8s.io/v1alpha2-role-fields"
    group = plain_group("g")
    group["spec"]["roles"][0]["annotations"] = {role_key: value}
    result = dry_run(kubectl, namespace, json.dumps(group))
    assert result.returncode != 0 and f"spec.roles[0].annotations[{role_key}]: " in result.stderr, result.stderr
    policy_key = "conversion.workloads.x-k8s.io/v1alpha1-pod-group-policy"
    result = dry_run(kubectl, namespace, json.dumps(plain_group("p", annotations={policy_key: value})))
    assert result.returncode != 0 and f"metadata.annotations[{policy_key}]: " in result.stderr, result.stderr


def test_a_v1alpha2_write_cannot_plant_a_kept_annotation(kubectl: Kubectl, admission_webhook, namespace: str):
    key = "conversion.workloads.x-k8s.io/v1alpha2-role-fields"
    group = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "v2"},
        "spec": {
            "roles": [
                {
                    "name": "a",
                    "replicas": 0,
                    "annotations": {key: "[]"},
                    "standalonePattern": {"template": {"spec": {"containers": C}}},
                }
            ]
        },
    }
    result = dry_run(kubectl, namespace, json.dumps(group))
    assert result.returncode != 0 and f"spec.roles[0].annotations[{key}]: " in result.stderr, result.stderr
    assert kubectl.run("get", RBG_V2, "--all-namespaces").returncode == 0
