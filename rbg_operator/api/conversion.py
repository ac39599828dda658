"""Conversion between v1alpha1 and v1alpha2 of RoleBasedGroup and RoleBasedGroupSet.

Pure functions on objects as the API server sends them (wire form, camelCase). They follow the
reference's mapping, so objects it stored convert alike, except where the reference loses data a
user would expect to keep: there the data rides in a `conversion.workloads.x-k8s.io/*` annotation
and comes back on the way home, so both round trips are the identity (README, "API versions"):

- a v1alpha1 restartPolicy that v1alpha2 cannot hold (on a standalone role, or
  RecreateRBGOnPodRestart) is kept in the role annotation RESTART_POLICY_KEY;
- v1alpha2 role fields that v1alpha1 has no place for (podManagementPolicy, the custom
  components pattern, restart delays, sharedServiceSelection, scaling adapter labels) are kept
  in the role annotation V2_FIELDS_KEY;
- gang annotations set natively on a v1alpha2 group become a podGroupPolicy in v1alpha1 instead
  of being dropped (which would turn gang scheduling off on a v1alpha1 write-back);
- a set's groupTemplate labels and annotations are kept in the set annotation
  GROUP_TEMPLATE_KEY, and its gang and coordination data go to the member template as well.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .rolebasedgroup import V2_FIELDS_KEY  # noqa: F401 - defined beside the model that reads it

V1 = "workloads.x-k8s.io/v1alpha1"
V2 = "workloads.x-k8s.io/v1alpha2"

WORKLOAD_TYPE_KEY = "rbg.workloads.x-k8s.io/role-workload-type"
DEFAULT_WORKLOAD = ("workloads.x-k8s.io/v1alpha2", "RoleInstanceSet")
GANG_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling"
GANG_TIMEOUT_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling-timeout"
GANG_QUEUE_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling-volcano-queue"
GANG_PRIORITY_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling-volcano-priority"
EXCLUSIVE_V1_KEY = "rolebasedgroup.workloads.x-k8s.io/exclusive-topology"
EXCLUSIVE_V2_KEY = "rbg.workloads.x-k8s.io/group-exclusive-topology"
POD_GROUP_POLICY_KEY = "conversion.workloads.x-k8s.io/v1alpha1-pod-group-policy"
COORDINATION_KEY = "conversion.workloads.x-k8s.io/v1alpha1-coordination"
# Ours: what the reference's conversion would drop.
RESTART_POLICY_KEY = "conversion.workloads.x-k8s.io/v1alpha1-restart-policy"
GROUP_TEMPLATE_KEY = "conversion.workloads.x-k8s.io/v1alpha2-group-template"
# Group annotations that only carry v1alpha1 fields through v1alpha2: gone from the v1alpha1 view.
V2_ONLY_GROUP_KEYS = (POD_GROUP_POLICY_KEY, COORDINATION_KEY, GANG_KEY, GANG_TIMEOUT_KEY, GANG_QUEUE_KEY,
                      GANG_PRIORITY_KEY, EXCLUSIVE_V2_KEY)
PATTERNS = ("standalonePattern", "leaderWorkerPattern", "customComponentsPattern")
V2_RESTART_POLICIES = ("None", "RecreateRoleInstanceOnPodRestart")
COPIED_ROLE_FIELDS = ("name", "labels", "replicas", "dependencies", "servicePorts", "minReadySeconds",
                      "engineRuntimes", "rolloutStrategy")


class ConversionError(ValueError):
    """An object that cannot be converted; the message names the field."""


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ConversionError(f"{where}: not valid JSON ({error})") from None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


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
    fields = annotations.pop(V2_FIELDS_KEY, None)
    if annotations:  # an empty map is left out: it says nothing
        out["annotations"] = annotations
    if fields is not None:
        _restore_v2_fields(out, _json(fields, f"roles[{role.get('name')}].annotations[{V2_FIELDS_KEY}]"))
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


def _restart_policy_of(pattern: dict, annotations: dict) -> str | None:
    """The v1alpha1 restartPolicy a leader-worker pattern stands for (our annotation first)."""
    return (annotations.get(RESTART_POLICY_KEY) or (pattern.get("restartPolicyConfig") or {}).get("type")
            or pattern.get("restartPolicy") or None)


def _restart_fields(restart: str | None) -> dict:
    """A leader-worker pattern's restart fields as role_to_v2 writes them for a v1alpha1 value."""
    return {"restartPolicyConfig": {"type": restart}} if restart in V2_RESTART_POLICIES else {}


