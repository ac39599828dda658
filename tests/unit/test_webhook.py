"""The webhook's own decisions: refusals of objects too deep to decode, the body limit, the CA
bundle it registers, and what a set's member gets from a v1alpha2 groupTemplate."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rbg_operator import bounded_json, webhook
from rbg_operator.api import conversion, kept
from rbg_operator.desired.scaling import member_template_hash, set_member, template_hash
from tests.support.admission import v1alpha1_write, written_in

C = [{"name": "main", "image": "example.com/app:v1"}]


def deep_text(levels: int) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def review(obj_text: str) -> dict:
    return bounded_json.loads('{"request":{"uid":"u","object":%s}}' % obj_text)["request"]["object"]


def test_a_patch_too_deep_to_decode_is_refused_naming_the_field_and_its_depth():
    obj = review(
        '{"spec":{"roleTemplates":[{"name":"t","template":{"spec":{"containers":%s}}}],'
        '"roles":[{"name":"r","replicas":0,"templateRef":{"name":"t"},"templatePatch":%s}]}}'
        % (json.dumps(C), deep_text(1101))
    )
    assert list(bounded_json.raw_subtrees(obj)), "the deep part stays undecoded"
    stored = v1alpha1_write("RoleBasedGroup", obj["spec"])
    with written_in("v1alpha1"), pytest.raises(kopf.AdmissionError) as refused:
        webhook.validate_group(stored["spec"], "deep", [])
    assert str(refused.value) == "spec.roles[0].templatePatch: nested 1101 levels deep, at most 24 are allowed"
    assert refused.value.code == 422


def test_a_set_and_a_v1alpha2_write_name_the_field_as_written():
    obj = review(
        '{"spec":{"replicas":1,"template":{"roles":[{"name":"r","template":{"spec":{"containers":%s}},'
        '"workload":{"apiVersion":"leaderworkerset.x-k8s.io/v1","kind":"LeaderWorkerSet"},'
        '"leaderWorkerSet":{"size":2,"patchWorkerTemplate":%s}}]}}}' % (json.dumps(C), deep_text(300))
    )
    stored = v1alpha1_write("RoleBasedGroupSet", obj["spec"])
    with (
        written_in("v1alpha1"),
        pytest.raises(
            kopf.AdmissionError,
            match=r"^spec.template.roles\[0\].leaderWorkerSet.patchWorkerTemplate: "
            r"nested 300 levels deep",
        ),
    ):
        webhook.validate_group_set(stored["spec"], "s", [])
    with (
        written_in("v1alpha2"),
        pytest.raises(
            kopf.AdmissionError,
            match=r"^spec.groupTemplate.spec.roles\[0\].leaderWorkerPattern."
            r"workerTemplatePatch: nested 300 levels deep",
        ),
    ):
        webhook.validate_group_set(stored["spec"], "s", [])


def test_a_hostile_conversion_annotation_is_refused_naming_it():
    spec = {
        "roles": [
            {"name": "a", "template": {"spec": {"containers": C}}, "annotations": {conversion.V2_FIELDS_KEY: "[]"}}
        ]
    }
    stored = v1alpha1_write("RoleBasedGroup", spec)
    with (
        written_in("v1alpha1"),
        pytest.raises(
            kopf.AdmissionError,
            match=r"spec.roles\[0\].annotations\[conversion.workloads.x-k8s.io/"
            r"v1alpha2-role-fields\]: ",
        ),
    ):
        webhook.validate_group(stored["spec"], "g", [])
    stored = v1alpha1_write(
        "RoleBasedGroupSet",
        {"replicas": 1, "template": {"roles": [{"name": "a", "template": {"spec": {"containers": C}}}]}},
        {conversion.GROUP_TEMPLATE_KEY: "[]"},
    )
    with (
        written_in("v1alpha1"),
        pytest.raises(
            kopf.AdmissionError,
            match=r"^metadata.annotations\[conversion.workloads.x-k8s.io/"
            r"v1alpha2-group-template\]: ",
        ),
    ):
        webhook.validate_group_set(stored["spec"], "s", [], annotations=stored["metadata"]["annotations"])


async def _post(body: bytes) -> tuple[int, bytes]:
    async def fn(data, **_):
        return {"response": {"uid": data["request"]["uid"], "allowed": True}}

    async def handler(request):
        return await webhook.WebhookServer._serve(fn, request)

    app = web.Application()
    app.router.add_post("/{id:.*}", handler)
    async with TestClient(TestServer(app)) as client:
        for path in ("/validate-rolebasedgroup", "/convert"):
            response = await client.post(path, data=body)
            if path == "/convert" or response.status != 200:
                return response.status, await response.read()


def test_review_bodies_over_one_mebibyte_are_served_up_to_the_named_limit(monkeypatch):
    body = json.dumps(
        {
            "request": {
                "uid": "big",
                "desiredAPIVersion": "v1",
                "objects": [{"apiVersion": "v1", "kind": "Other", "blob": "x" * (3 * 2**20)}],
            }
        }
    ).encode()
    status, answer = asyncio.run(_post(body))
    assert status == 200 and json.loads(answer)["response"]["result"] == {"status": "Success"}
    monkeypatch.setattr(webhook, "MAX_BODY_BYTES", 2 * 2**20)
    status, answer = asyncio.run(_post(body))
    assert status == 413 and b"limited to 2097152 bytes (2 MiB)" in answer


def certificate(days_left: float, born_days_ago: float = 1) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=born_days_ago))
        .not_valid_after(now + datetime.timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_the_registered_ca_bundle_keeps_the_other_valid_cas_newest_first():
    current, previous, older, oldest, expired = (
        certificate(30, 1),
        certificate(30, 2),
        certificate(30, 3),
        certificate(30, 4),
        certificate(-1, 9),
    )
    registered = base64.b64encode(oldest + expired + previous + older).decode()
    merged = webhook.merged_ca_bundle(current, registered)
    assert merged == current + previous + older
    assert webhook.merged_ca_bundle(current, base64.b64encode(current).decode()) == current
    assert webhook.merged_ca_bundle(current, "not base64 at all!") == current
    assert webhook.merged_ca_bundle(current, None) == current


def group_set(**template) -> dict:
    return {
        "metadata": {"name": "s", "namespace": "ns", "uid": "u"},
        "spec": {"replicas": 1, "groupTemplate": {"spec": {"roles": [{"name": "a"}]}, **template}},
    }


def test_a_v1alpha2_group_templates_labels_and_annotations_reach_the_members():
    fleet = group_set(
        labels={"team": "a", "rolebasedgroupset.workloads.x-k8s.io/name": "other"},
        annotations={
            "rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds": "30",
            conversion.EXCLUSIVE_V2_KEY: "kubernetes.io/hostname",
            kept.GANG_KEY: "true",
        },
    )
    member = set_member(fleet, 0)
    meta = member["metadata"]
    assert meta["labels"]["team"] == "a" and meta["labels"]["rolebasedgroupset.workloads.x-k8s.io/name"] == "s"
    assert meta["annotations"]["rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds"] == "30"
    assert meta["annotations"][conversion.EXCLUSIVE_V2_KEY] == "kubernetes.io/hostname"
    assert meta["annotations"][kept.GANG_KEY] == "true"  # the member's gang, in v1alpha2's own words
    assert member["apiVersion"] == conversion.V2 and member["spec"] == {"roles": [{"name": "a"}]}
    assert member_template_hash(fleet) == template_hash(fleet["spec"]["groupTemplate"])
    assert member_template_hash(fleet) != member_template_hash(group_set())
