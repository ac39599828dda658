"""Scale benchmark: N RoleBasedGroups (router 1 + prefill 2 + decode 1) on the local control
plane with kwok nodes, against the floor of creating the same child objects directly.

    make bench                     # BENCH_GROUPS=100 by default
    BENCH_GROUPS=300 make bench
    BENCH_NOISE_PODS=0 make bench  # skip the busy-cluster run
    BENCH_RIS=0 make bench         # skip the RoleInstanceSet run (quick one-change measurements)

Each size also runs the same groups written in v1alpha2 without a workload annotation: their
roles run as RoleInstanceSets, whose instances and pods the operator itself makes (the floor
stays the StatefulSet children, so the ratio says what the operator's own pods cost).

The operator runs cluster-wide, as the chart deploys it. Unless BENCH_NOISE_PODS is 0, it runs
twice: on the otherwise empty cluster, then again after BENCH_NOISE_PODS (default 5000)
unrelated pods with 20 variables each and BENCH_NOISE_CONFIGMAPS (2000) unrelated 8 KB
ConfigMaps were created in another namespace; the table compares the two.

Prints a markdown table, writes benchmarks/results/latest.json (and groups-N.json) and a plot
of time-to-Ready against N (benchmarks/results/ready_vs_groups.png) from every groups-N.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from localcluster import cluster, crds
from rbg_operator import kinds
from rbg_operator.api.v1alpha2 import WORKLOAD_TYPE_KEY, RoleBasedGroupV2
from rbg_operator.desired import group_children, role_children
from rbg_operator.kube import KINDS, ApiError, Kind, Kube

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RBG_KEY = kinds.ROLE_BASED_GROUP
RBG = KINDS[RBG_KEY]
CONCURRENCY = 32


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# The floor creates every child at once; it cannot wait for roles the way `dependencies` asks.
# So the groups compared with it have none, and BENCH_ORDERED=1 measures the cost of ordering.
ORDERED = os.environ.get("BENCH_ORDERED", "") not in ("", "0")
NOISE_PODS = int(os.environ.get("BENCH_NOISE_PODS", "5000"))
NOISE_CONFIGMAPS = int(os.environ.get("BENCH_NOISE_CONFIGMAPS", "2000"))
NOISE_NAMESPACE = "bench-noise"
RUN_INSTANCE_SETS = os.environ.get("BENCH_RIS", "1") not in ("", "0")


# The same group on v1alpha2's default workload: RoleInstanceSets, whose pods the operator makes.
RIS_VARIANT = "RoleInstanceSet"
RBG_V2 = Kind("workloads.x-k8s.io/v1alpha2", "RoleBasedGroup", "rolebasedgroups")


def manifest(index: int, namespace: str, image: str, prefix: str = "bench", variant: str = "StatefulSet") -> dict:
    def role(name: str, replicas: int, **extra) -> dict:
        template = {
            "spec": {
                "containers": [
                    {"name": "main", "image": image, "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
                ]
            }
        }
        workload = {} if variant == RIS_VARIANT else {"annotations": {WORKLOAD_TYPE_KEY: "apps/v1/StatefulSet"}}
        return {"name": name, "replicas": replicas, **extra, **workload, "standalonePattern": {"template": template}}

    return {
        "apiVersion": RBG_V2.api_version,
        "kind": "RoleBasedGroup",
        "metadata": {"name": f"{prefix}-{index}", "namespace": namespace},
        "spec": {
            "roles": [
                role("prefill", 2),
                role("decode", 1),
                role("router", 1, **({"dependencies": ["prefill", "decode"]} if ORDERED else {})),
            ]
        },
    }


def children(index: int, namespace: str) -> list[dict]:
    """What the operator would create for group `index`, without an owner: the floor's objects."""
    # Named apart from the operator's groups: kwok was seen deleting pods of a namespace whose
    # pods shared their names with pods being deleted in another namespace.
    body = manifest(index, namespace, "example.com/llm:v1", prefix="floor")
    body["metadata"]["uid"] = "floor"
    group = RoleBasedGroupV2.read(body)
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


