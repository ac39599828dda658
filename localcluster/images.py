"""Container images for the real node, built here from Debian and PyPI packages: no registry, no Docker.

- ``registry.k8s.io/pause``: Kubernetes' own pause.c (from the pinned k8s.io/kubernetes module), static.
- ``docker.io/lmsysorg/sglang:v0.5.9``: Debian bookworm's python3 (the .debs of a fixed package closure,
  unpacked without maintainer scripts), the real sglang-router from PyPI and the stand-in ``sglang``
  server of images/sglang_standin; the example runs all three roles from it.

Each image is written as a docker-save archive (manifest.json with RepoTags, the config, one layer tar)
that ``ctr -n k8s.io images import`` takes, cached in ``$RBG_CACHE_DIR/images`` (as components.py caches
binaries) under a stamp of its inputs, so unchanged inputs never rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import components, hostpackages

HERE = Path(__file__).resolve().parent
IMAGES = HERE / "images"
STANDIN = IMAGES / "sglang_standin"
STANDIN_FLAGS = STANDIN / "sglang" / "server_flags.json"
DEBIAN_PACKAGES = IMAGES / "sglang-debian-packages.txt"
REQUIREMENTS = IMAGES / "sglang-requirements.txt"
PAUSE_VERSION = "3.10.2"  # build/pause/Makefile's TAG in the pinned Kubernetes; checked when building
PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{PAUSE_VERSION}-rbg-operator")
SGLANG_TAG = "docker.io/lmsysorg/sglang:v0.5.9"
PYTHON_VERSION = "3.11"  # bookworm's python3
SITE_PACKAGES = "usr/lib/python3/dist-packages"  # on Debian's sys.path whatever else is there
# Wheels for bookworm's glibc 2.36 and older; pip takes each tag literally, so all are listed.
WHEEL_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
# Debian's docs, manuals and translations: the image needs none (each package's copyright stays).
STRIPPED = ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "usr/share/bug")
EPOCH = "1970-01-01T00:00:00Z"  # configs carry no build time, so equal inputs give equal configs


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # the archive's file name stem
    tags: tuple[str, ...]
    config: dict  # the OCI image config's "config" (entrypoint, env, user)
    inputs: Callable[[], list[bytes]]  # what the stamp hashes
    rootfs: Callable[[Path], None]  # fills the directory it is given


def _say(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def images_dir() -> Path:
    return components.cache_dir() / "images"


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


def _listed(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _run(command: list[str], what: str, **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(
            f"images: {what} failed ({done.returncode}): {shlex.join(command)}\n"
            f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


# --- pause


def _pause_inputs() -> list[bytes]:
    go_sum = (components.GO_DIR / "k8s" / "go.sum").read_bytes()  # pins the Kubernetes that pause.c comes from
    return [" ".join(PAUSE_CFLAGS).encode(), components.KUBERNETES_VERSION.encode(), go_sum]


def _pause_rootfs(rootfs: Path) -> None:
    hostpackages.ensure("gcc", "libc6-dev", "binutils")
    source = components.module_dir("k8s.io/kubernetes", "k8s") / "build" / "pause"
    tag = next(
        (
            line.split("=", 1)[1].strip()
            for line in (source / "Makefile").read_text().splitlines()
            if line.startswith("TAG ?=")
        ),
        None,
    )
    if tag != PAUSE_VERSION:
        raise SystemExit(
            f"images: Kubernetes {components.KUBERNETES_VERSION} builds pause {tag}; set PAUSE_VERSION to it"
        )
    _run(["gcc", *PAUSE_CFLAGS, "-o", str(rootfs / "pause"), str(source / "linux" / "pause.c")], "compiling pause.c")
    _run(["strip", str(rootfs / "pause")], "strip pause")


PAUSE = Image(
    name=f"pause-{PAUSE_VERSION}",
    tags=(f"registry.k8s.io/pause:{PAUSE_VERSION}",),
    config={"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"},  # as upstream's image
    inputs=_pause_inputs,
    rootfs=_pause_rootfs,
)


# --- sglang


def _standin_files() -> list[Path]:
    return sorted(p for p in STANDIN.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _sglang_inputs() -> list[bytes]:
    parts = [DEBIAN_PACKAGES.read_bytes(), REQUIREMENTS.read_bytes(), PYTHON_VERSION.encode()]
    parts += [" ".join(WHEEL_PLATFORMS).encode()]
    for path in _standin_files():
        parts += [str(path.relative_to(STANDIN)).encode(), path.read_bytes()]
    return parts


def _debs(packages: list[str]) -> list[Path]:
    """The .debs of the packages at the host's candidate versions, downloaded once into the cache."""
    hostpackages.apt_lists()
    directory = images_dir() / "debs"
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as empty:  # apt prints nothing for files already in its directory
        uris = _run(["apt-get", "download", "--print-uris", *packages], "resolving Debian packages", cwd=empty)
    files = [line.split()[1] for line in uris.splitlines() if line.startswith("'")]
    if len(files) != len(packages):
        raise SystemExit(f"images: apt resolved {len(files)} files for {len(packages)} packages:\n{uris}")
    absent = [name for name in files if not (directory / name).exists()]
    if absent:
        _say(f"downloading {len(absent)} Debian packages")
        # apt-get names the files as --print-uris did; as root it warns that _apt cannot write there.
        _run(["apt-get", "download", "-q", *(name.split("_")[0] for name in absent)], "apt-get download", cwd=directory)
    return [directory / name for name in files]


