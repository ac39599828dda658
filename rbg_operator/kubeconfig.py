"""Where the API server is and how to authenticate to it, in controller-runtime's order: an
explicit kubeconfig (argument or KUBECONFIG), else the pod's service account, else ~/.kube/config.

The result is a kopf.ConnectionInfo, so kopf's watches and our client use one identity.
Tokens that change over time (a projected service-account token, an exec plugin's) are
re-read by `Credentials.headers()` when they age or expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import kopf
import yaml

from . import timestamps

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_MAX_AGE = 60.0  # kubelet rotates projected tokens well before they expire; re-read often
EXEC_PLUGIN_TIMEOUT = 60.0  # a credential plugin that hangs must not hold every request for ever


class ConfigError(Exception):
    pass


@dataclasses.dataclass
class Credentials:
    info: kopf.ConnectionInfo
    token_file: Path | None = None  # re-read periodically (in-cluster)
    exec_config: dict | None = None  # a client-go credential plugin to run for tokens
    _token: str | None = None
    _token_expires: float = 0.0
    # One refresh at a time: the callers that find the token stale together wait for one plugin run.
    _refreshing: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def server(self) -> str:
        return self.info.server.rstrip("/")

    @property
    def namespace(self) -> str:
        return self.info.default_namespace or "default"

    def ssl_context(self) -> ssl.SSLContext | bool:
        return self.info.as_ssl_context() if self.server.startswith("https:") else False

    async def headers(self) -> dict[str, str]:
        if self.token_file is None and self.exec_config is None:
            return self.info.as_http_headers()
        if self._token is None or time.monotonic() >= self._token_expires:
            async with self._refreshing:
                if self._token is None or time.monotonic() >= self._token_expires:  # not refreshed meanwhile
                    if self.token_file is not None:
                        self._token, lifetime = self.token_file.read_text().strip(), TOKEN_MAX_AGE
                    else:
                        self._token, lifetime = await _run_exec_plugin(self.exec_config or {})
                    self._token_expires = time.monotonic() + lifetime
        return {"Authorization": f"Bearer {self._token}"}

    def as_connection_info(self) -> kopf.ConnectionInfo:
        """For kopf's login: the current token baked in (kopf logs in again on a 401)."""
        if self._token is None:
            return self.info
        return dataclasses.replace(self.info, token=self._token)


def load(context: str | None = None, kubeconfig: str | None = None) -> Credentials:
    explicit = context or kubeconfig or os.environ.get("KUBECONFIG")
    if not explicit and (SERVICE_ACCOUNT / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return _in_cluster()
    return _from_kubeconfig(context, kubeconfig)


def _in_cluster() -> Credentials:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    namespace_file = SERVICE_ACCOUNT / "namespace"
    info = kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(SERVICE_ACCOUNT / "ca.crt"),
        default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )
    return Credentials(info, token_file=SERVICE_ACCOUNT / "token")


def _from_kubeconfig(context: str | None, kubeconfig: str | None) -> Credentials:
    spec = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    paths = [Path(p).expanduser() for p in spec.split(os.pathsep) if p]
    # Merged as kubectl does: for each name, the first file that defines it wins.
    named: dict[str, dict[str, dict]] = {"contexts": {}, "clusters": {}, "users": {}}
    origin: dict[tuple[str, str], Path] = {}
    current = None
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            continue
        current = current or document.get("current-context")
        for section, entries in named.items():
            key = section[:-1]  # "contexts" -> "context"
            for item in document.get(section) or []:
                if item["name"] not in entries:
                    entries[item["name"]] = item.get(key) or {}
                    origin[(section, item["name"])] = path.parent
    chosen = context or current
    if not chosen:
        raise ConfigError(
            f"no kubeconfig context: none asked for and no current-context in {spec} "
            "(set KUBECONFIG, or run in a pod with a service account)"
        )
    if chosen not in named["contexts"]:
        raise ConfigError(f"kubeconfig context {chosen!r} not found in {spec}")
    ctx = named["contexts"][chosen]
    cluster = named["clusters"].get(ctx.get("cluster", ""))
    if cluster is None:
        raise ConfigError(f"kubeconfig context {chosen!r} names cluster {ctx.get('cluster')!r}, which is not defined")
    user = named["users"].get(ctx.get("user", ""), {})
    cluster_dir = origin[("clusters", ctx["cluster"])]
    user_dir = origin.get(("users", ctx.get("user", "")), cluster_dir)

    def file(directory: Path, value: str | None) -> str | None:
        return str(directory / Path(value).expanduser()) if value else None  # relative to its kubeconfig

    info = kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=file(cluster_dir, cluster.get("certificate-authority")),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=file(user_dir, user.get("client-certificate")),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=file(user_dir, user.get("client-key")),
        private_key_data=user.get("client-key-data"),
        username=user.get("username"),
        password=user.get("password"),
        token=user.get("token") or _read(file(user_dir, user.get("tokenFile"))),
        default_namespace=ctx.get("namespace"),
        proxy_url=cluster.get("proxy-url"),
    )
    return Credentials(info, exec_config=user.get("exec"))


def _read(path: str | None) -> str | None:
    return Path(path).read_text().strip() if path else None


async def _run_exec_plugin(config: dict) -> tuple[str, float]:
    """Run a client-go credential plugin (as for EKS, GKE, AKS) and return its token and lifetime."""
    env = {**os.environ, **{e["name"]: e["value"] for e in config.get("env") or []}}
    api_version = config.get("apiVersion", "client.authentication.k8s.io/v1")
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    process = await asyncio.create_subprocess_exec(
        config["command"],
        *(config.get("args") or []),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), EXEC_PLUGIN_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ConfigError(
            f"kubeconfig exec plugin {config['command']!r} gave no token within {EXEC_PLUGIN_TIMEOUT:g}s"
        ) from None
    if process.returncode != 0:
        raise ConfigError(
            f"kubeconfig exec plugin {config['command']!r} failed ({process.returncode}): "
            f"{err.decode(errors='replace').strip()}"
        )
    status: dict[str, Any] = json.loads(out).get("status") or {}
    if not status.get("token"):
        raise ConfigError(
            f"kubeconfig exec plugin {config['command']!r} returned no token "
            "(client certificates from plugins are not supported)"
        )
    lifetime = TOKEN_MAX_AGE * 5
    if status.get("expirationTimestamp"):
        expires = timestamps.parse(status["expirationTimestamp"])
        lifetime = max(0.0, (expires - datetime.datetime.now(datetime.UTC)).total_seconds() - 30)
    return status["token"], lifetime
