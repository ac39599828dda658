"""A small async Kubernetes client for what the operator does: server-side apply, get,
list and delete on a known set of kinds, with retries and per-verb request counts.

It speaks plain dicts over one pooled aiohttp session (kopf's own HTTP stack), because the
operator builds and compares objects as dicts. A generated client would cost more memory
than the operator's whole cache of a few hundred groups.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import urllib.parse
import urllib.request
from typing import Any

import aiohttp
import orjson
import tenacity
from aiolimiter import AsyncLimiter

from . import bounded_json, kinds, kubeconfig, metrics, naming

log = logging.getLogger(__name__)
# Every request with its answer's status, at DEBUG (off unless asked for): benchmarks/trace_one.py
# turns it on to print one group's timeline of writes.
trace = logging.getLogger(__name__ + ".requests")


@dataclasses.dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.api_version, self.kind)

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)


KINDS = {
    k.key: k
    for k in [
        Kind(*kinds.STATEFUL_SET, "statefulsets"),
        Kind(*kinds.DEPLOYMENT, "deployments"),
        Kind(*kinds.CONTROLLER_REVISION, "controllerrevisions"),
        Kind(*kinds.SERVICE, "services"),
        Kind(*kinds.CONFIG_MAP, "configmaps"),
        Kind(*kinds.POD, "pods"),
        Kind(*kinds.EVENT, "events"),
        Kind(*kinds.NAMESPACE, "namespaces", namespaced=False),
        Kind(*kinds.NODE, "nodes", namespaced=False),
        Kind(*kinds.COORDINATED_POLICY, "coordinatedpolicies"),
        Kind(*kinds.ROLE_INSTANCE_SET, "roleinstancesets"),
        Kind(*kinds.ROLE_INSTANCE, "roleinstances"),
        Kind(*kinds.WARMUP, "rolebasedgroupwarmups"),
        Kind(*kinds.ENGINE_RUNTIME_PROFILE, "clusterengineruntimeprofiles", namespaced=False),
        Kind(*kinds.CUSTOM_RESOURCE_DEFINITION, "customresourcedefinitions", namespaced=False),
        Kind(*kinds.SERVICE_ACCOUNT, "serviceaccounts"),
        Kind(*kinds.LEADER_WORKER_SET, "leaderworkersets"),
        Kind(*kinds.COSCHEDULING_POD_GROUP, "podgroups"),
        Kind(*kinds.VOLCANO_POD_GROUP, "podgroups"),
        Kind(*kinds.NATIVE_WORKLOAD, "workloads"),
        Kind(*kinds.NATIVE_POD_GROUP, "podgroups"),
        Kind(*kinds.NATIVE_COMPOSITE_POD_GROUP, "compositepodgroups"),
        Kind(*kinds.LEASE, "leases"),
        Kind(*kinds.ROLE_BASED_GROUP, "rolebasedgroups"),
        Kind(*kinds.SCALING_ADAPTER, "rolebasedgroupscalingadapters"),
        Kind(*kinds.GROUP_SET, "rolebasedgroupsets"),
    ]
}


def kind_of(obj: dict) -> Kind:
    return KINDS[(obj["apiVersion"], obj["kind"])]


LIST_PAGE_SIZE = 500  # items per LIST page, as client-go's reflector pages its initial list
MAX_WATCH_EVENT = 16 * 2**20  # one event per line; a large object's line exceeds aiohttp's default limit


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """An item of a list or watch answer that does not decode (nested deeper than the decoder
    goes): what of its metadata could be read names it, so that it alone is skipped."""

    metadata: dict
    error: str


# Levels of a LIST page or watch event decoded when orjson refuses it whole: an item nested deeper
# (a page puts items 3 levels down, an event its object 2) is one the store could not keep either,
# since orjson encodes at most 255 levels.
DECODED_LEVELS = 250


def decode_list_page(raw: bytes) -> dict:
    """A LIST answer; an item that does not decode is an Unreadable in its place, and the others
    are decoded as usual."""
    try:
        return orjson.loads(raw)
    except ValueError as error:
        page = _bounded(raw, error)
        page["items"] = [_readable(item) for item in page.get("items") or []]
        return page


def decode_watch_line(line: bytes) -> dict:
    """A watch event; one whose object does not decode carries an Unreadable."""
    try:
        return orjson.loads(line)
    except ValueError as error:
        event = _bounded(line, error)
        if "type" not in event or not isinstance(event.get("object"), dict):
            raise error from None
        event["object"] = _readable(event["object"])
        return event


def _bounded(raw: bytes, error: ValueError) -> dict:
    """The answer with its too-deep parts left undecoded; the original error when the answer is
    broken rather than deep."""
    try:
        decoded = bounded_json.loads(raw, max_depth=DECODED_LEVELS)
    except ValueError:
        raise error from None
    if not isinstance(decoded, dict):
        raise error
    return decoded


def _readable(item: Any) -> Any:
    """The item, or an Unreadable naming it by what of its metadata decoded (the API server's
    managedFields follow the shape of the deep field they record, so the metadata may be deep too)."""
    deep = next(bounded_json.raw_subtrees(item), None)
    if deep is None:
        return item
    path, _ = deep
    meta = item.get("metadata") if isinstance(item, dict) else None
    named = (
        {key: value for key, value in meta.items() if next(bounded_json.raw_subtrees(value), None) is None}
        if isinstance(meta, dict)
        else {}
    )
    where = ".".join(str(step) for step in path)
    return Unreadable(named, f"{where}: nested deeper than the {DECODED_LEVELS} levels decoded")


class ApiError(Exception):
    def __init__(self, status: int, body: dict | str, method: str, path: str, retry_after: float | None = None):
        self.status, self.body, self.method, self.retry_after = status, body, method, retry_after
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: {status} {message}")


def namespace_terminating(error: BaseException) -> bool:
    """The write failed because its namespace is being deleted: nothing left to do there."""
    if not isinstance(error, ApiError) or error.status != 403 or not isinstance(error.body, dict):
        return False
    causes = (error.body.get("details") or {}).get("causes") or []
    return any(c.get("reason") == "NamespaceTerminating" for c in causes)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ApiError):
        # A 409 on a create or a compare-and-swap update means "someone else won": retrying
        # the same request cannot succeed, so only patches (server-side apply) retry it.
        return error.status == 429 or error.status >= 500 or (error.status == 409 and error.method == "PATCH")
    return isinstance(error, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError))


MAX_RETRY_AFTER = 30.0  # what a Retry-After may make one retry wait, at most
CALL_DEADLINE = 120.0  # no new attempt of a request starts after this many seconds


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the API server sends whole seconds), capped: a
    proxy's or a broken server's "3600" or "inf" must not hold a worker for that long."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds):
        return None if seconds is None or math.isnan(seconds) else MAX_RETRY_AFTER
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


_backoff = tenacity.wait_random_exponential(multiplier=0.2, max=10)


def _wait(state: tenacity.RetryCallState) -> float:
    """Exponential backoff with jitter, but never sooner than the server's Retry-After."""
    error = state.outcome.exception() if state.outcome else None
    asked = getattr(error, "retry_after", None) or 0.0
    return max(asked, _backoff(state))


