"""Snapshot transfer between runtimes: a leader streams a snapshot in chunks; a follower stores and installs it.

``SnapshotSender`` turns the core's ``InstallSnapshot`` into ``SnapshotChunk``s, at most ``window`` of them
unacknowledged (flow control), and reports the outcome to the core (``report_snapshot``). ``SnapshotReceiver``
writes chunks in order into an ``IncomingSnapshot`` (a file in the snapshot store when the storage has one,
else memory) and, once all bytes are there and the checksum matches, gives back the whole
``InstallSnapshot`` for the runtime to step into its core. A receiver that restarts mid-transfer has no
partial snapshot: it refuses the next chunk, the sender gives up, and the leader starts again later.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from raft_core.errors import StorageError
from raft_core.messages import InstallSnapshot
from raft_core.runtime.wire import SnapshotChunk, SnapshotChunkAck, WireMessage
from raft_core.types import NodeId, Snapshot, SnapshotMeta

log = logging.getLogger(__name__)


class IncomingSnapshot(Protocol):
    """A snapshot being received: bytes are written in order, then checked and made durable."""

    @property
    def received(self) -> int:
        """Bytes written so far."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``, which must equal ``received``."""
        ...

    def finish(self) -> Snapshot:
        """Check size and checksum, make the snapshot durable, and return it."""
        ...

    def abort(self) -> None:
        """Discard what was received."""
        ...


@runtime_checkable
class SnapshotReceiving(Protocol):
    """A storage that can receive a snapshot in chunks (``DiskStorage`` writes them to a file)."""

    def receive_snapshot(self, meta: SnapshotMeta, size: int, checksum: int) -> IncomingSnapshot:
        """Start receiving snapshot ``meta`` of ``size`` bytes with CRC32 ``checksum``."""
        ...


class TransferError(Exception):
    """A received snapshot is incomplete or does not match its checksum."""


class MemoryIncoming:
    """An ``IncomingSnapshot`` assembled in memory (for storages without a snapshot store)."""

    def __init__(self, meta: SnapshotMeta, size: int, checksum: int) -> None:
        """Expect ``size`` bytes with CRC32 ``checksum``."""
        self._meta, self._size, self._checksum = meta, size, checksum
        self._buf = bytearray()

    @property
    def received(self) -> int:
        """Bytes written so far."""
        return len(self._buf)

    def write(self, offset: int, data: bytes) -> None:
        """Append ``data`` (``offset`` must be the next byte)."""
        if offset != len(self._buf):
            raise TransferError(f"chunk at offset {offset}, expected {len(self._buf)}")
        if offset + len(data) > self._size:
            raise TransferError(f"chunk runs to byte {offset + len(data)}, past the announced size {self._size}")
        self._buf += data

    def finish(self) -> Snapshot:
        """The snapshot, once complete and intact."""
        data = bytes(self._buf)
        if len(data) != self._size or zlib.crc32(data) != self._checksum:
            raise TransferError(f"snapshot {self._meta.index} is incomplete or corrupt")
        return Snapshot(self._meta, data)

    def abort(self) -> None:
        """Drop the buffer."""
        self._buf.clear()


