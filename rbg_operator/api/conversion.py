"""Conversion between v1alpha1 and v1alpha2 of RoleBasedGroup and RoleBasedGroupSet.

Pure functions on objects as the API server sends them (wire form, camelCase). They follow the
reference's mapping, so objects it stored convert alike, except where the reference loses data a
user would expect to keep: there the data rides in a `conversion.workloads.x-k8s.io/*` annotation
and comes back on the way home, so both round trips are the identity (docs/api-versions.md):

- a v1alpha1 restartPolicy that v1alpha2 cannot hold (on a standalone role, or
  RecreateRBGOnPodRestart) is kept in the role annotation RESTART_POLICY_KEY;
- v1alpha2 role fields that v1alpha1 has no place for (podManagementPolicy, the custom
  components pattern, restart delays, sharedServiceSelection, scaling adapter labels) are kept
  in the role annotation V2_FIELDS_KEY;
- gang annotations set natively on a v1alpha2 group become a podGroupPolicy in v1alpha1 instead
  of being dropped (which would turn gang scheduling off on a v1alpha1 write-back);
- a set's groupTemplate labels and annotations are kept in the set annotation
  GROUP_TEMPLATE_KEY (and given to every member group), and its gang and coordination data go to
  the member template as well.

Every kept annotation is untrusted: anyone who may write the object may write it. A value of the
wrong shape (not JSON, another type, too deep) is dropped, never raised, so that one object
cannot fail the conversion of a LIST page for everyone; admission refuses such values with the
annotation named (kept_annotation_problems).

The native gang annotations and the group exclusive-topology annotation are the truth in
v1alpha2: the kept podGroupPolicy is used only while the gang annotations still say what it says
(an edit made in v1alpha2 wins), and the exclusive-topology annotation is renamed, not copied.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import pydantic

from ..kinds import API_VERSION as V2
from ..kinds import API_VERSION_V1ALPHA1 as V1
from ..kinds import ROLE_INSTANCE_SET
from . import drain
from .common import ApiModel
from .kept import (
    COORDINATION_KEY,
    GANG_KEYS,
    GANG_TIMEOUT_KEY,
    GROUP_SHAPES,
    POD_GROUP_POLICY_KEY,
    compact,
    kept,
    pod_group_policy,
    pod_group_policy_annotations,
    value_problem,
    whole_seconds_problem,
)
from .rolebasedgroup import V2_FIELDS_KEY  # noqa: F401 - defined beside the model that reads it
from .v1alpha2 import (
    V1_RESTART_POLICIES,
    V1_RESTART_POLICY_KEY,
    WORKLOAD_TYPE_KEY,
    CustomComponentsPattern,
    RestartPolicyConfig,
)

DEFAULT_WORKLOAD = ROLE_INSTANCE_SET
EXCLUSIVE_V1_KEY = "rolebasedgroup.workloads.x-k8s.io/exclusive-topology"
EXCLUSIVE_V2_KEY = "rbg.workloads.x-k8s.io/group-exclusive-topology"
# Ours: what the reference's conversion would drop.
RESTART_POLICY_KEY = V1_RESTART_POLICY_KEY
GROUP_TEMPLATE_KEY = "conversion.workloads.x-k8s.io/v1alpha2-group-template"
# Set on an object this webhook could not convert to v1alpha2 (see unconverted()).
FAILED_KEY = "conversion.workloads.x-k8s.io/failed"
# Annotations that say in v1alpha2 what a v1alpha1 spec field says: gone from the v1alpha1 view.
SPEC_CARRIER_KEYS = (POD_GROUP_POLICY_KEY, COORDINATION_KEY, *GANG_KEYS)
V2_ONLY_GROUP_KEYS = (*SPEC_CARRIER_KEYS, EXCLUSIVE_V2_KEY)
PATTERNS = ("standalonePattern", "leaderWorkerPattern", "customComponentsPattern")
V2_RESTART_POLICIES = ("None", "RecreateRoleInstanceOnPodRestart")
COPIED_ROLE_FIELDS = (
    "name",
    "labels",
    "replicas",
    "dependencies",
    "servicePorts",
    "minReadySeconds",
    "engineRuntimes",
    "rolloutStrategy",
)


class ConversionError(ValueError):
    """An object that cannot be converted; the message names the field."""


# --- kept annotations: untrusted JSON of a known shape ------------------------------------------


class _KeptRestart(ApiModel):
    restart_policy: str | None = None
    restart_policy_config: RestartPolicyConfig | None = None


class _KeptLeaderWorker(ApiModel):
    shared_service_selection: Literal["All", "LeaderOnly"] | None = None
    restart: _KeptRestart | None = None
    restart_for: str | None = None


class KeptRoleFields(ApiModel):
    """V2_FIELDS_KEY: v1alpha2 role fields v1alpha1 has no place for."""

    custom_components_pattern: CustomComponentsPattern | None = None
    no_pattern: bool | None = None
    pod_management_policy: Literal["OrderedReady", "Parallel"] | None = None
    scaling_adapter_labels: dict[str, str] | None = None
    leader_worker_pattern: _KeptLeaderWorker | None = None


class KeptGroupTemplate(ApiModel):
    """GROUP_TEMPLATE_KEY: a set's v1alpha2 groupTemplate labels and annotations."""

    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    metadata: dict | None = None  # as the reference's examples write them (groupTemplate.metadata)


