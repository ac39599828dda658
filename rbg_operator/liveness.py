"""/healthz, answered from a thread of its own, so that it can say the event loop is stuck.

The loop ticks a timestamp every second. The endpoint answers 200 while the tick is fresh and
every reflector has a current list (or is on its way to one); 503, naming what is wrong, when
the loop has not ticked for `stall_seconds` (a reconcile or a decoder holding it: nothing else
runs, not the lease, not the webhooks) or a reflector has been behind for `behind_seconds` (its
store no longer says what the cluster holds). The kubelet's liveness probe then restarts the pod.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Watched(Protocol):
    behind_since: float | None  # monotonic time since which its store may be stale; None: current


@dataclasses.dataclass
class Liveness:
    stall_seconds: float = 20.0
    behind_seconds: float = 300.0
    tick_seconds: float = 1.0
    last_tick: float = dataclasses.field(default_factory=time.monotonic)
    reflectors: Sequence[Watched] = ()
    started: bool = False  # the operator's start-up is done (as kopf's own endpoint, which came up only then)

    def problems(self, now: float) -> list[str]:
        """What makes the process unhealthy at monotonic time `now`; empty when nothing does."""
        if not self.started:
            return ["starting"]
        found = []
        stalled = now - self.last_tick
        if stalled > self.stall_seconds:
            found.append(f"the event loop has not run for {stalled:.0f}s (limit {self.stall_seconds:g}s)")
        for reflector in self.reflectors:
            since = reflector.behind_since
            if since is not None and now - since > self.behind_seconds:
                found.append(
                    f"{reflector} has had no complete list for {now - since:.0f}s (limit {self.behind_seconds:g}s)"
                )
        return found

    async def tick_forever(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            await asyncio.sleep(self.tick_seconds)

    def serve(self, host: str, port: int, path: str = "/healthz") -> http.server.HTTPServer:
        """Answer probes in a daemon thread, one connection at a time (probes are few and quick;
        a client that stalls is cut after a few seconds)."""
        liveness = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5

            def do_GET(self) -> None:
                if self.path.split("?")[0] != path:
                    self.send_error(404)
                    return
                problems = liveness.problems(time.monotonic())
                body = ("\n".join(problems) if problems else "ok").encode() + b"\n"
                self.send_response(503 if problems else 200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if problems:
                    log.warning("unhealthy: %s", "; ".join(problems))

            def log_message(self, format: str, *args) -> None:  # probes every few seconds: not worth a line
                pass

        server = http.server.HTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
        return server


LIVENESS = Liveness()
