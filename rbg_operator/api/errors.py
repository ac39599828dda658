"""Turn pydantic validation errors into messages that name fields as manifests spell them."""

from __future__ import annotations

import re

import pydantic

# A message from a model-level rule starts with the path of the field it is about.
# An index is a list position or a map key (an annotation's name).
_RELATIVE_PATH = re.compile(r"^[a-zA-Z]+(\[[^\]\s]+\])*(\.[a-zA-Z]+(\[[^\]\s]+\])*)*: ")


def field_path(prefix: str, location: tuple) -> str:
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.lstrip(".")


def describe(error: pydantic.ValidationError, prefix: str = "spec") -> str:
    """One clause per problem, each starting with the field's full path, joined by '; '."""
    clauses = []
    for problem in error.errors(include_url=False):
        base = field_path(prefix, problem["loc"])
        for part in problem["msg"].removeprefix("Value error, ").split("; "):
            if _RELATIVE_PATH.match(part):
                clauses.append(f"{base}.{part}" if base else part)
            else:
                clauses.append(f"{base}: {part}")
    return "; ".join(clauses)