_SHAPES: dict[str, pydantic.TypeAdapter] = {
    **GROUP_SHAPES,
    V2_FIELDS_KEY: pydantic.TypeAdapter(KeptRoleFields),
    GROUP_TEMPLATE_KEY: pydantic.TypeAdapter(KeptGroupTemplate),
}


def kept_value_problem(key: str, text: Any) -> str | None:
    """Why the kept annotation `key` cannot be used, or None."""
    return value_problem(key, text, _SHAPES)


def _kept(annotations: dict, key: str) -> Any | None:
    """The value kept in annotation `key`, or None when it is absent or unusable (dropped)."""
    return kept(annotations, key, _SHAPES)


def _workload_kind(role: dict) -> str:
    """The kind a role (v1alpha2, or v1alpha1 with its workload field) runs as."""
    workload = role.get("workload")
    if isinstance(workload, dict):
        return str(workload.get("kind") or "StatefulSet")
    kind = (role.get("annotations") or {}).get(WORKLOAD_TYPE_KEY) or "/".join(ROLE_INSTANCE_SET)
    return str(kind).rpartition("/")[2]


def kept_annotation_problems(
    metadata_annotations: dict | None, spec: dict | None, *, group_set: bool, roles_at: str = "spec.roles"
) -> list[str]:
    """What admission refuses in the conversion annotations of a group (or a set, with its member
    template's roles at `roles_at`), each problem naming the annotation."""
    problems = []
    annotations = metadata_annotations or {}
    keys = (POD_GROUP_POLICY_KEY, COORDINATION_KEY) + ((GROUP_TEMPLATE_KEY,) if group_set else ())
    for key in keys:
        if key in annotations and (problem := kept_value_problem(key, annotations[key])):
            problems.append(f"metadata.annotations[{key}]: {problem}")
    if annotations.get(GANG_TIMEOUT_KEY) is not None and (
        problem := whole_seconds_problem(annotations[GANG_TIMEOUT_KEY])
    ):
        problems.append(f"metadata.annotations[{GANG_TIMEOUT_KEY}]: {problem}")
    if FAILED_KEY in annotations:
        problems.append(
            f"metadata.annotations[{FAILED_KEY}]: set only on a v1alpha2 read of an object that could "
            "not be converted; remove it"
        )
    roles = (spec or {}).get("roles")
    # The drain directive is read from the group's metadata in either version (never converted).
    role_names = [r.get("name") for r in roles if isinstance(r, dict)] if isinstance(roles, list) else []
    workloads = {r.get("name"): _workload_kind(r) for r in roles if isinstance(r, dict)} if role_names else {}
    problems += drain.problems(annotations, role_names, workloads)
    for i, role in enumerate(roles if isinstance(roles, list) else []):
        role_annotations = (role.get("annotations") if isinstance(role, dict) else None) or {}
        if V2_FIELDS_KEY in role_annotations and (
            problem := kept_value_problem(V2_FIELDS_KEY, role_annotations[V2_FIELDS_KEY])
        ):
            problems.append(f"{roles_at}[{i}].annotations[{V2_FIELDS_KEY}]: {problem}")
        restart = role_annotations.get(RESTART_POLICY_KEY)
        if restart is not None and restart not in V1_RESTART_POLICIES:
            problems.append(
                f"{roles_at}[{i}].annotations[{RESTART_POLICY_KEY}]: {str(restart)[:40]!r} is not one "
                f"of {', '.join(V1_RESTART_POLICIES)}"
            )
    return problems


