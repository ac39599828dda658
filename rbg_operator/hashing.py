"""Short digests of JSON values: revisions, template hashes, applied configurations.

The text hashed must not change between releases, or every object labelled with an old digest
would look changed at once: keys sorted, and each caller keeps the separators and length its
labels were made with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def json_digest(value: Any, length: int = 10, *, compact: bool = False) -> str:
    """The first `length` hex digits of the SHA-256 of `value` as JSON with sorted keys; `compact`:
    without spaces after separators."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":") if compact else None)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
