"""``LaneSender``: one long-lived stream to one peer, fed from a bounded queue; and which lane a message takes.

Each peer gets two lanes, each its own grpc channel (its own HTTP/2 connection), stream and queue:
``control`` for votes, pre-votes, heartbeats, every reply, ``TimeoutNow`` and other small messages, and
``bulk`` for ``AppendEntries``, snapshots and forwarded proposals. A saturated bulk lane (a slow follower, a
snapshot in flight) therefore never delays a heartbeat or a vote. Order is kept within a lane, not across
lanes; Raft tolerates reordering.

Invariants this module owns: a lane's queue never holds more than its message and byte limits (``put``
refuses instead, and the transport reports the peer unreachable); a lane writes one Batch per stream message,
as many queued messages as fit ``max_message_bytes``; a failed stream drops what was queued (reported) and
reconnects after a jittered exponential backoff (reset once a stream delivers).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from raft_core.messages import AppendEntries, InstallSnapshot, Propose
from raft_core.runtime.wire import SnapshotChunk
from raft_core.types import NodeId
from raft_grpc import codec
from raft_grpc.options import TransportOptions

log = logging.getLogger(__name__)

CONTROL, BULK = "control", "bulk"
"""Lane names (also sent as the ``raft-lane`` stream metadata)."""

BULK_KINDS: frozenset[type] = frozenset({AppendEntries, InstallSnapshot, SnapshotChunk, Propose})
"""Message kinds that travel on the bulk lane; every other kind takes the control lane."""


@dataclass(slots=True)
class LaneStats:
    """Counters of one lane (for tests and metrics)."""

    queued: int = 0
    queued_bytes: int = 0
    sent: int = 0
    batches: int = 0
    dropped: int = 0
    streams: int = 0


class _StreamEnded(Exception):
    """The lane's stream finished (the peer closed it, refused it, or the connection broke)."""

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        super().__init__(f"{code.name if code is not None else 'ended'}: {details}")
        self.code = code


class LaneSender:
    """Sends one lane's messages to one peer over a long-lived client stream, reconnecting as needed."""

    def __init__(
        self,
        peer: NodeId,
        lane: str,
        open_stream: Callable[[], grpc.aio.StreamUnaryCall[bytes, object]],
        options: TransportOptions,
        on_drop: Callable[[NodeId], None],
    ) -> None:
        """Send to ``peer`` on streams made by ``open_stream``; call ``on_drop(peer)`` when messages are lost."""
        self.peer = peer
        self.lane = lane
        self._open_stream = open_stream
        self._opts = options
        self._on_drop = on_drop
        self._max_messages = options.control_queue_messages if lane == CONTROL else options.bulk_queue_messages
        self._max_bytes = options.control_queue_bytes if lane == CONTROL else options.bulk_queue_bytes
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._delivered = False  # the current stream completed a write
        self._taken = False  # messages were taken from the queue for the current stream
        self.stats = LaneStats()

    def put(self, data: bytes) -> bool:
        """Queue one serialized message; False (and nothing queued) when the queue is full."""
        size = codec.framed_size(len(data))
        if len(self._queue) >= self._max_messages or self._bytes + size > self._max_bytes:
            self.stats.dropped += 1
            return False
        self._queue.append(data)
        self._bytes += size
        self._wake.set()
        return True

    def start(self) -> None:
        """Start the sending task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-lane-{self.peer}-{self.lane}")

    async def close(self) -> None:
        """Stop sending; whatever is queued is discarded."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})  # unlike awaiting the task, never swallows our own cancellation
            self._task = None
        self._clear()

    def snapshot_stats(self) -> LaneStats:
        """A copy of the counters, with the current queue length and bytes."""
        s = self.stats
        return LaneStats(len(self._queue), self._bytes, s.sent, s.batches, s.dropped, s.streams)

    # -- the sending task -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._opts.initial_backoff
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            self._delivered = self._taken = False
            refused = False
            try:
                await self._stream()
            except (_StreamEnded, grpc.aio.AioRpcError, asyncio.InvalidStateError, TimeoutError) as exc:
                refused = self._log_failure(exc)
            except Exception:  # never let one odd failure end this peer's lane for good
                log.warning("lane %s to node %d failed unexpectedly", self.lane, self.peer, exc_info=True)
            # Messages still queued are dropped; messages taken for the broken stream may be lost.
            if self._clear() or self._taken:
                self._on_drop(self.peer)
            if self._delivered and not refused:
                backoff = self._opts.initial_backoff
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, self._opts.max_backoff)

    async def _stream(self) -> None:
        """Pump the queue into one stream until the stream fails (this only returns by raising)."""
        call = self._open_stream()
        call.add_done_callback(lambda _: self._wake.set())
        self.stats.streams += 1
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation (close() hangs).
            async with asyncio.timeout(self._opts.connect_timeout):
                await call.wait_for_connection()
            while True:
                if call.done():
                    raise await self._ended(call)
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                count, payload = self._take()
                self._taken = True
                try:
                    async with asyncio.timeout(self._opts.stall_timeout):
                        await call.write(payload)
                except BaseException:
                    self.stats.dropped += count  # lost with the stream (or the transport is closing)
                    raise
                self.stats.sent += count
                self.stats.batches += 1
                self._delivered = True
        finally:
            call.cancel()

    @staticmethod
    async def _ended(call: grpc.aio.StreamUnaryCall[bytes, object]) -> _StreamEnded:
        return _StreamEnded(await call.code(), await call.details() or "")

    def _take(self) -> tuple[int, bytes]:
        """Dequeue as many messages as fit one Batch (at least one) and frame them."""
        limit = self._opts.max_message_bytes
        queue = self._queue
        taken: list[bytes] = []
        size = 0
        while queue:
            framed = codec.framed_size(len(queue[0]))
            if taken and size + framed > limit:
                break
            taken.append(queue.popleft())
            size += framed
        self._bytes -= size
        return len(taken), codec.frame_batch(taken)

    def _clear(self) -> int:
        dropped = len(self._queue)
        self._queue.clear()
        self._bytes = 0
        self.stats.dropped += dropped
        return dropped

    def _log_failure(self, exc: BaseException) -> bool:
        """Log why a stream ended; returns whether the peer refused it (a configuration problem)."""
        code: grpc.StatusCode | None = None
        if isinstance(exc, grpc.aio.AioRpcError):
            code, text = exc.code(), f"{exc.code().name}: {exc.details()}"
        else:
            code, text = getattr(exc, "code", None), str(exc) or type(exc).__name__
        refused = code in _REFUSALS
        log.log(
            logging.WARNING if refused else logging.DEBUG, "lane %s to node %d failed: %s", self.lane, self.peer, text
        )
        return refused


_REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
