"""`rbg-operator run`: run the operator against the current KUBECONFIG (or in-cluster config)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from . import metrics_server, naming, operator, storage_migration, webhook
from .controller.restarts import RestartSettings
from .desired.options import BuildOptions, PortSettings
from .desired.ports import STRATEGIES
from .liveness import LIVENESS


def _host_port(value: str) -> str:
    """host:port (host optional) with a real port: a listener on port 0 would get a random port
    nobody probes, and kopf's liveness endpoint would even bind port 80 instead."""
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not host:port with a port from 1 to 65535 (e.g. ':8081')")
    return value


def _host_port_or_off(value: str) -> str:
    return value if value == "0" else _host_port(value)


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "0.0.0.0", int(port)


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to 65535")
    return int(value)


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # a DNS-1035 label
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def webhook_configuration_problem(name: str) -> str | None:
    """The API server names no ValidatingWebhookConfiguration's webhook with fewer than three
    dot-separated parts, and kopf names each `{handler}.{configuration}`: refused at start, not by a
    422 from the API server once the operator runs."""
    example = "e.g. rbg-operator.workloads.x-k8s.io"
    if not DNS_SUBDOMAIN.fullmatch(name):
        return (
            f"--webhook-configuration {name!r}: not a DNS subdomain (lower-case letters, digits, '-' and '.'; "
            f"{example})"
        )
    if "." not in name:
        return (
            f"--webhook-configuration {name!r}: needs at least one dot, as its webhooks are named "
            f"validate-KIND.{name} and Kubernetes wants three dot-separated parts ({example})"
        )
    longest = max(len(f"validate-{plural.removesuffix('s')}.{name}") for _, plural, _ in webhook.VALIDATED)
    if longest > 253:
        return f"--webhook-configuration {name!r}: too long, its webhooks' names would exceed 253 characters"
    return None


def conversion_service_problem(value: str) -> str | None:
    namespace, slash, name = value.partition("/")
    if (
        slash
        and DNS_LABEL.fullmatch(namespace)
        and len(namespace) <= 63
        and SERVICE_NAME.fullmatch(name)
        and len(name) <= 63
    ):
        return None
    return f"--conversion-service {value!r}: not NAMESPACE/NAME of a Service (e.g. rbgs-system/ack-rbgs-webhook)"


def webhook_flags_problem(args: argparse.Namespace) -> str | None:
    """The first webhook flag that would fail (or be ignored) only once the operator runs, as a
    one-line error; None when they work together."""
    if args.webhook_configuration and (problem := webhook_configuration_problem(args.webhook_configuration)):
        return problem
    if args.conversion_service and (problem := conversion_service_problem(args.conversion_service)):
        return problem
    if not args.webhook_bind_address:
        for flag, value in (
            ("--webhook-configuration", args.webhook_configuration),
            ("--register-conversion", args.register_conversion),
            ("--conversion-service", args.conversion_service),
            ("--webhook-host", args.webhook_host),
            ("--webhook-cert-dir", args.webhook_cert_dir),
        ):
            if value:
                return f"{flag} needs --webhook-bind-address: the webhooks are served there"
        return None
    if args.conversion_service and not args.register_conversion:
        return "--conversion-service needs --register-conversion: it says where the registration points"
    if args.webhook_cert_dir:
        missing = [f for f in ("tls.crt", "tls.key") if not (Path(args.webhook_cert_dir) / f).is_file()]
        if missing:
            return f"--webhook-cert-dir {args.webhook_cert_dir}: no {' or '.join(missing)} there"
    host = args.webhook_host or args.webhook_bind_address.rpartition(":")[0]
    if host in WILDCARD_HOSTS and args.register_conversion and not args.conversion_service:
        return (
            f"--register-conversion registers https://HOST:PORT/convert, and --webhook-bind-address "
            f"{args.webhook_bind_address} names no host the API server can call: give --webhook-host "
            "(or --conversion-service)"
        )
    return None


