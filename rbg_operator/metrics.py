"""Prometheus metrics under controller-runtime's names, so existing dashboards work.
No label carries an object name: cardinality stays bounded however many groups exist."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

reconcile_total = Counter("controller_runtime_reconcile_total", "Reconciliations by result.", ["controller", "result"])
reconcile_errors = Counter("controller_runtime_reconcile_errors_total", "Reconciliations that failed.", ["controller"])
reconcile_time = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Time per reconciliation.",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
workqueue_depth = Gauge("workqueue_depth", "Keys waiting in the work queue.", ["name"])
workqueue_adds = Counter("workqueue_adds_total", "Keys added to the work queue.", ["name"])
workqueue_queue_duration = Histogram(
    "workqueue_queue_duration_seconds",
    "Time a key waits before processing.",
    ["name"],
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 5, 10, 60),
)
rest_client_requests = Counter(
    "rest_client_requests_total", "API requests by status code and method.", ["code", "method"]
)
leader_election_master_status = Gauge("leader_election_master_status", "1 while this process is the leader.", ["name"])

# This operator's own: requests by verb and resource (bounded: a fixed set of kinds).
api_requests = Counter(
    "rbg_operator_api_requests_total", "API requests the reconciler sent, by verb and resource.", ["verb", "resource"]
)
api_response_bytes = Counter(
    "rbg_operator_api_response_bytes_total",
    "Bytes the API server sent back, by verb (list and watch included) and resource.",
    ["verb", "resource"],
)
cache_bytes = Gauge("rbg_operator_cache_bytes", "Size of the objects the cache holds, as the compact JSON it keeps.")
groups = Gauge("rbg_operator_groups", "RoleBasedGroups by their Ready condition.", ["ready"])
group_recreations = Counter(
    "rbg_operator_group_recreations_total", "Whole-group recreations done for RecreateRBGOnPodRestart."
)
unreadable_objects = Counter(
    "rbg_operator_unreadable_objects_total",
    "Objects left out of the cache because they do not decode or cannot be cached (nested too deep), by resource.",
    ["resource"],
)
reflector_restarts = Counter(
    "rbg_operator_reflector_restarts_total",
    "Reflectors started again after dying of an unforeseen error, by resource.",
    ["resource"],
)
# Drain-aware removal of serving pods (controller/drain.py): each finished drain, by outcome
# (Drained, TimedOut, RouterUnreachable); the requests a cut-short drain left in flight.
drain_seconds = Histogram(
    "rbg_operator_drain_seconds",
    "Seconds from the start of a pod's drain to its end, by outcome.",
    ["outcome"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
drains_cut_short = Counter(
    "rbg_operator_drains_cut_short_total",
    "Drains that ended at the timeout instead of with the pod idle, by outcome (TimedOut, RouterUnreachable).",
    ["outcome"],
)
drain_in_flight_at_timeout = Counter(
    "rbg_operator_drain_requests_in_flight_at_timeout_total",
    "Requests the pod still counted in flight when its drain timed out (lost with the pod).",
)