class SnapshotSender:
    """Streams snapshots to followers, one transfer per follower at a time."""

    def __init__(
        self,
        node_id: NodeId,
        send: Callable[[Sequence[WireMessage]], None],
        report: Callable[[NodeId, bool], None],
        *,
        chunk_bytes: int,
        window: int,
        ack_timeout: float,
    ) -> None:
        """``send`` puts messages on the transport; ``report(node, ok)`` tells the core the outcome."""
        self._id = node_id
        self._send = send
        self._report = report
        self._chunk = chunk_bytes
        self._window = window
        self._timeout = ack_timeout
        self._tasks: dict[NodeId, asyncio.Task[None]] = {}
        self._acks: dict[NodeId, asyncio.Queue[SnapshotChunkAck]] = {}

    def start(self, message: InstallSnapshot) -> None:
        """Begin streaming ``message.snapshot`` to ``message.dst``, replacing a transfer already running."""
        self.cancel(message.dst)
        queue: asyncio.Queue[SnapshotChunkAck] = asyncio.Queue()
        self._acks[message.dst] = queue
        self._tasks[message.dst] = asyncio.get_running_loop().create_task(self._stream(message, queue))

    def on_ack(self, ack: SnapshotChunkAck) -> None:
        """Route an acknowledgement to the transfer it belongs to."""
        queue = self._acks.get(ack.src)
        if queue is not None:
            queue.put_nowait(ack)

    def cancel(self, node: NodeId) -> None:
        """Stop the transfer to ``node``, if any (without reporting)."""
        task = self._tasks.pop(node, None)
        self._acks.pop(node, None)
        if task is not None:
            task.cancel()

    def cancel_all(self) -> None:
        """Stop every transfer (this node is no longer the leader)."""
        for node in list(self._tasks):
            self.cancel(node)

    def active(self) -> int:
        """Transfers in progress."""
        return len(self._tasks)

    async def close(self) -> None:
        """Cancel every transfer."""
        tasks = list(self._tasks.values())
        self.cancel_all()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stream(self, m: InstallSnapshot, acks: asyncio.Queue[SnapshotChunkAck]) -> None:
        ok = False
        try:
            ok = await self._stream_chunks(m, acks)
        finally:
            # A transfer that was cancelled (replaced, or this node stopped leading) reports nothing: a report
            # now would be taken for the outcome of its successor and abort that one in the core.
            if self._acks.get(m.dst) is acks:
                self._tasks.pop(m.dst, None)
                self._acks.pop(m.dst, None)
                self._report(m.dst, ok)

    async def _stream_chunks(self, m: InstallSnapshot, acks: asyncio.Queue[SnapshotChunkAck]) -> bool:
        data = m.snapshot.data
        size, checksum, meta = len(data), zlib.crc32(data), m.snapshot.meta
        sent = acked = 0
        first = True
        while True:
            while (first or sent < size) and sent - acked < self._window * self._chunk:
                first = False
                piece = data[sent : sent + self._chunk]
                chunk = SnapshotChunk(
                    src=self._id, dst=m.dst, term=m.term, meta=meta, size=size, checksum=checksum,
                    offset=sent, data=piece, done=sent + len(piece) >= size,
                )  # fmt: skip
                self._send((chunk,))
                sent += len(piece)
            try:
                async with asyncio.timeout(self._timeout):  # not wait_for (3.11 cancellation bug)
                    ack = await acks.get()
            except TimeoutError:
                log.warning("snapshot %d to node %d: no acknowledgement in %.1fs", meta.index, m.dst, self._timeout)
                return False
            if ack.index != meta.index:
                continue  # a late answer about an earlier snapshot sent to this follower: not ours
            if not ack.ok:
                log.info("snapshot %d to node %d refused at byte %d", meta.index, m.dst, ack.received)
                return False
            acked = max(acked, ack.received)
            if acked >= size:
                log.info("snapshot %d (%d bytes) installed on node %d", meta.index, size, m.dst)
                return True


class SnapshotReceiver:
    """Assembles snapshots from chunks; returns the ``InstallSnapshot`` to step when one is complete."""

    def __init__(self, node_id: NodeId, storage: object, send: Callable[[Sequence[WireMessage]], None]) -> None:
        """``storage`` receives into files if it is ``SnapshotReceiving``; else chunks gather in memory."""
        self._id = node_id
        self._storage = storage
        self._send = send
        self._incoming: IncomingSnapshot | None = None
        self._key: tuple[NodeId, int, int] | None = None  # (leader, term, snapshot index)

    def on_chunk(self, c: SnapshotChunk) -> InstallSnapshot | None:
        """Store one chunk and acknowledge it; the whole message once the last chunk is in and intact."""
        key = (c.src, c.term, c.meta.index)
        if c.offset == 0:
            try:
                self._start(key, c)
            except (StorageError, OSError, ValueError, struct.error) as exc:
                log.warning("snapshot %d from node %d refused: %s", c.meta.index, c.src, exc)
                self.abort()
                self._ack(c, 0, ok=False)
                return None
        incoming = self._incoming
        if incoming is None or key != self._key or c.offset != incoming.received:
            got = incoming.received if incoming is not None and key == self._key else 0
            self._ack(c, got, ok=False)
            return None
        try:
            incoming.write(c.offset, c.data)
            snapshot = incoming.finish() if c.done else None
        except (TransferError, StorageError, OSError, ValueError, struct.error) as exc:
            log.warning("snapshot %d from node %d refused: %s", c.meta.index, c.src, exc)
            self.abort()
            self._ack(c, 0, ok=False)
            return None
        self._ack(c, incoming.received)
        if snapshot is None:
            return None
        self._incoming = self._key = None
        return InstallSnapshot(src=c.src, dst=self._id, term=c.term, snapshot=snapshot)

    def abort(self) -> None:
        """Drop a transfer in progress."""
        if self._incoming is not None:
            self._incoming.abort()
        self._incoming = self._key = None

    def _start(self, key: tuple[NodeId, int, int], c: SnapshotChunk) -> None:
        self.abort()
        storage = self._storage
        if isinstance(storage, SnapshotReceiving):
            self._incoming = storage.receive_snapshot(c.meta, c.size, c.checksum)
        else:
            self._incoming = MemoryIncoming(c.meta, c.size, c.checksum)
        self._key = key

    def _ack(self, c: SnapshotChunk, received: int, *, ok: bool = True) -> None:
        ack = SnapshotChunkAck(src=self._id, dst=c.src, term=c.term, index=c.meta.index, received=received, ok=ok)
        self._send((ack,))
