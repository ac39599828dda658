"""Wires the watches to the work queue and runs the reconcile workers.

Every watched kind has a reflector of our own (controller/reflector.py: list, replace, watch,
filtered by the group label on the server for children), which feeds the store; each event
then wakes the reconciles that the wake table (controller/wakes.py) says read that object. kopf is the
framework around it: start-up and clean-up, login, liveness and the admission webhook.
Workers reconcile queued keys one at a time per key.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import fnmatch
import logging
import os
import tempfile
import time
from pathlib import Path

import kopf

from . import kinds, kubeconfig, metrics, storage_migration, webhook
from .controller import conditions
from .controller.drain import Drainer
from .controller.instanceset import InstanceSetReconciler
from .controller.ports import PortAllocator
from .controller.reconciler import Reconciler
from .controller.reflector import Reflector
from .controller.restarts import RestartSettings, RestartTracker
from .controller.roleinstance import RoleInstanceReconciler
from .controller.scaling import AdapterReconciler, GroupSetReconciler
from .controller.store import FOR_GOOD, Store, resource_version
from .controller.store import writer as store_writer
from .controller.together import together
from .controller.wakes import (
    ADAPTER,
    CONTROLLERS_OF_KIND,
    GROUP,
    GROUP_SET,
    INSTANCE_SET,
    KIND_OF_CONTROLLER,
    ROLE_INSTANCE,
    WARMUP,
    WATCHED,
    Key,
    selector_matches,
    woken,
)
from .controller.warmup import WarmupReconciler
from .controller.workqueue import WorkQueue
from .desired.options import BuildOptions
from .events import EventRecorder
from .kube import KINDS, Kind, Kube, namespace_terminating
from .leader import LeaderElector
from .liveness import LIVENESS

log = logging.getLogger(__name__)
# Each wake and each pass, at DEBUG (off unless asked for; benchmarks/trace_one.py turns it on).
trace = logging.getLogger(__name__ + ".wakes")


@dataclasses.dataclass
class Settings:
    namespaces: list[str] = dataclasses.field(default_factory=list)  # empty: all namespaces
    workers: int = 8
    # Client-side rate limit of reads and writes (watches excepted), as controller-runtime operators
    # have. 200/s: at 100 it was the bound of the RoleInstanceSet path (benchmarks/README.md, issue 37).
    api_qps: float = 200.0
    api_burst: int = 400
    build: BuildOptions = dataclasses.field(default_factory=BuildOptions)
    restarts: RestartSettings = dataclasses.field(default_factory=RestartSettings)
    resync_seconds: float = 600.0  # a safety net only; events drive the loop
    progress_deadline: float = 600.0  # seconds without progress before a group is Stalled
    # Children change in bursts (three workloads' status as their pods come up): a group waits
    # this long after the first change, then reconciles once for all of them. Changes to the
    # group itself are not delayed.
    coalesce_seconds: float = 0.5
    webhook_address: str = ""  # host:port to serve the validating webhook on; empty: no webhook
    webhook_host: str = ""  # host name or IP the API server uses to reach it
    webhook_cert_dir: str = ""  # tls.crt and tls.key; empty: a self-signed certificate
    webhook_cert_check_seconds: float = 60.0  # how often the certificate files are checked for a renewal
    webhook_configuration: str = ""  # register a ValidatingWebhookConfiguration of this name ourselves
    # Point the CRDs' conversion at this operator's webhook: at "namespace/name" of the Service in
    # front of it (the chart), or at its own address (local runs); empty: leave the CRDs alone.
    conversion_service: str = ""
    register_conversion: bool = False
    ignore_namespaces: list[str] = dataclasses.field(default_factory=list)  # globs left to other operators
    watch_inactivity_timeout: float | None = None  # a silent watch is re-established after this long
    leader_election: bool = False
    leader_election_id: str = "rbg-operator"
    leader_election_namespace: str = ""  # default: the pod's namespace, else "default"


@dataclasses.dataclass
class Runtime:
    """Everything the handlers share, created at start-up and kept in kopf's memo."""

    kube: Kube
    store: Store
    queue: WorkQueue[Key]
    reconcilers: dict[str, Reconciler | AdapterReconciler | GroupSetReconciler | WarmupReconciler]
    tasks: list[asyncio.Task] = dataclasses.field(default_factory=list)
    restarts: RestartTracker | None = None
    recorder: EventRecorder | None = None
    drainer: Drainer | None = None
    ready_by_group: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)
    reflectors: list[Reflector] = dataclasses.field(default_factory=list)
    elector: LeaderElector | None = None
    reported: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)
    posting: set[asyncio.Task] = dataclasses.field(default_factory=set)
    coalesce_seconds: float = Settings.coalesce_seconds  # how long a child's change waits to wake its owner

    def reads_pods(self, namespace: str, group: str) -> bool:
        """Whether the group's reconcile acts on its pods' changes (the wake table asks)."""
        return self.restarts is not None and self.restarts.reads_pods(namespace, group)

    def count_groups(self, namespace: str, name: str) -> None:
        """Keep rbg_operator_groups{ready} current, one group at a time."""
        body = self.store.get(*kinds.ROLE_BASED_GROUP, namespace, name)
        if body is None:
            self.ready_by_group.pop((namespace, name), None)
        else:
            ready = conditions.find((body.get("status") or {}).get("conditions"), "Ready")
            self.ready_by_group[(namespace, name)] = ready["status"] if ready else "Unknown"
        for state in ("True", "False", "Unknown"):
            metrics.groups.labels(state).set(sum(1 for v in self.ready_by_group.values() if v == state))

    async def handle(self, key: Key) -> None:
        controller, namespace, name = key
        started = time.monotonic()
        token = store_writer.set(key)  # what this reconcile stores is marked as its own write
        # The object's last write answer may have carried a change this key had not read; it
        # reads it now. Were the mark left, a pass that writes nothing (an object being deleted)
        # would requeue itself for ever.
        self.store.mark_read(*KIND_OF_CONTROLLER[controller], namespace, name)
        try:
            requeue_after = await self.reconcilers[controller].reconcile(namespace, name)
        except Exception as error:
            if namespace_terminating(error):  # the object goes with its namespace; no retry
                log.debug("namespace of %s %s/%s is terminating", *key)
                return
            log.exception("reconcile of %s %s/%s failed; retrying with backoff", *key)
            metrics.reconcile_errors.labels(controller).inc()
            metrics.reconcile_total.labels(controller, "error").inc()
            self.queue.add_rate_limited(key)
        else:
            if trace.isEnabledFor(logging.DEBUG):
                trace.debug("pass %s/%s/%s took %.3fs, requeue %s", *key, time.monotonic() - started, requeue_after)
            metrics.reconcile_total.labels(controller, "success").inc()
            self.queue.forget(key)
            if self.store.changed_under_writer(*KIND_OF_CONTROLLER[controller], namespace, name):
                self.queue.add(key)  # its own write came back with a spec change it had not read: now
            elif requeue_after:
                self.queue.add_after(key, requeue_after)
        finally:
            store_writer.reset(token)
            if controller == GROUP:
                self.count_groups(namespace, name)
            metrics.reconcile_time.labels(controller).observe(time.monotonic() - started)
            metrics.workqueue_depth.labels("rbg").set(len(self.queue))

    def deliver(self, event_type: str, obj: dict) -> None:
        """A reflector's event: refresh the store, then wake what the wake table says reads this object,
        except the reconcile whose own write this event only echoes."""
        meta = obj["metadata"]
        if ignored(meta.get("namespace")):
            return
        kind = (obj["apiVersion"], obj["kind"])
        if event_type == "DELETED":
            # Gone as of the event's version: a label-selector watch says DELETED also when the
            # object only stops matching, and a newer version of it may come back.
            self.store.remove(
                *kind,
                meta.get("namespace", ""),
                meta["name"],
                meta.get("uid"),
                seen_at=resource_version(obj) or FOR_GOOD,
            )
            for controller in CONTROLLERS_OF_KIND.get(kind, ()):  # its failure count goes with it
                self.queue.forget((controller, meta.get("namespace", ""), meta["name"]))
            wakes, unless = True, set()
        else:
            seen = self.store.upsert(obj)
            # An old version or a repeat is nothing new to anyone; an echo is news to the others,
            # but not to those its write's answer woke already (written).
            wakes, unless = seen.news or seen.written_by is not None, {seen.written_by, *seen.told}
        if not wakes:
            return
        tracing = trace.isEnabledFor(logging.DEBUG)
        for key, delay in woken(self, obj, self.coalesce_seconds):
            if key not in unless:
                self.queue.add_after(key, delay)
                if tracing:
                    trace.debug("wake %s/%s/%s in %.2fs by %s %s", *key, delay, obj["kind"], meta["name"])

    def written(self, obj: dict, writer: Key | None) -> frozenset:
        """A reconcile's write answer (the store's on_write): wake now, each after its delay, what
        its watch echo would wake, so that nothing waits on the echo (a parent's create of a child
        starts the child's pass at once). Returns them, for the echo to leave alone."""
        if ignored(obj["metadata"].get("namespace")):
            return frozenset()
        told = set()
        tracing = trace.isEnabledFor(logging.DEBUG)
        for key, delay in woken(self, obj, self.coalesce_seconds):
            if key != writer:
                self.queue.add_after(key, delay)
                told.add(key)
                if tracing:
                    trace.debug(
                        "wake %s/%s/%s in %.2fs by the answer of %s %s",
                        *key,
                        delay,
                        obj["kind"],
                        obj["metadata"]["name"],
                    )
        return frozenset(told)

    def unreadable(self, kind: Kind, meta: dict, reason: str) -> None:
        """A reflector left an object out of the store: say so once per version of it, in the log,
        a metric and (when it can be named) a Warning Event on the object itself."""
        version = (kind.plural, meta.get("uid") or meta.get("name"), meta.get("resourceVersion"))
        if version in self.reported:
            return
        self.reported[version] = None
        if len(self.reported) > 1024:
            self.reported.popitem(last=False)
        metrics.unreadable_objects.labels(kind.plural).inc()
        where = "/".join(filter(None, [meta.get("namespace"), meta.get("name")])) or "(unnamed)"
        message = (
            f"{kind.kind} {where} is not reconciled: it {reason}. "
            "Other objects are not affected; fix or delete this one"
        )
        log.warning("%s", message)
        if self.recorder is not None and kind.namespaced and meta.get("name") and meta.get("namespace"):
            task = asyncio.get_running_loop().create_task(
                self.recorder.emit(
                    {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta},
                    "Warning",
                    "ObjectUnreadable",
                    message,
                )
            )
            self.posting.add(task)
            task.add_done_callback(self.posting.discard)

    def enqueue_all(self) -> None:
        for controller, kind in KIND_OF_CONTROLLER.items():
            for namespace, name in self.store.keys(*kind):
                self.queue.add((controller, namespace, name))

    async def resync_forever(self, period: float) -> None:
        """Everything once at the start (the reflectors' first lists wake what they bring, but
        the workers only start once every list is in), then every `period` as a safety net."""
        while True:
            self.enqueue_all()
            await asyncio.sleep(period)