class Watched:
    """One kind's objects in a namespace, kept current by a watch: the benchmark waits on events,
    not on LISTs that would load the API server it is measuring (4000 pods a LIST at 1000 groups)."""

    def __init__(self, kube: Kube, kind: tuple[str, str], namespace: str):
        self.kube, self.kind, self.namespace = kube, KINDS[kind], namespace
        self.objects: dict[str, dict] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Watched:
        self._task = asyncio.create_task(self._follow(await self._relist()))
        return self

    async def _relist(self) -> str:
        """Replace what is known with a fresh LIST; returns the version to watch from."""
        items, version = await self.kube.list_versioned(self.kind, self.namespace)
        self.objects = {o["metadata"]["name"]: o for o in items}
        self.changed.set()
        return version

    async def __aexit__(self, *_) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self, version: str) -> None:
        while True:
            try:
                async for event in self.kube.watch(self.kind, self.namespace, version):
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        self.objects.pop(obj["metadata"]["name"], None)
                    else:
                        self.objects[obj["metadata"]["name"]] = obj
                    self.changed.set()
            except ApiError as error:
                if error.status != 410:
                    raise
                version = await self._relist()  # too old a version: list again

    async def until(self, what: str, probe, timeout: float) -> float:
        """Seconds until probe(objects) returns True; anything else it returns is progress to show."""
        started = time.monotonic()
        last_report = started
        while True:
            self.changed.clear()
            value = probe(self.objects)
            if value is True:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                give_up(what, timeout, value)
            if time.monotonic() - last_report > 10:
                say(f"  waiting for {what}: {value}")
                last_report = time.monotonic()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=1)
            except TimeoutError:
                pass


async def poll_until(what: str, probe, timeout: float) -> None:
    """For what only the operator's metrics tell (they cost the API server nothing)."""
    started = time.monotonic()
    while (value := await probe()) is not True:
        if time.monotonic() - started > timeout:
            give_up(what, timeout, value)
        await asyncio.sleep(0.5)


def give_up(what: str, timeout: float, last) -> None:
    raise SystemExit(f"bench: {what} did not happen within {timeout:.0f}s (last: {last}); see .cluster/logs")


