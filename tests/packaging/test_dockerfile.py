"""The image, checked without a Docker engine (there is none here, nor in CI).

The Dockerfile is parsed with dockerfile-parse: its rules (pinned base, non-root numeric user, the chart's
ports exposed, the entry point, no installs in the runtime stage) are asserted on the parse, and the build
stage's own COPY and RUN instructions are replayed in a scratch directory with an environment holding only
what the Dockerfile sets, so the test goes red when the install steps do, not when a copy of them does.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.support.container import container_argv, image_entrypoint_and_cmd

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
VALUES = REPO / "charts" / "ack-rbgs" / "values.yaml"
BUILD_TOOLS = ("pip", "setuptools", "wheel")
# Docker passes these to RUN steps without an ARG for them; a build machine behind a proxy needs them.
DOCKER_PREDEFINED_ARGS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
)
# Package managers a runtime stage must not run (it takes a finished virtualenv instead).
INSTALLERS = re.compile(
    r"(?<![\w.-])(apt-get|apt|aptitude|dpkg|apk|yum|dnf|microdnf|pip[0-9.]*|uv|poetry|"
    r"conda|mamba|ensurepip|easy_install)(?![\w.-])"
)
PINNED = re.compile(r"^(?P<repo>[^@\s:]+(?::\d+)?(?:/[^@\s:]+)*):(?P<tag>[^@\s:/]+)@sha256:[0-9a-f]{64}$")


@dataclass
class Step:
    instruction: str
    value: str
    args: dict[str, str]
    envs: dict[str, str]


@dataclass
class Stage:
    base: str
    name: str | None
    steps: list[Step] = field(default_factory=list)

    def all(self, instruction: str) -> list[Step]:
        return [s for s in self.steps if s.instruction == instruction]


def stages(build_args: dict[str, str] | None = None, parent_env: dict[str, str] | None = None) -> list[Stage]:
    """The Dockerfile's stages, each step with the ARG and ENV values in effect at it."""
    parser = DockerfileParser(str(DOCKERFILE), build_args=build_args or {}, parent_env=parent_env or {})
    bases = iter(parser.parent_images)  # FROM images with the global ARGs substituted
    result: list[Stage] = []
    for instr, context in zip(parser.structure, parser.context_structure, strict=True):
        if instr["instruction"] == "FROM":
            words = instr["value"].split()
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else None
            result.append(Stage(base=next(bases), name=name))
        elif result:
            result[-1].steps.append(Step(instr["instruction"], instr["value"], dict(context.args), dict(context.envs)))
    return result


def words(value: str) -> list[str]:
    """The arguments of a COPY/EXPOSE/USER-like instruction, JSON form or shell-word form."""
    value = value.strip()
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def expand(text: str, variables: dict[str, str]) -> str:
    """Docker's $VAR / ${VAR} substitution in COPY, WORKDIR and the like (the forms this Dockerfile uses)."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: variables.get(m.group(1) or m.group(2), ""), text)


def copy_from_build(final: Stage, build: Stage) -> tuple[str, str]:
    """The final stage's COPY --from=<build stage>: (source in the build stage, destination)."""
    for step in final.all("COPY"):
        argv = words(step.value)
        options = [a for a in argv if a.startswith("--")]
        if f"--from={build.name}" in options:
            paths = [expand(a, {**step.args, **step.envs}) for a in argv if not a.startswith("--")]
            assert len(paths) == 2, f"expected one source and one destination: {step.value}"
            return paths[0], paths[1]
    raise AssertionError(f"the final stage copies nothing from the {build.name!r} stage")


def chart_ports() -> dict[str, int]:
    values = yaml.safe_load(VALUES.read_text())
    return {
        "metrics.port": values["metrics"]["port"],
        "healthPort": values["healthPort"],
        "webhook.port": values["webhook"]["port"],
    }


# ----------------------------------------------------------------------------------------------------------
# The rules, on the parse


