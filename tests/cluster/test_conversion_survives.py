"""The conversion webhook on the real API server survives whatever is stored: an object nested far
deeper than the operator decodes, pages over kopf's 1 MiB, hostile kept annotations, a renewed
certificate; and it is lossless for what v1alpha2 edits (gang, exclusive topology, a set's
groupTemplate labels and annotations).

No admission webhook runs here (module fixture admission_webhook is not used), so hostile objects
get stored, as they do while the webhook is down or bypassed. They go in iso-* namespaces, which
no operator acts on, and are deleted by each test. kubectl reads `rolebasedgroups.workloads.x-k8s.io`
at the preferred version, v1alpha2, through the session's conversion operator.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

from rbg_operator.webhook import CONVERTED_CRDS
from tests.conftest import CONVERTED_CRD, LOG_DIR
from tests.support.kubectl import Kubectl, wait_for
from tests.support.operator import OperatorProcess, free_port

V1 = "workloads.x-k8s.io/v1alpha1"
RBG_V2 = "rolebasedgroups.workloads.x-k8s.io"  # kubectl's `rbg`: the preferred version, v1alpha2
RBGS_V2 = "rolebasedgroupsets.workloads.x-k8s.io"
C = [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]


def deep_group(name: str, levels: int = 1100) -> str:
    """The review's deep.json: a templatePatch nested `levels` + 1 deep, about 7 KB."""
    patch = '{"a":' * levels + "{}" + "}" * levels
    return (
        '{"apiVersion":"%s","kind":"RoleBasedGroup","metadata":{"name":"%s"},"spec":{"roleTemplates":'
        '[{"name":"t","template":{"spec":{"containers":%s}}}],"roles":[{"name":"r","replicas":0,'
        '"templateRef":{"name":"t"},"templatePatch":%s}]}}'
    ) % (V1, name, json.dumps(C), patch)


def plain_group(name: str, **metadata) -> dict:
    return {
        "apiVersion": V1,
        "kind": "RoleBasedGroup",
        "metadata": {"name": name, **metadata},
        "spec": {"roles": [{"name": "web", "replicas": 0, "template": {"spec": {"containers": C}}}]},
    }


def create(kubectl: Kubectl, namespace: str, manifest: dict | str) -> None:
    kubectl.run(
        "create",
        f"--namespace={namespace}",
        "-f",
        "-",
        stdin=manifest if isinstance(manifest, str) else json.dumps(manifest),
    )


def delete_all(kubectl: Kubectl, namespace: str) -> None:
    """In v1alpha1 (the names are pinned), which reads without conversion: a hostile object must
    not outlive its test, whatever the conversion webhook does with it."""
    for resource in ("rbgs", "rbg"):
        kubectl.run("delete", resource, "--all", f"--namespace={namespace}", "--wait=false")


def names(kubectl: Kubectl, resource: str, *scope: str) -> list[str]:
    result = kubectl.run(
        "get", resource, *scope, "-o", 'jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\\n"}{end}'
    )
    return sorted(result.stdout.split())


def test_a_deep_stored_group_converts_and_spares_everyone_elses_list(kubectl: Kubectl, isolated_namespace: str):
    ns = isolated_namespace
    try:
        create(kubectl, ns, deep_group("deep"))  # the API server takes 10,000 levels
        create(kubectl, ns, plain_group("innocent"))
        listed = names(kubectl, RBG_V2, "--all-namespaces")
        assert f"{ns}/deep" in listed and f"{ns}/innocent" in listed
        # Too deep for Python's json to read back, so the test reads the text.
        deep = kubectl.run("get", RBG_V2, "deep", f"--namespace={ns}", "-o", "json").stdout
        assert deep.count('"a":') == 1100 and '"standalonePattern"' in deep and '"templateRef"' in deep, (
            "the deep patch came back whole, in the v1alpha2 shape"
        )
        # Written back in v1alpha2 (a label through the preferred version): still stored whole.
        kubectl.run("label", RBG_V2, "deep", "touched=yes", f"--namespace={ns}")
        stored = kubectl.run("get", "rbg", "deep", f"--namespace={ns}", "-o", "json").stdout
        assert stored.count('"a":') == 1100 and '"touched": "yes"' in stored
    finally:
        delete_all(kubectl, ns)


def test_a_list_page_over_one_mebibyte_converts(kubectl: Kubectl, isolated_namespace: str):
    ns = isolated_namespace
    try:
        # The review's page of 8 groups of 150 KB, and one group of 1.1 MB (etcd takes 1.5 MiB).
        for i, size in enumerate([150_000] * 8 + [1_100_000]):
            big = plain_group(f"big-{i}")
            big["spec"]["roles"][0]["template"]["spec"]["containers"] = [
                {**C[0], "env": [{"name": "BLOB", "value": "x" * size}]}
            ]
            create(kubectl, ns, big)
        assert len(names(kubectl, "rbg", f"--namespace={ns}")) == 9  # v1alpha1: no conversion
        assert len(names(kubectl, RBG_V2, f"--namespace={ns}")) == 9
        assert len(names(kubectl, RBG_V2, "--all-namespaces", "--chunk-size=0")) >= 9  # one unpaged LIST
    finally:
        delete_all(kubectl, ns)


