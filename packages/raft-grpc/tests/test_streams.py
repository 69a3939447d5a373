"""answers_in_completion_order: one answer per request, in completion order, batched, cancelled with the call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from grpc_helpers import run

from raft_grpc.streams import answers_in_completion_order


async def _batches(*batches: list[int], gate: asyncio.Event | None = None) -> AsyncIterator[list[int]]:
    for batch in batches:
        yield batch
    if gate is not None:  # the client keeps the stream open until the gate opens
        await gate.wait()


def test_every_request_gets_one_answer_in_completion_order_and_the_stream_ends_after_the_last() -> None:
    async def main() -> list[list[str]]:
        release = {n: asyncio.Event() for n in range(5)}

        async def handle(n: int) -> str:
            await release[n].wait()
            return f"answer {n}"

        out: list[list[str]] = []
        answers = answers_in_completion_order(_batches([0, 1, 2], [3, 4]), handle, max_batch=10)

        async def consume() -> None:
            async for ready in answers:
                out.append(ready)

        consumer = asyncio.create_task(consume())
        for n in (3, 0):  # finish out of order, one at a time
            release[n].set()
            while sum(map(len, out)) < (1 if n == 3 else 2):
                await asyncio.sleep(0)
        for n in (4, 1, 2):  # three ready together
            release[n].set()
        await asyncio.wait_for(consumer, 5)
        return out

    out = run(main())
    assert out[:2] == [["answer 3"], ["answer 0"]]
    assert [a for batch in out[2:] for a in batch] == ["answer 4", "answer 1", "answer 2"]
    assert len(out) == 3  # the three finished together went back in one list


def test_answers_ready_together_are_split_at_max_batch() -> None:
    async def main() -> list[list[int]]:
        async def handle(n: int) -> int:
            return n

        return [ready async for ready in answers_in_completion_order(_batches(list(range(7))), handle, max_batch=3)]

    out = run(main())
    assert [n for batch in out for n in batch] == list(range(7))
    assert all(1 <= len(batch) <= 3 for batch in out)
    assert len(out) >= 3


def test_a_handler_that_raises_ends_the_stream_with_its_error() -> None:
    async def main() -> None:
        async def handle(n: int) -> int:
            if n == 2:
                raise RuntimeError("handler bug")
            return n

        async for _ in answers_in_completion_order(_batches([1, 2, 3]), handle, max_batch=1):
            pass

    with pytest.raises(RuntimeError, match="handler bug"):
        run(main())


def test_closing_the_answers_early_cancels_the_requests_still_running() -> None:
    async def main() -> tuple[list[int], int]:
        cancelled = 0
        gate = asyncio.Event()

        async def handle(n: int) -> int:
            nonlocal cancelled
            if n == 0:
                return 0
            try:
                await asyncio.Event().wait()  # never finishes by itself
            except asyncio.CancelledError:
                cancelled += 1
                raise
            return n

        got: list[int] = []
        answers = answers_in_completion_order(_batches([0, 1, 2], gate=gate), handle, max_batch=8)
        async with contextlib.aclosing(answers):
            async for ready in answers:
                got += ready
                break  # the call ended (e.g. the client went away)
        for _ in range(10):
            await asyncio.sleep(0)
        return got, cancelled

    got, cancelled = run(main())
    assert got == [0]
    assert cancelled == 2


def test_max_batch_must_be_positive() -> None:
    async def main() -> None:
        async def handle(n: int) -> int:
            return n

        async for _ in answers_in_completion_order(_batches([1]), handle, max_batch=0):
            pass

    with pytest.raises(ValueError, match="max_batch"):
        run(main())
