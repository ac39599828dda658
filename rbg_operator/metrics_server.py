"""/metrics over HTTPS for authenticated and authorized callers only (`--metrics-secure`), as
controller-runtime's `filters.WithAuthenticationAndAuthorization` does: the caller's bearer token is
checked with a TokenReview, then its user with a SubjectAccessReview for `get` on the non-resource
URL /metrics. So scrapers need RBAC, not network position, to read the operator's metrics.

The server runs in threads of its own; the reviews are synchronous requests from those threads with
the operator's own identity (kubeconfig.load), so the operator's event loop never waits on a scrape.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import hashlib
import http.server
import json
import logging
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder, gzip_accepted

from . import kubeconfig, metrics, webhook

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
ALLOWED_TTL = 60.0  # a scraper every 15-30 s costs two reviews a minute
DENIED_TTL = 10.0  # short, so a new RoleBinding or a fresh token takes effect soon
CACHE_SIZE = 1024  # tokens remembered; bounded so that garbage tokens cannot grow memory
API_TIMEOUT = 10.0
CLIENT_TIMEOUT = 30.0  # a client that stalls (even in the TLS handshake) holds only its own thread


class ServerConfigError(Exception):
    """The server cannot start; the message names the flag to fix."""


@dataclass(frozen=True)
class Decision:
    status: int  # 200, 401 or 403 (cached); 500 or 503 (never cached)
    message: str  # for the response body when refused, and the log


class Reviewer:
    """TokenReview + SubjectAccessReview against the API server, with a short cache per token."""

    def __init__(
        self,
        credentials: kubeconfig.Credentials,
        *,
        allowed_ttl: float = ALLOWED_TTL,
        denied_ttl: float = DENIED_TTL,
        cache_size: int = CACHE_SIZE,
    ):
        self.credentials = credentials
        self.allowed_ttl, self.denied_ttl, self.cache_size = allowed_ttl, denied_ttl, cache_size
        context = credentials.ssl_context()
        handlers: list[urllib.request.BaseHandler] = [
            # Like kopf (trust_env off): HTTP(S)_PROXY is not consulted, only the kubeconfig's proxy-url.
            urllib.request.ProxyHandler(
                {"http": credentials.info.proxy_url, "https": credentials.info.proxy_url}
                if credentials.info.proxy_url
                else {}
            )
        ]
        if context:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)
        self._cache: collections.OrderedDict[str, tuple[float, Decision]] = collections.OrderedDict()
        self._lock = threading.Lock()  # the cache is shared by request threads
        self._credentials_lock = threading.Lock()

    def decide(self, token: str) -> Decision:
        key = hashlib.sha256(token.encode()).hexdigest()  # the token itself is never kept
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > now:
                self._cache.move_to_end(key)
                return cached[1]
        decision = self._review(token)
        if decision.status in (200, 401, 403):
            ttl = self.allowed_ttl if decision.status == 200 else self.denied_ttl
            with self._lock:
                self._cache[key] = (time.monotonic() + ttl, decision)
                self._cache.move_to_end(key)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return decision

    def _review(self, token: str) -> Decision:
        try:
            review = self._post(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
            )
        except _ApiError as error:
            return error.decision("TokenReview")
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return Decision(401, f"Unauthorized: {status.get('error') or 'the token is not valid'}")
        user = status.get("user") or {}
        spec = {key: user[key] for key in ("uid", "groups", "extra") if user.get(key)}
        spec["user"] = user.get("username", "")
        spec["nonResourceAttributes"] = {"path": METRICS_PATH, "verb": "get"}
        try:
            access = self._post(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
            )
        except _ApiError as error:
            return error.decision("SubjectAccessReview")
        status = access.get("status") or {}
        if not status.get("allowed") or status.get("denied"):
            why = status.get("reason") or status.get("evaluationError") or "no RBAC rule allows it"
            return Decision(403, f'Forbidden: user "{spec["user"]}" cannot get path "{METRICS_PATH}": {why}')
        return Decision(200, f'allowed for user "{spec["user"]}"')

    def _headers(self) -> dict[str, str]:
        # Credentials.headers() is a coroutine (it may run an exec plugin); this thread has no
        # event loop, so it gets a short-lived one. Under a lock: one token refresh at a time.
        with self._credentials_lock:
            return asyncio.run(self.credentials.headers())

    def _post(self, path: str, body: dict) -> dict:
        try:
            headers = self._headers()
        except Exception as error:  # a token file gone, an exec plugin failing: not the caller's fault
            raise _ApiError(503, f"no credentials for the API server: {error}") from error
        request = urllib.request.Request(
            self.credentials.server + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=API_TIMEOUT) as response:
                metrics.rest_client_requests.labels(str(response.status), "POST").inc()
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            metrics.rest_client_requests.labels(str(error.code), "POST").inc()
            try:
                message = json.loads(error.read()).get("message") or error.reason
            except (ValueError, AttributeError, OSError):
                message = error.reason
            # 429 and 5xx pass; anything else (403: the operator lacks RBAC for reviews) needs a fix.
            transient = error.code == 429 or error.code >= 500
            raise _ApiError(503 if transient else 500, f"API server answered {error.code}: {message}") from error
        except (OSError, ValueError) as error:  # refused, reset, timed out, TLS, or not JSON
            raise _ApiError(503, f"API server unreachable: {error}") from error


class _ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message

    def decision(self, review: str) -> Decision:
        return Decision(self.status, f"cannot check the request: {review} failed: {self.message}")


class _Handler(http.server.BaseHTTPRequestHandler):
    reviewer: Reviewer  # set on the subclass that `serve` makes
    timeout = CLIENT_TIMEOUT

    def version_string(self) -> str:
        return "rbg-operator"  # no Python version for strangers

    def setup(self) -> None:
        # The handshake happens here, in this request's thread, not in the accepting thread: a client
        # that connects and stays silent must not stop the server from accepting others.
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            self._get()
        except Exception:  # a bug here costs one response, never the server
            log.exception("metrics request failed")
            self._reply(500, "internal error while serving /metrics\n")

    def _get(self) -> None:
        if urllib.parse.urlsplit(self.path).path != METRICS_PATH:
            self._reply(404, f"not found: only {METRICS_PATH} is served\n")
            return
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._reply(
                401,
                "Unauthorized: an 'Authorization: Bearer <token>' header is required\n",
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
            return
        decision = self.reviewer.decide(token)
        if decision.status != 200:
            if decision.status >= 500:
                log.warning("metrics request from %s refused: %s", self.client_address[0], decision.message)
            extra = {"WWW-Authenticate": 'Bearer realm="metrics"'} if decision.status == 401 else {}
            self._reply(decision.status, decision.message + "\n", extra)
            return
        encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
        body = encoder(REGISTRY)
        headers = {"Content-Type": content_type}
        if gzip_accepted(self.headers.get("Accept-Encoding") or ""):
            body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
        self._send(200, body, headers)

    def _reply(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        """Scrapes are not logged (refusals for server-side reasons are, above)."""


class _TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, context: ssl.SSLContext, family: int):
        self.address_family = family
        self.ssl_context = context
        super().__init__(address, handler)

    def get_request(self):
        sock, address = self.socket.accept()
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address) -> None:
        # A failed handshake (plain HTTP, an untrusting client) or a dropped connection is the
        # client's business; logged at debug level instead of a traceback on stderr.
        log.debug("metrics connection from %s failed", client_address[0], exc_info=True)


def tls_context(cert_dir: str, host: str) -> ssl.SSLContext:
    """The serving certificate: tls.crt/tls.key from `cert_dir`, else a self-signed one in a temp dir
    (the container's root filesystem is read-only; /tmp is writable)."""
    if cert_dir:
        directory, flag = Path(cert_dir), f"--metrics-cert-dir={cert_dir}"
    else:
        name = host if host not in ("", "0.0.0.0", "::") else "localhost"
        directory, flag = Path(tempfile.mkdtemp(prefix="rbg-metrics-")), "--metrics-cert-dir (empty: self-signed)"
        try:
            webhook.self_signed_certificate(directory, name)
        except OSError as error:
            raise ServerConfigError(f"{flag}: cannot write a self-signed certificate to {directory}: {error}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    except (OSError, ssl.SSLError) as error:
        raise ServerConfigError(f"{flag}: cannot load tls.crt and tls.key from {directory}: {error}")
    return context


def serve(
    host: str, port: int, cert_dir: str = "", credentials: kubeconfig.Credentials | None = None
) -> http.server.ThreadingHTTPServer:
    """Start the secure /metrics server in a daemon thread and return it (its shutdown() stops it)."""
    context = tls_context(cert_dir, host.strip("[]"))
    try:
        credentials = credentials or kubeconfig.load()
    except (kubeconfig.ConfigError, OSError) as error:
        raise ServerConfigError(f"--metrics-secure: no credentials to review tokens with: {error}")
    reviewer = Reviewer(credentials)
    handler = type("MetricsHandler", (_Handler,), {"reviewer": reviewer})
    bind_host = host.strip("[]")
    try:
        family = socket.getaddrinfo(bind_host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        server = _TLSServer((bind_host, port), handler, context, family)
    except OSError as error:
        raise ServerConfigError(f"--metrics-bind-address={host}:{port}: cannot listen: {error}")
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    log.info(
        "serving %s on https://%s:%d with authentication and authorization", METRICS_PATH, bind_host or "0.0.0.0", port
    )
    return server
