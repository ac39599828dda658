"""Webhooks: validating admission, which rejects what CEL cannot express (dependency cycles,
anything else the models refuse) with a message that names the field; and conversion between
API versions at /convert.

Both go through the same models and conversion code the controller uses, so admission,
conversion and reconciliation never disagree.

Both survive any body the API server can send: up to MAX_BODY_BYTES, decoded with orjson (off
the event loop above OFF_LOOP_BYTES), subtrees nested deeper than bounded_json.MAX_DEPTH kept
undecoded; every error is answered in the review, never with an HTTP 500.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import datetime
import functools
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp.web
import kopf
import pydantic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kopf._core.engines import admission as kopf_admission

from . import bounded_json, kinds, naming
from .api import conversion
from .api.common import MAX_PATCH_DEPTH
from .api.conversion import ConversionError, convert
from .api.errors import describe, field_path
from .api.rolebasedgroup import RoleBasedGroup, RoleBasedGroupSpec
from .api.rolebasedgroupset import RoleBasedGroupSetSpec
from .api.roleinstance import RoleInstanceSetSpec
from .api.v1alpha2 import RoleBasedGroupSetSpecV2, RoleBasedGroupSpecV2, RoleBasedGroupV2, fields_not_acted_on
from .kube import KINDS, Kube

SHAPE = {"structure_only": True}  # a model's shape alone, its rules checked elsewhere

log = logging.getLogger(__name__)


def check(model: type[pydantic.BaseModel], value: dict, prefix: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        raise kopf.AdmissionError(describe(error, prefix), code=422)


# The version the user wrote in (the review's requestKind), set for the handlers of one review.
# The API server hands the webhook every write in v1alpha2, the stored version it is registered for.
REQUESTED_VERSION: contextvars.ContextVar[str | None] = contextvars.ContextVar("requested_version", default=None)


def judged_as_v1alpha1(v1_spec: dict) -> bool:
    """Whether a write is checked by the v1alpha1 rules, on its v1alpha1 form: it was written in
    v1alpha1 (the review's requestKind) and has nothing only v1alpha2 defines, a RoleInstanceSet
    role (which v1alpha1 may name too) or fields kept for v1alpha2."""
    return (
        REQUESTED_VERSION.get() == kinds.V1ALPHA1
        and not conversion.instance_set_roles(v1_spec)
        and not any(conversion.V2_FIELDS_KEY in (role.get("annotations") or {}) for role in v1_spec.get("roles") or [])
    )


@functools.cache
def _schema(model: type[pydantic.BaseModel]) -> dict:
    return model.model_json_schema(by_alias=True)


def _free_form_cut(model: type[pydantic.BaseModel], path: tuple) -> int:
    """How many parts of `path` lead to the free-form field (templatePatch and the like) the path
    goes into, following the model's schema; all of them when it goes into none."""
    schema = _schema(model)
    node: dict = schema
    for i, part in enumerate(path):
        while True:  # through references and optional (anyOf with null) fields
            if "$ref" in node:
                node = schema.get("$defs", {}).get(node["$ref"].rpartition("/")[2], {})
            elif "anyOf" in node:
                node = next((o for o in node["anyOf"] if o.get("type") != "null"), {})
            else:
                break
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return i
        node = (node.get("items") if isinstance(part, int) else (node.get("properties") or {}).get(part)) or {}
    return len(path)


def too_deep(value, prefix: str, model: type[pydantic.BaseModel]) -> str | None:
    """A refusal naming the free-form field of `model` that holds a subtree too deep to decode (a
    RawJSON of bounded_json), with its depth counted as the models count it; None if there is none."""
    for path, raw in bounded_json.raw_subtrees(value):
        cut = _free_form_cut(model, path)
        depth = len(path) - cut + raw.depth
        return f"{field_path(prefix, path[:cut])}: nested {depth} levels deep, at most {MAX_PATCH_DEPTH} are allowed"
    return None


def refuse(problems: list[str]) -> None:
    if problems:
        raise kopf.AdmissionError("; ".join(problems), code=422)


def validate_group(spec: dict, name: str | None, warnings: list[str], annotations=None, **_) -> None:
    """The whole object, so the name limits are checked too; accepted fields that this operator
    does not act on come back as warnings (kubectl prints them). A group is checked by the rules of
    the version it was written in, with that version's field names."""
    obj = {
        "kind": "RoleBasedGroup",
        "metadata": {"name": name or "", "annotations": dict(annotations or {})},
        "spec": dict(spec),
    }
    refuse(conversion.kept_annotation_problems(obj["metadata"]["annotations"], obj["spec"], group_set=False))
    if REQUESTED_VERSION.get() == kinds.V1ALPHA1:
        v1 = conversion.group_to_v1(obj)
        if judged_as_v1alpha1(v1["spec"]):
            refuse([p for p in [too_deep(v1["spec"], "spec", RoleBasedGroupSpec)] if p])
            check(RoleBasedGroup, {"metadata": v1["metadata"], "spec": v1["spec"]}, "")
            warnings.extend(fields_not_acted_on(RoleBasedGroupV2.model_validate(obj, context=SHAPE)))
            return
    refuse([p for p in [too_deep(obj["spec"], "spec", RoleBasedGroupSpecV2)] if p])
    check(RoleBasedGroupSpecV2, obj["spec"], "spec")
    warnings.extend(fields_not_acted_on(check(RoleBasedGroupV2, obj, "")))


def validate_group_set(spec: dict, name: str | None, warnings: list[str], annotations=None, **_) -> None:
    obj = {
        "kind": "RoleBasedGroupSet",
        "metadata": {"name": name or "", "annotations": dict(annotations or {})},
        "spec": dict(spec),
    }
    template = obj["spec"].get("groupTemplate") if isinstance(obj["spec"].get("groupTemplate"), dict) else {}
    refuse(
        conversion.kept_annotation_problems(
            {**obj["metadata"]["annotations"], **(template.get("annotations") or {})},
            template.get("spec") or {},
            group_set=True,
            roles_at="spec.groupTemplate.spec.roles",
        )
    )
    if REQUESTED_VERSION.get() == kinds.V1ALPHA1:
        v1 = conversion.set_to_v1(obj)
        if judged_as_v1alpha1(v1["spec"].get("template") or {}):
            refuse([p for p in [too_deep(v1["spec"], "spec", RoleBasedGroupSetSpec)] if p])
            group_set = check(RoleBasedGroupSetSpec, v1["spec"], "spec")
            _check_member(name, group_set.replicas, {"spec": v1["spec"].get("template") or {}}, RoleBasedGroup)
            member = RoleBasedGroupV2.model_validate(
                {"metadata": {"annotations": template.get("annotations") or {}}, "spec": template.get("spec") or {}},
                context=SHAPE,
            )
            warnings.extend(n.replace("spec.", "spec.template.", 1) for n in fields_not_acted_on(member))
            return
    refuse([p for p in [too_deep(obj["spec"], "spec", RoleBasedGroupSetSpecV2)] if p])
    group_set = check(RoleBasedGroupSetSpecV2, obj["spec"], "spec")  # the group template, and its copies' bytes
    member = _check_member(name, group_set.replicas, template, RoleBasedGroupV2)
    warnings.extend(n.replace("spec.", "spec.groupTemplate.spec.", 1) for n in fields_not_acted_on(member))


def _check_member(set_name: str | None, replicas: int, template: dict, model: type[pydantic.BaseModel]):
    """Every member is a group {name}-{index}: the longest index is the one that must fit."""
    member = f"{set_name or ''}-{max(replicas - 1, 0)}"
    try:
        return model.model_validate(
            {
                "metadata": {"name": member, "annotations": template.get("annotations") or {}},
                "spec": template.get("spec") or {},
            }
        )
    except pydantic.ValidationError as error:
        raise kopf.AdmissionError(f"member group {member}: " + describe(error, ""), code=422)


def validate_instance_set(spec: dict, **_) -> None:
    """A RoleInstanceSet made directly: what CEL cannot measure, the bytes its instances copy."""
    refuse([p for p in [too_deep(spec, "spec", RoleInstanceSetSpec)] if p])
    check(RoleInstanceSetSpec, dict(spec), "spec")


# (version, plural, handler): each kind is reviewed in the version it is stored in.
# Reads a scaling adapter from the API server (namespace, name) -> object or None; set at start-up.
ADAPTER_READER: Callable[[str, str], Awaitable[dict | None]] | None = None


def replicas_changed_under_adapter(old_spec: dict, new_spec: dict) -> list[tuple[int, str, int]]:
    """(index, role, new replicas) of each role with scalingAdapter.enable that existed before and
    whose replicas changed: the adapter owns that number."""
    before = {r.get("name"): r for r in old_spec.get("roles") or [] if isinstance(r, dict)}
    changed = []
    for i, role in enumerate(new_spec.get("roles") or []):
        if not isinstance(role, dict) or not (role.get("scalingAdapter") or {}).get("enable"):
            continue
        old = before.get(role.get("name"))
        if old is not None and old.get("replicas", 1) != role.get("replicas", 1):
            changed.append((i, role["name"], role.get("replicas", 1)))
    return changed


async def validate_adapter_replica_lock(spec: dict, old: dict | None, name: str, namespace: str, **_) -> None:
    """A role's replicas that its enabled scaling adapter owns change through the adapter alone:
    a write that sets them to anything but the adapter's value is refused. The operator's own write,
    which copies the adapter's value into the role, passes."""
    if not old or ADAPTER_READER is None:
        return
    problems = []
    for index, role, replicas in replicas_changed_under_adapter(old.get("spec") or {}, spec):
        adapter_name = naming.adapter_name(name, role)
        adapter = await ADAPTER_READER(namespace, adapter_name)
        wanted = ((adapter or {}).get("spec") or {}).get("replicas")
        if wanted is not None and wanted != replicas:
            problems.append(
                f'spec.roles[{index}].replicas (role "{role}"): cannot be changed to {replicas} while '
                f'scalingAdapter.enable is true and RoleBasedGroupScalingAdapter "{adapter_name}" has '
                f"spec.replicas {wanted}; scale the adapter instead "
                f"(kubectl scale rbgsa {adapter_name} --replicas={replicas})"
            )
    refuse(problems)


VALIDATED = (
    (kinds.STORED_VERSION, "rolebasedgroups", validate_group),
    (kinds.STORED_VERSION, "rolebasedgroupsets", validate_group_set),
    (kinds.STORED_VERSION, "roleinstancesets", validate_instance_set),
)


def register() -> None:
    """Add the admission handlers; only when a webhook server is configured, which kopf requires."""
    # ignore_failures: while the operator is down, applies still pass, and the controller itself
    # refuses an invalid object (a group's Ready=False, reason InvalidSpec) once it is back.
    for version, plural, handler in VALIDATED:
        kopf.on.validate(
            kinds.GROUP,
            version,
            plural,
            id=f"validate-{plural.removesuffix('s')}",
            operations=["CREATE", "UPDATE"],
            ignore_failures=True,
        )(handler)
    kopf.on.validate(
        kinds.GROUP,
        kinds.STORED_VERSION,
        "rolebasedgroups",
        id="validate-adapter-replicas",
        operations=["UPDATE"],
        ignore_failures=True,
    )(validate_adapter_replica_lock)


def review_conversion(review: dict) -> dict:
    """The answer to an apiextensions.k8s.io/v1 ConversionReview.

    The API server fails the whole request when the answer is a Failure, and it converts a LIST
    page of every namespace's objects in one review; so one object must not fail the others:
    - towards v1alpha2 (reads: GET, LIST, WATCH), an object that cannot be converted comes back
      without its spec and with the annotation conversion.FAILED_KEY saying why
      (conversion.unconverted), and the answer is a Success;
    - towards v1alpha1, the stored version, the review is a write of one object: a problem fails
      it, naming the object and the field, and nothing half-converted is stored.
    """
    request = review.get("request") if isinstance(review, dict) else None
    request = request if isinstance(request, dict) else {}
    response: dict = {"uid": request.get("uid", "")}
    desired = request.get("desiredAPIVersion")
    objects = request.get("objects")
    converted = []
    for obj in objects if isinstance(objects, list) else []:
        try:
            if not isinstance(obj, dict) or not isinstance(desired, str):
                raise ConversionError("not an object and a desiredAPIVersion")
            converted.append(convert(obj, desired))
        except Exception as error:  # noqa: BLE001 - any error is this object's, and is answered
            meta = (obj.get("metadata") if isinstance(obj, dict) else None) or {}
            where = (
                f"{obj.get('kind') if isinstance(obj, dict) else 'object'} {meta.get('namespace')}/{meta.get('name')}"
            )
            problem = str(error) if isinstance(error, ConversionError) else f"{type(error).__name__}: {error}"
            if not isinstance(error, ConversionError):
                log.exception("conversion of %s to %s failed", where, desired)
            if isinstance(obj, dict) and isinstance(desired, str) and desired.rpartition("/")[2] != kinds.V1ALPHA1:
                converted.append(conversion.unconverted(obj, desired, problem))
                continue
            response["result"] = {"status": "Failure", "message": f"{where}: {problem}"}
            break
    else:
        response.update(result={"status": "Success"}, convertedObjects=converted)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview", "response": response}


def answer_conversion(body: bytes) -> bytes:
    """A ConversionReview body to its answer's body (runs off the event loop for large bodies)."""
    try:
        review = bounded_json.loads(body)
    except ValueError as error:
        raise aiohttp.web.HTTPBadRequest(reason=f"not a ConversionReview: {error}")
    return bounded_json.dumps(review_conversion(review))


# The largest review body served. The API server converts a whole LIST page in one review: kubectl's
# pages of 500 objects fit while objects average under 64 KiB (typical groups are 5-20 KiB; the
# etcd limit of one object is 1.5 MiB). An UPDATE review holds the object twice. Decoded, a body
# takes several times its size in memory; the chart's limit (512 Mi) holds one of this size.
MAX_BODY_BYTES = 32 * 1024 * 1024
# Bodies above this are decoded and converted in a thread, one at a time (bounding the memory):
# decoding 1 MiB takes a few milliseconds of the loop, 32 MiB would take a second.
OFF_LOOP_BYTES = 1024 * 1024
_one_large_body = asyncio.Semaphore(1)


async def _read(request: aiohttp.web.Request) -> bytes:
    try:
        return await request.clone(client_max_size=MAX_BODY_BYTES).read()
    except aiohttp.web.HTTPRequestEntityTooLarge:
        raise aiohttp.web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY_BYTES,
            actual_size=request.content_length or 0,
            text=f"review bodies are limited to {MAX_BODY_BYTES} bytes ({MAX_BODY_BYTES // 2**20} MiB); "
            "list in smaller pages (kubectl --chunk-size)",
        ) from None