# --- RoleBasedGroup spec, v1alpha1 -> v1alpha2 -------------------------------------------------


def _template_source(role: dict) -> dict:
    source = {}
    if "template" in role:
        source["template"] = role["template"]
    elif "templateRef" in role:
        source["templateRef"] = {"name": role["templateRef"]["name"]}
        if "templatePatch" in role:
            source["templateRef"]["patch"] = role["templatePatch"]
    return source


def role_to_v2(role: dict) -> dict:
    role = copy.deepcopy(role)
    out = {k: role[k] for k in COPIED_ROLE_FIELDS if k in role}
    annotations = dict(role.get("annotations") or {})
    workload = role.get("workload") or {"apiVersion": "apps/v1", "kind": "StatefulSet"}
    if (workload.get("apiVersion"), workload.get("kind")) != DEFAULT_WORKLOAD:
        annotations[WORKLOAD_TYPE_KEY] = f"{workload.get('apiVersion', '')}/{workload.get('kind', '')}"
    restart = role.get("restartPolicy")
    if "scalingAdapter" in role:
        out["scalingAdapter"] = {"enable": role["scalingAdapter"].get("enable", False)}
    if "leaderWorkerSet" in role:
        lws = role["leaderWorkerSet"]
        pattern = {**_template_source(role), "size": lws.get("size", 1)}
        if "patchLeaderTemplate" in lws:
            pattern["leaderTemplatePatch"] = lws["patchLeaderTemplate"]
        if "patchWorkerTemplate" in lws:
            pattern["workerTemplatePatch"] = lws["patchWorkerTemplate"]
        if restart in V2_RESTART_POLICIES:
            pattern["restartPolicyConfig"] = {"type": restart}
            restart = None
        out["leaderWorkerPattern"] = pattern
    else:
        out["standalonePattern"] = _template_source(role)
    if restart is not None:  # a standalone role's, or one v1alpha2 has no value for
        annotations[RESTART_POLICY_KEY] = restart
    fields = _kept(annotations, V2_FIELDS_KEY)
    if fields is not None:  # an unusable value stays, for admission to refuse naming it
        del annotations[V2_FIELDS_KEY]
    if annotations:  # an empty map is left out: it says nothing
        out["annotations"] = annotations
    if fields is not None:
        _restore_v2_fields(out, fields)
    return out


def _restore_v2_fields(role: dict, saved: dict) -> None:
    """Put back v1alpha2 fields kept through v1alpha1, each only where a v1alpha1 client has not
    changed what it depends on (its edit wins)."""
    bare = role.get("standalonePattern") == {}  # no template was set through v1alpha1
    if "customComponentsPattern" in saved and bare:
        del role["standalonePattern"]
        role["customComponentsPattern"] = saved["customComponentsPattern"]
    if saved.get("noPattern") and bare:
        del role["standalonePattern"]
    if "podManagementPolicy" in saved:
        role["podManagementPolicy"] = saved["podManagementPolicy"]
    if "scalingAdapterLabels" in saved and "scalingAdapter" in role:
        role["scalingAdapter"]["labels"] = saved["scalingAdapterLabels"]
    extra = saved.get("leaderWorkerPattern") or {}
    pattern = role.get("leaderWorkerPattern")
    if pattern is None:
        return
    if "sharedServiceSelection" in extra:
        pattern["sharedServiceSelection"] = extra["sharedServiceSelection"]
    if "restart" in extra and _restart_policy_of(pattern, role.get("annotations") or {}) == extra.get("restartFor"):
        pattern.pop("restartPolicy", None)
        pattern.pop("restartPolicyConfig", None)
        pattern.update(extra["restart"])


