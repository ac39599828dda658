"""Debian packages the host needs for a build step, installed by the project rather than by hand."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

APT_LISTS = Path("/var/lib/apt/lists")


def missing(*packages: str) -> list[str]:
    """The packages of the list that dpkg does not have installed."""
    absent = []
    for package in packages:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout.strip()
        if not status.endswith(" installed"):
            absent.append(package)
    return absent


def apt_lists() -> None:
    """`apt-get update` once, when the machine has no package lists yet (a fresh image has none)."""
    if not any(APT_LISTS.glob("*_Packages*")):
        _run(["apt-get", "update", "-q"], "apt-get update")


def ensure(*packages: str) -> None:
    """Install whichever of the Debian packages are missing (as root); a clear error otherwise."""
    absent = missing(*packages)
    if not absent:
        return
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *absent]
    if os.geteuid() != 0:
        raise SystemExit(f"hostpackages: missing Debian packages {absent}; as root run: {' '.join(command)}")
    print(f"[hostpackages] installing {' '.join(absent)}", flush=True)
    apt_lists()
    _run(command, "apt-get install", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    still = missing(*absent)
    if still:
        raise SystemExit(f"hostpackages: {still} still not installed after {' '.join(command)}")


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(
            f"hostpackages: {what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
