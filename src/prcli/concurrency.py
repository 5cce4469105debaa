"""Small asyncio helpers shared by the stages."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

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


def run_sync(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine to completion from sync code, also when an event loop is already running
    in this thread (notebooks): then it runs on a fresh loop in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
