"""Does an observed object already hold everything the operator would apply?

The API server adds defaults and other actors add fields, so "equal" means: every field
we set is present with our value. Quantities compare by value ("1Gi" == "1073741824").
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..hashing import json_digest

_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def _quantity(value: str) -> Decimal | None:
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], Decimal(_SUFFIXES[suffix])
            break
    else:
        number, factor = value, Decimal(1)
    try:
        return Decimal(number) * factor
    except ArithmeticError:  # not a number, or one out of range: a hash such as "81e9460123" is both
        return None


def _scalar_equal(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have  # in Python True == 1, in Kubernetes they differ
    if want == have:
        return True
    if isinstance(want, (str, int)) and isinstance(have, (str, int)):
        a, b = _quantity(str(want)), _quantity(str(have))
        return a is not None and a == b
    return False


def _is_zero(value: Any) -> bool:
    return value is not True and value in (0, "", False, None) or value == {} or value == []


def contains(have: Any, want: Any) -> bool:
    """True when `have` holds every field of `want` with an equal value.

    A zero value (0, "", false, empty) we want matches a missing field: the API server
    leaves such fields out of what it returns.
    """
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            contains(have[k], v) if k in have else _is_zero(v) for k, v in want.items()
        )
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(contains, have, want))
    return _scalar_equal(want, have)


def applied_digest(obj: dict) -> str:
    """A short digest of an applied configuration, recorded on the object it configures."""
    return json_digest(obj, 16, compact=True)