def _kept_restart_policy(annotations: dict) -> str | None:
    restart = annotations.get(RESTART_POLICY_KEY)
    return restart if restart in V1_RESTART_POLICIES else None


def _restart_policy_of(pattern: dict, annotations: dict) -> str | None:
    """The v1alpha1 restartPolicy a leader-worker pattern stands for (our annotation first)."""
    return (
        _kept_restart_policy(annotations)
        or (pattern.get("restartPolicyConfig") or {}).get("type")
        or pattern.get("restartPolicy")
        or None
    )


def _restart_fields(restart: str | None) -> dict:
    """A leader-worker pattern's restart fields as role_to_v2 writes them for a v1alpha1 value."""
    return {"restartPolicyConfig": {"type": restart}} if restart in V2_RESTART_POLICIES else {}


def spec_to_v2(spec: dict) -> tuple[dict, dict[str, str]]:
    """A v1alpha1 group spec in v1alpha2, and the group annotations that carry what moved out of it."""
    out: dict = {"roles": [role_to_v2(r) for r in spec.get("roles") or []]}
    if "roleTemplates" in spec:
        out["roleTemplates"] = copy.deepcopy(spec["roleTemplates"])
    annotations: dict[str, str] = {}
    if spec.get("podGroupPolicy") is not None:
        annotations.update(pod_group_policy_annotations(spec["podGroupPolicy"]))
    if spec.get("coordination"):
        annotations[COORDINATION_KEY] = compact(spec["coordination"])
    return out, annotations


# --- RoleBasedGroup spec, v1alpha2 -> v1alpha1 -------------------------------------------------


def _workload_of(annotation: str | None) -> dict:
    if annotation and "/" in annotation:
        api_version, _, kind = annotation.rpartition("/")
        return {"apiVersion": api_version, "kind": kind}
    return {"apiVersion": DEFAULT_WORKLOAD[0], "kind": DEFAULT_WORKLOAD[1]}


def _flat_template(source: dict, out: dict) -> None:
    if "template" in source:
        out["template"] = source["template"]
    elif "templateRef" in source:
        out["templateRef"] = {"name": source["templateRef"]["name"]}
        if "patch" in source["templateRef"]:
            out["templatePatch"] = source["templateRef"]["patch"]


def instance_set_roles(spec: dict) -> list[str]:
    """Roles of a v1alpha1-shaped spec whose workload is v1alpha2's RoleInstanceSet (written in
    v1alpha2 without a workload-type annotation)."""
    return [
        role.get("name")
        for role in spec.get("roles") or []
        if ((role.get("workload") or {}).get("apiVersion"), (role.get("workload") or {}).get("kind"))
        == DEFAULT_WORKLOAD
    ]


