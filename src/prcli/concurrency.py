"""Small asyncio helpers shared by the stages."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def ordered_window(
    items: Iterable[T], fn: Callable[[T], Awaitable[R]], window: int
) -> AsyncIterator[R]:
    """Run `fn` over `items` with at most `window` in flight; yield results in input order.

    In-order results make an interrupted run's output a prefix of the full run's, so resuming
    reproduces an uninterrupted run line for line.
    """
    pending: deque[asyncio.Future[R]] = deque()
    try:
        for item in items:
            pending.append(asyncio.ensure_future(fn(item)))
            if len(pending) >= window:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's one event loop for sync callers, running in a daemon thread.

    One loop for the whole run means HTTP clients and their connections are made once and reused
    (a fresh loop per call would leave a client, and its sockets, behind every time).
    """
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="prcli-async", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine to completion from sync code (also from inside a running loop, e.g. a notebook).

    Ctrl-C cancels the coroutine and waits until it has unwound, so whatever it writes is finished
    before the caller goes on.
    """
    loop = background_loop()
    if threading.current_thread().name == "prcli-async":
        raise RuntimeError("run_sync() called from a coroutine on its own loop; await the coroutine instead")
    finished = threading.Event()

    async def guarded() -> R:
        try:
            return await coro
        finally:
            finished.set()

    future = asyncio.run_coroutine_threadsafe(guarded(), loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        finished.wait(timeout=60)
        raise


class MicroBatcher(Generic[T, R]):
    """Gather concurrent `submit()` calls into batches for a blocking batch function.

    `fn(items) -> results` runs in a worker thread, `max_batch` items at a time; items whose
    `group(item)` differs (e.g. other decoding settings) never share a batch. Works from any event
    loop (one queue per loop), so a trainer's background loop and `asyncio.run` can both use it.
    """

    def __init__(
        self, fn: Callable[[list[T]], list[R]], max_batch: int, group: Callable[[T], Any] | None = None
    ):
        self.fn = fn
        self.max_batch = max_batch
        self.group = group or (lambda _: None)
        self._queues: dict[int, list[tuple[T, asyncio.Future[R]]]] = {}
        self._drains: dict[int, asyncio.Task[None]] = {}

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(id(loop), [])
        future: asyncio.Future[R] = loop.create_future()
        queue.append((item, future))
        drain = self._drains.get(id(loop))
        if drain is None or drain.done():
            self._drains[id(loop)] = loop.create_task(self._drain(queue))
        return await future

    async def _drain(self, queue: list[tuple[T, asyncio.Future[R]]]) -> None:
        await asyncio.sleep(0)  # let concurrently submitted items join the first batch
        while queue:
            key = self.group(queue[0][0])
            batch = [entry for entry in queue if self.group(entry[0]) == key][: self.max_batch]
            for entry in batch:
                queue.remove(entry)
            try:
                results = await asyncio.to_thread(self.fn, [item for item, _ in batch])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