def is_ready(obj: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions", []))


async def floor(kube: Kube, groups: int) -> tuple[float, dict[str, float]]:
    namespace = "bench-floor"
    await fresh_namespace(kube, namespace)
    async with Watched(kube, ("v1", "Pod"), namespace) as pods:
        started, cpu_before = time.monotonic(), cluster_cpu()
        await gather_limited(kube.apply(obj) for i in range(groups) for obj in children(i, namespace))

        def all_ready(objects):
            count = sum(1 for p in objects.values() if is_ready(p))
            return True if count == groups * 4 else f"{count}/{groups * 4} pods ready"

        await pods.until("floor pods ready", all_ready, 60 + groups)
        seconds, spent = time.monotonic() - started, cpu_spent(cpu_before, cluster_cpu())
        await kube.delete(KINDS[("v1", "Namespace")], None, namespace)
        await pods.until(
            "the floor's pods to be deleted (so they do not load the operator's run)",
            lambda objects: True if not objects else f"{len(objects)} floor pods left",
            120 + 2 * groups,
        )
    # The namespace controller goes on deleting the rest (workloads, revisions, thousands of
    # Events) after the pods: that work must not fall into the operator's measurement.
    await namespace_gone(kube, namespace, 120 + groups)
    return seconds, spent


async def namespace_gone(kube: Kube, namespace: str, timeout: float) -> None:
    started = time.monotonic()
    while await kube.get(KINDS[("v1", "Namespace")], None, namespace) is not None:
        if time.monotonic() - started > timeout:
            give_up(f"deletion of namespace {namespace}", timeout, "still there")
        await asyncio.sleep(1)


async def fresh_namespace(kube: Kube, namespace: str) -> None:
    ns = KINDS[("v1", "Namespace")]
    if await kube.get(ns, None, namespace) is not None:
        await kube.delete(ns, None, namespace)
        await namespace_gone(kube, namespace, 600)
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    while not await kube.get(KINDS[("v1", "ServiceAccount")], namespace, "default"):
        await asyncio.sleep(0.2)  # pods cannot be created before the namespace's default ServiceAccount


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu() -> dict[str, float]:
    """CPU seconds so far of each control-plane component (the process its supervisor runs)."""
    usage = {}
    for name, supervisor in json.loads((cluster.state_dir() / "state.json").read_text()).get("pids", {}).items():
        try:
            children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
            usage[name] = sum(cpu_seconds(int(child)) for child in children)
        except OSError:
            continue
    return usage


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    return {name: round(seconds, 1) for name, seconds in spent.items() if seconds >= 0.05}


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a process, from /proc."""
    peak = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return cpu_seconds(pid), peak / 1024


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def api_requests(samples: dict[str, float]) -> dict[tuple[str, str], float]:
    """The operator's API requests so far, by (verb, resource), from its own counter."""
    requests: dict[tuple[str, str], float] = {}
    for key, value in samples.items():
        if key.startswith("rbg_operator_api_requests_total{"):
            verb, resource = (key.split(f'{label}="')[1].split('"')[0] for label in ("verb", "resource"))
            requests[(verb, resource)] = requests.get((verb, resource), 0) + value
    return requests


def requests_by_verb(samples: dict[str, float]) -> dict[str, float]:
    verbs: dict[str, float] = {}
    for (verb, _), value in api_requests(samples).items():
        verbs[verb] = verbs.get(verb, 0) + value
    return verbs


WRITES = ("apply", "create", "patch", "update", "delete")


def writes_by_resource(samples: dict[str, float]) -> dict[str, float]:
    """The operator's writes so far, as "verb resource" (a resync's writes say where they went)."""
    return {f"{verb} {resource}": value for (verb, resource), value in api_requests(samples).items() if verb in WRITES}


async def writes_stopped(port: int, quiet_seconds: float = 5, timeout: float = 180) -> float:
    """Seconds until the operator wrote nothing for `quiet_seconds`. Groups are Ready before the
    operator is done: Events are posted in the background, and at a few hundred groups their
    backlog drains for seconds after the last group is Ready."""
    started = time.monotonic()
    last, last_change = sum(writes_by_resource(scrape(port)).values()), time.monotonic()
    while time.monotonic() - last_change < quiet_seconds:
        if time.monotonic() - started > timeout:
            give_up("the operator's writes stopping", timeout, f"{last:.0f} writes")
        await asyncio.sleep(0.5)
        total = sum(writes_by_resource(scrape(port)).values())
        if total != last:
            last, last_change = total, time.monotonic()
    return last_change - started


async def with_operator(kube: Kube, groups: int, variant: str = "StatefulSet") -> dict:
    namespace = "bench-operator"
    await fresh_namespace(kube, namespace)
    port, health = 18380, 18381
    # v1alpha2 writes need the operator's conversion webhook, as `make demo` runs it.
    webhook = ["--webhook-bind-address=127.0.0.1:18382", "--register-conversion"] if variant == RIS_VARIANT else []
    rbg_kind = RBG_V2 if variant == RIS_VARIANT else RBG
    log = open(cluster.state_dir() / "logs" / "bench-operator.log", "wb")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path())}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rbg_operator",
            "run",
            f"--workers={os.environ.get('BENCH_WORKERS', '64')}",
            "--resync-seconds=30",
            f"--metrics-bind-address=127.0.0.1:{port}",
            f"--health-probe-bind-address=127.0.0.1:{health}",
            *webhook,
            *os.environ.get("BENCH_OPERATOR_ARGS", "").split(),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack = contextlib.AsyncExitStack()
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
        rbgs = await stack.enter_async_context(Watched(kube, RBG_KEY, namespace))
        started, cpu_before, operator_before = time.monotonic(), cluster_cpu(), cpu_seconds(proc.pid)
        await gather_limited(
            kube.create(manifest(i, namespace, "example.com/llm:v1", variant=variant), rbg_kind) for i in range(groups)
        )

        def all_ready(objects):
            for name, item in objects.items():
                if name not in ready_at and is_ready(item):
                    ready_at[name] = time.monotonic() - started
            return True if len(ready_at) == groups else f"{len(ready_at)}/{groups} groups Ready"

        await rbgs.until("groups Ready", all_ready, 120 + 2 * groups)
        ready_seconds = time.monotonic() - started  # like the floor: from the first create on
        spent_until_ready = {
            **cpu_spent(cpu_before, cluster_cpu()),
            "operator": round(cpu_seconds(proc.pid) - operator_before, 1),
        }
        cache_mb = scrape(port).get("rbg_operator_cache_bytes", 0) / 1e6
        settle_seconds = await writes_stopped(port)
        created = requests_by_verb(scrape(port))
        per_group = {verb: (created.get(verb, 0) - before.get(verb, 0)) / groups for verb in created}

        say("measuring a full resync with nothing to change")
        quiet = writes_by_resource(scrape(port))

        def reconciles() -> float:
            return sum(
                v
                for k, v in scrape(port).items()
                if k.startswith('controller_runtime_reconcile_total{controller="rolebasedgroup"')
            )

        base = reconciles()

        async def resynced():
            done = reconciles() - base
            return True if done >= groups else f"{done:.0f}/{groups} groups resynced"

        await poll_until("one full resync", resynced, 90)
        noop_targets = {
            k: v - quiet.get(k, 0) for k, v in writes_by_resource(scrape(port)).items() if v != quiet.get(k, 0)
        }

        say("rolling every group to a new image")
        started = time.monotonic()
        await gather_limited(
            kube.patch(
                rbg_kind,
                namespace,
                f"bench-{i}",
                {"spec": {"roles": manifest(i, namespace, "example.com/llm:v2", variant=variant)["spec"]["roles"]}},
            )
            for i in range(groups)
        )

        def rolled(objects):
            done = sum(
                1
                for g in objects.values()
                if (g.get("status") or {}).get("observedGeneration") == g["metadata"]["generation"]
                and is_ready(g)
                and all(r["updatedReplicas"] == r["replicas"] for r in g["status"].get("roleStatuses", []))
            )
            return True if done == groups else f"{done}/{groups} groups rolled"

        try:
            await rbgs.until("rollout", rolled, 60 + groups)
            rollout_seconds: float | None = time.monotonic() - started
        except SystemExit as stopped:
            # A rollout that cannot finish is reported, not waited on.
            say(f"rollout did not finish: {stopped}")
            rollout_seconds = None

        say("deleting every group")
        pods = await stack.enter_async_context(Watched(kube, ("v1", "Pod"), namespace))
        started = time.monotonic()
        await gather_limited(kube.delete(RBG, namespace, f"bench-{i}") for i in range(groups))
        await pods.until(
            "deletion", lambda objects: True if not objects else f"{len(objects)} pods left", 120 + 2 * groups
        )
        delete_seconds = time.monotonic() - started
        cpu, peak = process_usage(proc.pid)
    finally:
        await stack.aclose()
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
        "operator_cpu_per_group_until_ready": round(spent_until_ready["operator"] / groups, 4),
        "apiserver_cpu_per_group_until_ready": round(spent_until_ready.get("kube-apiserver", 0.0) / groups, 4),
        "peak_rss_mb": round(peak, 1),
        "cache_mb_at_ready": round(cache_mb, 1),
        "requests_per_group": {k: round(v, 2) for k, v in sorted(per_group.items())},
        "writes_per_group": round(sum(per_group.get(v, 0) for v in WRITES), 2),
        "noop_writes": int(sum(noop_targets.values())),
        "noop_writes_by_resource": noop_targets,
        "writes_stopped_after_ready_seconds": round(settle_seconds, 1),
        "cpu_until_ready_by_process": spent_until_ready,
    }