def role_to_v1(role: dict) -> dict:
    patterns = [p for p in PATTERNS if p in role]
    if len(patterns) > 1:  # v1alpha1 has room for one: refuse rather than drop the others
        raise ConversionError(
            f"role {role.get('name')!r}: set only one of {', '.join(PATTERNS)}; it sets {' and '.join(patterns)}"
        )
    role = copy.deepcopy(role)
    out = {k: role[k] for k in COPIED_ROLE_FIELDS if k in role}
    annotations = dict(role.get("annotations") or {})
    annotations.pop(V2_FIELDS_KEY, None)  # never in a v1alpha2 view: a v1alpha2 write cannot set it
    out["workload"] = _workload_of(annotations.pop(WORKLOAD_TYPE_KEY, None))
    saved: dict = {}  # v1alpha2 fields v1alpha1 has no place for
    if "scalingAdapter" in role:
        out["scalingAdapter"] = {"enable": role["scalingAdapter"].get("enable", False)}
        if "labels" in role["scalingAdapter"]:
            saved["scalingAdapterLabels"] = role["scalingAdapter"]["labels"]
    if "podManagementPolicy" in role:
        saved["podManagementPolicy"] = role["podManagementPolicy"]
    restart = _kept_restart_policy(annotations) if "leaderWorkerPattern" not in role else None
    if "leaderWorkerPattern" not in role:
        annotations.pop(RESTART_POLICY_KEY, None)
    # The first pattern wins, as the reference's controller picks it.
    if "standalonePattern" in role:
        _flat_template(role["standalonePattern"], out)
    elif "leaderWorkerPattern" in role:
        pattern = role["leaderWorkerPattern"]
        _flat_template(pattern, out)
        lws = {"size": pattern.get("size", 1)}
        if "leaderTemplatePatch" in pattern:
            lws["patchLeaderTemplate"] = pattern["leaderTemplatePatch"]
        if "workerTemplatePatch" in pattern:
            lws["patchWorkerTemplate"] = pattern["workerTemplatePatch"]
        out["leaderWorkerSet"] = lws
        restart = _restart_policy_of(pattern, annotations)
        annotations.pop(RESTART_POLICY_KEY, None)
        extra = {k: pattern[k] for k in ("sharedServiceSelection",) if k in pattern}
        written = {k: pattern[k] for k in ("restartPolicy", "restartPolicyConfig") if k in pattern}
        if written != _restart_fields(restart):
            extra.update(restart=written, restartFor=restart)
        if extra:
            saved["leaderWorkerPattern"] = extra
    elif "customComponentsPattern" in role:
        saved["customComponentsPattern"] = role["customComponentsPattern"]
    else:
        saved["noPattern"] = True
    if restart:
        out["restartPolicy"] = restart
    if saved:
        annotations[V2_FIELDS_KEY] = compact(saved)
    if annotations:  # an empty map is left out: it says nothing
        out["annotations"] = annotations
    return out


def spec_to_v1(spec: dict, annotations: dict[str, str]) -> dict:
    """A v1alpha2 group spec in v1alpha1, with the fields its group annotations carry."""
    out: dict = {"roles": [role_to_v1(r) for r in spec.get("roles") or []]}
    if "roleTemplates" in spec:
        out["roleTemplates"] = copy.deepcopy(spec["roleTemplates"])
    policy = pod_group_policy(annotations)
    if policy is not None:
        out["podGroupPolicy"] = policy
    coordination = _kept(annotations, COORDINATION_KEY)
    if coordination is not None:
        out["coordination"] = coordination
    return out


# --- whole objects -----------------------------------------------------------------------------


def _converted(obj: dict, api_version: str, annotations: dict[str, str], spec: dict) -> dict:
    """`obj` in `api_version`: its metadata with `annotations`, the converted `spec`, its status as is
    (the same shape in both versions)."""
    metadata = copy.deepcopy(obj.get("metadata") or {})
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    out = {"apiVersion": api_version, "kind": obj["kind"], "metadata": metadata, "spec": spec}
    if "status" in obj:
        out["status"] = copy.deepcopy(obj["status"])
    return out


def group_to_v2(obj: dict, api_version: str = V2) -> dict:
    spec, moved = spec_to_v2(obj.get("spec") or {})
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    annotations.update(moved)
    if EXCLUSIVE_V1_KEY in annotations:  # renamed, so that a v1alpha2 edit of it is the only one
        annotations[EXCLUSIVE_V2_KEY] = annotations.pop(EXCLUSIVE_V1_KEY)
    return _converted(obj, api_version, annotations, spec)


def _exclusive_to_v1(annotations: dict[str, str]) -> None:
    """The v1alpha2 exclusive-topology annotation under its v1alpha1 name (a v1alpha1 name written
    in v1alpha2 counts only without the v1alpha2 one)."""
    if EXCLUSIVE_V2_KEY in annotations:
        annotations[EXCLUSIVE_V1_KEY] = annotations.pop(EXCLUSIVE_V2_KEY)


def group_to_v1(obj: dict, api_version: str = V1) -> dict:
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    spec = spec_to_v1(obj.get("spec") or {}, annotations)
    for key in SPEC_CARRIER_KEYS:
        annotations.pop(key, None)
    _exclusive_to_v1(annotations)
    return _converted(obj, api_version, annotations, spec)


