"""A fault-injecting proxy in front of the real API server, for fault tests.

It speaks plain HTTP on loopback to the operator and HTTPS (as the cluster admin) to the API
server. It can answer chosen write requests with 409 or 429 before they reach the server,
and it can go silent on watch streams (keep them open, forward nothing).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

import aiohttp
from aiohttp import web
import yaml

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
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        self._ready.wait(10)
        return self

    def kubeconfig(self, path: Path) -> str:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy"}))
        return str(path)

    def silence_current_watches(self) -> int:
        """Stall every watch stream open now (as a broken connection would); new ones work."""
        self.muted_up_to = self.watches_started
        return self.muted_up_to

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
        self._ready.set()
        self._loop.run_forever()

    @staticmethod
    async def _open_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "PATCH" and self.faults:
            code = self.faults.pop(0)
            self.injected.append(code)
            reason = {409: "Conflict", 429: "TooManyRequests"}[code]
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
                 "message": f"injected {code} by the fault proxy"},
                status=code, headers={"Retry-After": "1"} if code == 429 else None)
        watch = request.query.get("watch") in ("true", "1")
        stream = 0
        if watch:
            self.watches_started += 1
            stream = self.watches_started
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=body or None, ssl=self.ssl) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "retry-after")})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                if watch and stream <= self.muted_up_to:
                    continue  # the stream stays open but says nothing
                await response.write(chunk)
            await response.write_eof()
            return response