SETTINGS = Settings()


def ignored(namespace: str | None) -> bool:
    return bool(namespace) and any(fnmatch.fnmatchcase(namespace, glob) for glob in SETTINGS.ignore_namespaces)


@kopf.on.login()
async def login(**_) -> kopf.ConnectionInfo:
    """kopf (the webhook's registration) uses the same credentials as our client."""
    credentials = kubeconfig.load()
    await credentials.headers()  # an exec plugin's or service account's current token
    return credentials.as_connection_info()


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.peering.standalone = True  # leader election is a Lease of our own, not kopf peering
    settings.posting.enabled = False  # our EventRecorder posts the Events users should see
    conversion = _serve_webhook(settings) if SETTINGS.webhook_address else None
    kube = await Kube.connect(qps=SETTINGS.api_qps, burst=SETTINGS.api_burst)
    adapters = KINDS[kinds.SCALING_ADAPTER]
    webhook.ADAPTER_READER = lambda namespace, name: kube.get(adapters, namespace, name)
    if conversion is not None and SETTINGS.register_conversion:
        registrar = webhook.ConversionRegistrar(kube, conversion)
        await registrar.register()
        settings.admission.server.on_certificate = registrar.certificate_changed  # a renewal re-registers
    store = Store()
    metrics.cache_bytes.set_function(lambda: store.json_bytes)
    queue: WorkQueue[Key] = WorkQueue()
    queue.on_add = lambda key: metrics.workqueue_adds.labels("rbg").inc()
    queue.on_get = lambda key, waited: metrics.workqueue_queue_duration.labels("rbg").observe(waited)
    recorder = EventRecorder(kube)
    restarts = RestartTracker(kube, store, recorder, SETTINGS.restarts)
    # One allocator for both writers of allocations (groups: RoleScoped; sets: PodScoped).
    ports = PortAllocator(store, SETTINGS.build.ports)
    # One drainer (one HTTP session to the routers) for both removers of serving pods.
    drainer = Drainer(kube, recorder)
    runtime = Runtime(
        kube,
        store,
        queue,
        {
            GROUP: Reconciler(kube, store, recorder, SETTINGS.build, restarts, SETTINGS.progress_deadline, ports),
            ADAPTER: AdapterReconciler(kube, store, recorder),
            GROUP_SET: GroupSetReconciler(kube, store, recorder),
            INSTANCE_SET: InstanceSetReconciler(kube, store, recorder, ports, drainer),
            ROLE_INSTANCE: RoleInstanceReconciler(kube, store, recorder, drainer),
            WARMUP: WarmupReconciler(kube, store, recorder),
        },
        coalesce_seconds=SETTINGS.coalesce_seconds,
    )
    runtime.restarts = restarts
    runtime.recorder = recorder
    runtime.drainer = drainer
    store.on_write = runtime.written
    runtime.reflectors = reflectors(
        kube,
        store,
        runtime.deliver,
        SETTINGS.namespaces,
        idle_timeout=SETTINGS.watch_inactivity_timeout,
        report=runtime.unreadable,
    )
    runtime.tasks = [asyncio.create_task(r.run_supervised(), name=repr(r)) for r in runtime.reflectors]
    LIVENESS.reflectors = runtime.reflectors
    runtime.tasks.append(asyncio.create_task(LIVENESS.tick_forever(), name="liveness-tick"))
    LIVENESS.started = True
    runtime.tasks.append(asyncio.create_task(_lead(runtime, kube), name="rbg-leader"))
    # Says so when objects an earlier chart stored in v1alpha1 await `rbg-operator migrate-storage`.
    runtime.tasks.append(asyncio.create_task(storage_migration.warn_if_pending(kube), name="rbg-storage-check"))
    memo.runtime = runtime


