"""Webhooks: validating admission, which rejects what CEL cannot express (dependency cycles,
anything else the models refuse) with a message that names the field; and conversion between
API versions at /convert.

Both go through the same models and conversion code the controller uses, so admission,
conversion and reconciliation never disagree.
"""

from __future__ import annotations

import base64
import contextvars
import datetime
import ipaddress
import json
import logging
from pathlib import Path

import aiohttp.web
import kopf
import pydantic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import naming
from .kube import KINDS, Kube
from .api import conversion
from .api.conversion import ConversionError, convert
from .api.errors import describe
from .api.rolebasedgroup import RoleBasedGroup, fields_not_acted_on
from .api.rolebasedgroupset import RoleBasedGroupSetSpec
from .api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleBasedGroupSpecV2

log = logging.getLogger(__name__)


def check(model: type[pydantic.BaseModel], value: dict, prefix: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        raise kopf.AdmissionError(describe(error, prefix), code=422)


# The version the user wrote in (the review's requestKind), set for the handlers of one review.
# The API server hands the webhook every write in v1alpha1, the version it is registered for.
REQUESTED_VERSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("requested_version", default=None)


def written_as_v1alpha2(spec: dict) -> bool:
    """Whether a group the webhook sees in v1alpha1 is judged by the v1alpha2 rules: it was written
    in v1alpha2 (the review's requestKind), or it has what v1alpha2 defines, a RoleInstanceSet role
    (which v1alpha1 may name too) or fields kept for v1alpha2."""
    return REQUESTED_VERSION.get() == "v1alpha2" or bool(conversion.instance_set_roles(spec)) or any(
        conversion.V2_FIELDS_KEY in (role.get("annotations") or {}) for role in spec.get("roles") or [])


def validate_group(spec: dict, name: str | None, warnings: list[str], annotations=None, **_) -> None:
    """The whole object, so the name limits are checked too; accepted fields that this operator
    does not act on come back as warnings (kubectl prints them). A group written in v1alpha2 is
    checked by the v1alpha2 rules, with v1alpha2 field names."""
    if written_as_v1alpha2(spec):
        v2 = conversion.group_to_v2({"kind": "RoleBasedGroup", "metadata": {"annotations": dict(annotations or {})},
                                     "spec": dict(spec)})
        check(RoleBasedGroupSpecV2, v2["spec"], "spec")
        return
    group = check(RoleBasedGroup, {"metadata": {"name": name or ""}, "spec": dict(spec)}, "")
    warnings.extend(fields_not_acted_on(group.spec))


def validate_group_set(spec: dict, name: str | None, warnings: list[str], **_) -> None:
    if written_as_v1alpha2(dict(spec).get("template") or {}):
        v2 = conversion.set_to_v2({"kind": "RoleBasedGroupSet", "metadata": {}, "spec": dict(spec)})
        check(RoleBasedGroupSetSpecV2, v2["spec"], "spec")  # the group template, and its copies' bytes
        return
    group_set = check(RoleBasedGroupSetSpec, dict(spec), "spec")
    # Every member is a group {name}-{index}: the longest index is the one that must fit.
    member = f"{name or ''}-{max(group_set.replicas - 1, 0)}"
    try:
        RoleBasedGroup.model_validate({"metadata": {"name": member}, "spec": dict(spec).get("template") or {}})
    except pydantic.ValidationError as error:
        raise kopf.AdmissionError(f"member group {member}: " + describe(error, ""), code=422)
    warnings.extend(n.replace("spec.", "spec.template.", 1) for n in fields_not_acted_on(group_set.template))


def register() -> None:
    """Add the admission handlers; only when a webhook server is configured, which kopf requires."""
    # ignore_failures: while the operator is down, applies still pass, and the controller itself
    # refuses an invalid group (Ready=False, reason InvalidSpec) once it is back.
    for plural, handler in (("rolebasedgroups", validate_group), ("rolebasedgroupsets", validate_group_set)):
        kopf.on.validate(naming.GROUP, naming.VERSION, plural, id=f"validate-{plural.removesuffix('s')}",
                         operations=["CREATE", "UPDATE"], ignore_failures=True)(handler)


def review_conversion(review: dict) -> dict:
    """The answer to an apiextensions.k8s.io/v1 ConversionReview: every object in the desired
    version, or a failure naming the object and field that could not be converted."""
    request = review.get("request") or {}
    response: dict = {"uid": request.get("uid", "")}
    converted = []
    for obj in request.get("objects") or []:
        try:
            converted.append(convert(obj, request["desiredAPIVersion"]))
        except ConversionError as error:
            meta = obj.get("metadata") or {}
            message = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}: {error}"
            response["result"] = {"status": "Failure", "message": message}
            break
    else:
        response.update(result={"status": "Success"}, convertedObjects=converted)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response}


class WebhookServer(kopf.WebhookServer):
    """kopf's admission server, also answering ConversionReviews at /convert (kopf serves
    admission only; its request handler is the one place to add a route)."""

    @staticmethod
    async def _serve(fn, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if request.match_info.get("id") != "convert":
            async def with_requested_version(data, **kwargs):
                kind = ((data.get("request") or {}) if isinstance(data, dict) else {}).get("requestKind") or {}
                REQUESTED_VERSION.set(kind.get("version"))
                return await fn(data, **kwargs)
            return await kopf.WebhookServer._serve(with_requested_version, request)
        try:
            review = json.loads(await request.text())
        except ValueError as error:
            raise aiohttp.web.HTTPBadRequest(reason=f"not a ConversionReview: {error}")
        return aiohttp.web.json_response(review_conversion(review))


# The kinds whose versions differ; the others' versions share one schema and need no webhook.
CONVERTED_CRDS = (f"rolebasedgroups.{naming.GROUP}", f"rolebasedgroupsets.{naming.GROUP}")


def conversion_client_config(ca_pem: bytes, service: str, url: str) -> dict:
    """How the API server reaches /convert: through `service` ("namespace/name", port 443) when
    given, else at `url`. The other form is set to null, so a merge patch removes it."""
    config: dict = {"caBundle": base64.b64encode(ca_pem).decode()}
    if service:
        namespace, _, name = service.partition("/")
        return {**config, "url": None, "service": {"namespace": namespace, "name": name, "path": "/convert",
                                                    "port": 443}}
    return {**config, "url": url, "service": None}


async def register_conversion(kube: Kube, client_config: dict) -> None:
    """Point the CRDs' conversion at this operator's webhook (the reference's controller, too,
    keeps its CRDs' caBundle itself: Helm installs crds/ verbatim)."""
    crd = KINDS[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]
    for name in CONVERTED_CRDS:
        await kube.patch(crd, None, name, {"spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"], "clientConfig": client_config}}}})
        log.info("conversion of %s goes to %s", name,
                 client_config.get("url") or "service " + "/".join(client_config["service"][k]
                                                                    for k in ("namespace", "name")))


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A serving certificate for the webhook when no certificate is given (local runs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path