def _sglang_rootfs(rootfs: Path) -> None:
    hostpackages.ensure("binutils")  # strip
    started = time.monotonic()
    # Merged /usr as on any bookworm system; tar must keep these links when a package ships /lib/...
    for top in ("bin", "sbin", "lib", "lib64"):
        (rootfs / "usr" / top).mkdir(parents=True)
        (rootfs / top).symlink_to(f"usr/{top}")
    debs = _debs(_listed(DEBIAN_PACKAGES))
    dest = shlex.quote(str(rootfs))
    for deb in debs:
        unpack = f"dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | tar -x --keep-directory-symlink -C {dest}"
        _run(["bash", "-o", "pipefail", "-c", unpack], f"unpacking {deb.name}")
    _say(f"unpacked {len(debs)} Debian packages ({time.monotonic() - started:.0f}s)")
    for path in STRIPPED:
        shutil.rmtree(rootfs / path, ignore_errors=True)
    for doc in (rootfs / "usr/share/doc").glob("*/*"):
        if doc.name != "copyright":
            shutil.rmtree(doc) if doc.is_dir() and not doc.is_symlink() else doc.unlink()
    _system_files(rootfs)
    site = rootfs / SITE_PACKAGES
    platforms = [arg for platform in WHEEL_PLATFORMS for arg in ("--platform", platform)]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    pip += ["--only-binary=:all:", "--python-version", PYTHON_VERSION, *platforms, "--target", str(site)]
    _run([*pip, "-r", str(REQUIREMENTS)], "pip install (sglang-router and its dependencies)")
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts pointing at the host's python
    # The wheels' native modules carry their symbol tables: 20 MB of the router's 92 MB alone.
    _run(["strip", "--strip-unneeded", *map(str, sorted(site.rglob("*.so")))], "strip the native modules")
    _say(f"installed {len(_listed(REQUIREMENTS))} Python packages ({time.monotonic() - started:.0f}s)")
    shutil.copytree(STANDIN / "sglang", site / "sglang", ignore=shutil.ignore_patterns("__pycache__"))
    manifest = rootfs / "usr/share/rbg-operator/sglang-image.txt"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("".join(f"{deb.name}\n" for deb in debs) + REQUIREMENTS.read_text())
    _smoke_test(rootfs)


