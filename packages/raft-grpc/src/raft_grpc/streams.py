"""``answers_in_completion_order``: serve a stream of batched requests, each in a task, answers batched as they finish.

The shape of a "many unary calls over one bidirectional stream" RPC (``kv.v1.DataService/WriteBatches``, and
services built on this package, e.g. a chat server's batched sends): the client puts many requests in one
stream message, the server works on every request at once, and each answer goes back as soon as it is ready,
together with whatever else is ready at that moment, so that a loaded server sends few, full messages and an
idle one answers at once.

Invariants owned here: every request read gets exactly one answer (``handle`` must turn its own failures into
answers; an exception escaping it ends the stream: the generator raises it, the call fails and the client
retries what it did not get an answer to); answers come in completion order, at most
``max_batch`` per yielded list, never an empty list; when the client half-closes, the stream ends after the
last answer; when the consumer stops early (the call ended), every request still running is cancelled, as
a unary call's handler would be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Ans = TypeVar("Ans")

_END = object()


class _Failed:
    """``handle`` raised ``error`` (a bug in the handler): the stream ends with it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def answers_in_completion_order(
    batches: AsyncIterator[Iterable[Req]],
    handle: Callable[[Req], Awaitable[Ans]],
    *,
    max_batch: int,
) -> AsyncGenerator[list[Ans], None]:
    """The answers to every request of ``batches``, each list holding those ready together (see the module).

    Args:
        batches: the stream's request messages, each as the requests it carries.
        handle: the work of one request, returning its answer (errors included).
        max_batch: the most answers in one yielded list.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, not {max_batch}")
    answers: asyncio.Queue[object] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()

    async def one(request: Req) -> None:
        try:
            answers.put_nowait(await handle(request))
        except Exception as exc:
            answers.put_nowait(_Failed(exc))

    async def read() -> None:
        try:
            async for batch in batches:
                for request in batch:
                    task = loop.create_task(one(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
            while running:
                await asyncio.wait(list(running))
        except Exception as exc:  # the stream broke: no answer can be sent any more
            log.debug("request stream ended: %r", exc)
        finally:
            answers.put_nowait(_END)

    reader = loop.create_task(read())
    try:
        ended = False
        while not ended:
            ready: list[Ans] = []
            item = await answers.get()
            while True:
                if item is _END:
                    ended = True
                    break
                if isinstance(item, _Failed):
                    raise item.error
                ready.append(item)  # type: ignore[arg-type]  # anything else is an answer
                if len(ready) >= max_batch or answers.empty():
                    break
                item = answers.get_nowait()
            if ready:
                yield ready
    finally:
        reader.cancel()
        for task in list(running):
            task.cancel()