async def _lead(runtime: Runtime, kube: Kube) -> None:
    """Reconcile only as the leader (when leader election is on); watches run regardless,
    so a new leader starts with a warm store."""
    # Like an informer's initial sync: workers must not act on a half-filled store, or they
    # would re-create children that exist but have not been listed yet.
    await asyncio.gather(*(r.synced.wait() for r in runtime.reflectors))
    log.info("caches synced: %d objects", sum(len(runtime.store.keys(*kind)) for kind in dict(WATCHED)))
    if SETTINGS.leader_election:
        runtime.elector = await LeaderElector.connect(
            SETTINGS.leader_election_namespace or _pod_namespace(), SETTINGS.leader_election_id
        )
        await runtime.elector.acquire()
    tasks = [
        runtime.queue.run_workers(SETTINGS.workers, runtime.handle),
        runtime.resync_forever(SETTINGS.resync_seconds),
    ]
    if runtime.elector is not None:
        tasks.append(runtime.elector.keep())
    await together(*tasks)


def _pod_namespace() -> str:
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return os.environ.get("POD_NAMESPACE", "default")


def _serve_webhook(settings: kopf.OperatorSettings) -> dict:
    """Serve the webhooks; returns the clientConfig by which the API server reaches /convert."""
    host, _, port = SETTINGS.webhook_address.rpartition(":")
    url_host = SETTINGS.webhook_host or host
    if SETTINGS.webhook_cert_dir:
        cert_dir = Path(SETTINGS.webhook_cert_dir)
        certfile, pkeyfile = cert_dir / "tls.crt", cert_dir / "tls.key"
        ca = cert_dir / "ca.crt" if (cert_dir / "ca.crt").exists() else certfile
    else:
        certfile, pkeyfile = webhook.self_signed_certificate(Path(tempfile.mkdtemp(prefix="rbg-webhook-")), url_host)
        ca = certfile
    webhook.register()
    # kopf re-reads the files when they change (a renewal) and serves the new certificate.
    settings.admission.server = webhook.WebhookServer(
        addr=host or "0.0.0.0",
        port=int(port),
        host=url_host,
        certfile=str(certfile),
        pkeyfile=str(pkeyfile),
        cafile=str(ca) if ca != certfile else None,
        file_check_interval=SETTINGS.webhook_cert_check_seconds,
    )
    if SETTINGS.webhook_configuration:
        settings.admission.managed = SETTINGS.webhook_configuration
    return webhook.conversion_client_config(
        ca.read_bytes(), SETTINGS.conversion_service, f"https://{url_host}:{port}/convert"
    )


