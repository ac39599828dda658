"""The timeline of one group, from its create to the operator's last write: each API request the
operator sent (writes and reads), each wake-up with its delay, each pass, and when each pod
turned Ready, as seconds after the create.

    .venv/bin/python -m benchmarks.trace_one            # a group on RoleInstanceSets (v1alpha2's default)
    TRACE_VARIANT=StatefulSet .venv/bin/python -m benchmarks.trace_one

Runs on the local control plane (RBG_CLUSTER_DIR, RBG_REAL_NODE as `make cluster-up`), with the
operator as a subprocess whose request and wake loggers are at DEBUG (nothing else of it is).
The group is the benchmark's: router 1 + prefill 2 + decode 1.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import os
import re
import subprocess
import sys
import time

from localcluster import cluster, crds
from rbg_operator import kinds
from rbg_operator.kube import KINDS, Kube

from .bench import (
    RBG_V2,
    REPO,
    RIS_VARIANT,
    Watched,
    fresh_namespace,
    gather_limited,
    is_ready,
    manifest,
    say,
    scrape,
    writes_stopped,
)

NAMESPACE = "trace-one"
GROUPS = int(os.environ.get("TRACE_GROUPS", "1"))  # more than one: a per-second summary instead
PORT, HEALTH, WEBHOOK = 18480, 18481, 18482
LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG rbg_operator\.(kube\.requests|operator\.wakes): (.*)$"
)
WRITES = {"apply", "create", "patch", "update", "delete"}

# Run the operator with only its two trace loggers at DEBUG.
BOOT = (
    "import logging, sys\n"
    "from rbg_operator.cli import main\n"
    "for name in ('rbg_operator.kube.requests', 'rbg_operator.operator.wakes'):\n"
    "    logging.getLogger(name).setLevel(logging.DEBUG)\n"
    "sys.argv[0] = 'rbg_operator'\n"
    "main()\n"
)


def pod_ready_since(pod: dict) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return c.get("lastTransitionTime")
    return None


async def main() -> None:
    variant = os.environ.get("TRACE_VARIANT", RIS_VARIANT)
    cluster.up()
    crds.install(cluster.kubectl, REPO / "crds")
    kube = await Kube.connect(kubeconfig_file=str(cluster.kubeconfig_path()), pool=8, field_manager="rbg-trace")
    log_path = cluster.state_dir() / "logs" / "trace-operator.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            BOOT,
            "run",
            f"--workers={os.environ.get('BENCH_WORKERS', '64')}",
            f"--metrics-bind-address=127.0.0.1:{PORT}",
            f"--health-probe-bind-address=127.0.0.1:{HEALTH}",
            f"--webhook-bind-address=127.0.0.1:{WEBHOOK}",
            "--register-conversion",
            *os.environ.get("TRACE_OPERATOR_ARGS", "").split(),
        ],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    pods_ready: dict[str, float] = {}
    try:
        await fresh_namespace(kube, NAMESPACE)
        while True:
            try:
                scrape(PORT)
                break
            except OSError:
                await asyncio.sleep(0.3)
        await asyncio.sleep(3)  # the first lists are in and the conversion webhook is registered
        async with (
            Watched(kube, ("v1", "Pod"), NAMESPACE) as pods,
            Watched(kube, kinds.ROLE_BASED_GROUP, NAMESPACE) as groups,
        ):
            started, group_ready = time.time(), {}
            await gather_limited(
                kube.create(manifest(i, NAMESPACE, "example.com/llm:v1", prefix="trace", variant=variant), RBG_V2)
                for i in range(GROUPS)
            )

            def pods_up(objects):
                for name, pod in objects.items():
                    if name not in pods_ready and is_ready(pod):
                        pods_ready[name] = time.time() - started
                return True if len(pods_ready) == 4 * GROUPS else f"{len(pods_ready)} pods Ready"

            def ready(objects):
                for name, group in objects.items():
                    if name not in group_ready and is_ready(group):
                        group_ready[name] = time.time() - started
                return True if len(group_ready) == GROUPS else f"{len(group_ready)} groups Ready"

            await asyncio.gather(
                pods.until("the pods Ready", pods_up, 120 + 2 * GROUPS),
                groups.until("the groups Ready", ready, 120 + 2 * GROUPS),
            )
            await writes_stopped(PORT, quiet_seconds=3)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        await kube.delete(KINDS[("v1", "Namespace")], None, NAMESPACE)
        await kube.close()
    timeline = []
    counts: collections.Counter = collections.Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if not match or NAMESPACE not in match.group(3):
            continue
        at = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - started
        text = match.group(3)
        if match.group(2) == "kube.requests":
            verb, resource, path, *rest = text.split()
            name = path.rsplit(f"/namespaces/{NAMESPACE}/", 1)[-1]
            manager = rest[0] if len(rest) == 2 else ""
            status = rest[-1]
            if verb in WRITES:
                counts[f"{verb} {resource}"] += 1
            text = f"{'WRITE' if verb in WRITES else 'read '} {verb} {name} {manager} -> {status}"
        timeline.append((at, text))
    timeline += [(at, f"POD READY {name}") for name, at in pods_ready.items()]
    timeline += [(at, f"GROUP READY {name} (seen by the trace's watch)") for name, at in group_ready.items()]
    if GROUPS == 1:
        for at, text in sorted(timeline):
            print(f"{at:7.3f}  {text}")
    else:  # per second: what was done, by what it was
        by_second: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        for at, text in timeline:
            words = text.split()
            what = " ".join(words[:2]) if words[0] in ("WRITE", "read", "POD", "GROUP") else words[0]
            if words[0] in ("WRITE", "read"):
                what += " " + words[2].split("/")[0] + ("/status" if words[2].endswith("/status") else "")
            by_second[int(at)][what] += 1
        for second in sorted(by_second):
            print(f"{second:4d}s  " + ", ".join(f"{k} {v}" for k, v in sorted(by_second[second].items())))
    per_group = {k: round(v / GROUPS, 2) for k, v in sorted(counts.items())}
    total = sum(counts.values()) / GROUPS
    print(f"\n{variant}, {GROUPS} groups: writes per group by resource: {per_group}; total {total:.2f}")
    say(f"operator log: {log_path}")


if __name__ == "__main__":
    asyncio.run(main())
