"""JSON bodies of any depth, decoded into Python values of bounded depth.

The API server stores objects nested up to 10,000 levels; orjson decodes 1,024 and encodes 255,
the stdlib and copy.deepcopy recurse. A webhook must still answer for such an object, so every
subtree deeper than MAX_DEPTH stays undecoded: a RawJSON that keeps its exact text and its
depth, is copied as itself, and is written back verbatim. Valid objects are far shallower
(a pod template is about 15 levels, a free-form patch at most 24), so they decode as usual.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import orjson

# Levels of the whole body that are decoded; a ConversionReview puts objects 3 levels down.
MAX_DEPTH = 64


class RawJSON:
    """An undecoded subtree: its JSON text and how many levels deep it nests."""

    __slots__ = ("raw", "depth")

    def __init__(self, raw: bytes, depth: int):
        self.raw, self.depth = raw, depth

    def __deepcopy__(self, memo) -> RawJSON:
        return self  # never changed in place

    def __eq__(self, other) -> bool:
        return isinstance(other, RawJSON) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"RawJSON({len(self.raw)} bytes, {self.depth} levels)"


def loads(body: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`body` decoded, with every subtree that starts deeper than `max_depth` levels kept as a
    RawJSON. Raises ValueError (orjson.JSONDecodeError) for text that is not JSON."""
    if isinstance(body, str):
        body = body.encode()
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "depth" not in str(error):
            raise
    else:
        if not deeper_than(value, max_depth):
            return value
    return _pruned(body, max_depth)


def deeper_than(value: Any, levels: int) -> bool:
    """Whether `value` nests more than `levels` objects and lists deep (a scalar nests 0);
    without recursion, and stopping at the first such branch."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            children = node.values()
        elif type(node) is list:
            children = node
        else:
            continue
        if depth > levels:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False


def _encode_raw(value: Any) -> Any:
    if isinstance(value, RawJSON):
        return orjson.Fragment(value.raw)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """`value` as JSON, RawJSON subtrees written verbatim."""
    return orjson.dumps(value, default=_encode_raw, option=orjson.OPT_SORT_KEYS if sort_keys else 0)


def raw_subtrees(value: Any) -> Iterator[tuple[tuple, RawJSON]]:
    """(path, subtree) of every RawJSON in `value`, the path as keys and list indexes."""
    stack: list[tuple[tuple, Any]] = [((), value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, RawJSON):
            yield path, node
        elif isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))


# A JSON string (escapes included) or a bracket: all that decides how deep the text nests.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _pruned(body: bytes, max_depth: int) -> Any:
    """Decode `body` with each subtree deeper than `max_depth` cut out first and put back as a
    RawJSON, so that neither the decoder nor anything after it recurses that deep."""
    marker = f"\x00rbg-raw-{secrets.token_hex(8)}-"  # no user string can equal it
    pieces: list[bytes] = []
    raws: list[RawJSON] = []
    depth, start, deepest, copied = 0, -1, 0, 0
    for token in _TOKEN.finditer(body):
        char = body[token.start()]
        if char in b"[{":
            depth += 1
            if depth == max_depth + 1:
                start, deepest = token.start(), depth
            elif depth > deepest:
                deepest = depth
        elif char in b"]}":
            if depth == max_depth + 1 and start >= 0:
                pieces += [body[copied:start], orjson.dumps(f"{marker}{len(raws)}")]
                raws.append(RawJSON(body[start : token.end()], deepest - max_depth))
                copied, start = token.end(), -1
            depth -= 1
    pieces.append(body[copied:])
    value = orjson.loads(b"".join(pieces))
    if not raws:
        return value
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in list(items):
            if isinstance(child, str) and child.startswith(marker):
                node[key] = raws[int(child[len(marker) :])]
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return value
