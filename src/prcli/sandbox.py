"""Run functions in worker processes under a hard timeout.

Scoring code that calls sympy (math-verify, latex2sympy) can hang inside C code where no signal
reaches it; the only safe timeout is to kill the process. `SandboxPool` keeps a few long-lived
workers (`python -m prcli.sandbox`, separate interpreters, so they never re-run the caller's
script nor inherit its threads or GPU state), sends them JSON tasks naming a function
`module:function`, and replaces a worker whose task outlives the timeout. Workers also spread the
work over cores.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from prcli.errors import StageError

Task = tuple[int, str, list[Any]]


def _resolve(path: str) -> Callable[..., Any]:
    """`package.module:function` or `package.module:Class.staticmethod`."""
    module, _, name = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _worker_main() -> None:
    """Read `{"key", "fn", "args"}` lines on stdin, answer `{"key", "result"}` lines on stdout."""
    import math_verify  # noqa: F401  (the heavy import happens before announcing readiness)

    functions: dict[str, Callable[..., Any]] = {}
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        task = json.loads(line)
        fn = functions.get(task["fn"]) or functions.setdefault(task["fn"], _resolve(task["fn"]))
        try:
            result = fn(*task["args"])
        except Exception as exc:  # a scoring bug must not kill the worker; the caller sees the error
            result = {"__error__": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps({"key": task["key"], "result": result}) + "\n")
        out.flush()


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[str]
    stderr: Any  # a temporary file: what a worker that cannot start says about it
    ready: bool = False
    task: Task | None = None
    started: float = 0.0


@dataclass
class PoolStats:
    calls: int = 0
    timeouts: int = 0
    errors: int = 0
    restarts: int = 0
    longest: float = 0.0  # seconds of the slowest call (a timed-out call counts as the timeout)


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


MAX_STARTUP_FAILURES = 3


class SandboxError(StageError):
    """The worker processes cannot run at all (for example prcli is not importable in them)."""


class SandboxPool:
    """Long-lived worker processes that run `module:function` calls under a per-call timeout.

    The timeout counts from when a ready worker receives the call. Thread-safe: concurrent
    `call` invocations are serialised.
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0):
        self.n_workers = workers or default_workers()
        self.timeout = timeout
        self.stats = PoolStats()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._startup_failures = 0

    def call(self, fn: str, args_list: Sequence[Sequence[Any]], default: Any = None) -> list[Any]:
        """`fn(*args)` for each args (JSON-able in and out); `default` where it timed out or raised."""
        if not args_list:
            return []
        with self._lock:
            while len(self._workers) < self.n_workers:
                self._workers.append(self._spawn())
            results: list[Any] = [default] * len(args_list)
            queue: deque[Task] = deque((i, fn, list(args)) for i, args in enumerate(args_list))
            while queue or any(w.task is not None for w in self._workers):
                for worker in self._workers:
                    if worker.ready and worker.task is None and queue:
                        self._send(worker, queue.popleft(), queue)
                busy = [w for w in self._workers if w.task is not None]
                deadline = min((w.started + self.timeout for w in busy), default=time.monotonic() + 0.5)
                streams = {w.process.stdout: w for w in self._workers if w.task is not None or not w.ready}
                for stream in wait(list(streams), timeout=max(0.0, deadline - time.monotonic())):
                    self._receive(streams[stream], results)  # type: ignore[index]
                now = time.monotonic()
                for worker in list(self._workers):
                    if worker.task is not None and now - worker.started >= self.timeout:
                        self.stats.timeouts += 1
                        self.stats.longest = max(self.stats.longest, now - worker.started)
                        worker.task = None
                        self._replace(worker)
            return results

    def _spawn(self) -> _Worker:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the worker (_kill, close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "prcli.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
            env=env,
        )
        return _Worker(proc, stderr)

    def _send(self, worker: _Worker, task: Task, queue: deque[Task]) -> None:
        key, fn, args = task
        try:
            worker.process.stdin.write(json.dumps({"key": key, "fn": fn, "args": args}) + "\n")  # type: ignore[union-attr]
            worker.process.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):  # died while idle: replace it and put the task back
            queue.appendleft(task)
            self._replace(worker)
            return
        worker.task = task
        worker.started = time.monotonic()

    def _receive(self, worker: _Worker, results: list[Any]) -> None:
        line = worker.process.stdout.readline()  # type: ignore[union-attr]
        if not line and not worker.ready:  # it could not even start: do not respawn it forever
            self._startup_failures += 1
            if self._startup_failures >= MAX_STARTUP_FAILURES:
                worker.stderr.seek(0)
                said = worker.stderr.read().decode("utf-8", errors="replace").strip()[-2000:]
                self.close()
                raise SandboxError(
                    f"scoring workers (`{sys.executable} -m prcli.sandbox`) cannot start:\n{said}"
                )
        if not line:  # the worker died (e.g. out of memory): its call keeps the default
            if worker.task is not None:
                self.stats.timeouts += 1
                worker.task = None
            self._replace(worker)
            return
        msg = json.loads(line)
        if msg.get("ready"):
            worker.ready = True
            self._startup_failures = 0
            return
        result = msg["result"]
        self.stats.longest = max(self.stats.longest, time.monotonic() - worker.started)
        if isinstance(result, dict) and "__error__" in result:
            self.stats.errors += 1
        else:
            results[msg["key"]] = result
        self.stats.calls += 1
        worker.task = None

    def _kill(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.wait(timeout=5)
        for stream in (worker.process.stdin, worker.process.stdout, worker.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        self.stats.restarts += 1
        self._workers[self._workers.index(worker)] = self._spawn()

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.process.stdin.close()  # type: ignore[union-attr]
        for w in self._workers:
            try:
                w.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
            for stream in (w.process.stdout, w.stderr):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]
        self._workers = []

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _worker_main()
