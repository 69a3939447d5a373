"""Small asyncio helpers: a bounded ``run`` and polling with a deadline (no sleep-and-hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
    """Run ``coro`` on a fresh event loop with an overall deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def eventually(
    predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, what: str = "condition", every: float = 0.02
) -> float:
    """Poll ``predicate`` until it holds; return the seconds it took. Fails after ``timeout`` seconds."""
    start = time.monotonic()
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)
