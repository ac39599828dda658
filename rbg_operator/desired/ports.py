"""The port allocator (the contract's §4.6 and §4.7), as pure functions: read the directive
`rolebasedgroup.workloads.x-k8s.io/port-allocator` of a component, work out which allocations an
object still lacks, choose ports for them from a set of used ones, and put the chosen ports on
pods as environment variables and annotations.

Where allocations live, so that they outlive the operator (docs/port-allocation.md):

- RoleScoped: on the role's RoleInstanceSet, annotation ROLE_PORTS, JSON
  `{role: {component: {name: port}}}`; it also holds the RoleScoped ports of other roles that
  the role's `references` name. The group reconcile writes it; the RoleInstanceSet controller
  copies it to every RoleInstance.
- PodScoped: on the RoleInstance, annotation POD_PORTS, JSON `{pod: {name: port}}`, written by
  the RoleInstanceSet controller when it creates or rewrites the instance.

The stateful part (which ports are in use, and the reservations of the writes in flight) is
controller/ports.py. Nothing here reads the cache or talks to the API server.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from collections.abc import Iterable, Mapping

from .. import naming
from .options import PortSettings

DIRECTIVE = "rolebasedgroup.workloads.x-k8s.io/port-allocator"
ROLE_PORTS = "rbg.workloads.x-k8s.io/role-port-allocations"
POD_PORTS = "rbg.workloads.x-k8s.io/pod-port-allocations"
POD_SCOPED, ROLE_SCOPED = "PodScoped", "RoleScoped"
STRATEGIES = ("random", "static")

# No dots: they separate the parts of a reference's `from` ({role}.{component}.{name}).
ALLOCATION_NAME = re.compile(r"[A-Za-z0-9]([-_A-Za-z0-9]{0,61}[A-Za-z0-9])?")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_QUALIFIED = re.compile(r"([A-Za-z0-9]([-_.A-Za-z0-9]{0,61}[A-Za-z0-9])?)")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
ALLOCATION_FIELDS = {"name", "env", "annotationKey", "scope"}
REFERENCE_FIELDS = {"env", "from"}


class DirectiveError(ValueError):
    """A directive that cannot be used; the message names the field."""


class PortsExhausted(RuntimeError):
    """Fewer free ports in the range than allocations to make."""


@dataclasses.dataclass(frozen=True)
class Allocation:
    name: str
    env: str
    annotation_key: str | None = None
    scope: str = POD_SCOPED


@dataclasses.dataclass(frozen=True)
class Reference:
    env: str
    source: str  # the directive's `from`: {component}.{name} in the same role, or {role}.{component}.{name}


@dataclasses.dataclass(frozen=True)
class Directive:
    allocations: tuple[Allocation, ...] = ()
    references: tuple[Reference, ...] = ()


def _annotation_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if not _QUALIFIED.fullmatch(name) or (slash and not (_PREFIX.fullmatch(prefix) and len(prefix) <= 253)):
        return f"{key!r} is not an annotation key (an optional DNS prefix and '/', then up to 63 characters)"
    return None


def _string(entry: dict, field: str, where: str, required: bool = True) -> str | None:
    value = entry.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise DirectiveError(f"{where}.{field}: {'required, ' if value is None else ''}a non-empty string is needed")
    return value


def _entries(parsed: dict, field: str, known: set[str]) -> list[tuple[str, dict]]:
    entries = parsed.get(field)
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise DirectiveError(f"{field}: a list is needed")
    out = []
    for i, entry in enumerate(entries):
        where = f"{field}[{i}]"
        if not isinstance(entry, dict):
            raise DirectiveError(f"{where}: an object is needed")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise DirectiveError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        out.append((where, entry))
    return out


def parse(text: str) -> Directive:
    """The directive's JSON; DirectiveError naming the field when it cannot be used."""
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise DirectiveError(f"not JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise DirectiveError('not a JSON object ({"allocations": [...], "references": [...]})')
    unknown = sorted(set(parsed) - {"allocations", "references"})
    if unknown:
        raise DirectiveError(f"{unknown[0]}: unknown field (known: allocations, references)")
    envs: set[str] = set()

    def env_of(entry: dict, where: str) -> str:
        env = _string(entry, "env", where)
        if not ENV_NAME.fullmatch(env):
            raise DirectiveError(f"{where}.env: {env!r} is not an environment variable name")
        if env in envs:
            raise DirectiveError(f"{where}.env: {env!r} is set twice by the directive")
        envs.add(env)
        return env

    allocations, names = [], set()
    for where, entry in _entries(parsed, "allocations", ALLOCATION_FIELDS):
        name = _string(entry, "name", where)
        if not ALLOCATION_NAME.fullmatch(name):
            raise DirectiveError(
                f"{where}.name: {name!r} is not a name (letters, digits, '-' and '_', at most 63, no dots)"
            )
        if name in names:
            raise DirectiveError(f"{where}.name: {name!r} is allocated twice")
        names.add(name)
        env = env_of(entry, where)
        key = _string(entry, "annotationKey", where, required=False)
        if key is not None and (problem := _annotation_key_problem(key)):
            raise DirectiveError(f"{where}.annotationKey: {problem}")
        scope = entry.get("scope") or POD_SCOPED  # the reference's default
        if scope not in (POD_SCOPED, ROLE_SCOPED):
            raise DirectiveError(f"{where}.scope: {scope!r} is neither {POD_SCOPED} nor {ROLE_SCOPED}")
        allocations.append(Allocation(name, env, key, scope))
    references = []
    for where, entry in _entries(parsed, "references", REFERENCE_FIELDS):
        env = env_of(entry, where)
        source = _string(entry, "from", where)
        parts = source.split(".")
        if len(parts) not in (2, 3) or not all(parts):
            raise DirectiveError(
                f"{where}.from: {source!r} is not {{component}}.{{name}} or {{role}}.{{component}}.{{name}}"
            )
        references.append(Reference(env, source))
    return Directive(tuple(allocations), tuple(references))


def directive_text(component: dict) -> str | None:
    """The directive on a component's annotations, else on its pod template's (the contract's
    §4.6; a role's own annotations reach the template)."""
    template_meta = (component.get("template") or {}).get("metadata") or {}
    return (component.get("annotations") or {}).get(DIRECTIVE) or (template_meta.get("annotations") or {}).get(
        DIRECTIVE
    )


def component_directive(component: dict) -> Directive | None:
    """The component's directive, None without one; DirectiveError naming the component and the field."""
    text = directive_text(component)
    if text is None:
        return None
    try:
        return parse(text)
    except DirectiveError as error:
        raise DirectiveError(f"component {component.get('name')}: annotation {DIRECTIVE}: {error}") from None


def _port(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536 else None


def read_role_ports(text: str | None) -> dict[str, dict[str, dict[str, int]]]:
    """ROLE_PORTS as {role: {component: {name: port}}}; what is not a port is left out (a hand
    edit must not break a reconcile; a missing entry is allocated again)."""
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        return {}
    out: dict[str, dict[str, dict[str, int]]] = {}
    for role, components in (parsed if isinstance(parsed, dict) else {}).items():
        for component, names in (components if isinstance(components, dict) else {}).items():
            for name, value in (names if isinstance(names, dict) else {}).items():
                if (port := _port(value)) is not None:
                    out.setdefault(role, {}).setdefault(component, {})[name] = port
    return out


def read_pod_ports(text: str | None) -> dict[str, dict[str, int]]:
    """POD_PORTS as {pod: {name: port}}, leaving out what is not a port."""
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        return {}
    out: dict[str, dict[str, int]] = {}
    for pod, names in (parsed if isinstance(parsed, dict) else {}).items():
        for name, value in (names if isinstance(names, dict) else {}).items():
            if (port := _port(value)) is not None:
                out.setdefault(pod, {})[name] = port
    return out


def ports_in(annotations: Mapping[str, str] | None) -> set[int]:
    """Every port an object's annotations hold (the used set is the union over the cache)."""
    annotations = annotations or {}
    used = set()
    for components in read_role_ports(annotations.get(ROLE_PORTS)).values():
        for names in components.values():
            used.update(names.values())
    for names in read_pod_ports(annotations.get(POD_PORTS)).values():
        used.update(names.values())
    return used


def _dump(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- choosing ---------------------------------------------------------------------------------


def choose(count: int, used: Iterable[int], settings: PortSettings, rng: random.Random | None = None) -> list[int]:
    """`count` distinct ports of [start, start + range) not in `used`: the lowest free ones
    (static) or a random sample of the free ones (random)."""
    if count <= 0:
        return []
    taken = set(used)
    free = [p for p in range(settings.start, settings.start + settings.range) if p not in taken]
    if len(free) < count:
        raise PortsExhausted(
            f"{count} port(s) wanted, {len(free)} free in {settings.start}-{settings.start + settings.range - 1} "
            f"(--start-port {settings.start}, --port-range {settings.range})"
        )
    if settings.strategy == "static":
        return free[:count]
    return (rng or random.Random()).sample(free, count)


# -- RoleScoped: the RoleInstanceSet of each role ----------------------------------------------

RoleKey = tuple[str, str, str]  # (role, component, name)


@dataclasses.dataclass(frozen=True)
class RoleNeeds:
    """What a group's RoleInstanceSets hold and lack: the RoleScoped allocations kept from what
    they carry, those still to choose, and why a directive is not used."""

    kept: Mapping[RoleKey, int]
    missing: tuple[RoleKey, ...]
    directives: Mapping[tuple[str, str], Directive]  # (role, component) -> its directive
    problems: tuple[str, ...] = ()


def role_needs(roles: Mapping[str, list[dict]], carried: Mapping[str, str | None]) -> RoleNeeds:
    """`roles`: each RoleInstanceSet role's components; `carried`: the ROLE_PORTS annotation its
    RoleInstanceSet has now (None when it has none, or does not exist yet). An allocation a set
    carries is kept as it is, whatever the range is now: a port is never moved."""
    kept: dict[RoleKey, int] = {}
    missing: list[RoleKey] = []
    directives: dict[tuple[str, str], Directive] = {}
    problems: list[str] = []
    for role, components in roles.items():
        have = read_role_ports(carried.get(role)).get(role, {})
        for component in components:
            try:
                directive = component_directive(component)
            except DirectiveError as error:
                problems.append(f"role {role}: {error}")
                continue
            if directive is None:
                continue
            directives[(role, component["name"])] = directive
            for allocation in directive.allocations:
                if allocation.scope != ROLE_SCOPED:
                    continue
                key = (role, component["name"], allocation.name)
                port = have.get(component["name"], {}).get(allocation.name)
                if port is None:
                    missing.append(key)
                else:
                    kept[key] = port
    return RoleNeeds(kept, tuple(missing), directives, tuple(problems))


@dataclasses.dataclass(frozen=True)
class RolePorts:
    """What a group's pass writes of the RoleScoped allocations, and what it reports."""

    annotations: Mapping[str, str]  # role -> the ROLE_PORTS annotation of its RoleInstanceSet
    problems: tuple[str, ...] = ()  # directives that cannot be used, references naming nothing
    exhausted: str | None = None  # why missing allocations were not made


def role_annotations(needs: RoleNeeds, chosen: Mapping[RoleKey, int]) -> tuple[dict[str, str], list[str]]:
    """ROLE_PORTS of each role's RoleInstanceSet, from the kept and the chosen ports: its own
    RoleScoped allocations and the other roles' ones its references name; and why a reference
    names nothing. A role with no directive gets no entry."""
    ports = {**needs.kept, **chosen}
    values: dict[str, dict] = {}
    problems = []
    for (role, component), directive in needs.directives.items():
        mine = values.setdefault(role, {})
        for allocation in directive.allocations:
            if (port := ports.get((role, component, allocation.name))) is not None:
                mine.setdefault(role, {}).setdefault(component, {})[allocation.name] = port
        for i, reference in enumerate(directive.references):
            target = resolve(reference.source, role)
            if (port := ports.get(target)) is not None:
                mine.setdefault(target[0], {}).setdefault(target[1], {})[target[2]] = port
            elif (port_scoped := needs.directives.get(target[:2])) is not None and any(
                a.name == target[2] for a in port_scoped.allocations
            ):
                problems.append(
                    f"role {role}: component {component}: annotation {DIRECTIVE}: references[{i}].from: "
                    f"{reference.source!r} is a PodScoped allocation; only RoleScoped ones can be referenced"
                )
            else:
                problems.append(
                    f"role {role}: component {component}: annotation {DIRECTIVE}: references[{i}].from: "
                    f"{reference.source!r} names no RoleScoped allocation of this group"
                )
    return {role: _dump(value) for role, value in values.items() if value}, problems


def resolve(source: str, role: str) -> RoleKey:
    """A reference's `from` as (role, component, name); two parts are in the referring role."""
    parts = source.split(".")
    return (role, parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2])


# -- PodScoped: the RoleInstance ---------------------------------------------------------------

PodKey = tuple[str, str]  # (pod, name)


@dataclasses.dataclass(frozen=True)
class PodNeeds:
    kept: Mapping[PodKey, int]
    missing: tuple[PodKey, ...]


def pod_needs(instance: dict, pods: Mapping[str, list[str]], carried: str | None) -> PodNeeds:
    """The PodScoped allocations of an instance: `pods` are the pod names of each component,
    `carried` the POD_PORTS annotation the stored instance has (None for a new one). Kept ones
    never move; a directive that cannot be used allocates nothing (the group reports it)."""
    have = read_pod_ports(carried)
    kept: dict[PodKey, int] = {}
    missing: list[PodKey] = []
    for component in (instance.get("spec") or {}).get("components") or []:
        try:
            directive = component_directive(component)
        except DirectiveError:
            continue
        if directive is None:
            continue
        for allocation in directive.allocations:
            if allocation.scope != POD_SCOPED:
                continue
            for pod in pods.get(component["name"], []):
                port = have.get(pod, {}).get(allocation.name)
                if port is None:
                    missing.append((pod, allocation.name))
                else:
                    kept[(pod, allocation.name)] = port
    return PodNeeds(kept, tuple(missing))


def with_pod_ports(instance: dict, ports: Mapping[PodKey, int]) -> dict:
    """The instance with POD_PORTS holding exactly `ports` (none: no annotation)."""
    meta = dict(instance["metadata"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != POD_PORTS}
    if ports:
        value: dict[str, dict[str, int]] = {}
        for (pod, name), port in ports.items():
            value.setdefault(pod, {})[name] = port
        annotations[POD_PORTS] = _dump(value)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {**instance, "metadata": meta}


# -- on the pods -------------------------------------------------------------------------------


def hash_input(instance: dict, component: dict) -> dict | None:
    """What, besides its template, decides a pod's injected ports: None for a component without
    the directive (its pods' hashes stay what they were). Env cannot change on a running pod, so
    a change here must recreate the pod rather than update it in place."""
    text = directive_text(component)
    if text is None:
        return None
    annotations = instance["metadata"].get("annotations") or {}
    return {"directive": text, "role": annotations.get(ROLE_PORTS), "pods": annotations.get(POD_PORTS)}


def allocated_port(instance: dict, component: str, pod: str, name: str) -> int | None:
    """The port allocation `name` of pod `pod` (PodScoped) or of its component (RoleScoped), as the
    instance carries them; None when there is none."""
    meta = instance["metadata"]
    annotations = meta.get("annotations") or {}
    found = read_pod_ports(annotations.get(POD_PORTS)).get(pod, {}).get(name)
    if found is not None:
        return found
    role = (meta.get("labels") or {}).get(naming.LABEL_V2_ROLE_NAME, "")
    return read_role_ports(annotations.get(ROLE_PORTS)).get(role, {}).get(component, {}).get(name)


def pod_values(instance: dict, component: dict, pod: str) -> tuple[list[dict], dict[str, str]]:
    """The env entries and pod annotations the allocations give pod `pod` of the component, read
    from the instance's annotations; an allocation not made (allocator off, range exhausted) or a
    reference that names nothing gives nothing."""
    try:
        directive = component_directive(component)
    except DirectiveError:
        return [], {}
    if directive is None:
        return [], {}
    meta = instance["metadata"]
    annotations = meta.get("annotations") or {}
    role = (meta.get("labels") or {}).get(naming.LABEL_V2_ROLE_NAME, "")
    role_ports = read_role_ports(annotations.get(ROLE_PORTS))
    pod_ports = read_pod_ports(annotations.get(POD_PORTS)).get(pod, {})
    env, notes = [], {}
    for allocation in directive.allocations:
        if allocation.scope == ROLE_SCOPED:
            port = role_ports.get(role, {}).get(component["name"], {}).get(allocation.name)
        else:
            port = pod_ports.get(allocation.name)
        if port is None:
            continue
        env.append({"name": allocation.env, "value": str(port)})
        if allocation.annotation_key:
            notes[allocation.annotation_key] = str(port)
    for reference in directive.references:
        target_role, target_component, name = resolve(reference.source, role)
        port = role_ports.get(target_role, {}).get(target_component, {}).get(name)
        if port is not None:
            env.append({"name": reference.env, "value": str(port)})
    return env, notes


def inject(pod: dict, instance: dict, component: dict) -> dict:
    """The pod with its allocated ports: literal env in every container and init container (a
    variable the container sets itself wins, as for the RBG_* ones; ours come first, so a user's
    $(VAR) expands), and each allocation's annotationKey. The pod's nested parts are shared with
    other pods, so what changes is copied."""
    env, notes = pod_values(instance, component, pod["metadata"]["name"])
    if not env and not notes:
        return pod
    spec = dict(pod.get("spec") or {})
    for field in ("initContainers", "containers"):
        if spec.get(field):
            spec[field] = [_with_env(container, env) for container in spec[field]]
    meta = pod["metadata"]
    if notes:
        meta = {**meta, "annotations": {**(meta.get("annotations") or {}), **notes}}
    return {**pod, "metadata": meta, "spec": spec}


def _with_env(container: dict, env: list[dict]) -> dict:
    own = container.get("env") or []
    defined = {e.get("name") for e in own}
    return {**container, "env": [e for e in env if e["name"] not in defined] + list(own)}


# -- an object the cache did not show ---------------------------------------------------------


def _keep(desired: dict, found: dict, key: str, read) -> dict:
    """`desired` with the ports `found` (the stored object, which the cache had not shown yet)
    carries under `key` for the entries `desired` has: a port once written never moves."""
    want = (desired["metadata"].get("annotations") or {}).get(key)
    have = (found["metadata"].get("annotations") or {}).get(key)
    if want is None or have is None:
        return desired

    def merged(ours, theirs):
        if isinstance(ours, dict) and isinstance(theirs, dict):
            return {k: merged(v, theirs[k]) if k in theirs else v for k, v in ours.items()}
        return theirs if isinstance(theirs, int) else ours

    text = _dump(merged(read(want), read(have)))
    meta = {**desired["metadata"], "annotations": {**desired["metadata"]["annotations"], key: text}}
    return {**desired, "metadata": meta}


def keep_carried_role_ports(desired: dict, found: dict) -> dict:
    return _keep(desired, found, ROLE_PORTS, read_role_ports)


def keep_carried_pod_ports(desired: dict, found: dict) -> dict:
    return _keep(desired, found, POD_PORTS, read_pod_ports)