async def make_noise(kube: Kube, pods: int, configmaps: int) -> None:
    """Objects no group owns, as a busy cluster has them: gated pods (never scheduled, so they
    load nothing but the API server and its watchers) and 8 KB ConfigMaps."""
    await fresh_namespace(kube, NOISE_NAMESPACE)
    env = [{"name": f"NOISE_VAR_{i}", "value": "v" * 40} for i in range(20)]

    def pod(i: int) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"noise-{i}", "namespace": NOISE_NAMESPACE, "labels": {"app": "noise"}},
            "spec": {
                "schedulingGates": [{"name": "example.com/never"}],
                "containers": [{"name": "main", "image": "example.com/noise:v1", "env": env}],
            },
        }

    def configmap(i: int) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "data": {"blob": "c" * 8192},
            "metadata": {"name": f"noise-{i}", "namespace": NOISE_NAMESPACE},
        }

    started = time.monotonic()
    await gather_limited(kube.create(configmap(i)) for i in range(configmaps))
    await gather_limited(kube.create(pod(i)) for i in range(pods))
    say(f"created {pods} unrelated pods and {configmaps} ConfigMaps in {time.monotonic() - started:.0f}s")


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


def cpu_text(usage: dict[str, float] | None) -> str:
    if not usage:
        return "-"
    return ", ".join(f"{name} {seconds}" for name, seconds in sorted(usage.items(), key=lambda item: -item[1]))