def test_every_stage_starts_from_one_base_pinned_by_tag_and_digest():
    parsed = stages()
    bases = {stage.base for stage in parsed}
    assert len(parsed) >= 2, "expected a build stage and a runtime stage"
    assert len(bases) == 1, f"the stages use different bases (the venv's python comes from the base): {bases}"
    base = bases.pop()
    match = PINNED.match(base)
    assert match, f"not pinned as <image>:<tag>@sha256:<digest>: {base!r}"
    version = re.match(r"(\d+)\.(\d+)", match["tag"])
    assert match["repo"].rsplit("/", 1)[-1] == "python" and version, base
    assert (int(version[1]), int(version[2])) >= (3, 11), f"the project requires Python >= 3.11: {base}"


def test_final_stage_runs_as_a_numeric_non_root_user():
    final = stages()[-1]
    users = final.all("USER")
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].value.strip()
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user} is not numeric (runAsNonRoot cannot verify a name)"
    assert int(user.split(":")[0]) != 0, "USER is root"


def test_exposes_the_ports_the_chart_serves_on():
    exposed = {int(port.split("/")[0]) for step in stages()[-1].all("EXPOSE") for port in words(step.value)}
    missing = {name: port for name, port in chart_ports().items() if port not in exposed}
    assert not missing, f"EXPOSE {sorted(exposed)} lacks the chart's {missing}"


def test_entrypoint_is_the_program_and_cmd_its_run_command():
    # The chart's `args` start with `run` and replace CMD; an ENTRYPOINT holding `run` too made
    # `rbg-operator run run ...`, which exits at once (tests/cluster/test_packaging.py runs the
    # chart's container command as Kubernetes would).
    assert image_entrypoint_and_cmd(DOCKERFILE) == (["rbg-operator"], ["run"])


def test_runtime_stage_installs_nothing_and_runs_from_the_build_stage_venv():
    *_, build, final = stages()
    installs = [step.value for step in final.all("RUN") if INSTALLERS.search(step.value)]
    assert not installs, f"the runtime stage installs packages: {installs}"
    source, destination = copy_from_build(final, build)
    assert source == destination, "the venv must keep its path: its scripts' #! lines name it"
    env = final.steps[-1].envs
    assert env.get("PATH", "").split(":")[0] == f"{destination}/bin", env.get("PATH")
    assert env.get("PYTHONUNBUFFERED") == "1"


# ----------------------------------------------------------------------------------------------------------
# The build stage's install steps, replayed in a clean environment


@dataclass
class Built:
    venv: Path
    env: dict[str, str]  # the clean environment the steps ran in


def _python_bin(scratch: Path) -> Path:
    """A directory with `python` in it, standing for the image's PATH: the base interpreter of the running
    tests (with its own pip, as in the image), not their virtualenv, whose packages would leak in."""
    bindir = scratch / "python-bin"
    bindir.mkdir()
    base = Path(getattr(sys, "_base_executable", sys.executable))
    for name in ("python", "python3"):
        (bindir / name).symlink_to(base)
    probe = subprocess.run(
        [str(bindir / "python"), "-c", "import pip, sys; print(sys.version_info >= (3, 11))"],
        capture_output=True,
        text=True,
        env={"PATH": str(bindir), "HOME": str(scratch)},
    )
    if probe.returncode == 0 and probe.stdout.strip() == "True":
        return bindir
    # No pip next to the base interpreter: fall back to the tests' own interpreter directory.
    return Path(sys.executable).parent