def group_template_metadata(set_annotations: dict | None) -> dict:
    """A v1alpha1 set's kept v1alpha2 groupTemplate labels and annotations ({} when unusable)."""
    return _kept(set_annotations or {}, GROUP_TEMPLATE_KEY) or {}


def set_to_v2(obj: dict, api_version: str = V2) -> dict:
    spec = obj.get("spec") or {}
    group_spec, moved = spec_to_v2(spec.get("template") or {})
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    template: dict = group_template_metadata(annotations)
    if _kept(annotations, GROUP_TEMPLATE_KEY) is not None:  # an unusable value stays, for admission
        del annotations[GROUP_TEMPLATE_KEY]
    if moved:  # every member carries the gang and coordination its v1alpha1 template had
        template["annotations"] = {**template.get("annotations", {}), **moved}
    template["spec"] = group_spec
    out_spec = {"groupTemplate": template}
    if "replicas" in spec:
        out_spec = {"replicas": spec["replicas"], **out_spec}
    return _converted(obj, api_version, annotations, out_spec)


def set_to_v1(obj: dict, api_version: str = V1) -> dict:
    spec = obj.get("spec") or {}
    template = copy.deepcopy(spec.get("groupTemplate") or {})
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    annotations.pop(GROUP_TEMPLATE_KEY, None)  # never in a v1alpha2 view: a v1alpha2 write cannot set it
    member_annotations = dict(template.get("annotations") or {})
    # The reference keeps these on the set's own annotations; this operator on the member template.
    carried = {**{k: v for k, v in annotations.items() if k in SPEC_CARRIER_KEYS}, **member_annotations}
    group_spec = spec_to_v1(template.get("spec") or {}, carried)
    for key in SPEC_CARRIER_KEYS:
        annotations.pop(key, None)
        member_annotations.pop(key, None)
    kept = {
        k: v
        for k, v in (
            ("labels", template.get("labels")),
            ("annotations", member_annotations),
            ("metadata", template.get("metadata")),
        )
        if v
    }
    if kept:
        annotations[GROUP_TEMPLATE_KEY] = compact(kept)
    out_spec = {"template": group_spec}
    if "replicas" in spec:
        out_spec = {"replicas": spec["replicas"], **out_spec}
    return _converted(obj, api_version, annotations, out_spec)


CONVERTERS = {
    ("RoleBasedGroup", "v1alpha2"): group_to_v2,
    ("RoleBasedGroup", "v1alpha1"): group_to_v1,
    ("RoleBasedGroupSet", "v1alpha2"): set_to_v2,
    ("RoleBasedGroupSet", "v1alpha1"): set_to_v1,
}


def convert(obj: dict, desired_api_version: str) -> dict:
    """`obj` in `desired_api_version`; kinds whose versions share one schema change apiVersion only.
    Keyed by version alone, so the same code serves a copy of the API under another group (tests)."""
    if obj.get("apiVersion") == desired_api_version:
        return obj
    version = desired_api_version.rpartition("/")[2]
    converter = CONVERTERS.get((obj.get("kind"), version))
    if converter is None:
        return {**obj, "apiVersion": desired_api_version}
    failed = ((obj.get("metadata") or {}).get("annotations") or {}).get(FAILED_KEY)
    if failed is not None and version == "v1alpha1":
        raise ConversionError(
            f"metadata.annotations[{FAILED_KEY}]: this object was read in v1alpha2 without its "
            f"spec, which could not be converted ({failed}); writing it back would lose the spec: "
            "edit it in v1alpha1"
        )
    return converter(obj, desired_api_version)


def unconverted(obj: dict, desired_api_version: str, problem: str) -> dict:
    """What a v1alpha2 read gets for an object this code cannot convert: its metadata and status,
    no spec, and FAILED_KEY saying why. A LIST page of everyone's objects is converted in one
    review, which the API server fails whole on any failure; this keeps the others readable, and
    convert() refuses to write such an object back."""
    metadata = copy.deepcopy(obj.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), FAILED_KEY: problem[:500]}
    out = {"apiVersion": desired_api_version, "kind": obj.get("kind"), "metadata": metadata, "spec": {}}
    if "status" in obj:
        out["status"] = copy.deepcopy(obj["status"])
    return out
