"""Validating admission webhook: rejects what CEL cannot express (dependency cycles,
anything else the models refuse) with a message that names the field.

It parses objects through the same models the controller uses, so admission and
reconciliation never disagree about what is valid.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from pathlib import Path

import kopf
import pydantic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import naming
from .api.errors import describe
from .api.rolebasedgroup import RoleBasedGroup, fields_not_acted_on
from .api.rolebasedgroupset import RoleBasedGroupSetSpec

log = logging.getLogger(__name__)


def check(model: type[pydantic.BaseModel], value: dict, prefix: str):
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        raise kopf.AdmissionError(describe(error, prefix), code=422)


def validate_group(spec: dict, name: str | None, warnings: list[str], **_) -> None:
    """The whole object, so the name limits are checked too; accepted fields that this operator
    does not act on come back as warnings (kubectl prints them)."""
    group = check(RoleBasedGroup, {"metadata": {"name": name or ""}, "spec": dict(spec)}, "")
    warnings.extend(fields_not_acted_on(group.spec))


def validate_group_set(spec: dict, name: str | None, warnings: list[str], **_) -> None:
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
