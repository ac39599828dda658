"""The node's container images: built (or taken from the cache) by localcluster.images, then read as
tar files, since there is no container runtime to run them here. Checked: the docker-save layout that
`ctr images import` takes, the tags, and that the SGLang image holds python3, the real router and the
stand-in of this repo."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import tarfile
import time
from pathlib import Path, PurePosixPath

import pytest

from localcluster import images

SITE = PurePosixPath(images.SITE_PACKAGES)


@pytest.fixture(scope="module")
def archives() -> dict[str, Path]:
    paths = images.build_all()
    return {path.name.rsplit("-", 1)[0]: path for path in paths}


PT_INTERP = 3


def program_header_types(elf: bytes) -> list[int]:
    """The p_type of each program header of a 64-bit little-endian ELF file."""
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]


def read(archive: Path) -> tuple[dict, dict, dict[str, tarfile.TarInfo], tarfile.TarFile]:
    """The manifest entry, the config and the layer's members by path, from a docker-save archive."""
    outer = tarfile.open(archive)
    manifest = json.loads(outer.extractfile("manifest.json").read())
    assert len(manifest) == 1 and len(manifest[0]["Layers"]) == 1
    config = json.loads(outer.extractfile(manifest[0]["Config"]).read())
    layer_file = outer.extractfile(manifest[0]["Layers"][0])
    digest = hashlib.sha256()
    while chunk := layer_file.read(1 << 20):
        digest.update(chunk)
    assert config["rootfs"]["diff_ids"] == [f"sha256:{digest.hexdigest()}"], "the config must name its layer"
    layer_file.seek(0)
    layer = tarfile.open(fileobj=layer_file)
    return manifest[0], config, {m.name: m for m in layer.getmembers()}, layer


def test_pause_is_kubernetes_pause_c_static_as_upstreams(archives):
    manifest, config, members, layer = read(archives["pause-3.10.2"])
    assert manifest["RepoTags"] == ["registry.k8s.io/pause:3.10.2"]
    assert config["config"]["Entrypoint"] == ["/pause"] and config["config"]["User"] == "65535:65535"
    assert list(members) == ["pause"]
    binary = layer.extractfile("pause").read()
    assert binary[:4] == b"\x7fELF" and members["pause"].mode & 0o111
    assert PT_INTERP not in program_header_types(binary), "pause must be static: the image has no libc"
    assert b"v3.10.2" in binary  # pause -v prints the version it was compiled with


def test_sglang_image_has_python_the_real_router_and_this_repos_standin(archives):
    manifest, config, members, layer = read(archives["sglang-v0.5.9"])
    # The example's name, and the two the real-node tests update between in place.
    assert manifest["RepoTags"] == [
        "docker.io/lmsysorg/sglang:v0.5.9",
        "docker.io/rbg-local/standin:v1",
        "docker.io/rbg-local/standin:v2",
    ]
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    assert "PYTHONUNBUFFERED=1" in config["config"]["Env"]
    # /usr/bin/python3 is Debian's link to the real interpreter; /bin is merged into /usr/bin.
    assert members["usr/bin/python3"].issym() and members["usr/bin/python3"].linkname == "python3.11"
    assert members["usr/bin/python3.11"].isfile() and members["bin"].linkname == "usr/bin"
    assert members["lib64"].issym() and members["usr/lib64/ld-linux-x86-64.so.2"].issym()
    assert str(SITE / "sglang_router-0.3.2.dist-info/METADATA") in members
    for module in ("launch_router.py", "sglang_router_rs.abi3.so"):
        assert str(SITE / "sglang_router" / module) in members
    for source in images._standin_files():
        inside = str(SITE / source.relative_to(images.STANDIN).as_posix())
        assert layer.extractfile(inside).read() == source.read_bytes(), f"{inside} differs from the repo's"
    assert not any(name.startswith("usr/share/man/") for name in members)
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())


def test_a_second_build_reuses_the_archives_and_the_stamp_follows_the_inputs(archives):
    started = time.monotonic()
    again = images.build_all()
    assert time.monotonic() - started < 5
    assert sorted(again) == sorted(archives.values())
    changed = dataclasses.replace(images.SGLANG, inputs=lambda: [*images.SGLANG.inputs(), b"one more byte"])
    assert images.stamp(changed) != images.stamp(images.SGLANG)
