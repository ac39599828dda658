"""The pinned Go programs that make up the local control plane, and how to build them.

Each wrapper module under ``go/`` pins one family of programs that share dependencies,
so one ``go build`` compiles shared packages once. Binaries are cached outside the repo,
keyed by a hash of the module files, so a version bump rebuilds and nothing else does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

GO_DIR = Path(__file__).resolve().parent / "go"
GO_TOOLCHAIN = "go1.26.8"  # this machine's Go; the `toolchain` line of every wrapper go.mod but k8s
# Kubernetes 1.37 needs Go 1.27. The go command fetches this toolchain through the module proxy
# (once, about 76 MB); README and .ci/run export it too, for anyone running go by hand.
KUBERNETES_TOOLCHAIN = "go1.27.3"
KUBERNETES_VERSION = "v1.37.2"


@dataclasses.dataclass(frozen=True)
class GoModule:
    """One wrapper module and the commands built from it."""

    name: str
    packages: dict[str, str]  # binary name -> Go package path
    ldflags: str = "-s -w"
    cold_minutes: int = 5  # measured on 2 cores, shown so a long build is expected
    toolchain: str = GO_TOOLCHAIN  # the Go that builds it (GOTOOLCHAIN), part of the cache key
    tags: str = ""  # go build -tags
    cgo: bool | None = None  # CGO_ENABLED; None leaves the go command's default
    debian_packages: tuple[str, ...] = ()  # C libraries and tools the build needs (installed if missing)

    @property
    def directory(self) -> Path:
        return GO_DIR / self.name

    def stamp(self) -> str:
        digest = hashlib.sha256()
        for part in (self.toolchain, self.ldflags, repr(sorted(self.packages.items()))):
            digest.update(part.encode())
        if self.tags or self.cgo is not None:
            digest.update(f"{self.tags}|{self.cgo}".encode())
        for file in ("go.mod", "go.sum"):
            digest.update((self.directory / file).read_bytes())
        for source in sorted(self.directory.rglob("*.go")):  # a local program's own source (the device plugin)
            if source.name != "tools.go":
                digest.update(source.read_bytes())
        return digest.hexdigest()[:12]


def _kube_ldflags(version: str) -> str:
    # Without these the binaries report v0.0.0 and clients print skew warnings.
    major, minor = version.lstrip("v").split(".")[:2]
    flags = [
        "-s -w",
        f"-X k8s.io/component-base/version.gitVersion={version}",
        f"-X k8s.io/component-base/version.gitMajor={major}",
        f"-X k8s.io/component-base/version.gitMinor={minor}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
        f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
    ]
    return " ".join(flags)


MODULES = [
    GoModule(
        "k8s",
        {
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_kube_ldflags(KUBERNETES_VERSION),
        cold_minutes=25,
        toolchain=KUBERNETES_TOOLCHAIN,
    ),
    GoModule(
        "coscheduling",
        {"coscheduler": "sigs.k8s.io/scheduler-plugins/cmd/scheduler"},
        ldflags=_kube_ldflags("v1.34.7"),
        cold_minutes=12,
    ),
    GoModule(
        "kwok",
        {"kwok": "sigs.k8s.io/kwok/cmd/kwok", "lws-controller": "sigs.k8s.io/lws/cmd"},
        cold_minutes=6,
    ),
    GoModule("etcd", {"etcd": "go.etcd.io/etcd/server/v3"}, cold_minutes=3),
    GoModule("volcano", {"controller-gen": "sigs.k8s.io/controller-tools/cmd/controller-gen"}, cold_minutes=1),
    GoModule("helm", {"helm": "helm.sh/helm/v3/cmd/helm"}, cold_minutes=2),
    # The real node (node.py). The kubelet shares most packages with the control plane's compile.
    GoModule(
        "node",
        {
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
            "rbg-device-plugin": "rbg-operator.local/node/deviceplugin",
        },
        ldflags=_kube_ldflags(KUBERNETES_VERSION),
        cold_minutes=4,
        toolchain=KUBERNETES_TOOLCHAIN,
    ),
    # Static binaries: the shim and ctr run beside containers, where no shared library is promised.
    GoModule(
        "containerd",
        {
            "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
            "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
            "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
        },
        tags="no_btrfs no_devmapper no_zfs",  # storage drivers the node does not use (and their C headers)
        cgo=False,
        cold_minutes=4,
    ),
    # runc's namespace setup (nsenter) is C, and so is its seccomp support, which containerd uses
    # for every pod sandbox.
    GoModule(
        "runc",
        {"runc": "github.com/opencontainers/runc"},
        tags="seccomp",
        cgo=True,
        debian_packages=("libseccomp-dev", "pkg-config"),
        cold_minutes=1,
    ),
    GoModule(
        "cni",
        {
            name: f"github.com/containernetworking/plugins/plugins/{path}"
            for name, path in {
                "bridge": "main/bridge",
                "host-local": "ipam/host-local",
                "loopback": "main/loopback",
            }.items()
        },
        cgo=False,
        cold_minutes=1,
    ),
    GoModule("coredns", {"coredns": "rbg-operator.local/node/coredns/dns"}, cgo=False, cold_minutes=3),
]


MODULES_BY_NAME = {module.name: module for module in MODULES}


def cache_dir() -> Path:
    base = os.environ.get("RBG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rbg-operator"
    )
    return Path(base)


def go_env(wrapper: str | None = None) -> dict[str, str]:
    """The environment for go commands in one wrapper module: its own pinned toolchain, whatever
    GOTOOLCHAIN the shell exports (.ci/run exports Kubernetes' for everything else)."""
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = MODULES_BY_NAME[wrapper].toolchain if wrapper else env.get("GOTOOLCHAIN", "auto")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def module_dir(go_module_path: str, wrapper: str) -> Path:
    """Where a pinned dependency's source lies in the module cache (downloading it if needed)."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", go_module_path],
        cwd=GO_DIR / wrapper,
        env=go_env(wrapper),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not out:
        subprocess.run(["go", "mod", "download", go_module_path], cwd=GO_DIR / wrapper, env=go_env(wrapper), check=True)
        return module_dir(go_module_path, wrapper)
    return Path(out)


def binary_dir(module: GoModule) -> Path:
    return cache_dir() / "bin" / f"{module.name}-{module.stamp()}"


def _say(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


def _compile(module: GoModule, package: str, output: Path, started: float) -> None:
    command = ["go", "build", "-v", "-trimpath", f"-ldflags={module.ldflags}", f"-tags={module.tags}"]
    env = go_env(module.name)
    if module.cgo is not None:
        env["CGO_ENABLED"] = "1" if module.cgo else "0"
    proc = subprocess.Popen(
        [*command, "-o", str(output), package],
        cwd=module.directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    compiled, tail, last_report = 0, [], time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:  # `-v` names each package as it compiles: our progress meter
        compiled += 1
        tail = (tail + [line.rstrip()])[-30:]
        if time.monotonic() - last_report > 20:
            last_report = time.monotonic()
            _say(f"  {output.name}: {compiled} packages compiled, {int(last_report - started)}s elapsed")
    if proc.wait() != 0:
        detail = "\n".join(tail)
        raise SystemExit(
            f"localcluster: building {package} failed:\n{detail}\n"
            f"Fix the error above (module {module.directory}); `go mod download` shows proxy problems."
        )


def build(module: GoModule) -> Path:
    """Build one module's binaries unless a cached build with the same stamp exists."""
    target = binary_dir(module)
    if all((target / name).is_file() for name in module.packages):
        return target
    if shutil.which("go") is None:
        raise SystemExit("localcluster: `go` is not on PATH; install Go >= 1.24 and rerun")
    if module.debian_packages:
        from . import hostpackages

        hostpackages.ensure(*module.debian_packages)
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    _say(
        f"building {', '.join(module.packages)} from {module.directory.relative_to(GO_DIR.parent.parent)} "
        f"(cold: about {module.cold_minutes} min on 2 cores; cached afterwards in {target})"
    )
    started = time.monotonic()
    for name, package in module.packages.items():
        _compile(module, package, partial / name, started)
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    _say(f"built {module.name} in {int(time.monotonic() - started)}s")
    return target


def build_all() -> dict[str, Path]:
    """Build (or reuse) every component; returns binary name -> path."""
    paths: dict[str, Path] = {}
    for module in MODULES:
        directory = build(module)
        for name in module.packages:
            paths[name] = directory / name
    return paths


def kubernetes_openapi() -> Path:
    """The pinned Kubernetes' OpenAPI v3 document of the core group (PodTemplateSpec and friends)."""
    return module_dir("k8s.io/kubernetes", "k8s") / "api/openapi-spec/v3/api__v1_openapi.json"
