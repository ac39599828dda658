"""The group annotation that turns on drain-aware removal of serving pods (docs/drain.md).

`rbg.workloads.x-k8s.io/drain` holds JSON that names the router role, how the operator reaches the
router's worker-management API (`/workers`), which roles' pods are the router's workers, and how
long a drain may take:

    {"router": "router", "routerPort": 8000, "timeoutSeconds": 60,
     "roles": {"prefill": {"port": 8000, "bootstrapPort": 8998}, "decode": {"port": 8000}}}

`roles` may also be a list of role names, each with the defaults. A role named `prefill` or
`decode` is that kind of worker unless `workerType` says otherwise; any other is `regular`.
The same annotation works on v1alpha1 and v1alpha2 groups (metadata is not converted).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from types import MappingProxyType

ANNOTATION = "rbg.workloads.x-k8s.io/drain"
WORKER_TYPES = ("regular", "prefill", "decode")
DEFAULT_TIMEOUT_SECONDS = 60
MAX_TIMEOUT_SECONDS = 3600
DEFAULT_PORT = 8000
DEFAULT_BOOTSTRAP_PORT = 8998  # SGLang's --disaggregation-bootstrap-port default
MAX_TEXT = 4096

_TOP_KEYS = {"router", "routerPort", "timeoutSeconds", "roles"}
_ROLE_KEYS = {"port", "workerType", "bootstrapPort"}


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    name: str
    worker_type: str  # regular | prefill | decode: what the router's POST /workers is told
    port: int  # the server's HTTP port: /get_load, and the URL a rejoining pod gets
    bootstrap_port: int | None  # prefill only


@dataclasses.dataclass(frozen=True)
class DrainConfig:
    router: str
    router_port: int
    timeout_seconds: int
    roles: Mapping[str, WorkerRole]


def _port(value, where: str, problems: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        problems.append(f"{where} must be a port number (1-65535), not {json.dumps(value)[:40]}")
        return None
    return value


def parse(text: str | None, role_names: list[str] | None = None) -> tuple[DrainConfig | None, list[str]]:
    """The drain configuration in the annotation's text, or None and what is wrong with it (each
    problem relative to the annotation; the caller names it). `role_names`: the group's roles, to
    check that the named roles exist (None: not checked)."""
    if text is None:
        return None, []
    problems: list[str] = []
    if len(text) > MAX_TEXT:
        return None, [f"at most {MAX_TEXT} characters"]
    try:
        raw = json.loads(text)
    except ValueError as error:
        return None, [f"not JSON ({error.msg} at character {error.pos})"]
    if not isinstance(raw, dict):
        return None, ["must be a JSON object with router, roles and optionally routerPort and timeoutSeconds"]
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    router = raw.get("router")
    if not isinstance(router, str) or not router:
        problems.append("router must name the router role")
    elif role_names is not None and router not in role_names:
        problems.append(f"router names {router!r}, which is not a role of the group")
    router_port = _port(raw.get("routerPort", DEFAULT_PORT), "routerPort", problems)
    timeout = raw.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        problems.append(f"timeoutSeconds must be whole seconds from 1 to {MAX_TIMEOUT_SECONDS}")
    roles_raw = raw.get("roles")
    if isinstance(roles_raw, list):
        roles_raw = {name: {} for name in roles_raw} if all(isinstance(n, str) for n in roles_raw) else None
    roles: dict[str, WorkerRole] = {}
    if not isinstance(roles_raw, dict) or not roles_raw:
        problems.append("roles must name at least one worker role (a list of names, or an object by name)")
    else:
        for name, entry in roles_raw.items():
            where = f"roles.{name}"
            if role_names is not None and name not in role_names:
                problems.append(f"{where}: {name!r} is not a role of the group")
            if name == router:
                problems.append(f"{where}: the router role cannot be one of its own workers")
            if not isinstance(entry, dict):
                problems.append(f"{where} must be an object (port, workerType, bootstrapPort)")
                continue
            unknown = sorted(set(entry) - _ROLE_KEYS)
            if unknown:
                problems.append(
                    f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_ROLE_KEYS))})"
                )
            kind = entry.get("workerType", name if name in ("prefill", "decode") else "regular")
            if kind not in WORKER_TYPES:
                problems.append(f"{where}.workerType must be one of {', '.join(WORKER_TYPES)}")
            port = _port(entry.get("port", DEFAULT_PORT), f"{where}.port", problems)
            bootstrap = None
            if kind == "prefill":
                bootstrap = _port(
                    entry.get("bootstrapPort", DEFAULT_BOOTSTRAP_PORT), f"{where}.bootstrapPort", problems
                )
            elif "bootstrapPort" in entry:
                problems.append(f"{where}.bootstrapPort is for prefill workers only")
            if port is not None:
                roles[name] = WorkerRole(name, kind, port, bootstrap)
    if problems:
        return None, problems
    return DrainConfig(router, router_port, timeout, MappingProxyType(roles)), []


def of(annotations: Mapping[str, str] | None) -> DrainConfig | None:
    """The group's drain configuration; None when it has none or it cannot be read (admission
    refuses such a value, so only a group written before the check can carry one)."""
    return parse((annotations or {}).get(ANNOTATION))[0]


def problems(
    annotations: Mapping[str, str] | None, role_names: list[str], workloads: Mapping[str, str] | None = None
) -> list[str]:
    """Admission's refusals of the annotation, each naming it. `workloads`: the kind each role runs
    as; only RoleInstanceSet roles can be drained (the operator deletes and updates their pods
    itself), so a worker role of another kind is refused rather than left undrained unsaid."""
    text = (annotations or {}).get(ANNOTATION)
    if text is None:
        return []
    if not isinstance(text, str):
        return [f"metadata.annotations[{ANNOTATION}]: must be a string"]
    config, found = parse(text, role_names)
    if config is not None:
        for name in config.roles:
            kind = (workloads or {}).get(name, "RoleInstanceSet")
            if kind != "RoleInstanceSet":
                found.append(
                    f"roles.{name}: role {name!r} runs as a {kind}, whose controller deletes its pods itself; "
                    "only RoleInstanceSet roles are drained (docs/drain.md)"
                )
    return [f"metadata.annotations[{ANNOTATION}]: {p}" for p in found]
