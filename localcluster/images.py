"""Container images for the real node, built here from Debian and PyPI packages: no registry, no Docker.

Each image is written as a docker-save archive (manifest.json with RepoTags, the config, one layer tar)
that `ctr -n k8s.io images import` accepts, cached outside the repo and keyed by a stamp of its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "images" / "sglang_standin"
STANDIN_FLAGS = STANDIN / "sglang" / "server_flags.json"


def standin_flags(reference: dict) -> dict:
    """The stand-in's copy of a server option table (../shared/reference/sglang/sglang-*-server.json):
    names, dest, nargs (0 for a flag), a value's type and choices, all it needs to parse like the real one."""
    options = []
    for entry in reference["options"]:
        nargs = 0 if not entry["takes_value"] or entry["nargs"] == 0 else entry["nargs"]
        value_type = entry["type"] if entry["type"] in ("int", "float") else "str"
        options.append(
            {
                "options": entry["options"],
                "dest": entry["dest"],
                "nargs": nargs,
                "type": value_type,
                "choices": entry["choices"],
            }
        )
    return {"version": reference["version"], "options": options}


def write_standin_flags(reference: Path) -> None:
    table = standin_flags(json.loads(reference.read_text()))
    lines = ",\n".join(json.dumps(option) for option in table["options"])
    STANDIN_FLAGS.write_text(f'{{"version": "{table["version"]}", "options": [\n{lines}\n]}}\n')