def noop_text(result: dict) -> str:
    targets = result.get("noop_writes_by_resource") or {}
    return f"{result['noop_writes']}" + (
        f" ({', '.join(f'{k} {v:.0f}' for k, v in targets.items())})" if targets else ""
    )


def _change(new: float, old: float) -> str:
    return f"{(new - old) / old * 100:+.0f} %" if old else "-"


def table(result: dict) -> str:
    rows = [
        ("groups", result["groups"]),
        ("router waits for prefill and decode (BENCH_ORDERED)", "yes" if result.get("ordered") else "no"),
        ("floor: create children directly, all pods Ready (s)", result["floor_seconds"]),
        ("operator: all groups Ready (s)", result["ready_seconds"]),
        ("ratio to floor", result["floor_ratio"]),
        ("per-group time to Ready p50 / p99 (s)", f"{result['p50_ready_seconds']} / {result['p99_ready_seconds']}"),
        (
            "image rollout of every group (s)",
            result["rollout_seconds"] if result["rollout_seconds"] is not None else "did not finish",
        ),
        ("deleting every group (s)", result["delete_seconds"]),
        ("operator CPU (s)", result["cpu_seconds"]),
        ("operator peak RSS (MB)", result["peak_rss_mb"]),
        ("of which the cache's objects, all groups Ready (MB of compact JSON)", result.get("cache_mb_at_ready", "-")),
        ("operator CPU per group, create to Ready (s)", result.get("operator_cpu_per_group_until_ready", "-")),
        ("API server CPU per group, create to Ready (s)", result.get("apiserver_cpu_per_group_until_ready", "-")),
        ("API writes per group (create until the operator's writes stop)", result["writes_per_group"]),
        (
            "operator's writes (Events) stop after the last group is Ready (s)",
            result.get("writes_stopped_after_ready_seconds", "-"),
        ),
        ("requests per group by verb", ", ".join(f"{k} {v}" for k, v in result["requests_per_group"].items())),
        ("writes during a no-op full resync", noop_text(result)),
        ("CPU s by process, floor", cpu_text(result.get("floor_cpu_by_process"))),
        ("CPU s by process, operator until all Ready", cpu_text(result.get("cpu_until_ready_by_process"))),
    ]
    ris = result.get("role_instance_sets")
    if ris:
        rows += [
            (
                "RoleInstanceSet roles (v1alpha2 default): all groups Ready (s), ratio to the same floor",
                f"{ris['ready_seconds']} ({ris['floor_ratio']})",
            ),
            (
                "RoleInstanceSet roles: image rollout of every group, in place (s)",
                ris["rollout_seconds"] if ris["rollout_seconds"] is not None else "did not finish",
            ),
            (
                "RoleInstanceSet roles: operator CPU per group, create to Ready (s)",
                ris["operator_cpu_per_group_until_ready"],
            ),
            (
                "RoleInstanceSet roles: API writes per group (create until the operator's writes stop)",
                ris["writes_per_group"],
            ),
            (
                "RoleInstanceSet roles: operator's writes stop after the last group is Ready (s)",
                ris.get("writes_stopped_after_ready_seconds", "-"),
            ),
            ("RoleInstanceSet roles: operator peak RSS (MB)", ris["peak_rss_mb"]),
            ("RoleInstanceSet roles: the cache's objects, all groups Ready (MB)", ris.get("cache_mb_at_ready", "-")),
            ("RoleInstanceSet roles: writes during a no-op full resync", noop_text(ris)),
        ]
    busy = result.get("busy")
    if busy:
        noise = f"{busy['noise_pods']} pods + {busy['noise_configmaps']} ConfigMaps not ours"
        rows += [
            (
                f"busy cluster ({noise}): operator peak RSS (MB)",
                f"{busy['peak_rss_mb']} ({busy['peak_rss_mb'] - result['peak_rss_mb']:+.1f} vs empty)",
            ),
            (
                "busy cluster: operator CPU per group, create to Ready (s)",
                f"{busy['operator_cpu_per_group_until_ready']} "
                f"({_change(busy['operator_cpu_per_group_until_ready'], result['operator_cpu_per_group_until_ready'])} vs empty)",  # noqa: E501 - one rule, one line
            ),
            ("busy cluster: all groups Ready (s)", busy["ready_seconds"]),
        ]
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


