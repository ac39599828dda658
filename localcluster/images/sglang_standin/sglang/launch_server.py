"""`python3 -m sglang.launch_server <flags>`: SGLang 0.5.9's command line, with canned answers.

It parses every option of the real server (server_flags.json, derived from its option table) without
abbreviations, and serves the endpoints the probes, clients and sglang-router use. In prefill/decode
disaggregation the two sides really meet: a prefill server registers each bootstrap room it served on
its bootstrap port, and a decode server fetches the room's "KV" from there before it answers, so an
answer names both pods. Standard library only: the image carries no web framework for it.

Environment: HOSTNAME names the pod in answers and logs; SGLANG_STANDIN_DELAY_SECONDS (float, default
0) delays every generation request, to keep requests in flight; SGLANG_STANDIN_KV_WAIT_SECONDS (default
10) is how long decode waits for prefill to register a room.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sglang

FLAGS = Path(__file__).with_name("server_flags.json")
TYPES = {"int": int, "float": float}
GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions", "/generate")
MAX_ROOMS = 10_000  # rooms a prefill server remembers; decode fetches a room within seconds


def parser() -> argparse.ArgumentParser:
    table = json.loads(FLAGS.read_text())
    # A short usage line: the full one runs to hundreds of lines and buries the error in a pod's log.
    usage = f"python3 -m sglang.launch_server [options of the SGLang {table['version']} server, see --help]"
    parser = argparse.ArgumentParser(prog="launch_server.py", usage=usage, allow_abbrev=False)
    for entry in table["options"]:
        kwargs: dict = {"dest": entry["dest"]}
        if entry["nargs"] == 0:
            kwargs["action"] = "store_true"
        else:
            if entry["nargs"] is not None:
                kwargs["nargs"] = entry["nargs"]
            kwargs["type"] = TYPES.get(entry["type"], str)
            if entry["choices"]:
                kwargs["choices"] = entry["choices"]
        parser.add_argument(*entry["options"], **kwargs)
    parser.set_defaults(host="127.0.0.1", port=30000, disaggregation_mode="null", disaggregation_bootstrap_port=8998)
    return parser


class State:
    """What the handlers share: the parsed arguments, the in-flight count and prefill's rooms."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.role = args.disaggregation_mode
        self.pod = os.environ.get("HOSTNAME") or socket.gethostname()
        self.model = args.served_model_name or args.model_path or "default"
        self.delay = float(os.environ.get("SGLANG_STANDIN_DELAY_SECONDS") or 0)
        self.kv_wait = float(os.environ.get("SGLANG_STANDIN_KV_WAIT_SECONDS") or 10)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.rooms: dict[str, dict] = {}

    def log(self, **fields) -> None:
        words = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        print(f"rbg-standin role={self.role} pod={self.pod} {words}", flush=True)

    def register(self, room: str, record: dict) -> None:
        with self.lock:
            self.rooms[room] = record
            while len(self.rooms) > MAX_ROOMS:
                self.rooms.pop(next(iter(self.rooms)))