def hostile_set(name: str, value: str) -> dict:
    return {
        "apiVersion": V1,
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": name, "annotations": {"conversion.workloads.x-k8s.io/v1alpha2-group-template": value}},
        "spec": {
            "replicas": 0,
            "template": {"roles": [{"name": "a", "replicas": 1, "template": {"spec": {"containers": C}}}]},
        },
    }


def test_hostile_kept_annotations_never_break_a_list(kubectl: Kubectl, isolated_namespace: str):
    ns = isolated_namespace
    values = ["[]", "null", "1", '"x"', "{"]
    try:
        for i, value in enumerate(values):
            create(kubectl, ns, hostile_set(f"s{i}", value))
        role_fields = plain_group("g")
        role_fields["spec"]["roles"][0]["annotations"] = {"conversion.workloads.x-k8s.io/v1alpha2-role-fields": "[]"}
        create(kubectl, ns, role_fields)
        assert len([n for n in names(kubectl, RBGS_V2, "--all-namespaces") if n.startswith(f"{ns}/")]) == len(values)
        assert f"{ns}/g" in names(kubectl, RBG_V2, "--all-namespaces")
        member = json.loads(kubectl.run("get", RBGS_V2, "s0", f"--namespace={ns}", "-o", "json").stdout)
        assert set(member["spec"]["groupTemplate"]) == {"spec"}, "the unusable annotation is dropped"
    finally:
        delete_all(kubectl, ns)


def annotations_v1(kubectl: Kubectl, name: str, ns: str) -> dict:
    return kubectl.get("rbg", name, ns)["metadata"].get("annotations") or {}


def test_v1alpha2_gang_edits_stick_and_exclusive_topology_survives(kubectl: Kubectl, isolated_namespace: str):
    ns = isolated_namespace
    gang = "rbg.workloads.x-k8s.io/group-gang-scheduling"
    timeout = "rbg.workloads.x-k8s.io/group-gang-scheduling-timeout"
    exclusive = "rbg.workloads.x-k8s.io/group-exclusive-topology"
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroup",
            "metadata": {
                "name": "g",
                "annotations": {gang: "true", timeout: "60", exclusive: "kubernetes.io/hostname"},
            },
            "spec": {
                "roles": [
                    {
                        "name": "a",
                        "replicas": 1,
                        "annotations": {"rbg.workloads.x-k8s.io/role-workload-type": "apps/v1/StatefulSet"},
                        "standalonePattern": {"template": {"spec": {"containers": C}}},
                    }
                ]
            },
        },
        ns,
    )
    try:
        v2 = json.loads(kubectl.run("get", RBG_V2, "g", f"--namespace={ns}", "-o", "json").stdout)
        assert v2["metadata"]["annotations"][exclusive] == "kubernetes.io/hostname"
        assert (
            annotations_v1(kubectl, "g", ns)["rolebasedgroup.workloads.x-k8s.io/exclusive-topology"]
            == "kubernetes.io/hostname"
        )
        assert kubectl.get("rbg", "g", ns)["spec"]["podGroupPolicy"] == {
            "kubeScheduling": {"scheduleTimeoutSeconds": 60}
        }
        kubectl.run("annotate", RBG_V2, "g", f"--namespace={ns}", "--overwrite", f"{timeout}=120")
        assert kubectl.get("rbg", "g", ns)["spec"]["podGroupPolicy"] == {
            "kubeScheduling": {"scheduleTimeoutSeconds": 120}
        }
        kubectl.run("annotate", RBG_V2, "g", f"--namespace={ns}", f"{gang}-")  # gang off, the v1alpha2 way
        assert "podGroupPolicy" not in kubectl.get("rbg", "g", ns)["spec"]
        v2 = json.loads(kubectl.run("get", RBG_V2, "g", f"--namespace={ns}", "-o", "json").stdout)
        assert gang not in v2["metadata"]["annotations"]
    finally:
        delete_all(kubectl, ns)


def test_two_patterns_on_one_v1alpha2_role_are_refused_naming_the_role(kubectl: Kubectl, isolated_namespace: str):
    manifest = {
        "apiVersion": "workloads.x-k8s.io/v1alpha2",
        "kind": "RoleBasedGroup",
        "metadata": {"name": "two"},
        "spec": {
            "roles": [
                {
                    "name": "web",
                    "standalonePattern": {"template": {"spec": {"containers": C}}},
                    "customComponentsPattern": {
                        "components": [{"name": "x", "size": 1, "template": {"spec": {"containers": C}}}]
                    },
                }
            ]
        },
    }
    result = kubectl.run(
        "create",
        "--dry-run=server",
        f"--namespace={isolated_namespace}",
        "-f",
        "-",
        stdin=json.dumps(manifest),
        check=False,
    )
    assert result.returncode != 0, "two patterns were accepted (and one silently dropped)"
    assert "web" in result.stderr and "customComponentsPattern" in result.stderr, result.stderr
    assert "InternalError" not in result.stderr and "Internal error" not in result.stderr, result.stderr