def _within(selector: str | None, store: Store, deliver):
    """`deliver`, for one of several reflectors of a kind: a DELETED it sends counts only for an
    object the store holds as one of its own. A relist would otherwise take every object the
    other reflectors brought for deleted (they are not in its list); an object that moved from
    one selector to the other is decided by the copy stored, not by the event's."""

    def scoped(event_type: str, obj: dict) -> None:
        if event_type == "DELETED":
            meta = obj["metadata"]
            stored = store.get(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]) or obj
            if not selector_matches(selector, stored["metadata"].get("labels") or {}):
                return
        deliver(event_type, obj)

    return scoped


def reflectors(
    kube: Kube, store: Store, deliver, namespaces: list[str], *, idle_timeout: float | None = None, report=None
) -> list[Reflector]:
    """One reflector per watched kind and namespace: per namespace when every --namespace is a
    plain name, else cluster-wide with kopf's glob patterns applied to each object."""
    plain = [ns for ns in namespaces if not any(ch in ns for ch in "*?!,")]
    scopes: list[str | None] = plain if plain and len(plain) == len(namespaces) else [None]
    keep = (
        (lambda ns: _watched(ns, namespaces) and not ignored(ns))
        if namespaces and scopes == [None]
        else (lambda ns: not ignored(ns))
    )
    reflected = []
    options = {"idle_timeout": idle_timeout, **({"report": report} if report else {})}
    shared = {kind for kind, _ in WATCHED if sum(1 for k, _ in WATCHED if k == kind) > 1}
    for kind, selector in WATCHED:
        feed = _within(selector, store, deliver) if kind in shared else deliver
        if not KINDS[kind].namespaced:  # one watch of the whole cluster, whatever the namespaces
            reflected.append(Reflector(kube, store, KINDS[kind], feed, label_selector=selector, **options))
            continue
        reflected += [
            Reflector(kube, store, KINDS[kind], feed, namespace=scope, label_selector=selector, keep=keep, **options)
            for scope in scopes
        ]
    return reflected


def _watched(namespace: str, patterns: list[str]) -> bool:
    # kopf's own matcher, so priming and kopf's watches agree on glob patterns like "team-*,!team-x".
    from kopf._cogs.structs.references import match_namespace

    return any(match_namespace(namespace, pattern) for pattern in patterns)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_) -> None:
    runtime: Runtime = memo.runtime
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    if runtime.elector is not None:  # the workers have stopped: a standby may take over at once
        await runtime.elector.release()
        await runtime.elector.close()
    if runtime.recorder is not None:
        try:
            await asyncio.wait_for(runtime.recorder.flush(), timeout=5)
        except TimeoutError:
            log.warning("stopping with Events not yet posted")
        await runtime.recorder.close()
    if runtime.drainer is not None:
        await runtime.drainer.router.close()
    await runtime.kube.close()
