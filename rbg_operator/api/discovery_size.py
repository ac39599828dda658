"""How large a group's discovery ConfigMap `{rbg}` can get, so that admission refuses a group whose
ConfigMap the API server would refuse.

The ConfigMap carries topology.yaml and config.yaml, and each lists the address of every instance
of every role with stable pod names (config.yaml with the role's port keys beside each). At the
replicas cap with long names that is more than the 1 MiB a ConfigMap may hold, and the API server
would refuse the write on every reconcile with a message about a ConfigMap the user never wrote,
while every pod waits for its volume. Refusing the group when it is written names the cause and
the fields to change. Dropping or shortening config.yaml instead would hand pods an incomplete
topology without a word, and the 1 MiB is a hard limit of the API server, not a setting.

The size is an upper bound, worked out from the same addresses the operator renders
(naming.instance_addresses), counted as JSON-escaped YAML (each newline two bytes), which is at
least the bytes the API server counts.
"""

from __future__ import annotations

import json

from .. import naming

CONFIGMAP_LIMIT = 1024 * 1024  # the API server's limit on a ConfigMap's data
# What the ConfigMap's keys, metadata and the estimate's own rounding may take besides the files.
MAX_DISCOVERY_BYTES = CONFIGMAP_LIMIT - 32 * 1024

# Per role: its entry's keys in topology.yaml (name, workload, replicas, service, size, pattern,
# instances, servicePorts) and in config.yaml (size, instances); per instance: `- ` and a newline in
# topology.yaml, `- address: `, `ports: `, indentation and two newlines in config.yaml.
_ROLE_BYTES = 256
_INSTANCE_BYTES = 40
_GROUP_BYTES = 512 + 64  # the documents' own keys, and the namespace (at most 63)


def _size(value) -> int:
    """Bytes of a value as compact ASCII JSON: at least what YAML takes for a plain scalar or a
    flow mapping of scalars (YAML quotes and escapes no more than JSON does)."""
    return len(json.dumps(value, separators=(",", ":")))


def port_keys(service_ports: list[dict] | None) -> dict[str, int]:
    """config.yaml's ports of an instance: `http-api` → `http_api`; an unnamed port is `port{number}`."""
    return {
        (str(p.get("name") or "") or f"port{p.get('port')}").lower().replace("-", "_"): p.get("port")
        for p in service_ports or []
        if isinstance(p, dict) and p.get("port") is not None
    }


def role_addresses(group: str, role) -> list[str] | None:
    """The addresses the discovery files list for `role` (a v1alpha1 Role or a RoleV2) at its
    replicas in the spec."""
    stateless = (role.annotations or {}).get(naming.ANNOTATION_V2_INSTANCE_PATTERN) == "Stateless"
    return naming.instance_addresses(
        group, role.name, role.replicas, role.workload.kind, role.pattern, stateless, role.first_component
    )


def discovery_bytes(group: str, roles: list) -> list[tuple[int, str, int, int]]:
    """(index, role, instances listed, bytes at most) for each role of the group."""
    found = []
    for i, role in enumerate(roles):
        addresses = role_addresses(group, role) or []
        ports = role.service_ports or []
        size = _ROLE_BYTES + 3 * len(role.name) + 2 * len(group) + 3 * _size(ports)
        # Every instance of a role has the same port keys. A flow mapping `{a: 1, b: 2}` takes one
        # byte more per key than compact JSON at most (`, ` for `,`; a key YAML quotes, JSON quotes).
        keys = port_keys(ports)
        per_port_keys = _size(keys) + len(keys)
        size += sum(2 * _size(address) + _INSTANCE_BYTES + per_port_keys for address in addresses)
        found.append((i, role.name, len(addresses), size))
    return found


def discovery_size_problem(group: str, roles: list) -> str | None:
    """The refusal, naming the roles that take the most, when the group's discovery ConfigMap could
    pass the API server's limit; None when it fits."""
    found = discovery_bytes(group, roles)
    total = _GROUP_BYTES + 2 * len(group) + sum(size for *_, size in found)
    if total <= MAX_DISCOVERY_BYTES:
        return None
    largest = sorted(found, key=lambda f: -f[3])[:3]
    detail = ", ".join(f"roles[{i}] ({name}): {count} instances, {size} bytes" for i, name, count, size in largest)
    return (
        f"spec.roles: the discovery ConfigMap {group} lists every instance's address (in topology.yaml "
        f"and config.yaml) and would come to up to {total} bytes ({detail}), but a ConfigMap holds at "
        f"most {CONFIGMAP_LIMIT} bytes and {MAX_DISCOVERY_BYTES} are allowed for these files; lower "
        f"the replicas, shorten the group or role names, or list fewer servicePorts"
    )
