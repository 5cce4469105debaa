"""Answer verification with math-verify, isolated in worker processes under a hard timeout.

`math_equal` is the pure comparison. `VerifierPool` runs it in a few worker processes: sympy can
hang on pathological LaTeX (towers of exponents, huge factorials) inside C code where no signal
reaches it, so the only safe timeout is to kill the worker. A timed-out item counts as not equal;
the worker is replaced and the pool goes on. Workers also give throughput on several cores.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing as mp
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

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


def _worker_main(conn: Connection) -> None:
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        key, prediction, gold = task
        conn.send((key, math_equal(prediction, gold)))


@dataclass(eq=False)
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
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

    Thread-safe: concurrent `map` calls are serialised.
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0):
        self.n_workers = workers or default_workers()
        self.timeout = timeout
        self.stats = PoolStats()
        self._ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        if self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(["prcli.verify", "math_verify", "sympy"])
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child,), daemon=True)
        proc.start()
        child.close()
        return _Worker(proc, parent)

    def _kill(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def map(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Verify each (prediction, gold); an item past the timeout is False."""
        if not pairs:
            return []
        with self._lock:
            while len(self._workers) < self.n_workers:
                self._workers.append(self._spawn())
            results: list[bool] = [False] * len(pairs)
            queue = deque((i, p, g) for i, (p, g) in enumerate(pairs))
            busy: dict[Connection, _Worker] = {}
            idle = list(self._workers)
            while queue or busy:
                while queue and idle:
                    worker = idle.pop()
                    worker.task = queue.popleft()
                    worker.started = time.monotonic()
                    try:
                        worker.conn.send(worker.task)
                    except (BrokenPipeError, OSError):  # died while idle: replace, retry the task
                        queue.appendleft(worker.task)
                        idle.append(self._replace(worker))
                        continue
                    busy[worker.conn] = worker
                now = time.monotonic()
                deadline = min(w.started for w in busy.values()) + self.timeout
                for conn in wait(list(busy), timeout=max(0.0, deadline - now)):
                    worker = busy.pop(conn)  # type: ignore[arg-type]
                    try:
                        key, ok = conn.recv()  # type: ignore[union-attr]
                        results[key] = ok
                        self.stats.verified += 1
                        idle.append(worker)
                    except (EOFError, OSError):  # the worker died (e.g. out of memory): counts as False
                        self.stats.timeouts += 1
                        idle.append(self._replace(worker))
                now = time.monotonic()
                for conn, worker in list(busy.items()):
                    if now - worker.started >= self.timeout:
                        busy.pop(conn)
                        self.stats.timeouts += 1
                        idle.append(self._replace(worker))
            return results

    def _replace(self, worker: _Worker) -> _Worker:
        self._kill(worker)
        self.stats.restarts += 1
        new = self._spawn()
        self._workers[self._workers.index(worker)] = new
        return new

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.kill()
            w.conn.close()
        self._workers = []

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
