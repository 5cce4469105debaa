"""Answer verification with math-verify, isolated in worker processes under a hard timeout.

`math_equal` is the pure comparison. `VerifierPool` runs it in a few worker processes: sympy can
hang on pathological LaTeX (towers of exponents, huge factorials) inside C code where no signal
reaches it, so the only safe timeout is to kill the worker. A timed-out item counts as not equal;
the worker is replaced and the pool goes on. Workers also give throughput on several cores.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait

_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")
# We enforce timeouts ourselves (by killing workers); silence math-verify's note that its own are off.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _parse_gold(gold: str) -> list:
    """Parse a ground truth; bare LaTeX is wrapped in `$..$` first.

    math-verify reads an undelimited `2\\sqrt{3}` as `2` (the official code's gold parse has this
    defect); inside `$..$` it reads `2*sqrt(3)`.
    """
    from math_verify import parse

    gold = gold.strip()
    parsed = [] if "$" in gold or "\\boxed" in gold else parse(f"${gold}$", parsing_timeout=None)
    return parsed or parse(gold, parsing_timeout=None)


_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text\{)?\(?([A-Z])\)?(?:[.:}][^{}]*)?\}?\s*\}")
_ANSWER_LETTER = re.compile(r"answer\s*(?:is|:)?\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE)


def choice_letter(text: str) -> str | None:
    """The option letter a response commits to: the last `\\boxed{B}`, else the last
    "answer is (B)" / "Answer: B", else a response that is only a letter; None if none."""
    boxed = _BOXED_LETTER.findall(text)
    if boxed:
        return boxed[-1]
    stated = [m.group(1) for m in _ANSWER_LETTER.finditer(text) if m.group(1).isupper()]
    if stated:
        return stated[-1]
    bare = _LETTER.match(text.strip())
    return bare.group(1) if bare else None


def math_equal(prediction: str, gold: str) -> bool:
    """True iff `prediction` (free text, LaTeX, `\\boxed{}`) states the same answer as `gold`.

    A single-letter gold (a multiple-choice option) is compared as a letter; everything else with
    math-verify's symbolic and numeric equivalence.
    """
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

    try:
        letter = _LETTER.match(gold.strip())
        if letter:
            chosen = choice_letter(prediction)
            if chosen is not None:
                return chosen == letter.group(1)
            configs = [StringExtractionConfig(), LatexExtractionConfig(), ExprExtractionConfig()]
            gold_parsed = parse(letter.group(1), [StringExtractionConfig()], parsing_timeout=None)
            pred_parsed = parse(prediction, configs, parsing_timeout=None)
        else:
            gold_parsed = _parse_gold(gold)
            pred_parsed = parse(prediction, parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:
        return False


# ----------------------------------------------------------------------------- worker pool


def _worker_main() -> None:
    """`python -m prcli.verify`: read JSON tasks on stdin, answer JSON lines on stdout."""
    import math_verify  # noqa: F401  (imported before announcing readiness)

    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        task = json.loads(line)
        out.write(json.dumps({"key": task["key"], "ok": math_equal(task["prediction"], task["gold"])}) + "\n")
        out.flush()


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[str]
    ready: bool = False
    task: tuple[int, str, str] | None = None
    started: float = 0.0


@dataclass
class PoolStats:
    verified: int = 0
    timeouts: int = 0
    restarts: int = 0


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


class VerifierPool:
    """A few long-lived worker processes that verify (prediction, gold) pairs under a timeout.

    Workers are separate interpreters (`python -m prcli.verify`), so they never re-run the caller's
    script and never inherit its threads or GPU state. The timeout counts from when a ready worker
    receives the item. Thread-safe: concurrent `map` calls are serialised.
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0):
        self.n_workers = workers or default_workers()
        self.timeout = timeout
        self.stats = PoolStats()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def _spawn(self) -> _Worker:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "prcli.verify"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=env,
        )
        return _Worker(proc)

    def _kill(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.wait(timeout=5)
        for stream in (worker.process.stdin, worker.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]

    def map(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Verify each (prediction, gold); an item past the timeout is False."""
        if not pairs:
            return []
        with self._lock:
            while len(self._workers) < self.n_workers:
                self._workers.append(self._spawn())
            results: list[bool] = [False] * len(pairs)
            queue = deque((i, p, g) for i, (p, g) in enumerate(pairs))
            while queue or any(w.task is not None for w in self._workers):
                for worker in self._workers:
                    if worker.ready and worker.task is None and queue:
                        self._send(worker, queue.popleft(), queue)
                busy = [w for w in self._workers if w.task is not None]
                deadline = min((w.started + self.timeout for w in busy), default=time.monotonic() + 0.5)
                streams = {w.process.stdout: w for w in self._workers if w.task is not None or not w.ready}
                for stream in wait(list(streams), timeout=max(0.0, deadline - time.monotonic())):
                    self._receive(streams[stream], results, queue)  # type: ignore[index]
                now = time.monotonic()
                for worker in list(self._workers):
                    if worker.task is not None and now - worker.started >= self.timeout:
                        self.stats.timeouts += 1
                        worker.task = None
                        self._replace(worker)
            return results

    def _send(self, worker: _Worker, task: tuple[int, str, str], queue: deque[tuple[int, str, str]]) -> None:
        key, prediction, gold = task
        try:
            worker.process.stdin.write(
                json.dumps({"key": key, "prediction": prediction, "gold": gold}) + "\n"
            )  # type: ignore[union-attr]
            worker.process.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError):  # died while idle: replace it and put the task back
            queue.appendleft(task)
            self._replace(worker)
            return
        worker.task = task
        worker.started = time.monotonic()

    def _receive(self, worker: _Worker, results: list[bool], queue: deque[tuple[int, str, str]]) -> None:
        line = worker.process.stdout.readline()  # type: ignore[union-attr]
        if not line:  # the worker died (e.g. out of memory): its item counts as False
            if worker.task is not None:
                self.stats.timeouts += 1
                worker.task = None
            self._replace(worker)
            return
        msg = json.loads(line)
        if msg.get("ready"):
            worker.ready = True
            return
        results[msg["key"]] = bool(msg["ok"])
        self.stats.verified += 1
        worker.task = None

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
            with contextlib.suppress(OSError):
                w.process.stdout.close()  # type: ignore[union-attr]
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncVerifier:
    """`await verify(prediction, gold)` from many coroutines; calls are batched onto a VerifierPool."""

    def __init__(self, pool: VerifierPool, max_batch: int = 256):
        from prcli.concurrency import MicroBatcher

        self.pool = pool
        self._batcher = MicroBatcher(pool.map, max_batch)

    async def verify(self, prediction: str, gold: str) -> bool:
        return await self._batcher.submit((prediction, gold))


_shared: VerifierPool | None = None
_shared_lock = threading.Lock()


def shared_pool(timeout: float = 5.0) -> VerifierPool:
    """The process-wide pool (created on first use, closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = VerifierPool(timeout=timeout)
            atexit.register(_shared.close)
        _shared.timeout = timeout
        return _shared


if __name__ == "__main__":
    _worker_main()