def _copy(sources: list[str], destination: str, workdir: PurePosixPath, scratch_workdir: Path) -> None:
    """COPY <sources> <destination> from the repository (the build context) into the scratch WORKDIR."""
    target = PurePosixPath(destination) if destination.startswith("/") else workdir / destination
    assert target == workdir or workdir in target.parents, f"COPY outside WORKDIR {workdir}: {destination}"
    dest = scratch_workdir / target.relative_to(workdir)
    into_dir = destination.endswith("/") or destination in (".", "./") or len(sources) > 1
    for pattern in sources:
        matched = sorted(glob.glob(pattern, root_dir=REPO)) if glob.has_magic(pattern) else [pattern]
        assert matched and all((REPO / m).exists() for m in matched), f"COPY source missing: {pattern}"
        for relative in matched:
            src = REPO / relative
            if src.is_dir():  # a directory's contents, like Docker
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                target_file = dest / src.name if into_dir else dest
                target_file.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target_file)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    scratch = tmp_path_factory.mktemp("image")
    home, workdir_root, venv = scratch / "home", scratch / "workdir", scratch / "venv"
    home.mkdir()
    workdir_root.mkdir()
    base_path = f"{_python_bin(scratch)}:/usr/local/bin:/usr/bin:/bin"

    *_, build, final = stages()
    source, _ = copy_from_build(final, build)
    venv_args = [name for name, value in build.steps[-1].args.items() if value == source]
    assert venv_args, f"the venv path {source} is not an ARG of the build stage, so it cannot be pointed elsewhere"
    # Parse again as `docker build --build-arg VENV=<scratch>` would see it.
    reparsed = stages(
        build_args={name: str(venv) for name in venv_args}, parent_env={"PATH": base_path, "HOME": str(home)}
    )
    build = next(stage for stage in reparsed if stage.name == build.name)
    passthrough = {k: os.environ[k] for k in DOCKER_PREDEFINED_ARGS if k in os.environ}

    workdir: PurePosixPath | None = None
    env: dict[str, str] = {}
    for step in build.steps:
        variables = {**step.args, **step.envs}
        if step.instruction == "WORKDIR":
            assert workdir is None, "one WORKDIR in the build stage is all this replay maps"
            workdir = PurePosixPath(expand(step.value.strip(), variables))
        elif step.instruction == "COPY":
            argv = words(step.value)
            assert not any(a.startswith("--from") for a in argv), f"COPY from another stage: {step.value}"
            paths = [expand(a, variables) for a in argv if not a.startswith("--")]
            assert workdir is not None, "COPY before WORKDIR"
            _copy(paths[:-1], paths[-1], workdir, workdir_root)
        elif step.instruction == "RUN":
            env = {"PATH": base_path, "HOME": str(home), **passthrough, **variables}
            value = step.value.strip()
            argv = json.loads(value) if value.startswith("[") else ["bash", "-c", value]
            result = subprocess.run(argv, cwd=workdir_root, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"RUN {value}\nexit {result.returncode}\n{result.stderr[-3000:]}"
    assert (venv / "bin" / "python").exists(), "the build stage made no virtualenv at $VENV"
    return Built(venv=venv, env=env)


def _run(built: Built, *argv: str) -> subprocess.CompletedProcess:
    env = {**built.env, "PATH": f"{built.venv / 'bin'}:{built.env['PATH']}"}  # as the final stage's ENV PATH
    # From the scratch HOME, not the repository: `python -c` puts the working directory on sys.path, and the
    # repository's rbg_operator/ and *.egg-info there would pass for what the venv holds.
    return subprocess.run(argv, cwd=env["HOME"], env=env, capture_output=True, text=True, timeout=120)


def test_the_venv_holds_no_build_tools(built: Built):
    listed = _run(
        built,
        str(built.venv / "bin" / "python"),
        "-c",
        "import importlib.metadata as m, importlib.util as u, json; print(json.dumps("
        "[sorted(d.metadata['Name'].lower() for d in m.distributions()), "
        f"[n for n in {BUILD_TOOLS!r} if u.find_spec(n)]]))",
    )
    assert listed.returncode == 0, listed.stderr
    distributions, importable = json.loads(listed.stdout)
    assert distributions.count("rbg-operator") == 1, distributions
    assert not set(BUILD_TOOLS) & set(distributions), f"build tools installed in the venv: {distributions}"
    assert not importable, f"importable from the venv: {importable}"
    scripts = sorted(p.name for p in (built.venv / "bin").iterdir() if re.match(r"(pip|wheel|easy_install)", p.name))
    assert not scripts, f"build tool scripts in the venv: {scripts}"


def test_the_image_default_command_from_the_venv_shows_its_flags(built: Built):
    program, *arguments = container_argv(image_entrypoint_and_cmd(DOCKERFILE), {})
    shown = _run(built, str(built.venv / "bin" / program), *arguments, "--help")
    assert shown.returncode == 0, shown.stderr
    assert "--leader-elect" in shown.stdout


def test_the_kubectl_plugin_from_the_venv_shows_rollout(built: Built):
    shown = _run(built, str(built.venv / "bin" / "kubectl-rbg"), "--help")
    assert shown.returncode == 0, shown.stderr
    assert "rollout" in shown.stdout
