"""Find the parts of a JSON document without decoding it: the items of a LIST page, the object
of a watch event, an object's metadata.

Used only when orjson refuses a whole answer (it stops at 1,024 levels of nesting, and the API
server stores up to 10,000 in free-form fields): one hostile object must cost that object
alone, so the page is cut into its items and each is decoded on its own. The scan is
iterative (no recursion, whatever the depth), and regular expressions skip over strings and
everything between brackets, so it runs at C speed on the bytes it does not need.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson

# A string (with its escapes), or a bracket: everything else is skipped over in C.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_SPACE = re.compile(rb"[ \t\r\n]*")
_SCALAR = re.compile(rb"[^,\]}\s]+")
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


class Malformed(ValueError):
    pass


def _skip_space(data: bytes, at: int) -> int:
    return _SPACE.match(data, at).end()


def value_end(data: bytes, start: int) -> int:
    """Index just past the JSON value that starts at data[start] (no leading space)."""
    if start >= len(data):
        raise Malformed(f"no value at {start}")
    first = data[start]
    if first == 0x22:  # '"'
        match = _STRING.match(data, start)
        if match is None:
            raise Malformed(f"unterminated string at {start}")
        return match.end()
    if first not in _OPEN:
        match = _SCALAR.match(data, start)
        if match is None:
            raise Malformed(f"no value at {start}")
        return match.end()
    depth = 0
    for token in _TOKEN.finditer(data, start):
        char = data[token.start()]
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth == 0:
                return token.end()
    raise Malformed(f"unterminated value at {start}")


def members(data: bytes, start: int = 0) -> Iterator[tuple[bytes, int, int]]:
    """(raw key, value start, value end) of each member of the object at data[start]."""
    at = _skip_space(data, start)
    if data[at:at + 1] != b"{":
        raise Malformed(f"no object at {at}")
    at = _skip_space(data, at + 1)
    if data[at:at + 1] == b"}":
        return
    while True:
        key_end = value_end(data, at)
        key = data[at + 1:key_end - 1]
        at = _skip_space(data, key_end)
        if data[at:at + 1] != b":":
            raise Malformed(f"no ':' at {at}")
        value_start = _skip_space(data, at + 1)
        end = value_end(data, value_start)
        yield key, value_start, end
        at = _skip_space(data, end)
        if data[at:at + 1] == b"}":
            return
        if data[at:at + 1] != b",":
            raise Malformed(f"no ',' at {at}")
        at = _skip_space(data, at + 1)


def elements(data: bytes, start: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each element of the array at data[start]."""
    at = _skip_space(data, start)
    if data[at:at + 1] != b"[":
        raise Malformed(f"no array at {at}")
    at = _skip_space(data, at + 1)
    if data[at:at + 1] == b"]":
        return
    while True:
        end = value_end(data, at)
        yield at, end
        at = _skip_space(data, end)
        if data[at:at + 1] == b"]":
            return
        if data[at:at + 1] != b",":
            raise Malformed(f"no ',' at {at}")
        at = _skip_space(data, at + 1)


def member(data: bytes, name: bytes, start: int = 0) -> tuple[int, int] | None:
    """Where the value of the object's member `name` is, if it has one."""
    return next(((s, e) for key, s, e in members(data, start) if key == name), None)


def metadata_of(data: bytes) -> dict:
    """As much of an object's metadata as decodes (its name, namespace, uid, labels...): what
    names an object that does not decode whole. The metadata may be too deep itself (its
    managedFields follow the shape of the deep field), so each member is decoded alone and
    those that do not decode are left out."""
    try:
        found = member(data, b"metadata")
        if found is None:
            return {}
        raw = data[found[0]:found[1]]
        try:
            meta = orjson.loads(raw)
            return meta if isinstance(meta, dict) else {}
        except ValueError:
            pass
        meta = {}
        for key, start, end in members(raw):
            try:
                meta[orjson.loads(b'"' + key + b'"')] = orjson.loads(raw[start:end])
            except ValueError:
                continue
        return meta
    except ValueError:
        return {}
