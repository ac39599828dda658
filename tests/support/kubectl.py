"""A thin kubectl wrapper for tests: JSON in and out, and waits that say what they last saw."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import yaml


class KubectlError(AssertionError):
    pass


# The tests speak v1alpha1 (their manifests are v1alpha1); kubectl prefers the newest served
# version, v1alpha2, for a bare `rbg`. So names of these resources are pinned to v1alpha1.
PINNED = {
    name: f"{plural}.v1alpha1.workloads.x-k8s.io"
    for plural in ("rolebasedgroups", "rolebasedgroupsets")
    for name in (plural, plural[:-1], {"rolebasedgroups": "rbg", "rolebasedgroupsets": "rbgs"}[plural])
}


def pin_version(arg: str) -> str:
    """`rbg`, `rbgs/fleet`, `rolebasedgroups` ... as their v1alpha1 resource; anything else as is."""
    kind, slash, name = arg.partition("/")
    return f"{PINNED[kind]}{slash}{name}" if kind in PINNED else arg


class Kubectl:
    def __init__(self, binary: str, kubeconfig: str):
        self.binary, self.kubeconfig = binary, kubeconfig

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        args = tuple(pin_version(a) for a in args)
        result = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def apply(
        self, manifest: dict | list[dict] | str, namespace: str | None = None, *extra: str
    ) -> subprocess.CompletedProcess:
        text = (
            manifest
            if isinstance(manifest, str)
            else yaml.safe_dump_all(manifest if isinstance(manifest, list) else [manifest])
        )
        ns = [f"--namespace={namespace}"] if namespace else []
        return self.run("apply", *ns, *extra, "-f", "-", stdin=text)

    def refuses(self, manifest: dict, namespace: str, words: list[str], what: str, verb: str = "create") -> None:
        """A server-side dry run of `manifest` is refused (by schema, CEL or a webhook), and the
        message has every one of `words` (the field and the limit it names)."""
        result = self.run(
            verb, "--dry-run=server", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(manifest), check=False
        )
        assert result.returncode != 0, f"{what} was accepted"
        for word in words:
            assert word in result.stderr, (word, result.stderr)

    def get(
        self,
        kind: str,
        name: str | None = None,
        namespace: str | None = None,
        selector: str | None = None,
        all_namespaces: bool = False,
    ) -> Any:
        """The object (or a list's items); None when a named object does not exist."""
        args = ["get", kind, "-o", "json"]
        if name:
            args.insert(2, name)
        if namespace:
            args.append(f"--namespace={namespace}")
        if selector:
            args.append(f"--selector={selector}")
        if all_namespaces:
            args.append("--all-namespaces")
        result = self.run(*args, check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise KubectlError(result.stderr.strip())
        data = json.loads(result.stdout)
        return data if name else data["items"]

    def delete(self, kind: str, name: str, namespace: str | None = None, *extra: str) -> None:
        ns = [f"--namespace={namespace}"] if namespace else []
        self.run("delete", kind, name, *ns, "--ignore-not-found", *extra)


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.5) -> Any:
    """Poll `probe` until it returns a truthy value; on timeout, fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except KubectlError as error:
            last = f"error: {error}"
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def condition(obj: dict | None, type_: str) -> dict | None:
    if not obj:
        return None
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def group_ready(kubectl: Kubectl, name: str, namespace: str, timeout: float = 120) -> dict:
    """Wait until the group's status is of its latest generation and Ready; return the group."""
    return wait_for(
        f"group {name} Ready",
        lambda: (
            (g := kubectl.get("rbg", name, namespace))
            and g.get("status", {}).get("observedGeneration") == g["metadata"]["generation"]
            and (condition(g, "Ready") or {}).get("status") == "True"
            and g
        ),
        timeout,
    )
