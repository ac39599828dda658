"""Scale benchmark: N RoleBasedGroups (router 1 + prefill 2 + decode 1) on the local control
plane with kwok nodes, against the floor of creating the same child objects directly.

    make bench                     # BENCH_GROUPS=100 by default
    BENCH_GROUPS=300 make bench

Prints a markdown table, writes benchmarks/results/latest.json (and groups-N.json) and a plot
of time-to-Ready against N (benchmarks/results/ready_vs_groups.png) from every groups-N.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from localcluster import cluster
from rbg_operator import naming
from rbg_operator.api.rolebasedgroup import RoleBasedGroup
from rbg_operator.desired import group_children, role_children
from rbg_operator.kube import KINDS, Kube

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RBG = KINDS[(naming.API_VERSION, "RoleBasedGroup")]
CONCURRENCY = 32


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def manifest(index: int, namespace: str, image: str, prefix: str = "bench") -> dict:
    def role(name: str, replicas: int, **extra) -> dict:
        return {"name": name, "replicas": replicas, **extra,
                "template": {"spec": {"containers": [{"name": "main", "image": image,
                                                      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
    return {"apiVersion": naming.API_VERSION, "kind": "RoleBasedGroup",
            "metadata": {"name": f"{prefix}-{index}", "namespace": namespace},
            "spec": {"roles": [role("prefill", 2), role("decode", 1), role("router", 1, dependencies=["prefill", "decode"])]}}


def children(index: int, namespace: str) -> list[dict]:
    """What the operator would create for group `index`, without an owner: the floor's objects."""
    # Named apart from the operator's groups: kwok was seen deleting pods of a namespace whose
    # pods shared their names with pods being deleted in another namespace.
    body = manifest(index, namespace, "example.com/llm:v1", prefix="floor")
    body["metadata"]["uid"] = "floor"
    group = RoleBasedGroup.model_validate(body)
    objects = group_children(group) + [c for r in group.spec.roles for c in role_children(group, r.name)]
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)
    return objects


async def gather_limited(coroutines) -> None:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def run(coroutine):
        async with semaphore:
            await coroutine
    await asyncio.gather(*(run(c) for c in coroutines))


async def ready_pods(kube: Kube, namespace: str) -> int:
    pods = await kube.list(KINDS[("v1", "Pod")], namespace)
    return sum(1 for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                      for c in (p.get("status") or {}).get("conditions", [])))


async def wait_until(what: str, probe, timeout: float) -> float:
    started = time.monotonic()
    last_report = started
    while True:
        value = await probe()
        if value is True:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise SystemExit(f"bench: {what} did not happen within {timeout:.0f}s (last: {value}); see .cluster/logs")
        if time.monotonic() - last_report > 10:
            say(f"  waiting for {what}: {value}")
            last_report = time.monotonic()
        await asyncio.sleep(0.5)


async def floor(kube: Kube, groups: int) -> float:
    namespace = "bench-floor"
    await fresh_namespace(kube, namespace)
    started = time.monotonic()
    await gather_limited(kube.apply(obj) for i in range(groups) for obj in children(i, namespace))

    async def all_ready():
        count = await ready_pods(kube, namespace)
        return True if count == groups * 4 else f"{count}/{groups * 4} pods ready"
    await wait_until("floor pods ready", all_ready, 60 + groups)
    seconds = time.monotonic() - started
    await kube.delete(KINDS[("v1", "Namespace")], None, namespace)

    async def floor_gone():
        left = len(await kube.list(KINDS[("v1", "Pod")], namespace))
        return True if left == 0 else f"{left} floor pods left"
    await wait_until("the floor's pods to be deleted (so they do not load the operator's run)", floor_gone,
                     120 + 2 * groups)
    return seconds


async def fresh_namespace(kube: Kube, namespace: str) -> None:
    ns = KINDS[("v1", "Namespace")]
    if await kube.get(ns, None, namespace) is not None:
        await kube.delete(ns, None, namespace)
        while await kube.get(ns, None, namespace) is not None:
            await asyncio.sleep(1)
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    while not await kube.get(KINDS[("v1", "ServiceAccount")], namespace, "default"):
        await asyncio.sleep(0.2)  # pods cannot be created before the namespace's default ServiceAccount


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    peak = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return cpu, peak / 1024


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def requests_by_verb(samples: dict[str, float]) -> dict[str, float]:
    verbs: dict[str, float] = {}
    for key, value in samples.items():
        if key.startswith("rbg_operator_api_requests_total{"):
            verb = key.split('verb="')[1].split('"')[0]
            verbs[verb] = verbs.get(verb, 0) + value
    return verbs


WRITES = ("apply", "create", "patch", "update", "delete")


