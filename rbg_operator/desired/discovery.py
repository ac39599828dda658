"""Service discovery: the per-role headless Service, the group's topology ConfigMap, and
the environment and volume injected into every container of a role's pods."""

from __future__ import annotations

import copy

import yaml

from .. import naming
from ..api.discovery_size import port_keys
from ..api.v1alpha2 import RoleBasedGroupV2, RoleV2
from .meta import child_metadata, owner_reference

# libyaml's emitter writes the same text as PyYAML's pure-Python one, thirty times faster; the
# topology is rendered on every reconcile, so this is most of the cost of building a group.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def shared_service_selection(role: RoleV2) -> str:
    """Which pods of a leader-worker instance the role's Service selects: the leader alone by default."""
    if role.leader_worker_pattern is None:
        return "All"
    return role.leader_worker_pattern.shared_service_selection or "LeaderOnly"


def headless_service(group: RoleBasedGroupV2, role: RoleV2) -> dict:
    """`s-{rbg}-{role}`: gives every pod a stable DNS name `{pod}.s-{rbg}-{role}`, ready or not."""
    meta = child_metadata(group, role, naming.service_name(group.name, role.name))
    meta.pop("annotations", None)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {
                **naming.role_selector(group.name, role.name),
                **(
                    {naming.LABEL_V2_COMPONENT_NAME: "leader"}
                    if role.workload.kind == "RoleInstanceSet" and shared_service_selection(role) == "LeaderOnly"
                    else {}
                ),
            },
        },
    }


def topology(group: RoleBasedGroupV2, applied: dict[str, int] | None = None) -> dict:
    """What pods learn about their group: every role, its size and its instances' addresses.
    `applied` holds replicas the workloads run with where they differ from the spec (a paced
    scale-up, another writer's value): the topology lists the instances that exist."""
    roles = []
    for role in group.spec.roles:
        kind = role.workload.kind
        replicas = (applied or {}).get(role.name, role.replicas)
        entry = {
            "name": role.name,
            "workload": kind,
            "replicas": replicas,
            "service": naming.service_name(group.name, role.name),
        }
        if kind == "LeaderWorkerSet" or role.pattern == "leaderWorker":
            entry["size"] = role.leader_worker_size
        if kind == "RoleInstanceSet":
            entry["pattern"] = role.pattern
        stateless = (role.annotations or {}).get(naming.ANNOTATION_V2_INSTANCE_PATTERN) == "Stateless"
        # Deployment pods and Stateless RoleInstanceSet instances have no stable names.
        addresses = naming.instance_addresses(
            group.name, role.name, replicas, kind, role.pattern, stateless, role.first_component
        )
        if addresses is not None:
            entry["instances"] = addresses
        if role.service_ports:
            entry["servicePorts"] = copy.deepcopy(role.service_ports)
        roles.append(entry)
    return {"group": group.name, "namespace": group.namespace, "roles": roles}


def topology_configmap(group: RoleBasedGroupV2, applied: dict[str, int] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": group.name,
            "namespace": group.namespace,
            "labels": naming.group_labels(group.namespace, group.name),
            "ownerReferences": [owner_reference(group)],
        },
        "data": {
            naming.TOPOLOGY_FILE: yaml.dump(found := topology(group, applied), Dumper=_DUMPER, sort_keys=False),
            # As the contract shows it: a mapping or list of scalars on one line (`ports: {http: 8000}`,
            # `roles: [prefill]`), never wrapped. Smaller too, which api/discovery_size.py counts on.
            naming.DISCOVERY_CONFIG_FILE: yaml.dump(
                discovery_config(group, found),
                Dumper=_DUMPER,
                sort_keys=False,
                default_flow_style=None,
                width=2**31 - 1,
            ),
        },
    }


def discovery_config(group: RoleBasedGroupV2, found: dict) -> dict:
    """The v1alpha2 contract's `config.yaml` (its refine mode, §4.8): the stateful roles (those with
    instance addresses) with their sizes and each instance's address and named ports, from the same
    topology as topology.yaml. Unlike the reference's (its quirk Q8), every address resolves to a pod."""
    ports = {role.name: role.service_ports or [] for role in group.spec.roles}
    stateful = [entry for entry in found["roles"] if "instances" in entry]
    return {
        "group": {"name": group.name, "size": len(stateful), "roles": [e["name"] for e in stateful]},
        "roles": {
            entry["name"]: {
                "size": entry["replicas"],
                "instances": [
                    {"address": address, "ports": port_keys(ports[entry["name"]])} for address in entry["instances"]
                ],
            }
            for entry in stateful
        },
    }