def pod_group_policy_annotations(policy: dict) -> dict[str, str]:
    """The v1alpha2 gang annotations that say what a v1alpha1 podGroupPolicy says."""
    annotations = {POD_GROUP_POLICY_KEY: _compact(policy), GANG_KEY: "true"}
    if "kubeScheduling" in policy:
        timeout = (policy["kubeScheduling"] or {}).get("scheduleTimeoutSeconds")
        if timeout is not None:
            annotations[GANG_TIMEOUT_KEY] = str(timeout)
    elif "volcanoScheduling" in policy:
        volcano = policy["volcanoScheduling"] or {}
        if volcano.get("queue"):
            annotations[GANG_QUEUE_KEY] = volcano["queue"]
        if volcano.get("priorityClassName"):
            annotations[GANG_PRIORITY_KEY] = volcano["priorityClassName"]
    else:
        del annotations[GANG_KEY]
    return annotations


def spec_to_v2(spec: dict) -> tuple[dict, dict[str, str]]:
    """A v1alpha1 group spec in v1alpha2, and the group annotations that carry what moved out of it."""
    out: dict = {"roles": [role_to_v2(r) for r in spec.get("roles") or []]}
    if "roleTemplates" in spec:
        out["roleTemplates"] = copy.deepcopy(spec["roleTemplates"])
    annotations: dict[str, str] = {}
    if spec.get("podGroupPolicy") is not None:
        annotations.update(pod_group_policy_annotations(spec["podGroupPolicy"]))
    if spec.get("coordination"):
        annotations[COORDINATION_KEY] = _compact(spec["coordination"])
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
    return [role.get("name") for role in spec.get("roles") or []
            if ((role.get("workload") or {}).get("apiVersion"), (role.get("workload") or {}).get("kind"))
            == DEFAULT_WORKLOAD]


def role_to_v1(role: dict) -> dict:
    role = copy.deepcopy(role)
    out = {k: role[k] for k in COPIED_ROLE_FIELDS if k in role}
    annotations = dict(role.get("annotations") or {})
    out["workload"] = _workload_of(annotations.pop(WORKLOAD_TYPE_KEY, None))
    saved: dict = {}  # v1alpha2 fields v1alpha1 has no place for
    if "scalingAdapter" in role:
        out["scalingAdapter"] = {"enable": role["scalingAdapter"].get("enable", False)}
        if "labels" in role["scalingAdapter"]:
            saved["scalingAdapterLabels"] = role["scalingAdapter"]["labels"]
    if "podManagementPolicy" in role:
        saved["podManagementPolicy"] = role["podManagementPolicy"]
    restart = annotations.pop(RESTART_POLICY_KEY, None) if "leaderWorkerPattern" not in role else None
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
        annotations[V2_FIELDS_KEY] = _compact(saved)
    if annotations:  # an empty map is left out: it says nothing
        out["annotations"] = annotations
    return out


def _gang_policy_from_annotations(annotations: dict[str, str]) -> dict | None:
    """A podGroupPolicy for gang annotations set natively on a v1alpha2 object."""
    if annotations.get(GANG_KEY) != "true":
        return None
    if GANG_QUEUE_KEY in annotations or GANG_PRIORITY_KEY in annotations:
        volcano = {}
        if annotations.get(GANG_QUEUE_KEY):
            volcano["queue"] = annotations[GANG_QUEUE_KEY]
        if annotations.get(GANG_PRIORITY_KEY):
            volcano["priorityClassName"] = annotations[GANG_PRIORITY_KEY]
        return {"volcanoScheduling": volcano}
    kube = {}
    if GANG_TIMEOUT_KEY in annotations:
        try:
            kube["scheduleTimeoutSeconds"] = int(annotations[GANG_TIMEOUT_KEY])
        except ValueError:
            raise ConversionError(f"metadata.annotations[{GANG_TIMEOUT_KEY}]: not a whole number of seconds: "
                                  f"{annotations[GANG_TIMEOUT_KEY]!r}") from None
    return {"kubeScheduling": kube}