def _system_files(rootfs: Path) -> None:
    """What base-files' and libc-bin's maintainer scripts would have made, and the users a runtime looks up."""
    etc = rootfs / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\nservices: files\n")
    (etc / "ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    for directory, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("proc", 0o555), ("sys", 0o555)):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
        (rootfs / directory).chmod(mode)
    (rootfs / "dev").mkdir(exist_ok=True)
    if not (rootfs / "bin/sh").exists():
        (rootfs / "usr/bin/sh").symlink_to("dash")
    _run(["ldconfig", "-r", str(rootfs)], "ldconfig")


def _smoke_test(rootfs: Path) -> None:
    """Import the stand-in and the real router with the image's own python (a chroot, no container): a
    missing library fails the build, not a pod. The imports also leave the bytecode of what they load."""
    if os.geteuid() != 0:
        _say("not root: skipping the chroot import check")
        return
    code = (
        "import sglang.launch_server as s, sglang_router.launch_router, sglang_router.router; "
        "s.parser(); import sys; print(sys.version.split()[0])"
    )
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"  # looked up on the host PATH, not env's
    version = _run([chroot, str(rootfs), "/usr/bin/python3", "-c", code], "importing in the image", env=env)
    _say(f"the image's python {version.strip()} imports sglang.launch_server and sglang_router")


SGLANG = Image(
    name="sglang-v0.5.9",
    # The tests' own names for the same image: an in-place update from v1 to v2 changes only the tag.
    tags=(SGLANG_TAG, "docker.io/rbg-local/standin:v1", "docker.io/rbg-local/standin:v2"),
    config={
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "PYTHONUNBUFFERED=1",  # the servers' and router's logs reach kubectl logs at once
        ],
        "Cmd": ["python3"],
        "WorkingDir": "/",
    },
    inputs=_sglang_inputs,
    rootfs=_sglang_rootfs,
)

IMAGES_BUILT = (PAUSE, SGLANG)


# --- archives


def stamp(image: Image) -> str:
    digest = hashlib.sha256()
    # This file is the recipe: any change to it rebuilds (seconds), so no version needs bumping by hand.
    for part in [Path(__file__).read_bytes(), *(tag.encode() for tag in image.tags), json.dumps(image.config).encode()]:
        digest.update(part)
    for part in image.inputs():
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:12]


def archive_path(image: Image) -> Path:
    return images_dir() / f"{image.name}-{stamp(image)}.tar"


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _layer(rootfs: Path, out: Path) -> str:
    """The rootfs as one layer tar (paths relative to /, owned by root); returns its sha256."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(rootfs / entry, arcname=entry, filter=_normalized)
    digest = hashlib.sha256()
    with out.open("rb") as layer:
        while chunk := layer.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _archive(image: Image, layer: Path, layer_sha: str, out: Path) -> None:
    """docker-save layout: manifest.json naming the config and the layer, and the RepoTags to import."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha}"]},
        "history": [{"created": EPOCH, "created_by": f"localcluster/images.py {image.name} (stamp {stamp(image)})"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": list(image.tags), "Layers": [f"{layer_sha}/layer.tar"]}]
    with tarfile.open(out, "w") as tar:
        tar.add(layer, arcname=f"{layer_sha}/layer.tar", filter=_normalized)
        for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def build(image: Image) -> Path:
    """The image's archive, built unless one with the same stamp is cached."""
    target = archive_path(image)
    if target.is_file():
        return target
    started = time.monotonic()
    _say(f"building {', '.join(image.tags)} (cached afterwards as {target})")
    images_dir().mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{image.name}-", dir=images_dir()))
    try:
        rootfs = work / "rootfs"
        rootfs.mkdir()
        image.rootfs(rootfs)
        layer = work / "layer.tar"
        layer_sha = _layer(rootfs, layer)
        partial = work / target.name
        _archive(image, layer, layer_sha, partial)
        os.replace(partial, target)  # whole or not at all, should two builds race
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(image, keep=3)
    size = target.stat().st_size / 1e6
    _say(f"built {image.name}: {size:.0f} MB in {time.monotonic() - started:.0f}s")
    return target


def _prune(image: Image, keep: int) -> None:
    """Old stamps' archives, but the newest few (other worktrees of the repo may still use them)."""
    old = sorted(images_dir().glob(f"{image.name}-*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[keep:]:
        path.unlink(missing_ok=True)


def build_all() -> list[Path]:
    """Build (or reuse) every image; returns the archives, each importable with `ctr images import`."""
    return [build(image) for image in IMAGES_BUILT]


def main() -> None:
    for path in build_all():
        print(path)


if __name__ == "__main__":
    main()
