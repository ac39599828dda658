"""The group annotations with which conversion keeps a v1alpha1 podGroupPolicy and coordination,
and the native gang annotations they stand beside, read back as the v1alpha1 fields.

Below both versions' modules: the v1alpha2 group model reads its gang policy and coordination
through here, and conversion (api/conversion.py) writes and checks the same annotations. A kept
value is untrusted (anyone who may write the object may write it): one of the wrong shape is
dropped, never raised.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
import pydantic

from ..bounded_json import deeper_than
from ..bounded_json import dumps as dumps_with_raw
from .errors import describe
from .rolebasedgroup import Coordination, PodGroupPolicy

GANG_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling"
GANG_TIMEOUT_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling-timeout"
GANG_QUEUE_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling-volcano-queue"
GANG_PRIORITY_KEY = "rbg.workloads.x-k8s.io/group-gang-scheduling-volcano-priority"
GANG_KEYS = (GANG_KEY, GANG_TIMEOUT_KEY, GANG_QUEUE_KEY, GANG_PRIORITY_KEY)
POD_GROUP_POLICY_KEY = "conversion.workloads.x-k8s.io/v1alpha1-pod-group-policy"
COORDINATION_KEY = "conversion.workloads.x-k8s.io/v1alpha1-coordination"

# How deep a kept value may nest: a pod template inside a kept customComponentsPattern is about
# 20 levels; the bound keeps a hand-written value from making the converted object too deep to
# encode (orjson stops at 255) or to copy.
MAX_KEPT_DEPTH = 48

# The shape of each kept group annotation; conversion adds the role and set ones.
GROUP_SHAPES: dict[str, pydantic.TypeAdapter] = {
    POD_GROUP_POLICY_KEY: pydantic.TypeAdapter(PodGroupPolicy),
    COORDINATION_KEY: pydantic.TypeAdapter(list[Coordination]),
}


def value_problem(key: str, text: Any, shapes: Mapping[str, pydantic.TypeAdapter] = GROUP_SHAPES) -> str | None:
    """Why the kept annotation `key` cannot be used, or None."""
    if not isinstance(text, str):
        return "must be a string"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return f"not valid JSON ({error})"
    if deeper_than(value, MAX_KEPT_DEPTH):
        return f"nested more than {MAX_KEPT_DEPTH} levels deep"
    try:
        shapes[key].validate_python(value, strict=True)
    except pydantic.ValidationError as error:
        return describe(error, "")
    return None


def kept(annotations: dict, key: str, shapes: Mapping[str, pydantic.TypeAdapter] = GROUP_SHAPES) -> Any | None:
    """The value kept in annotation `key`, or None when it is absent or unusable (dropped)."""
    text = annotations.get(key)
    if text is None or value_problem(key, text, shapes) is not None:
        return None
    return orjson.loads(text)


def whole_seconds_problem(text: Any) -> str | None:
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < 1:
        return f"not a whole number of seconds of at least 1: {str(text)[:40]!r}"
    return None


def compact(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except TypeError:  # an undecoded deep subtree (bounded_json.RawJSON): written verbatim
        return dumps_with_raw(value, sort_keys=True).decode()


def pod_group_policy_annotations(policy: dict) -> dict[str, str]:
    """The v1alpha2 gang annotations that say what a v1alpha1 podGroupPolicy says."""
    annotations = {POD_GROUP_POLICY_KEY: compact(policy), GANG_KEY: "true"}
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


def gang_policy_from_annotations(annotations: dict[str, str]) -> dict | None:
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
    # A timeout that is not a whole number of seconds is refused at admission; one stored without
    # it (no webhook) means the default, rather than failing every v1alpha1 read of the list.
    if GANG_TIMEOUT_KEY in annotations and whole_seconds_problem(annotations[GANG_TIMEOUT_KEY]) is None:
        kube["scheduleTimeoutSeconds"] = int(annotations[GANG_TIMEOUT_KEY])
    return {"kubeScheduling": kube}


def pod_group_policy(annotations: dict[str, str]) -> dict | None:
    """The podGroupPolicy a v1alpha2 object's annotations stand for: the kept v1alpha1 one while
    the gang annotations still say what it says (it may hold more than they can), else what they
    say now."""
    policy = kept(annotations, POD_GROUP_POLICY_KEY)
    if policy is not None:
        said = pod_group_policy_annotations(policy)
        del said[POD_GROUP_POLICY_KEY]
        if said == {k: annotations[k] for k in GANG_KEYS if k in annotations}:
            return policy
    return gang_policy_from_annotations(annotations)


def kept_coordination(annotations: dict[str, str]) -> list[dict]:
    """The v1alpha1 `coordination` rules a v1alpha2 object keeps in COORDINATION_KEY ([] if unusable)."""
    return kept(annotations, COORDINATION_KEY) or []
