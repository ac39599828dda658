"""Generate the CRD manifests in crds/ from the pydantic models.

pydantic's JSON schema is turned into a structural OpenAPI v3 schema: references inlined,
optional fields unwrapped, int-or-string marked, and embedded Kubernetes types (pod
templates, containers, service ports) replaced by the real schema from the pinned
Kubernetes release's OpenAPI document.

    python -m rbg_operator.api.crdgen --k8s-openapi api__v1_openapi.json --out crds/
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ..kinds import GROUP, V1ALPHA1, V1ALPHA2

# Keys of a JSON schema that a CRD's structural schema may carry over unchanged.
_KEEP = (
    "type",
    "format",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-validations",
    "default",
    "description",
)
_INT_OR_STRING = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
# Embedded object metadata may only carry these fields in a CRD schema.
_EMBEDDED_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "generateName": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


@dataclasses.dataclass(frozen=True)
class CrdVersion:
    name: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    printer_columns: list[dict]
    scale: dict | None = None
    root_rules: list[tuple[str, str, str]] | None = None  # CEL on the whole object (its name)
    storage: bool = False


@dataclasses.dataclass(frozen=True)
class CrdSpec:
    kind: str
    plural: str
    short_names: list[str]
    description: str
    versions: list[CrdVersion]
    converted: bool = False  # the versions differ: the operator's conversion webhook converts them
    scope: str = "Namespaced"


# Until the operator fills in its own address and CA (operator.py), conversion points at the
# chart's default webhook Service: a version the webhook cannot reach fails instead of being
# read in the other version's shape.
CONVERSION_SERVICE = {"namespace": "rbgs-system", "name": "ack-rbgs-webhook", "path": "/convert", "port": 443}
# The files also say `url: null`. A local run with --register-conversion writes a `url` (and removes
# `service`) under the operator's field manager; server-side apply removes only fields its own manager
# stops setting, so re-applying the files would add `service` beside that `url`, which the API server
# refuses ("exactly one of url or service"). An explicit null makes the applier own `url` as absent:
# with --force-conflicts (the README's command) it takes `url` away from the operator and the files'
# Service wins. The operator's caBundle is left alone (the files do not set it).
CONVERSION_CLIENT_CONFIG = {"url": None, "service": CONVERSION_SERVICE}


class KubernetesSchemas:
    """Resolves definitions of the pinned Kubernetes OpenAPI v3 document into CRD schema."""

    def __init__(self, *documents: dict):
        self.schemas: dict[str, dict] = {}
        for document in documents:
            self.schemas.update(document["components"]["schemas"])

    def resolve(self, name: str, _stack: tuple[str, ...] = ()) -> dict:
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            return copy.deepcopy(_INT_OR_STRING)
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            return copy.deepcopy(_INT_OR_STRING)
        if name == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta":
            return copy.deepcopy(_EMBEDDED_METADATA)
        if name in _stack:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return self._convert(self.schemas[name], _stack + (name,))

    def _convert(self, node: dict, stack: tuple[str, ...]) -> dict:
        ref = node.get("$ref") or next((s["$ref"] for s in node.get("allOf", []) if "$ref" in s), None)
        if ref:
            return self.resolve(ref.rsplit("/", 1)[-1], stack)
        # Descriptions of the embedded core types are left out to keep the CRD within etcd's object
        # size, and defaults too: the real API server defaults the child objects the operator creates.
        out = {k: v for k, v in node.items() if k in _KEEP and k not in ("description", "default")}
        if "properties" in node:
            out["properties"] = {k: self._convert(v, stack) for k, v in node["properties"].items()}
        if "required" in node:
            out["required"] = list(node["required"])
        if "items" in node:
            out["items"] = self._convert(node["items"], stack)
            self._default_map_keys(out, node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self._convert(node["additionalProperties"], stack)
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out

    def _default_map_keys(self, array: dict, raw_items: dict) -> None:
        """A list-map key that is not required needs its default (ports[].protocol: TCP)."""
        items = array["items"]
        raw = self._definition(raw_items)
        for key in array.get("x-kubernetes-list-map-keys", []):
            if key not in items.get("required", []):
                default = self._definition(raw.get("properties", {}).get(key, {})).get("default")
                if default is None:
                    default = raw.get("properties", {}).get(key, {}).get("default")
                if default is not None:
                    items["properties"][key]["default"] = default

    def _definition(self, node: dict) -> dict:
        ref = node.get("$ref") or next((s["$ref"] for s in node.get("allOf", []) if "$ref" in s), None)
        return self.schemas[ref.rsplit("/", 1)[-1]] if ref else node


class SchemaConverter:
    """pydantic JSON schema -> structural OpenAPI v3 schema."""

    def __init__(self, kubernetes: KubernetesSchemas):
        self.kubernetes = kubernetes

    def model(self, model: type[BaseModel]) -> dict:
        schema = model.model_json_schema(by_alias=True, mode="validation")
        return self._convert(schema, schema.get("$defs", {}))

    def _convert(self, node: dict, defs: dict) -> dict:
        annotations = {
            k: node[k]
            for k in (
                "description",
                "default",
                "x-kubernetes-validations",
                "x-kubernetes-list-type",
                "x-kubernetes-list-map-keys",
            )
            if k in node
        }
        if annotations.get("default", 0) is None:  # pydantic's "optional"; the CRD just omits the field
            del annotations["default"]
        if "$ref" in node:
            return {**self._convert(defs[node["$ref"].rsplit("/", 1)[-1]], defs), **annotations}
        if "x-rbg-k8s-type" in node:
            return {**self.kubernetes.resolve(node["x-rbg-k8s-type"]), **annotations}
        if node.get("x-kubernetes-int-or-string"):
            bounds = {k: node[k] for k in ("maxLength",) if k in node}  # keeps CEL cost estimates low
            return {**copy.deepcopy(_INT_OR_STRING), **bounds, **annotations}
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"cannot express union {node['anyOf']} in a structural schema")
            return {**self._convert(options[0], defs), **annotations}
        out = {k: v for k, v in node.items() if k in _KEEP and not (k == "default" and v is None)}
        if "const" in node:
            out["enum"] = [node["const"]]
        if "properties" in node:
            out["type"] = "object"
            out["properties"] = {k: self._convert(v, defs) for k, v in node["properties"].items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        if "items" in node:
            out["items"] = self._convert(node["items"], defs)
        if isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = self._convert(node["additionalProperties"], defs)
        if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out


def _version(spec: CrdSpec, version: CrdVersion, converter: SchemaConverter) -> dict:
    schema = {
        "type": "object",
        "description": spec.description,
        "properties": {
            "apiVersion": {"type": "string", "description": f"APIVersion of this object: {GROUP}/{version.name}."},
            "kind": {"type": "string", "description": f"Kind of this object: {spec.kind}."},
            "metadata": {"type": "object"},
            "spec": converter.model(version.spec_model),
            "status": converter.model(version.status_model),
        },
    }
    if version.root_rules:
        schema["x-kubernetes-validations"] = [
            {"rule": rule, "message": message, **({"fieldPath": path} if path else {})}
            for rule, message, path in version.root_rules
        ]
    subresources: dict[str, Any] = {"status": {}}
    if version.scale:
        subresources["scale"] = version.scale
    out: dict[str, Any] = {"name": version.name, "served": True, "storage": version.storage}
    newest = spec.versions[-1].name
    if version.name != newest:
        out["deprecated"] = True
        out["deprecationWarning"] = (
            f"{GROUP}/{version.name} {spec.kind} is deprecated; use {GROUP}/{newest} {spec.kind}"
        )
    out.update(
        {
            "subresources": subresources,
            "additionalPrinterColumns": version.printer_columns,
            "schema": {"openAPIV3Schema": schema},
        }
    )
    return out


def crd(spec: CrdSpec, converter: SchemaConverter) -> dict:
    body: dict[str, Any] = {
        "group": GROUP,
        "names": {
            "kind": spec.kind,
            "listKind": f"{spec.kind}List",
            "plural": spec.plural,
            "singular": spec.kind.lower(),
            "shortNames": spec.short_names,
        },
        "scope": spec.scope,
        "versions": [_version(spec, v, converter) for v in spec.versions],
    }
    if spec.converted:
        body["conversion"] = {
            "strategy": "Webhook",
            "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": copy.deepcopy(CONVERSION_CLIENT_CONFIG)},
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{spec.plural}.{GROUP}"},
        "spec": body,
    }


def crd_specs() -> list[CrdSpec]:
    """The CRDs: RoleBasedGroup, RoleBasedGroupSet, the scaling adapter and ClusterEngineRuntimeProfile
    in v1alpha1 and v1alpha2 (stored; the first two converted by the operator's webhook), and the
    v1alpha2-only CoordinatedPolicy, RoleInstanceSet, RoleInstance and RoleBasedGroupWarmup
    (docs/api-versions.md)."""
    from . import v1alpha2
    from .engineruntime import ClusterEngineRuntimeProfileSpec, ClusterEngineRuntimeProfileStatus
    from .rolebasedgroup import DOT_RULE, RoleBasedGroupSpec, RoleBasedGroupStatus, name_rules
    from .rolebasedgroupset import RoleBasedGroupSetSpec, RoleBasedGroupSetStatus
    from .roleinstance import RoleInstanceSetSpec, RoleInstanceSetStatus, RoleInstanceSpec, RoleInstanceStatus
    from .scalingadapter import RoleBasedGroupScalingAdapterSpec, RoleBasedGroupScalingAdapterStatus
    from .warmup import WARMUP_NAME_RULE, RoleBasedGroupWarmupSpec, RoleBasedGroupWarmupStatus

    age = {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    group_columns = [
        {"name": "READY", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        age,
    ]
    adapter_columns = [
        {"name": "PHASE", "type": "string", "jsonPath": ".status.phase"},
        {"name": "REPLICAS", "type": "integer", "jsonPath": ".status.replicas"},
    ]
    adapter_scale = {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    set_columns = [
        {"name": "DESIRED", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "READY", "type": "integer", "jsonPath": ".status.readyReplicas"},
        age,
    ]
    set_scale = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
    instance_set_columns = [
        {"name": name, "type": "integer", "jsonPath": path}
        for name, path in (
            ("DESIRED", ".spec.replicas"),
            ("UPDATED", ".status.updatedReplicas"),
            ("UPDATED_READY", ".status.updatedReadyReplicas"),
            ("READY", ".status.readyReplicas"),
            ("TOTAL", ".status.replicas"),
        )
    ] + [age, {"name": "SELECTOR", "type": "string", "jsonPath": ".status.labelSelector", "priority": 1}]
    instance_columns = [
        {"name": "READY", "type": "string", "jsonPath": ".status.conditions[?(@.type=='RoleInstanceReady')].status"},
        age,
    ]
    # The reference declares none for the warmup; these say at a glance how far it got.
    warmup_columns = [
        {"name": "PHASE", "type": "string", "jsonPath": ".status.phase"},
        *(
            {"name": name, "type": "integer", "jsonPath": path}
            for name, path in (
                ("DESIRED", ".status.desired"),
                ("SUCCEEDED", ".status.succeeded"),
                ("FAILED", ".status.failed"),
            )
        ),
        age,
    ]
    # v1alpha2 is stored, as in the reference: the operator, kubectl (which prefers the newest version),
    # the namespace controller and the garbage collector all read it without conversion, so only
    # v1alpha1 clients need the conversion webhook and only they fail while it is down
    # (docs/api-versions.md). Clusters that stored v1alpha1 (chart 0.1/0.2) are rewritten by
    # `rbg-operator migrate-storage` (storage_migration.py).
    specs = [
        CrdSpec(
            kind="RoleBasedGroup",
            plural="rolebasedgroups",
            short_names=["rbg"],
            converted=True,
            description="RoleBasedGroup runs a list of named roles (e.g. router, prefill, decode) as one unit.",
            versions=[
                CrdVersion(
                    V1ALPHA1,
                    RoleBasedGroupSpec,
                    RoleBasedGroupStatus,
                    group_columns,
                    root_rules=name_rules("size(self.metadata.name)", "self.spec.roles"),
                ),
                CrdVersion(
                    V1ALPHA2,
                    v1alpha2.RoleBasedGroupSpecV2,
                    RoleBasedGroupStatus,
                    group_columns,
                    root_rules=[DOT_RULE],
                    storage=True,
                ),
            ],
        ),
        CrdSpec(
            kind="RoleBasedGroupScalingAdapter",
            plural="rolebasedgroupscalingadapters",
            short_names=["rbgsa"],
            description="RoleBasedGroupScalingAdapter exposes one role of a group through a scale subresource, "
            "for kubectl scale and HorizontalPodAutoscalers.",
            versions=[  # the same schema in both versions: the API server changes only apiVersion
                CrdVersion(
                    V1ALPHA1,
                    RoleBasedGroupScalingAdapterSpec,
                    RoleBasedGroupScalingAdapterStatus,
                    [*adapter_columns, age],
                    scale=adapter_scale,
                ),
                CrdVersion(
                    V1ALPHA2,
                    RoleBasedGroupScalingAdapterSpec,
                    RoleBasedGroupScalingAdapterStatus,
                    [
                        *adapter_columns,
                        {"name": "READY_REPLICAS", "type": "integer", "jsonPath": ".status.readyReplicas"},
                        age,
                    ],
                    scale=adapter_scale,
                    storage=True,
                ),
            ],
        ),
        CrdSpec(
            kind="RoleBasedGroupSet",
            plural="rolebasedgroupsets",
            short_names=["rbgs"],
            converted=True,
            description="RoleBasedGroupSet runs replicas identical RoleBasedGroups made from one template.",
            versions=[
                # Its members are {rbgs}-{index}: the longest index counts.
                CrdVersion(
                    V1ALPHA1,
                    RoleBasedGroupSetSpec,
                    RoleBasedGroupSetStatus,
                    set_columns,
                    scale=set_scale,
                    root_rules=name_rules(
                        "(size(self.metadata.name) + 1 + size(string(self.spec.replicas)))", "self.spec.template.roles"
                    ),
                ),
                CrdVersion(
                    V1ALPHA2,
                    v1alpha2.RoleBasedGroupSetSpecV2,
                    RoleBasedGroupSetStatus,
                    set_columns,
                    scale=set_scale,
                    root_rules=[DOT_RULE],
                    storage=True,
                ),
            ],
        ),
        CrdSpec(
            kind="ClusterEngineRuntimeProfile",
            plural="clusterengineruntimeprofiles",
            short_names=[],
            scope="Cluster",
            description="ClusterEngineRuntimeProfile holds sidecars, init containers and volumes for roles that "
            "name it in engineRuntimes.",
            versions=[
                CrdVersion(
                    name,
                    ClusterEngineRuntimeProfileSpec,
                    ClusterEngineRuntimeProfileStatus,
                    [],
                    storage=name == V1ALPHA2,
                )
                for name in (V1ALPHA1, V1ALPHA2)
            ],
        ),
        CrdSpec(
            kind="CoordinatedPolicy",
            plural="coordinatedpolicies",
            short_names=["cpolicy"],
            description="CoordinatedPolicy paces rolling updates and scaling across roles of the RoleBasedGroup "
            "of the same name.",
            versions=[
                CrdVersion(
                    V1ALPHA2, v1alpha2.CoordinatedPolicySpec, v1alpha2.CoordinatedPolicyStatus, [age], storage=True
                )
            ],
        ),
        CrdSpec(
            kind="RoleInstanceSet",
            plural="roleinstancesets",
            short_names=["ris"],
            description="RoleInstanceSet keeps replicas RoleInstances made from one template and rolls them to a "
            "new one; the workload of a RoleBasedGroup role.",
            versions=[
                CrdVersion(
                    V1ALPHA2,
                    RoleInstanceSetSpec,
                    RoleInstanceSetStatus,
                    instance_set_columns,
                    scale={**set_scale, "labelSelectorPath": ".status.labelSelector"},
                    storage=True,
                )
            ],
        ),
        CrdSpec(
            kind="RoleInstance",
            plural="roleinstances",
            short_names=["rins"],
            description="RoleInstance is one replica of a role: the pods of one or more named components.",
            versions=[CrdVersion(V1ALPHA2, RoleInstanceSpec, RoleInstanceStatus, instance_columns, storage=True)],
        ),
        CrdSpec(
            kind="RoleBasedGroupWarmup",
            plural="rolebasedgroupwarmups",
            short_names=["rbgwarmup"],
            description="RoleBasedGroupWarmup pulls images, or runs containers, once on each of a set of nodes "
            "(named, selected by label, or those of a RoleBasedGroup's pods).",
            versions=[
                CrdVersion(
                    V1ALPHA2,
                    RoleBasedGroupWarmupSpec,
                    RoleBasedGroupWarmupStatus,
                    warmup_columns,
                    root_rules=[WARMUP_NAME_RULE],
                    storage=True,
                )
            ],
        ),
    ]
    return specs


def render(kubernetes_openapi: list[dict]) -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    converter = SchemaConverter(KubernetesSchemas(*kubernetes_openapi))
    files = {}
    for spec in crd_specs():
        document = crd(spec, converter)
        header = "# Generated by `make crds` from rbg_operator/api; do not edit by hand.\n"
        files[f"{GROUP}_{spec.plural}.yaml"] = header + yaml.safe_dump(document, sort_keys=False, width=120)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--k8s-openapi",
        type=Path,
        required=True,
        action="append",
        help="the pinned Kubernetes' api/openapi-spec/v3/api__v1_openapi.json",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        action="append",
        help="directory to write the CRDs to (repeatable: crds/ and the chart's crds/)",
    )
    args = parser.parse_args()
    documents = [json.loads(path.read_text()) for path in args.k8s_openapi]
    for out in args.out:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in render(documents).items():
            (out / name).write_text(text)
            print(f"wrote {out / name} ({len(text) // 1024} KiB)")


if __name__ == "__main__":
    main()
