"""Shared helpers of the raft-grpc tests: a recording receiver, polling with deadlines, raw stream clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import grpc

from raft_core.runtime import Command
from raft_core.runtime.wire import WireMessage
from raft_grpc._gen.raft.v1 import raft_pb2 as pb
from raft_grpc.auth import PeerAuth
from raft_grpc.servicer import SEND_METHOD

T = TypeVar("T")
SECRET = b"test-cluster-secret-0123456789"


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop with an overall deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 5 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class Recorder:
    """A ``Receiver`` that records what it is given."""

    def __init__(self) -> None:
        self.received: list[WireMessage] = []
        self.unreachable_calls: list[int] = []

    def receive(self, message: WireMessage) -> None:
        self.received.append(message)

    def unreachable(self, node: int) -> None:
        self.unreachable_calls.append(node)


class Counter:
    """A tiny state machine: adds each command's integer to ``value``."""

    def __init__(self) -> None:
        self.value = 0

    def apply(self, command: Command) -> int:
        self.value += int(command.data)
        return self.value

    def snapshot(self) -> bytes:
        return str(self.value).encode()

    def restore(self, data: bytes) -> None:
        self.value = int(data)


async def raw_stream(
    address: str, batches: Iterable[bytes], metadata: Iterable[tuple[str, str]]
) -> tuple[grpc.StatusCode, str]:
    """Open one Send stream with ``metadata``, write raw ``batches``, and return how it ended."""
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.stream_unary(
            SEND_METHOD, request_serializer=None, response_deserializer=pb.SendSummary.FromString
        )

        async def requests():
            for batch in batches:
                yield batch

        try:
            await method(requests(), metadata=tuple(metadata), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""


def member_metadata(src: int, dst: int, secret: bytes = SECRET) -> tuple[tuple[str, str], ...]:
    """The stream metadata member ``src`` sends to ``dst`` in a cluster keyed by ``secret``."""
    return PeerAuth(secret, [src, dst]).metadata(src, dst, "control")


async def wait_all(tasks: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await every awaitable, in order."""
    return [await t for t in tasks]