def _rooms(value) -> list[str]:
    # A batch request carries one room per prompt.
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def fetch_kv(state: State, host: str, port: int, room: str) -> dict:
    """Decode's half of the handshake: the room's record from prefill's bootstrap server."""
    host_in_url = f"[{host}]" if ":" in host else host
    url = f"http://{host_in_url}:{port}/kv/{room}?decode={state.pod}"
    deadline = time.monotonic() + state.kv_wait
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (OSError, ValueError) as error:
            last = str(error)
        if time.monotonic() >= deadline:
            raise LookupError(
                f"decode {state.pod}: no KV for bootstrap room {room} from prefill {host}:{port} "
                f"after {state.kv_wait:g}s ({last})"
            )
        time.sleep(0.1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the router pools its connections
    server_version = "sglang-standin/" + sglang.__version__
    state: State  # set on the subclass made per server

    def log_message(self, format, *args):  # one line per request is ours (State.log)
        pass

    # --- plumbing

    def _body(self) -> dict:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    break
                data += chunk
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not data:
            return {}
        body = json.loads(data)
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        return body

    def _send(self, status: int, payload=None, content_type: str = "application/json") -> None:
        data = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        error = {"object": "error", "message": message, "type": "BadRequestError", "code": status}
        if getattr(self, "streaming", False):  # the 200 is sent already: the error ends the stream
            self._stream([{"error": error}])
            return
        self._send(status, error)

    def _begin_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.streaming = True

    def _event(self, event: str) -> None:
        data = f"data: {event}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, events: list) -> None:
        if not getattr(self, "streaming", False):
            self._begin_stream()
        for event in [*(json.dumps(e) for e in events), "[DONE]"]:
            self._event(event)
        self.wfile.write(b"0\r\n\r\n")
        self.streaming = False

    # --- routes

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        self._route(None)

    def do_POST(self):
        try:
            body = self._body()
        except ValueError as error:
            self.state.log(path=self.path, status=400)
            self._error(400, f"invalid JSON body: {error}")
            return
        self._route(body)

    def do_PUT(self):
        self.do_POST()

    def _route(self, body: dict | None) -> None:
        state = self.state
        path = self.path.split("?")[0]
        if path in GENERATION_PATHS and body is not None:
            self._generate(path, body)
            return
        status, payload = 200, None
        if path in ("/health", "/health_generate", "/ping"):
            pass
        elif path in ("/get_model_info", "/model_info"):
            payload = self._model_info()
        elif path in ("/get_server_info", "/server_info"):
            payload = {**vars(state.args), "version": sglang.__version__, "internal_states": [self._load()]}
            # The real answer is ServerArgs, whose names for these differ from the parser's dests.
            payload["tp_size"] = state.args.tensor_parallel_size or 1
            payload["dp_size"] = state.args.data_parallel_size or 1
        elif path in ("/get_load", "/v1/loads"):
            payload = [self._load()]
        elif path == "/v1/models":
            payload = {
                "object": "list",
                "data": [
                    {"id": state.model, "object": "model", "created": 0, "owned_by": "sglang", "root": state.model}
                ],
            }
        elif path == "/flush_cache":
            payload = b"Cache flushed.\n"
        else:
            status = 404
            payload = {"object": "error", "message": f"Not Found: {path}", "code": 404}
        state.log(path=path, status=status)
        if isinstance(payload, bytes):
            self._send(status, payload, "text/plain")
        else:
            self._send(status, payload)

    def _model_info(self) -> dict:
        args = self.state.args
        return {
            "model_path": args.model_path,
            "tokenizer_path": args.tokenizer_path or args.model_path,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": "standin",
            "architectures": ["StandinForCausalLM"],
        }

    def _load(self) -> dict:
        with self.state.lock:
            running = self.state.in_flight
        # sglang-router (power_of_two) takes num_tokens as a worker's load: one per request in flight, so
        # its /get_loads counts requests.
        return {"dp_rank": 0, "num_reqs": running, "num_waiting_reqs": 0, "num_tokens": running}

    # --- generation

    def _generate(self, path: str, body: dict) -> None:
        state = self.state
        rooms = _rooms(body.get("bootstrap_room"))
        host, port = body.get("bootstrap_host"), body.get("bootstrap_port")
        if isinstance(host, list):
            host = host[0] if host else None
        if isinstance(port, list):
            port = port[0] if port else None
        port = int(port) if port is not None else state.args.disaggregation_bootstrap_port
        room_field = ",".join(rooms) or None
        with state.lock:
            state.in_flight += 1
        try:
            if state.delay and body.get("stream") and path == "/v1/chat/completions" and state.role != "prefill":
                # As a real server streams its first token long before its last: a server that goes
                # in between breaks a stream its client has begun to read (no router can retry it).
                self._begin_stream()
                first = {"id": uuid.uuid4().hex, "object": "chat.completion.chunk", "created": int(time.time())}
                delta = {"role": "assistant", "content": ""}
                first |= {"model": state.model, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                self._event(json.dumps(first))
            if state.delay:
                time.sleep(state.delay)
            if state.role == "prefill":
                for room in rooms:
                    state.register(room, {"room": room, "prefill": state.pod, "model": state.model})
                text = f"Hello from the RBG stand-in (prefill {state.pod}, prefill only)"
                state.log(path=path, room=room_field, status=200)
            elif state.role == "decode":
                if not rooms or not host:
                    state.log(path=path, status=400)
                    self._error(400, f"decode {state.pod}: a request needs bootstrap_host and bootstrap_room")
                    return
                try:
                    prefills = sorted({fetch_kv(state, host, port, room)["prefill"] for room in rooms})
                except LookupError as error:
                    state.log(path=path, room=room_field, prefill=f"{host}:{port}", status=503)
                    self._error(503, str(error))
                    return
                text = f"Hello from the RBG stand-in (prefill {','.join(prefills)}, decode {state.pod})"
                state.log(path=path, room=room_field, prefill=f"{host}:{port}", status=200)
            else:
                text = f"Hello from the RBG stand-in (plain {state.pod})"
                state.log(path=path, status=200)
        finally:
            with state.lock:
                state.in_flight -= 1
        self._answer(path, body, text)

    def _answer(self, path: str, body: dict, text: str) -> None:
        model, created, rid = self.state.model, int(time.time()), uuid.uuid4().hex
        prompt_tokens = len(json.dumps(body.get("messages") or body.get("prompt") or body.get("text") or "")) // 4
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        stream = bool(body.get("stream"))
        if path == "/generate":
            meta = {"id": rid, "finish_reason": {"type": "stop"}, **usage}
            answer = {"text": text, "output_ids": [], "meta_info": meta}
            self._stream([answer]) if stream else self._send(200, answer)
        elif path == "/v1/completions":
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
            answer = {"id": rid, "object": "text_completion", "created": created, "model": model, "choices": [choice]}
            self._stream([answer]) if stream else self._send(200, {**answer, "usage": usage})
        elif stream:
            base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
            delta = {"role": "assistant", "content": text}
            self._stream(
                [
                    {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
                    {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage},
                ]
            )
        else:
            message = {"role": "assistant", "content": text}
            self._send(
                200,
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                },
            )


class BootstrapHandler(BaseHTTPRequestHandler):
    """Prefill's bootstrap port: decode asks it for a room's KV."""

    protocol_version = "HTTP/1.1"
    state: State

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        state = self.state
        path, _, query = self.path.partition("?")
        decode = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("decode")
        status, payload = 404, {"error": f"not found: {path}"}
        if path == "/health":
            status, payload = 200, {"status": "ok"}
        elif path.startswith("/kv/"):
            room = path[len("/kv/") :]
            with state.lock:
                record = state.rooms.get(room)
            if record is not None:
                status, payload = 200, record
            else:
                payload = {"error": f"prefill {state.pod}: room {room} not registered (yet)"}
            # Decode polls until the room appears: log the hit, not every miss.
            if record is not None:
                state.log(path=path, room=room, decode=decode, status=status)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _server(host: str, port: int, handler: type) -> ThreadingHTTPServer:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
    return server_class((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    state = State(args)
    servers = [_server(args.host, args.port, type("Handler", (Handler,), {"state": state}))]
    if state.role == "prefill":
        bootstrap = type("BootstrapHandler", (BootstrapHandler,), {"state": state})
        servers.append(_server(args.host, args.disaggregation_bootstrap_port, bootstrap))
    # As PID 1 in a container SIGTERM would be ignored without a handler: the pod would wait out its grace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for extra in servers[1:]:
        threading.Thread(target=extra.serve_forever, daemon=True).start()
    bootstrap_port = args.disaggregation_bootstrap_port if state.role == "prefill" else None
    state.log(
        event="ready", model=state.model, host=args.host, port=args.port, bootstrap=bootstrap_port, delay=state.delay
    )
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