def _proxy_from_environment(server: str) -> str | None:
    """HTTPS_PROXY for the API server unless NO_PROXY exempts it, as client-go does."""
    host = urllib.parse.urlsplit(server).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get("https")


class Kube:
    """Counts every request by (verb, resource) so tests can prove a no-op reconcile writes nothing."""

    WRITE_VERBS = frozenset({"create", "apply", "patch", "update", "delete"})

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: kubeconfig.Credentials,
        field_manager: str = naming.FIELD_MANAGER,
        watch_session: aiohttp.ClientSession | None = None,
        attempts: int = 8,
        limiter: AsyncLimiter | None = None,
    ):
        self.session = session
        self.limiter = limiter  # client-side rate limit of requests (not of watch streams)
        self.attempts = attempts  # tries per request for retryable failures (409 on apply, 429, 5xx, network)
        self.watch_session = watch_session or session
        self.credentials = credentials
        self.server = credentials.server
        self.proxy = credentials.info.proxy_url or _proxy_from_environment(self.server)
        self.default_namespace = credentials.namespace
        self.field_manager = field_manager
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()

    @classmethod
    async def connect(
        cls,
        context: str | None = None,
        *,
        kubeconfig_file: str | None = None,
        pool: int = 32,
        field_manager: str = naming.FIELD_MANAGER,
        attempts: int = 8,
        qps: float | None = None,
        burst: int = 1,
    ) -> Kube:
        """Credentials as `kubeconfig.load` finds them; `pool` connections at most (each TLS
        connection holds ~256 KB of buffers); `qps` requests a second on average with bursts of
        `burst` (a leaky bucket), or no limit."""
        credentials = kubeconfig.load(context, kubeconfig_file)
        # trust_env off: aiohttp would look for ~/.netrc in a worker thread on every request
        # (a thread hop and a file lookup for nothing); the proxy is read once above instead.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=pool, ssl=credentials.ssl_context()),
            timeout=aiohttp.ClientTimeout(total=60),
            trust_env=False,
        )
        # Watch streams hold their connection for minutes: in the request pool, a few dozen of
        # them (a kind per namespace) would leave no connection for reads and writes.
        watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=credentials.ssl_context()), trust_env=False
        )
        limiter = AsyncLimiter(burst, burst / qps) if qps else None
        return cls(session, credentials, field_manager, watch_session, attempts, limiter)

    async def close(self) -> None:
        await self.session.close()
        if self.watch_session is not self.session:
            await self.watch_session.close()

    def writes(self) -> int:
        return sum(n for (verb, _), n in self.requests.items() if verb in self.WRITE_VERBS)

    async def _call(self, *args, **kwargs) -> dict | None:
        # Bounded in attempts and in time: during an API server brownout, a reconcile gives its
        # worker back after a few minutes at most (each attempt is bounded by the session's 60 s).
        stop = tenacity.stop_after_attempt(self.attempts) | tenacity.stop_after_delay(CALL_DEADLINE)
        async for attempt in tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_retryable), wait=_wait, stop=stop, reraise=True
        ):
            with attempt:
                return await self._request(*args, **kwargs)
        return None  # not reached: the last attempt returns or raises

    async def _request(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        *,
        query: dict | None = None,
        body: Any = None,
        content_type: str = "application/json",
        decode=orjson.loads,
    ) -> dict | None:
        if self.limiter is not None:
            await self.limiter.acquire()
        self.requests[(verb, resource)] += 1
        metrics.api_requests.labels(verb, resource).inc()
        headers = {"Content-Type": content_type, "Accept": "application/json", **await self.credentials.headers()}
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(
            method, self.server + path, params=query, data=data, headers=headers, proxy=self.proxy
        ) as response:
            metrics.rest_client_requests.labels(str(response.status), method).inc()
            raw = await response.read()
            retry_after = _retry_after(response.headers.get("Retry-After"))
        if trace.isEnabledFor(logging.DEBUG):
            manager = (query or {}).get("fieldManager", "")
            trace.debug("%s %s %s %s %d", verb, resource, path, manager, response.status)
        metrics.api_response_bytes.labels(verb, resource).inc(len(raw))
        if response.status == 404 and verb in ("get", "delete"):
            return None
        if not 200 <= response.status < 300:
            try:
                detail: dict | str = orjson.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            raise ApiError(response.status, detail, method, path, retry_after)
        return decode(raw) if raw else None

    async def get(self, kind: Kind, namespace: str | None, name: str) -> dict | None:
        return await self._call("get", kind.plural, "GET", kind.path(namespace, name))

    async def list(self, kind: Kind, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        items, _ = await self.list_versioned(kind, namespace, label_selector)
        return items

    async def list_versioned(
        self, kind: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict], str]:
        """Items and the list's resourceVersion, to start a watch from."""
        items: list[dict] = []
        version = ""
        async for page, _version in self.list_pages(kind, namespace, label_selector):
            items.extend(page)
        return items, version

    async def list_pages(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        *,
        page_size: int = LIST_PAGE_SIZE,
        item_by_item: bool = False,
    ):
        """A list in pages of `page_size` items, each with the list's resourceVersion: a large
        list never sits in memory whole. The pages are one consistent snapshot; an expired
        continue token raises ApiError 410 (list again). With `item_by_item`, an item that does
        not decode is an Unreadable in the page instead of failing the whole list."""
        query = {"limit": str(page_size)}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            result = (
                await self._call(
                    "list",
                    kind.plural,
                    "GET",
                    kind.path(namespace),
                    query=query,
                    decode=decode_list_page if item_by_item else orjson.loads,
                )
                or {}
            )
            meta = result.get("metadata") or {}
            yield result.get("items") or [], meta.get("resourceVersion", "")
            if not meta.get("continue"):
                return
            query = {**query, "continue": meta["continue"]}

    async def apply(
        self, obj: dict, *, subresource: str | None = None, force: bool = True, manager: str | None = None
    ) -> dict:
        """Server-side apply as `manager` (default: this client's field manager)."""
        kind = kind_of(obj)
        meta = obj["metadata"]
        query = {"fieldManager": manager or self.field_manager, "force": "true" if force else "false"}
        resource = "/".join(filter(None, [kind.plural, subresource]))
        path = kind.path(meta.get("namespace"), meta["name"], subresource)
        result = await self._call(
            "apply", resource, "PATCH", path, query=query, body=obj, content_type="application/apply-patch+yaml"
        )
        assert result is not None
        return result

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch_type: str = "merge",
        manager: str | None = None,
        subresource: str | None = None,
    ) -> dict:
        """A JSON merge patch (a dict) or JSON patch (a list of operations), as an Update."""
        content_type = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}[patch_type]
        resource = "/".join(filter(None, [kind.plural, subresource]))
        result = await self._call(
            "patch",
            resource,
            "PATCH",
            kind.path(namespace, name, subresource),
            query={"fieldManager": manager or self.field_manager},
            body=body,
            content_type=content_type,
        )
        assert result is not None
        return result

    async def replace(self, obj: dict, kind: Kind | None = None) -> dict:
        """A PUT: with metadata.resourceVersion set, it fails with 409 if the object changed meanwhile."""
        kind = kind or kind_of(obj)
        meta = obj["metadata"]
        result = await self._call(
            "update",
            kind.plural,
            "PUT",
            kind.path(meta.get("namespace"), meta["name"]),
            query={"fieldManager": self.field_manager},
            body=obj,
        )
        assert result is not None
        return result

    async def create(self, obj: dict, kind: Kind | None = None, *, manager: str | None = None) -> dict:
        kind = kind or kind_of(obj)
        path = kind.path(obj["metadata"].get("namespace"))
        query = {"fieldManager": manager} if manager else None
        result = await self._call("create", kind.plural, "POST", path, query=query, body=obj)
        assert result is not None
        return result

    async def delete(
        self, kind: Kind, namespace: str | None, name: str, *, uid: str | None = None, propagation: str = "Background"
    ) -> bool:
        """Returns False when the object was gone already (404): the caller's cache is stale."""
        body: dict[str, Any] = {"propagationPolicy": propagation}
        if uid:  # never delete a newer object that reuses the name
            body["preconditions"] = {"uid": uid}
        return await self._call("delete", kind.plural, "DELETE", kind.path(namespace, name), body=body) is not None

    async def watch(
        self,
        kind: Kind,
        namespace: str | None,
        resource_version: str,
        *,
        seconds: int = 50,
        label_selector: str | None = None,
        idle_timeout: float | None = None,
    ):
        """Watch events from `resource_version` for up to `seconds` (the caller watches again from
        the last version it saw). A 410 Gone (too old a version) raises ApiError: list again.
        A stream silent for `idle_timeout` seconds (default: longer than the server's own
        timeout) raises asyncio.TimeoutError: a connection that died without closing."""
        self.requests[("watch", kind.plural)] += 1
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        if label_selector:
            query["labelSelector"] = label_selector
        headers = {"Accept": "application/json", **await self.credentials.headers()}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=idle_timeout or seconds + 15)
        async with self.watch_session.get(
            self.server + kind.path(namespace), params=query, headers=headers, proxy=self.proxy, timeout=timeout
        ) as response:
            if response.status != 200:
                raise ApiError(
                    response.status, (await response.read()).decode(errors="replace"), "GET", kind.path(namespace)
                )
            received = metrics.api_response_bytes.labels("watch", kind.plural)
            while line := await response.content.readline(max_line_length=MAX_WATCH_EVENT):
                received.inc(len(line))
                if line.strip():
                    event = decode_watch_line(line)
                    if event.get("type") == "ERROR":
                        status = event["object"] if isinstance(event.get("object"), dict) else {}
                        raise ApiError(status.get("code", 500), status, "GET", kind.path(namespace))
                    yield event