def spec_to_v1(spec: dict, annotations: dict[str, str], where: str = "metadata.annotations") -> dict:
    """A v1alpha2 group spec in v1alpha1, with the fields its group annotations carry."""
    out: dict = {"roles": [role_to_v1(r) for r in spec.get("roles") or []]}
    if "roleTemplates" in spec:
        out["roleTemplates"] = copy.deepcopy(spec["roleTemplates"])
    if POD_GROUP_POLICY_KEY in annotations:
        out["podGroupPolicy"] = _json(annotations[POD_GROUP_POLICY_KEY], f"{where}[{POD_GROUP_POLICY_KEY}]")
    else:
        policy = _gang_policy_from_annotations(annotations)
        if policy is not None:
            out["podGroupPolicy"] = policy
    if COORDINATION_KEY in annotations:
        out["coordination"] = _json(annotations[COORDINATION_KEY], f"{where}[{COORDINATION_KEY}]")
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
    if EXCLUSIVE_V1_KEY in annotations:
        annotations[EXCLUSIVE_V2_KEY] = annotations[EXCLUSIVE_V1_KEY]
    return _converted(obj, api_version, annotations, spec)


def group_to_v1(obj: dict, api_version: str = V1) -> dict:
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    spec = spec_to_v1(obj.get("spec") or {}, annotations)
    for key in V2_ONLY_GROUP_KEYS:
        annotations.pop(key, None)
    return _converted(obj, api_version, annotations, spec)


def set_to_v2(obj: dict, api_version: str = V2) -> dict:
    spec = obj.get("spec") or {}
    group_spec, moved = spec_to_v2(spec.get("template") or {})
    annotations = dict((obj.get("metadata") or {}).get("annotations") or {})
    saved = annotations.pop(GROUP_TEMPLATE_KEY, None)
    template: dict = _json(saved, f"metadata.annotations[{GROUP_TEMPLATE_KEY}]") if saved else {}
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
    member_annotations = dict(template.get("annotations") or {})
    # The reference keeps these on the set's own annotations; this operator on the member template.
    carried = {**{k: v for k, v in annotations.items() if k in V2_ONLY_GROUP_KEYS}, **member_annotations}
    group_spec = spec_to_v1(template.get("spec") or {}, carried, "spec.groupTemplate.annotations")
    for key in V2_ONLY_GROUP_KEYS:
        annotations.pop(key, None)
        member_annotations.pop(key, None)
    kept = {k: v for k, v in (("labels", template.get("labels")), ("annotations", member_annotations)) if v}
    if kept:
        annotations[GROUP_TEMPLATE_KEY] = _compact(kept)
    out_spec = {"template": group_spec}
    if "replicas" in spec:
        out_spec = {"replicas": spec["replicas"], **out_spec}
    return _converted(obj, api_version, annotations, out_spec)


CONVERTERS = {
    ("RoleBasedGroup", "v1alpha2"): group_to_v2, ("RoleBasedGroup", "v1alpha1"): group_to_v1,
    ("RoleBasedGroupSet", "v1alpha2"): set_to_v2, ("RoleBasedGroupSet", "v1alpha1"): set_to_v1,
}


def convert(obj: dict, desired_api_version: str) -> dict:
    """`obj` in `desired_api_version`; kinds whose versions share one schema change apiVersion only.
    Keyed by version alone, so the same code serves a copy of the API under another group (tests)."""
    if obj.get("apiVersion") == desired_api_version:
        return obj
    converter = CONVERTERS.get((obj.get("kind"), desired_api_version.rpartition("/")[2]))
    if converter is None:
        return {**obj, "apiVersion": desired_api_version}
    return converter(obj, desired_api_version)
