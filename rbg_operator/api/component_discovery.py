"""The component-discovery directive's value (the contract's §4.6), read in one place: admission
refuses a malformed one naming the annotation, and the RoleInstance controller, which reads what
is stored (written before this check, or on a RoleInstanceSet made directly), skips what it cannot
use instead of failing every reconcile pass.

`{"addressRefs": [{"env", "component", "index"}], "portRefs": [{"env", "component", "portName",
"index"}]}`: `env` and `component` (and `portName`) are non-empty strings, `index` a whole number
of at least 0 (default 0; a string of digits is taken too, as the reference's loose decoding does).
"""

from __future__ import annotations

import dataclasses
import json
import re

ANNOTATION = "rolebasedgroup.workloads.x-k8s.io/component-discovery"

# A pod index is far below a billion (a component has at most a few hundred pods); the bound also
# keeps int() away from Python's limit on the digits it converts.
_INDEX = re.compile(r"[0-9]{1,9}")


@dataclasses.dataclass(frozen=True)
class Ref:
    env: str
    component: str
    index: int
    port_name: str | None = None  # portRefs only


def _index(value) -> int | None:
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**9 else None
    if isinstance(value, str) and _INDEX.fullmatch(value):
        return int(value)
    return None


def parse(text: str | None) -> tuple[list[Ref], list[Ref], list[str]]:
    """(addressRefs, portRefs, problems): the references that can be used, and a sentence for each
    part that cannot (relative to the annotation: `addressRefs[1].index: ...`)."""
    if not text:
        return [], [], []
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return (
            [],
            [],
            ["not JSON: must be a JSON object such as " + '{"addressRefs": [{"env": "PEER", "component": "c"}]}'],
        )
    if not isinstance(value, dict):
        return [], [], [f"must be a JSON object with addressRefs and portRefs, not {type(value).__name__}"]
    problems: list[str] = []
    found: dict[str, list[Ref]] = {"addressRefs": [], "portRefs": []}
    for field, refs in found.items():
        items = value.get(field)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(f"{field}: must be a list of objects")
            continue
        for i, item in enumerate(items):
            where = f"{field}[{i}]"
            if not isinstance(item, dict):
                problems.append(f"{where}: must be an object")
                continue
            wrong = [
                key
                for key in ("env", "component", *(("portName",) if field == "portRefs" else ()))
                if not isinstance(item.get(key), str) or not item.get(key)
            ]
            index = _index(item.get("index"))
            if wrong:
                problems.append(f"{where}: {', '.join(wrong)} must be a non-empty string")
            if index is None:
                problems.append(f"{where}.index: {item.get('index')!r} is not a whole number of at least 0")
            if wrong or index is None:
                continue
            refs.append(
                Ref(item["env"], item["component"], index, item.get("portName") if field == "portRefs" else None)
            )
    return found["addressRefs"], found["portRefs"], problems


def annotation_problems(where: str, annotations) -> list[str]:
    """Admission's sentences for the directive in `annotations` (at `where`, a field path)."""
    text = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(text, str):
        return []
    return [f"{where}[{ANNOTATION}]: {problem}" for problem in parse(text)[2]]


def template_problems(where: str, template) -> list[str]:
    """The same, for a pod template (or a patch of one) at `where`."""
    meta = template.get("metadata") if isinstance(template, dict) else None
    return annotation_problems(
        f"{where}.metadata.annotations", meta.get("annotations") if isinstance(meta, dict) else None
    )
