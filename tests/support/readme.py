"""Commands the README tells users to run, read from it, so a test runs exactly what users run."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def crd_upgrade_command() -> list[str]:
    """The "Upgrading" section's `kubectl apply ... crds/` command, split into words."""
    after = README.read_text().split("### Upgrading", 1)[1]
    section = re.split(r"\n#{1,3} ", after, maxsplit=1)[0]  # up to the next heading of any level
    line = next(line for line in section.splitlines() if line.startswith("kubectl apply") and "crds" in line)
    return line.split()


def crd_upgrade_argv(directory: Path) -> list[str]:
    """kubectl's arguments of that command (without `kubectl`), applying `directory` instead."""
    command = crd_upgrade_command()
    assert command[:2] == ["kubectl", "apply"] and "--server-side" in command, command
    return [str(directory) if arg.rstrip("/").endswith("crds") else arg for arg in command[1:]]