async def with_operator(kube: Kube, groups: int) -> dict:
    namespace = "bench-operator"
    await fresh_namespace(kube, namespace)
    port, health = 18380, 18381
    log = open(cluster.state_dir() / "logs" / "bench-operator.log", "wb")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())}
    proc = subprocess.Popen([sys.executable, "-m", "rbg_operator", "run", f"--namespace={namespace}", "--workers=16",
                             "--resync-seconds=30", f"--metrics-bind-address=127.0.0.1:{port}",
                             f"--health-probe-bind-address=127.0.0.1:{health}"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        while True:
            try:
                scrape(port)
                break
            except OSError:
                await asyncio.sleep(0.3)
        await asyncio.sleep(2)
        before = requests_by_verb(scrape(port))
        ready_at: dict[str, float] = {}
        started = time.monotonic()
        await gather_limited(kube.create(manifest(i, namespace, "example.com/llm:v1")) for i in range(groups))

        async def all_ready():
            for item in await kube.list(RBG, namespace):
                ready = next((c for c in (item.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)
                if ready and ready["status"] == "True" and item["metadata"]["name"] not in ready_at:
                    ready_at[item["metadata"]["name"]] = time.monotonic() - started
            return True if len(ready_at) == groups else f"{len(ready_at)}/{groups} groups Ready"
        await wait_until("groups Ready", all_ready, 120 + 2 * groups)
        ready_seconds = time.monotonic() - started  # like the floor: from the first create on
        created = requests_by_verb(scrape(port))
        per_group = {verb: (created.get(verb, 0) - before.get(verb, 0)) / groups for verb in created}

        say("measuring a full resync with nothing to change")
        await asyncio.sleep(3)
        quiet = requests_by_verb(scrape(port))
        reconciles = lambda: sum(v for k, v in scrape(port).items()
                                 if k.startswith('controller_runtime_reconcile_total{controller="rolebasedgroup"'))
        base = reconciles()

        async def resynced():
            done = reconciles() - base
            return True if done >= groups else f"{done:.0f}/{groups} groups resynced"
        await wait_until("one full resync", resynced, 90)
        after_resync = requests_by_verb(scrape(port))
        noop_writes = sum(after_resync.get(v, 0) - quiet.get(v, 0) for v in WRITES)

        say("rolling every group to a new image")
        started = time.monotonic()
        await gather_limited(kube.patch(RBG, namespace, f"bench-{i}", {"spec": {"roles": manifest(
            i, namespace, "example.com/llm:v2")["spec"]["roles"]}}) for i in range(groups))

        async def rolled():
            items = await kube.list(RBG, namespace)
            done = sum(1 for g in items if (g.get("status") or {}).get("observedGeneration") == g["metadata"]["generation"]
                       and any(c["type"] == "Ready" and c["status"] == "True" for c in g["status"].get("conditions", []))
                       and all(r["updatedReplicas"] == r["replicas"] for r in g["status"].get("roleStatuses", [])))
            return True if done == groups else f"{done}/{groups} groups rolled"
        try:
            await wait_until("rollout", rolled, 60 + groups)
            rollout_seconds: float | None = time.monotonic() - started
        except SystemExit as stopped:
            # A rollout that cannot finish is reported, not waited on.
            say(f"rollout did not finish: {stopped}")
            rollout_seconds = None

        say("deleting every group")
        started = time.monotonic()
        await gather_limited(kube.delete(RBG, namespace, f"bench-{i}") for i in range(groups))

        async def gone():
            left = len(await kube.list(KINDS[("v1", "Pod")], namespace))
            return True if left == 0 else f"{left} pods left"
        await wait_until("deletion", gone, 120 + 2 * groups)
        delete_seconds = time.monotonic() - started
        cpu, peak = process_usage(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    await kube.delete(KINDS[("v1", "Namespace")], None, namespace)
    times = sorted(ready_at.values())
    return {
        "ready_seconds": round(ready_seconds, 2),
        "p50_ready_seconds": round(statistics.median(times), 2),
        "p99_ready_seconds": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
        "rollout_seconds": round(rollout_seconds, 2) if rollout_seconds is not None else None,
        "delete_seconds": round(delete_seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak, 1),
        "requests_per_group": {k: round(v, 2) for k, v in sorted(per_group.items())},
        "writes_per_group": round(sum(per_group.get(v, 0) for v in WRITES), 2),
        "noop_writes": int(noop_writes),
    }


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted((json.loads(p.read_text()) for p in RESULTS.glob("groups-*.json")), key=lambda r: r["groups"])
    if not runs:
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([r["groups"] for r in runs], [r["ready_seconds"] for r in runs], "o-", label="rbg-operator")
    axes.plot([r["groups"] for r in runs], [r["floor_seconds"] for r in runs], "s--", label="floor (direct)")
    axes.set_xlabel("groups (4 pods each)")
    axes.set_ylabel("seconds until all Ready")
    axes.legend()
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(RESULTS / "ready_vs_groups.png", dpi=120)


def table(result: dict) -> str:
    rows = [("groups", result["groups"]), ("floor: create children directly, all pods Ready (s)", result["floor_seconds"]),
            ("operator: all groups Ready (s)", result["ready_seconds"]),
            ("ratio to floor", result["floor_ratio"]),
            ("per-group time to Ready p50 / p99 (s)", f"{result['p50_ready_seconds']} / {result['p99_ready_seconds']}"),
            ("image rollout of every group (s)", result["rollout_seconds"] if result["rollout_seconds"] is not None
             else "did not finish"),
            ("deleting every group (s)", result["delete_seconds"]),
            ("operator CPU (s)", result["cpu_seconds"]), ("operator peak RSS (MB)", result["peak_rss_mb"]),
            ("API writes per group (create to Ready)", result["writes_per_group"]),
            ("requests per group by verb", ", ".join(f"{k} {v}" for k, v in result["requests_per_group"].items())),
            ("writes during a no-op full resync", result["noop_writes"])]
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


async def main() -> None:
    groups = int(os.environ.get("BENCH_GROUPS", "100"))
    cluster.up()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kube = await Kube.connect(kubeconfig_file=str(cluster.kubeconfig_path()), pool=64, field_manager="rbg-bench")
    try:
        say(f"floor: creating the children of {groups} groups directly")
        floor_seconds = await floor(kube, groups)
        say(f"floor: {floor_seconds:.1f}s; now {groups} groups through the operator")
        measured = await with_operator(kube, groups)
    finally:
        await kube.close()
    result = {"groups": groups, "floor_seconds": round(floor_seconds, 2), **measured}
    result["floor_ratio"] = round(result["ready_seconds"] / floor_seconds, 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"groups-{groups}.json").write_text(text)
    plot()
    print(table(result))
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'ready_vs_groups.png'}")


if __name__ == "__main__":
    asyncio.run(main())