def test_a_sets_group_template_labels_and_annotations_reach_its_members(kubectl: Kubectl, operator, namespace: str):
    kubectl.apply(
        {
            "apiVersion": "workloads.x-k8s.io/v1alpha2",
            "kind": "RoleBasedGroupSet",
            "metadata": {"name": "fleet"},
            "spec": {
                "replicas": 1,
                "groupTemplate": {
                    "labels": {"team": "a"},
                    "annotations": {"rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds": "300"},
                    "spec": {
                        "roles": [
                            {
                                "name": "web",
                                "replicas": 1,
                                "annotations": {"rbg.workloads.x-k8s.io/role-workload-type": "apps/v1/StatefulSet"},
                                "standalonePattern": {"template": {"spec": {"containers": C}}},
                            }
                        ]
                    },
                },
            },
        },
        namespace,
    )
    member = wait_for("member fleet-0", lambda: kubectl.get("rbg", "fleet-0", namespace), 60)
    assert member["metadata"]["labels"]["team"] == "a"
    assert member["metadata"]["annotations"]["rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds"] == "300"
    # A later change of the groupTemplate labels reaches the member too.
    kubectl.run(
        "patch",
        RBGS_V2,
        "fleet",
        f"--namespace={namespace}",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"groupTemplate": {"labels": {"team": "b"}}}}),
    )
    wait_for(
        "the member relabelled",
        lambda: kubectl.get("rbg", "fleet-0", namespace)["metadata"]["labels"].get("team") == "b",
        60,
    )


# --- the conversion CA follows the certificate ---------------------------------------------------


def _self_signed(directory: Path) -> bytes:
    directory.mkdir(parents=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(directory / "tls.key"),
            "-out",
            str(directory / "tls.crt"),
        ],
        check=True,
        capture_output=True,
    )
    (directory / "ca.crt").write_bytes((directory / "tls.crt").read_bytes())
    return (directory / "tls.crt").read_bytes()


def _mount(cert_dir: Path, version: Path) -> None:
    """As the kubelet updates a mounted Secret: the files are links through ..data, swapped at once."""
    link = cert_dir / "..data_tmp"
    link.symlink_to(version.name)
    os.replace(link, cert_dir / "..data")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        if not (cert_dir / name).is_symlink():
            (cert_dir / name).symlink_to(f"..data/{name}")


def _registered_ca(kubectl: Kubectl) -> bytes:
    config = json.loads(kubectl.run("get", "crd", CONVERTED_CRD, "-o", "json").stdout)["spec"]["conversion"]["webhook"][
        "clientConfig"
    ]
    return base64.b64decode(config.get("caBundle") or "")


def test_the_conversion_ca_follows_a_renewed_certificate(kubectl: Kubectl, kubeconfig: str, tmp_path: Path):
    before = json.loads(kubectl.run("get", "crd", CONVERTED_CRD, "-o", "json").stdout)["spec"]["conversion"]["webhook"][
        "clientConfig"
    ]
    cert_dir = tmp_path / "mounted"
    cert_dir.mkdir()
    first = _self_signed(cert_dir / "v1")
    _mount(cert_dir, cert_dir / "v1")
    process = OperatorProcess(
        kubeconfig,
        LOG_DIR / "conversion-rotation.log",
        "--namespace=rbg-conversion-only",
        f"--webhook-bind-address=127.0.0.1:{free_port()}",
        f"--webhook-cert-dir={cert_dir}",
        "--register-conversion",
        "--webhook-cert-check-interval=1",
    ).start()
    try:
        wait_for("the first CA registered", lambda: _registered_ca(kubectl).startswith(first), 30)
        kubectl.run("get", RBG_V2, "--all-namespaces")
        second = _self_signed(cert_dir / "v2")
        _mount(cert_dir, cert_dir / "v2")  # the renewal
        wait_for("the renewed CA registered", lambda: _registered_ca(kubectl).startswith(second), 30)
        # The API server reads the CRD change through its informer: a moment, then every read works.
        wait_for(
            "a v1alpha2 list over the renewed certificate",
            lambda: kubectl.run("get", RBG_V2, "--all-namespaces", check=False).returncode == 0,
            30,
        )
        for _ in range(5):
            kubectl.run("get", RBG_V2, "--all-namespaces")
            time.sleep(0.5)
    finally:
        process.stop()
        for name in CONVERTED_CRDS:
            kubectl.run(
                "patch",
                "crd",
                name,
                "--type=merge",
                "-p",
                json.dumps(
                    {
                        "spec": {
                            "conversion": {
                                "webhook": {"clientConfig": {"url": None, "service": None, "caBundle": None, **before}}
                            }
                        }
                    }
                ),
            )
