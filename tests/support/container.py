"""A container's process as Kubernetes starts it, worked out without a container runtime: the
image's ENTRYPOINT and CMD (from the Dockerfile) combined with a pod's `command` and `args`."""

from __future__ import annotations

import json
from pathlib import Path

from dockerfile_parse import DockerfileParser


def _exec_form(value: str) -> list[str]:
    value = value.strip()
    # The shell form runs under /bin/sh -c, as Docker does.
    return json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]


def image_entrypoint_and_cmd(dockerfile: Path) -> tuple[list[str], list[str]]:
    """The final stage's ENTRYPOINT and CMD (the last of each wins, as in Docker)."""
    parser = DockerfileParser(str(dockerfile))
    final = [i for i in parser.structure if i["instruction"] == "FROM"][-1]["startline"]
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction in parser.structure:
        if instruction["startline"] < final:
            continue
        if instruction["instruction"] == "ENTRYPOINT":
            entrypoint, cmd = _exec_form(instruction["value"]), []  # a new ENTRYPOINT resets CMD
        elif instruction["instruction"] == "CMD":
            cmd = _exec_form(instruction["value"])
    return entrypoint, cmd


def container_argv(image: tuple[list[str], list[str]], container: dict) -> list[str]:
    """Kubernetes' rule: `command` replaces the ENTRYPOINT (and with it the CMD), `args` replace the
    CMD. $(VAR) references are not expanded here, so a container that uses them is refused."""
    entrypoint, cmd = image
    command, args = container.get("command"), container.get("args")
    argv = [*command, *(args or [])] if command else [*entrypoint, *(cmd if args is None else args)]
    assert not any("$(" in arg for arg in argv), f"$(VAR) references to expand first: {argv}"
    return argv