async def _off_loop_if_large(size: int, fn: Callable, *args):
    if size <= OFF_LOOP_BYTES:
        return fn(*args)
    async with _one_large_body:
        return await asyncio.to_thread(fn, *args)


def _denied(data, message: str) -> dict:
    """An AdmissionReview refusing the request, for errors outside the handlers (kopf answers
    those with an HTTP error, which failurePolicy Ignore would turn into an admission)."""
    request = (data.get("request") if isinstance(data, dict) else None) or {}
    return {
        "apiVersion": data.get("apiVersion", "admission.k8s.io/v1")
        if isinstance(data, dict)
        else "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request.get("uid", ""), "allowed": False, "status": {"message": message, "code": 422}},
    }


class WebhookServer(kopf.WebhookServer):
    """kopf's admission server, also answering ConversionReviews at /convert (kopf serves
    admission only; its request handler is the one place to add a route), with bodies up to
    MAX_BODY_BYTES of any depth, and telling `on_certificate` each CA bundle it serves with."""

    # Called with the CA bundle (PEM) at start and whenever the served certificate files change.
    on_certificate: Callable[[bytes], Awaitable[None]] | None = None

    async def __call__(self, fn):
        async for client_config in super().__call__(fn):
            if self.on_certificate is not None and client_config.get("caBundle"):
                await self.on_certificate(base64.b64decode(client_config["caBundle"]))
            yield client_config

    @staticmethod
    async def _serve(fn, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await _read(request)
        if request.match_info.get("id") == "convert":
            answer = await _off_loop_if_large(len(body), answer_conversion, body)
            return aiohttp.web.Response(body=answer, content_type="application/json")
        try:
            data = await _off_loop_if_large(len(body), bounded_json.loads, body)
        except ValueError as error:
            raise aiohttp.web.HTTPBadRequest(reason=f"not an AdmissionReview: {error}")
        kind = ((data.get("request") or {}) if isinstance(data, dict) else {}).get("requestKind") or {}
        REQUESTED_VERSION.set(kind.get("version") if isinstance(kind, dict) else None)
        sslpeer = request.transport.get_extra_info("peercert") if request.transport else None
        try:
            response = await fn(
                data, webhook=request.match_info.get("id"), sslpeer=sslpeer, headers=dict(request.headers)
            )
        except kopf_admission.AmbiguousResourceError as error:
            raise aiohttp.web.HTTPConflict(reason=str(error) or None)
        except kopf_admission.UnknownResourceError as error:
            raise aiohttp.web.HTTPNotFound(reason=str(error) or None)
        except kopf_admission.WebhookError as error:
            raise aiohttp.web.HTTPBadRequest(reason=str(error) or None)
        except Exception as error:  # noqa: BLE001 - refused with the reason, not an HTTP 500
            log.exception("admission review failed")
            response = _denied(data, f"the request could not be validated: {type(error).__name__}: {error}")
        return aiohttp.web.Response(body=bounded_json.dumps(response), content_type="application/json")


# The kinds whose versions differ; the others' versions share one schema and need no webhook.
CONVERTED_CRDS = (f"rolebasedgroups.{kinds.GROUP}", f"rolebasedgroupsets.{kinds.GROUP}")


def conversion_client_config(ca_pem: bytes, service: str, url: str) -> dict:
    """How the API server reaches /convert: through `service` ("namespace/name", port 443) when
    given, else at `url`. The other form is set to null, so a merge patch removes it."""
    config: dict = {"caBundle": base64.b64encode(ca_pem).decode()}
    if service:
        namespace, _, name = service.partition("/")
        return {
            **config,
            "url": None,
            "service": {"namespace": namespace, "name": name, "path": "/convert", "port": 443},
        }
    return {**config, "url": url, "service": None}


# CAs kept trusted in the conversion's caBundle: the current one first, then the newest others
# still valid for the same endpoint. While replicas roll to a renewed certificate (each notices the
# new files on its own), some serve the old one; the API server must trust both.
MAX_TRUSTED_CAS = 3


def merged_ca_bundle(current: bytes, registered_b64: str | None, *, now: datetime.datetime | None = None) -> bytes:
    """The caBundle to register: `current` (PEM), then the certificates of the registered bundle
    that are not expired, newest first, MAX_TRUSTED_CAS in all."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        ours = x509.load_pem_x509_certificates(current)
    except ValueError:
        return current
    try:
        others = x509.load_pem_x509_certificates(base64.b64decode(registered_b64 or ""))
    except ValueError:
        others = []
    others = sorted(
        (c for c in others if c.not_valid_after_utc > now and c not in ours),
        key=lambda c: c.not_valid_before_utc,
        reverse=True,
    )
    kept = [*ours, *others][: max(MAX_TRUSTED_CAS, len(ours))]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in kept)


def _target(client_config: dict | None) -> tuple:
    config = client_config or {}
    service = config.get("service") or {}
    return config.get("url"), service.get("namespace"), service.get("name"), service.get("path")


async def register_conversion(kube: Kube, client_config: dict) -> None:
    """Point the CRDs' conversion at this operator's webhook (the reference's controller, too,
    keeps its CRDs' caBundle itself: Helm installs crds/ verbatim). CAs registered before for the
    same endpoint stay trusted while valid (merged_ca_bundle)."""
    crd = KINDS[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]
    for name in CONVERTED_CRDS:
        current = await kube.get(crd, None, name)
        registered = ((((current or {}).get("spec") or {}).get("conversion") or {}).get("webhook") or {}).get(
            "clientConfig"
        )
        config = dict(client_config)
        if _target(registered) == _target(client_config):
            bundle = merged_ca_bundle(base64.b64decode(client_config["caBundle"]), registered.get("caBundle"))
            config["caBundle"] = base64.b64encode(bundle).decode()
            if registered.get("caBundle") == config["caBundle"]:
                continue
        await kube.patch(
            crd,
            None,
            name,
            {
                "spec": {
                    "conversion": {
                        "strategy": "Webhook",
                        "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": config},
                    }
                }
            },
        )
        log.info(
            "conversion of %s goes to %s",
            name,
            client_config.get("url")
            or "service " + "/".join(client_config["service"][k] for k in ("namespace", "name")),
        )


class ConversionRegistrar:
    """Keeps the CRDs' conversion pointed at this webhook with the CA it serves with now: at start
    and after every certificate renewal, retrying until the API server takes it."""

    def __init__(self, kube: Kube, client_config: dict):
        self.kube, self.client_config = kube, client_config
        self.task: asyncio.Task | None = None

    async def register(self) -> None:
        await register_conversion(self.kube, self.client_config)

    async def certificate_changed(self, ca_pem: bytes) -> None:
        config = {**self.client_config, "caBundle": base64.b64encode(ca_pem).decode()}
        if config == self.client_config:
            return
        self.client_config = config
        if self.task is not None:
            self.task.cancel()
        self.task = asyncio.create_task(self._until_registered(), name="rbg-conversion-ca")

    async def _until_registered(self) -> None:
        delay = 1.0
        while True:
            try:
                await self.register()
                return
            except Exception as error:  # noqa: BLE001 - the API server may be away; keep trying
                log.warning("registering the renewed conversion CA failed (%s); retrying in %.0fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A serving certificate for the webhook when no certificate is given (local runs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path