async def main() -> None:
    groups = int(os.environ.get("BENCH_GROUPS", "100"))
    cluster.up()
    crds.install(cluster.kubectl, REPO / "crds")  # keeps a conversion address an earlier run registered
    kube = await Kube.connect(kubeconfig_file=str(cluster.kubeconfig_path()), pool=64, field_manager="rbg-bench")
    try:
        say(f"floor: creating the children of {groups} groups directly")
        floor_seconds, floor_cpu = await floor(kube, groups)
        say(f"floor: {floor_seconds:.1f}s; now {groups} groups through the operator")
        measured = await with_operator(kube, groups)
        instance_sets = None
        if RUN_INSTANCE_SETS:
            say(f"{groups} groups on RoleInstanceSets (v1alpha2's default workload) through the operator")
            await namespace_gone(kube, "bench-operator", 300)
            instance_sets = await with_operator(kube, groups, RIS_VARIANT)
        busy = None
        if NOISE_PODS or NOISE_CONFIGMAPS:
            say(f"busy cluster: {NOISE_PODS} unrelated pods and {NOISE_CONFIGMAPS} unrelated ConfigMaps")
            await make_noise(kube, NOISE_PODS, NOISE_CONFIGMAPS)
            await namespace_gone(kube, "bench-operator", 300)
            say(f"busy cluster: {groups} groups through the operator again")
            busy = await with_operator(kube, groups)
            busy.update(noise_pods=NOISE_PODS, noise_configmaps=NOISE_CONFIGMAPS)
            await kube.delete(KINDS[("v1", "Namespace")], None, NOISE_NAMESPACE)
    finally:
        await kube.close()
    result = {
        "groups": groups,
        "ordered": ORDERED,
        "floor_seconds": round(floor_seconds, 2),
        "floor_cpu_by_process": floor_cpu,
        **measured,
    }
    if busy:
        result["busy"] = busy
    result["floor_ratio"] = round(result["ready_seconds"] / floor_seconds, 2)
    if instance_sets:
        result["role_instance_sets"] = {
            **instance_sets,
            "floor_ratio": round(instance_sets["ready_seconds"] / floor_seconds, 2),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"{'ordered' if ORDERED else 'groups'}-{groups}.json").write_text(text)
    plot()
    print(table(result))
    print(f"\nwrote {RESULTS / 'latest.json'} and {RESULTS / 'ready_vs_groups.png'}")


if __name__ == "__main__":
    asyncio.run(main())
