"""A fault-injecting proxy in front of the real API server, for fault tests.

It speaks plain HTTP on loopback to the operator and HTTPS (as the cluster admin) to the API
server. It can answer chosen write requests with 409 or 429 before they reach the server,
go silent on watch streams (keep them open, forward nothing), freeze every watch (the open
ones silent, new ones held) and thaw them with 410 Gone (the operator must list again), hold
status writes until the test lets them go, and it records every write it forwards.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding"}


class FaultProxy:
    def __init__(self, kubeconfig: str, pki: Path):
        config = yaml.safe_load(Path(kubeconfig).read_text())
        self.upstream = config["clusters"][0]["cluster"]["server"]
        self.ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ssl.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.faults: list[int] = []  # status codes to answer the next PATCH requests with
        self.injected: list[int] = []
        self.muted_up_to = 0  # watch streams numbered up to this stay open but say nothing
        self.watches_started = 0
        self.frozen = False  # new watch requests wait for thaw_watches()
        self.stalled = False  # every new request waits, for good: a connection that hangs
        self.hold_status_writes = False  # PATCHes of .../status wait for release_status_writes()
        self.held_status_writes = 0
        self.watch_delay = 0.0  # seconds each chunk of a watch stream is held back...
        self.watch_delay_on = ""  # ...on the streams whose path contains this
        self.writes: list[tuple[float, str, str, dict | None, int]] = []  # (monotonic, method, path, body, status)
        self._streams: dict[int, aiohttp.ClientResponse] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def kubeconfig(self, path: Path) -> str:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
                    "current-context": "proxy",
                }
            )
        )
        return str(path)

    def silence_current_watches(self) -> int:
        """Stall every watch stream open now (as a broken connection would); new ones work."""
        self.muted_up_to = self.watches_started
        return self.muted_up_to

    def stall(self) -> None:
        """The connection hangs: nothing new gets through, open watch streams go silent. Held
        requests are never forwarded (stop() drops them)."""
        self.stalled = True
        self.silence_current_watches()

    def freeze_watches(self) -> None:
        """Watches stop: open streams go silent, new watch requests wait."""
        self.frozen = True
        self.silence_current_watches()
        self.frozen_at_version = self._call(self._current_version())

    def thaw_watches(self, *, expire: bool = True) -> None:
        """Watches come back: the silent streams are cut and held requests go on. With `expire`,
        the API server's watch window no longer reaches back to the freeze (as after a long
        gap): a watch from a version before it is answered 410 Gone, so only a new list can
        show what changed meanwhile."""
        self._call(self._thaw(expire))

    def release_status_writes(self) -> None:
        self.hold_status_writes = False
        self._call(self._release())

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _current_version(self) -> int:
        async with self._session.get(self.upstream + "/api/v1/namespaces?limit=1", ssl=self.ssl) as response:
            return int((await response.json())["metadata"]["resourceVersion"])

    async def _thaw(self, expire: bool) -> None:
        if expire:
            self.expired_up_to = self.frozen_at_version
        self.frozen = False
        self._thawed.set()
        for number, upstream in list(self._streams.items()):
            if number <= self.muted_up_to:
                upstream.close()

    async def _release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    async def _shutdown(self) -> None:
        # Closing the upstream side first ends the handlers still streaming (the stalled watches).
        await self._session.close()
        await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = self._runner = web.AppRunner(app, shutdown_timeout=1)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._session = self._loop.run_until_complete(self._open_session())
        self._thawed, self._released = asyncio.Event(), asyncio.Event()
        self.frozen_at_version = 0
        self.expired_up_to = 0  # watches from a resourceVersion up to this get 410 Gone
        self._ready.set()
        self._loop.run_forever()

    @staticmethod
    async def _open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.stalled:
            await asyncio.Event().wait()  # until stop() cancels it
        if request.method == "PATCH" and self.faults:
            code = self.faults.pop(0)
            self.injected.append(code)
            reason = {409: "Conflict", 429: "TooManyRequests"}[code]
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": reason,
                    "code": code,
                    "message": f"injected {code} by the fault proxy",
                },
                status=code,
                headers={"Retry-After": "1"} if code == 429 else None,
            )
        watch = request.query.get("watch") in ("true", "1")
        stream = 0
        if watch:
            self.watches_started += 1
            stream = self.watches_started
            if self.frozen:
                self._thawed.clear()
                await self._thawed.wait()
            since = request.query.get("resourceVersion", "")
            if since.isdigit() and 0 < int(since) <= self.expired_up_to:
                return web.json_response(
                    {
                        "type": "ERROR",
                        "object": {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "Expired",
                            "code": 410,
                            "message": "too old resource version (injected by the fault proxy)",
                        },
                    }
                )
        status_write = request.method == "PATCH" and request.path.endswith("/status")
        if status_write and self.hold_status_writes:
            self.held_status_writes += 1
            self._released.clear()
            await self._released.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None, ssl=self.ssl
        ) as upstream:
            if request.method in ("POST", "PUT", "PATCH", "DELETE"):
                try:
                    sent = json.loads(body) if body else None
                except ValueError:
                    sent = None
                self.writes.append((time.monotonic(), request.method, request.path, sent, upstream.status))
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "retry-after")},
            )
            await response.prepare(request)
            if watch:
                self._streams[stream] = upstream
            try:
                async for chunk in upstream.content.iter_any():
                    if watch and stream <= self.muted_up_to:
                        continue  # the stream stays open but says nothing
                    if watch and self.watch_delay and self.watch_delay_on in request.path:
                        await asyncio.sleep(self.watch_delay)
                    await response.write(chunk)
            except (aiohttp.ClientError, ConnectionError):
                pass  # cut by thaw_watches() or by the API server going away: end the stream
            finally:
                self._streams.pop(stream, None)
            await response.write_eof()
            return response