def migrate_storage(args: argparse.Namespace) -> None:
    """`rbg-operator migrate-storage`; exits 1 with what to do next when something is left."""

    async def run() -> None:
        from .kube import Kube

        kube = await Kube.connect(context=args.context, field_manager=naming.FIELD_MANAGER_STORAGE_MIGRATION)
        try:
            await storage_migration.migrate(kube, say=lambda line: print(line, flush=True))
        finally:
            await kube.close()

    try:
        asyncio.run(run())
    except storage_migration.MigrationError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - the API server's refusal, said in one line
        print(
            f"error: {error}\nnothing was lost: objects are written back only as read; fix the cause "
            "and run `rbg-operator migrate-storage` again",
            file=sys.stderr,
        )
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rbg-operator", description="RoleBasedGroup operator")
    commands = parser.add_subparsers(dest="command", required=True)
    # A short usage line: a refused flag is then one line of error, not the whole flag list.
    run = commands.add_parser("run", help="run the operator", usage="%(prog)s [flags] (see --help)")
    run.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--ignore-namespace",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave namespaces matching this glob to another operator (repeatable)",
    )
    run.add_argument(
        "--watch-inactivity-timeout",
        type=float,
        default=None,
        help="list again when a watch stays silent this many seconds "
        "(default: longer than the server's own watch timeout)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=operator.SETTINGS.workers,
        help="groups reconciled concurrently (default %(default)s)",
    )
    run.add_argument(
        "--coalesce-seconds",
        type=float,
        default=operator.SETTINGS.coalesce_seconds,
        help="how long a group waits after a change of one of its children, so that a burst "
        "of such changes costs one reconcile and one status write (default %(default)s)",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=operator.SETTINGS.resync_seconds,
        help="safety-net resync period (default %(default)s)",
    )
    run.add_argument(
        "--metrics-bind-address",
        default=":8080",
        type=_host_port_or_off,
        help="where /metrics is served, host:port; '0' disables (default %(default)s)",
    )
    run.add_argument(
        "--metrics-secure",
        action="store_true",
        help="serve /metrics over HTTPS, only to callers whose bearer token passes a TokenReview "
        "and whose user may 'get' the non-resource URL /metrics (SubjectAccessReview); "
        "the operator then needs 'create' on tokenreviews and subjectaccessreviews "
        "(default: plain HTTP, no authentication)",
    )
    run.add_argument(
        "--metrics-cert-dir",
        default="",
        help="with --metrics-secure: directory with tls.crt and tls.key to serve "
        "(default: a self-signed certificate made at start)",
    )
    run.add_argument(
        "--health-probe-bind-address",
        default=":8081",
        type=_host_port,
        help="where /healthz is served, host:port (default %(default)s)",
    )
    run.add_argument(
        "--healthz-stall-seconds",
        type=_positive,
        default=LIVENESS.stall_seconds,
        help="/healthz fails once the event loop has not run for this long (default %(default)s)",
    )
    run.add_argument(
        "--healthz-reflector-seconds",
        type=_positive,
        default=LIVENESS.behind_seconds,
        help="/healthz fails once a watch has had no complete list for this long (default %(default)s)",
    )
    run.add_argument(
        "--webhook-bind-address",
        default="",
        type=lambda v: v and _host_port(v),
        help="serve the validating admission webhook on host:port (default: no webhook)",
    )
    run.add_argument(
        "--kube-api-qps",
        type=_positive,
        default=operator.SETTINGS.api_qps,
        help="requests per second to the API server, on average (default %(default)s)",
    )
    run.add_argument(
        "--kube-api-burst",
        type=int,
        default=operator.SETTINGS.api_burst,
        help="requests allowed at once above the average rate (default %(default)s)",
    )
    run.add_argument(
        "--webhook-host",
        default="",
        help="host or IP the API server uses to reach the webhook (default: the bind host)",
    )
    run.add_argument(
        "--webhook-cert-dir", default="", help="directory with tls.crt and tls.key (default: a self-signed certificate)"
    )
    run.add_argument(
        "--webhook-cert-check-interval",
        type=_positive,
        default=operator.SETTINGS.webhook_cert_check_seconds,
        help="seconds between checks of --webhook-cert-dir for a renewed certificate, which is then "
        "served and (with --register-conversion) registered as the conversion's CA "
        "(default %(default)s)",
    )
    run.add_argument(
        "--webhook-configuration",
        default="",
        help="register a ValidatingWebhookConfiguration of this name (for local runs; the Helm chart ships its own)",
    )
    run.add_argument(
        "--register-conversion",
        action="store_true",
        help="with --webhook-bind-address: point the CRDs' version conversion at this operator's "
        "/convert, through --conversion-service or else at the webhook's own address "
        "(needs 'patch' on the rolebasedgroups and rolebasedgroupsets CRDs)",
    )
    run.add_argument(
        "--conversion-service",
        default="",
        help="namespace/name of the Service (port 443) in front of the webhook, for "
        "--register-conversion; its CA is ca.crt of --webhook-cert-dir",
    )
    run.add_argument(
        "--coscheduling-scheduler-name",
        default=BuildOptions.coscheduling_scheduler,
        help="scheduler of kubeScheduling gangs (default %(default)s)",
    )
    run.add_argument(
        "--volcano-scheduler-name",
        default=BuildOptions.volcano_scheduler,
        help="scheduler of volcanoScheduling gangs (default %(default)s)",
    )
    ports = PortSettings()
    run.add_argument(
        "--enable-port-allocator",
        action="store_true",
        help="act on the rolebasedgroup.workloads.x-k8s.io/port-allocator directive of components "
        "(see docs/port-allocation.md; default: off)",
    )
    run.add_argument(
        "--port-allocate-strategy",
        choices=STRATEGIES,
        default=ports.strategy,
        help="how a free port is picked: random, or static (the lowest free one) (default %(default)s)",
    )
    run.add_argument(
        "--start-port", type=_port, default=ports.start, help="first port the allocator gives (default %(default)s)"
    )
    run.add_argument(
        "--port-range",
        type=_port,
        default=ports.range,
        help="how many ports from --start-port the allocator gives (default %(default)s)",
    )
    defaults = RestartSettings()
    run.add_argument(
        "--restart-backoff-base",
        type=float,
        default=defaults.backoff_base,
        help="seconds between the first two group recreations; doubles after (default %(default)s)",
    )
    run.add_argument(
        "--restart-backoff-cap",
        type=float,
        default=defaults.backoff_cap,
        help="longest wait between group recreations (default %(default)s)",
    )
    run.add_argument(
        "--restart-quiet-period",
        type=float,
        default=defaults.quiet_period,
        help="seconds without a recreation that reset the backoff (default %(default)s)",
    )
    run.add_argument(
        "--restart-budget",
        type=int,
        default=defaults.budget,
        help="group recreations allowed per window before giving up (default %(default)s)",
    )
    run.add_argument(
        "--restart-budget-window",
        type=float,
        default=defaults.budget_window,
        help="the budget's window in seconds (default %(default)s)",
    )
    run.add_argument(
        "--progress-deadline-seconds",
        type=_positive,
        default=operator.SETTINGS.progress_deadline,
        help="seconds a group may go without progress (a role's pods becoming ready or updated) "
        "before it is Stalled with reason ProgressDeadlineExceeded; the annotation "
        "rolebasedgroup.workloads.x-k8s.io/progress-deadline-seconds overrides it per group "
        "(default %(default)s)",
    )
    run.add_argument(
        "--leader-elect", action="store_true", help="reconcile only while holding a Lease (for more than one replica)"
    )
    run.add_argument("--leader-election-id", default="rbg-operator", help="name of the Lease (default %(default)s)")
    run.add_argument(
        "--leader-election-namespace",
        default="",
        help="namespace of the Lease (default: the pod's namespace, else $POD_NAMESPACE or default)",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    migrate = commands.add_parser(
        "migrate-storage",
        help="rewrite every stored object once in the storage version (v1alpha2), then prune "
        "the CRDs' status.storedVersions to it (after upgrading from chart 0.1/0.2)",
    )
    migrate.add_argument("--context", help="kubeconfig context to use")
    args = parser.parse_args(argv)
    if args.command == "migrate-storage":
        migrate_storage(args)
        return
    if problem := webhook_flags_problem(args):
        run.error(problem)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # kopf reports every watch event it hands to us; our own log says what was decided.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    operator.SETTINGS.workers = args.workers
    operator.SETTINGS.api_qps, operator.SETTINGS.api_burst = args.kube_api_qps, max(1, args.kube_api_burst)
    operator.SETTINGS.namespaces = args.namespace
    operator.SETTINGS.ignore_namespaces = args.ignore_namespace
    operator.SETTINGS.watch_inactivity_timeout = args.watch_inactivity_timeout
    operator.SETTINGS.resync_seconds = args.resync_seconds
    operator.SETTINGS.coalesce_seconds = args.coalesce_seconds
    if args.start_port + args.port_range - 1 > 65535:
        run.error(
            f"--start-port {args.start_port} with --port-range {args.port_range} goes past port 65535 "
            f"(the last port would be {args.start_port + args.port_range - 1})"
        )
    operator.SETTINGS.build = BuildOptions(
        coscheduling_scheduler=args.coscheduling_scheduler_name,
        volcano_scheduler=args.volcano_scheduler_name,
        ports=PortSettings(args.enable_port_allocator, args.port_allocate_strategy, args.start_port, args.port_range),
    )
    operator.SETTINGS.restarts = RestartSettings(
        backoff_base=args.restart_backoff_base,
        backoff_cap=args.restart_backoff_cap,
        quiet_period=args.restart_quiet_period,
        budget=args.restart_budget,
        budget_window=args.restart_budget_window,
    )
    operator.SETTINGS.progress_deadline = args.progress_deadline_seconds
    operator.SETTINGS.leader_election = args.leader_elect
    operator.SETTINGS.leader_election_id = args.leader_election_id
    operator.SETTINGS.leader_election_namespace = args.leader_election_namespace
    operator.SETTINGS.webhook_address = args.webhook_bind_address
    operator.SETTINGS.webhook_host = args.webhook_host
    operator.SETTINGS.webhook_cert_dir = args.webhook_cert_dir
    operator.SETTINGS.webhook_cert_check_seconds = args.webhook_cert_check_interval
    operator.SETTINGS.webhook_configuration = args.webhook_configuration
    operator.SETTINGS.register_conversion = args.register_conversion
    operator.SETTINGS.conversion_service = args.conversion_service
    if args.metrics_cert_dir and not args.metrics_secure:
        run.error("--metrics-cert-dir needs --metrics-secure (without it /metrics is plain HTTP)")
    if args.metrics_bind_address != "0":
        # Both servers answer from threads of their own, off the event loop.
        host, port = _address(args.metrics_bind_address)
        if args.metrics_secure:
            try:
                metrics_server.serve(host, port, args.metrics_cert_dir)
            except metrics_server.ServerConfigError as error:
                run.error(str(error))
        else:
            start_http_server(port, addr=host)
    # Served from a thread, not by kopf on the event loop: a stuck loop gets a 503 that says so.
    LIVENESS.stall_seconds, LIVENESS.behind_seconds = args.healthz_stall_seconds, args.healthz_reflector_seconds
    host, port = _address(args.health_probe_bind_address)
    try:
        LIVENESS.serve(host, port)
    except OSError as error:
        run.error(f"--health-probe-bind-address {args.health_probe_bind_address}: {error}")
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
    )