def _label_ref(label: str) -> dict:
    return {"valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{label}']"}}}


def discovery_env(group: RoleBasedGroupV2, role: RoleV2) -> list[dict]:
    """The RBG_* variables, the older GROUP_NAME/ROLE_NAME/ROLE_INDEX, and for
    LeaderWorkerSet roles the leader address, worker index and group size."""
    env = [
        {"name": "RBG_GROUP_NAME", "value": group.name},
        {"name": "RBG_ROLE_NAME", "value": role.name},
        {"name": "GROUP_NAME", "value": group.name},
        {"name": "ROLE_NAME", "value": role.name},
    ]
    kind = role.workload.kind
    if kind == "RoleInstanceSet":
        return env + _instance_env(group, role)
    index_label = {"StatefulSet": naming.STATEFULSET_POD_INDEX, "LeaderWorkerSet": naming.LWS_GROUP_INDEX}.get(kind)
    if index_label:
        env += [
            {"name": "RBG_ROLE_INDEX", **_label_ref(index_label)},
            {"name": "ROLE_INDEX", **_label_ref(index_label)},
        ]
    if kind == "LeaderWorkerSet":
        workload = naming.workload_name(group.name, role.name)
        env += [
            # $(RBG_ROLE_INDEX) expands because it is defined above.
            {"name": "RBG_LWP_LEADER_ADDRESS", "value": f"{workload}-$(RBG_ROLE_INDEX).{workload}.{group.namespace}"},
            {"name": "RBG_LWP_WORKER_INDEX", **_label_ref(naming.LWS_WORKER_INDEX)},
            {"name": "RBG_LWP_GROUP_SIZE", "value": str(role.leader_worker_size)},
        ]
    return env


def _instance_env(group: RoleBasedGroupV2, role: RoleV2) -> list[dict]:
    """The variables of a RoleInstanceSet role's pods, read from the labels the RoleInstance
    controller gives each pod (the contract's §4.7)."""
    env = [
        {"name": "RBG_ROLE_INDEX", **_label_ref(naming.LABEL_V2_INSTANCE_INDEX)},
        {"name": "RBG_ROLE_INSTANCE_NAME", **_label_ref(naming.LABEL_V2_INSTANCE_NAME)},
        {"name": "RBG_COMPONENT_NAME", **_label_ref(naming.LABEL_V2_COMPONENT_NAME)},
        {"name": "RBG_COMPONENT_INDEX", **_label_ref(naming.LABEL_V2_COMPONENT_ID)},
    ]
    if role.pattern == "leaderWorker":
        service = naming.service_name(group.name, role.name)
        env += [  # $(RBG_ROLE_INSTANCE_NAME) expands because it is defined above
            {"name": "RBG_LWP_LEADER_ADDRESS", "value": f"$(RBG_ROLE_INSTANCE_NAME)-0.{service}.{group.namespace}"},
            {"name": "RBG_LWP_WORKER_INDEX", **_label_ref(naming.LABEL_V2_COMPONENT_INDEX)},
            {"name": "RBG_LWP_GROUP_SIZE", **_label_ref(naming.LABEL_V2_COMPONENT_SIZE)},
        ]
    return env


def inject(template: dict, group: RoleBasedGroupV2, role: RoleV2) -> dict:
    """Add discovery env (a user's variable of the same name wins) and the read-only topology mount."""
    template = copy.deepcopy(template)
    spec = template.setdefault("spec", {})
    ours = discovery_env(group, role)
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        defined = {e.get("name") for e in container.get("env", [])}
        # Ours go first, so a user's $(RBG_ROLE_INDEX) in a later variable expands.
        container["env"] = [e for e in ours if e["name"] not in defined] + container.get("env", [])
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("name") == naming.TOPOLOGY_VOLUME for m in mounts):
            mounts.append({"name": naming.TOPOLOGY_VOLUME, "mountPath": naming.TOPOLOGY_MOUNT_PATH, "readOnly": True})
    volumes = spec.setdefault("volumes", [])
    if not any(v.get("name") == naming.TOPOLOGY_VOLUME for v in volumes):
        volumes.append({"name": naming.TOPOLOGY_VOLUME, "configMap": {"name": group.name}})
    return template
