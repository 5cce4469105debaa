"""A small OpenAI-compatible server that misbehaves on request: for fault tests and benchmarks.

It answers `POST /v1/chat/completions` with a reply computed from the request (by default a judge
answer that marks every annotation as present; `replay` answers from recorded answers) and can be told, per request, to fail in the ways
real servers do: HTTP 500/503/429/400, hanging past the client's timeout, dropping the connection,
malformed JSON, a truncated body, no choices, or an answer cut at `max_tokens` (`length`: the first
half of the reply, finish_reason "length"); 429 and 503 carry `Retry-After` when `retry_after` is
set. `latency` and `capacity` model a server that takes a fixed time per request and serves a
limited number at once (the judge-client benchmarks). Each request's arrival time is recorded.

    python -m prcli.testing --port 8011 --latency 0.05 --capacity 64
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok",
    "500",
    "503",
    "429",
    "400",
    "401",
    "422",
    "hang",
    "drop",
    "malformed",
    "truncated",
    "empty",
    "length",
)

Reply = Callable[[dict[str, Any]], str]


def all_present(request: dict[str, Any]) -> str:
    """A judge answer marking every `<infoK>` of the last user message as present."""
    text = str(request["messages"][-1]["content"])
    n = len(set(re.findall(r"<info(\d+)>", text)))
    return "\n".join(f"<info{k}>1</info{k}>" for k in range(1, n + 1)) or "ok"


NO_RECORDING = "(no recording matches this request)"


def replay(recordings: dict[str, str]) -> Reply:
    """A reply function that answers from a recording, for parity checks against recorded LLM answers:
    the answer recorded for the longest key (e.g. an item's model response) found in the request's
    last message; NO_RECORDING when none is."""
    keys = sorted(recordings, key=len, reverse=True)

    def reply(request: dict[str, Any]) -> str:
        text = str(request["messages"][-1]["content"])
        return next((recordings[k] for k in keys if k in text), NO_RECORDING)

    return reply


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # the default listen backlog of 5 turns a client's burst of new connections (one per request
    # in flight) into connection errors, which a real server's backlog (uvicorn: 2048) would queue
    request_queue_size = 1024


class FaultServer:
    """Run in a background thread: `with FaultServer() as srv: srv.base_url ...`."""

    def __init__(
        self,
        *,
        reply: Reply = all_present,
        script: Iterable[str] = (),
        default: str = "ok",
        latency: float = 0.0,
        capacity: int | None = None,
        hang_seconds: float = 30.0,
        die_after: int | None = None,
        retry_after: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        for mode in [*script, default]:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
        self.reply = reply
        self.script: deque[str] = deque(script)
        self.default = default
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.die_after = die_after  # after this many requests every connection is dropped: a crashed server
        self.retry_after = retry_after  # the Retry-After header of 429 and 503 answers, in seconds
        self._capacity = threading.BoundedSemaphore(capacity) if capacity else None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # per request, in the order they arrived (the lists line up)
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []  # the Authorization header of each request
        self.arrivals: list[float] = []  # time.monotonic() when it arrived
        self.modes_served: list[str] = []
        self._server = _HTTPServer((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def admit(self, body: dict[str, Any], auth: str) -> str:
        """Record a request and choose how to answer it (one lock: the record lists line up)."""
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.requests.append(body)
            self.auth.append(auth)
            if self.die_after is not None and len(self.modes_served) >= self.die_after:
                mode = "drop"
            else:
                mode = self.script.popleft() if self.script else self.default
            self.modes_served.append(mode)
            return mode

    def set(self, *, script: Iterable[str] = (), default: str | None = None) -> None:
        with self._lock:
            self.script = deque(script)
            if default is not None:
                self.default = default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body are written apart: with Nagle's algorithm on, the body waits for the
            # client's delayed ACK of the headers, 40 ms on Linux (uvicorn, under vLLM, sets it off too)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") in ("/health", "/v1/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                mode = server.admit(body, self.headers.get("Authorization", ""))
                if server._capacity is not None:
                    with server._capacity:
                        self._serve(mode, body)
                else:
                    self._serve(mode, body)

            def _serve(self, mode: str, body: dict[str, Any]) -> None:
                if server.latency:
                    time.sleep(server.latency)
                if mode == "hang":
                    server._stop.wait(server.hang_seconds)
                    self.close_connection = True
                    return
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "401":  # like hosted APIs, echo the key that was refused
                    key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    self._send(401, {"error": {"message": f"Incorrect API key provided: {key}"}})
                    return
                if mode == "422":  # like `transformers serve`: a field it does not know
                    unknown = sorted(
                        k for k in body if k in ("structured_outputs", "guided_regex", "response_format")
                    )
                    self._send(422, {"detail": f"Unexpected fields in the request: {set(unknown) or '{}'}"})
                    return
                if mode == "400":
                    self._send(400, {"error": {"message": "injected 400: maximum context length exceeded"}})
                    return
                if mode in ("500", "503", "429"):
                    headers = {}
                    if mode != "500" and server.retry_after is not None:
                        headers["Retry-After"] = f"{server.retry_after:g}"
                    error = {"error": {"message": f"injected {mode}", "type": "injected"}}
                    self._send(int(mode), error, headers)
                    return
                if mode == "malformed":
                    self._send_raw(200, b'{"id": "x", "choices": [ {"message": ')
                    return
                if mode == "truncated":
                    payload = json.dumps(_completion(server.reply(body), body)).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "empty":
                    self._send(200, {**_completion("", body), "choices": []})
                    return
                if mode == "length":
                    text = server.reply(body)
                    self._send(200, _completion(text[: len(text) // 2], body, finish_reason="length"))
                    return
                self._send(200, _completion(server.reply(body), body))

            def _send(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(obj).encode(), headers)

            def _send_raw(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _completion(text: str, request: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ServerProcess:
    """A FaultServer in its own process (so its CPU is not the caller's), for benchmarks:
    `with ServerProcess(latency, capacity) as srv: srv.base_url`; `srv.kill()` crashes it."""

    def __init__(self, latency: float = 0.0, capacity: int | None = None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._cmd = [sys.executable, "-m", "prcli.testing", "--port", str(port), "--latency", str(latency)]
        if capacity:
            self._cmd += ["--capacity", str(capacity)]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        from prcli.llm import wait_for_server

        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL)
        if not wait_for_server(self.base_url, timeout=30):
            self.__exit__()
            raise RuntimeError("the fake server did not start")
        return self

    def kill(self) -> None:
        """SIGKILL, as a crashed replica: its connections are reset and its port refuses new ones."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--capacity", type=int, default=None, help="requests served at once")
    parser.add_argument("--default", default="ok", choices=MODES)
    args = parser.parse_args(argv)
    srv = FaultServer(
        host=args.host, port=args.port, latency=args.latency, capacity=args.capacity, default=args.default
    )
    print(f"serving on {srv.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        srv._server.serve_forever()


if __name__ == "__main__":
    main()
