"""``TaskSet``: the asyncio tasks a window or the session starts, kept referenced, logged and cancelled together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskSet:
    """A set of running tasks (asyncio keeps only weak references to tasks: this keeps strong ones)."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[T]:
        """Run ``coro`` as a task; an exception goes to ``on_error`` (or the log), never unnoticed."""
        task = asyncio.get_event_loop().create_task(coro, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[T]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            error = t.exception()
            if error is None:
                return
            if on_error is not None:
                try:
                    on_error(error)
                except Exception:
                    log.exception("error handler of task %s failed", t.get_name())
            else:
                log.error("task %s failed", t.get_name(), exc_info=error)

        task.add_done_callback(done)
        if self._closed:
            task.cancel()
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def cancel(self) -> None:
        """Cancel every running task (without waiting; more may be spawned later)."""
        for task in list(self._tasks):
            task.cancel()

    async def cancel_all(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait (at most ``timeout`` seconds) for them to end."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:  # e.g. a cancellation lost in asyncio.wait_for (Python < 3.12): do not hang
            log.warning("task %s did not stop within %.0f s", task.get_name(), timeout)
