"""``TcpTransport``: a small ``Transport`` over asyncio TCP streams, for examples and tests across processes.

Frames are a u32 length and a ``codec`` message. Each peer gets one outbound connection fed from a bounded
queue: when the queue is full or the peer cannot be reached, messages are dropped (Raft retries) and the node
is told the peer is unreachable; reconnects back off exponentially with jitter. An inbound connection must
open with a hello naming a member of the cluster, authenticated by an HMAC of the shared ``secret`` when one
is set; bad hellos and malformed frames close the connection and change nothing.

For production clusters use raft-grpc (TLS, streams per message class, health checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import struct
from collections.abc import Mapping, Sequence

from raft_core.runtime import codec
from raft_core.runtime.transport import Receiver
from raft_core.runtime.wire import WireMessage
from raft_core.types import NodeId

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")
_HELLO = struct.Struct("<I32s")
MAX_FRAME_BYTES = 64 << 20


class TcpTransport:
    """This node's TCP endpoint: listens on its own address, connects to each peer's."""

    def __init__(
        self,
        node_id: NodeId,
        addresses: Mapping[NodeId, tuple[str, int]],
        *,
        secret: bytes = b"",
        queue_size: int = 4096,
        max_backoff: float = 2.0,
    ) -> None:
        """``addresses`` maps every member (this node included) to ``(host, port)``."""
        if node_id not in addresses:
            raise ValueError(f"node {node_id} has no address in {dict(addresses)}")
        self._id = node_id
        self._addresses = dict(addresses)
        self._secret = secret
        self._queue_size = queue_size
        self._max_backoff = max_backoff
        self._queues: dict[NodeId, asyncio.Queue[WireMessage]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._receiver: Receiver | None = None
        self._inbound: set[asyncio.StreamWriter] = set()

    async def start(self, receiver: Receiver) -> None:
        """Listen on this node's address and start one sender per peer."""
        self._receiver = receiver
        host, port = self._addresses[self._id]
        self._server = await asyncio.start_server(self._serve, host, port)
        loop = asyncio.get_running_loop()
        for peer in self._addresses:
            if peer != self._id:
                queue: asyncio.Queue[WireMessage] = asyncio.Queue(self._queue_size)
                self._queues[peer] = queue
                self._tasks.append(loop.create_task(self._sender(peer, queue)))

    def send(self, messages: Sequence[WireMessage]) -> None:
        """Queue each message for its peer; a full queue drops it and reports the peer unreachable."""
        for m in messages:
            queue = self._queues.get(m.dst)
            if queue is None:
                continue
            try:
                queue.put_nowait(m)
            except asyncio.QueueFull:
                self._unreachable(m.dst)

    def address_of(self, node: NodeId) -> str | None:
        """``host:port`` of ``node``."""
        found = self._addresses.get(node)
        return f"{found[0]}:{found[1]}" if found else None

    async def close(self) -> None:
        """Stop listening, close every connection and sender."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._inbound):
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- outbound -------------------------------------------------------------------------------------------

    def _hello(self, node: NodeId) -> bytes:
        mac = hmac.new(self._secret, b"raft-core hello %d" % node, hashlib.sha256).digest()
        return _HELLO.pack(node, mac)

    def _unreachable(self, node: NodeId) -> None:
        if self._receiver is not None:
            self._receiver.unreachable(node)

    async def _sender(self, peer: NodeId, queue: asyncio.Queue[WireMessage]) -> None:
        host, port = self._addresses[peer]
        backoff = 0.05
        while True:
            first = await queue.get()
            try:
                async with asyncio.timeout(2.0):  # not wait_for: on 3.11 it can swallow a cancellation
                    _, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                self._drop(peer, queue)
                await asyncio.sleep(backoff * (0.5 + random.random()))  # jittered exponential backoff
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.05
            try:
                writer.write(self._hello(self._id))
                await self._pump(first, queue, writer)
            except (OSError, ConnectionError) as exc:
                log.debug("connection to node %d lost: %s", peer, exc)
                self._unreachable(peer)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()

    async def _pump(self, first: WireMessage, queue: asyncio.Queue[WireMessage], writer: asyncio.StreamWriter) -> None:
        m = first
        while True:
            frames = [m]
            while not queue.empty() and len(frames) < 256:
                frames.append(queue.get_nowait())
            writer.write(b"".join(_LEN.pack(len(body)) + body for body in map(codec.encode, frames)))
            await writer.drain()
            m = await queue.get()

    def _drop(self, peer: NodeId, queue: asyncio.Queue[WireMessage]) -> None:
        while not queue.empty():
            queue.get_nowait()
        self._unreachable(peer)

    # -- inbound --------------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._inbound.add(writer)
        try:
            node, mac = _HELLO.unpack(await reader.readexactly(_HELLO.size))
            expected = self._hello(node)[4:]
            if node not in self._addresses or node == self._id or not hmac.compare_digest(mac, expected):
                log.warning("refused a connection that is not from a cluster member (claimed node %d)", node)
                return
            while True:
                (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
                if size > MAX_FRAME_BYTES:
                    log.warning("node %d sent a %d-byte frame (limit %d); closing", node, size, MAX_FRAME_BYTES)
                    return
                m = codec.decode(await reader.readexactly(size))
                if m.src != node or m.dst != self._id:
                    log.warning("node %d sent a message for %d->%d; closing", node, m.src, m.dst)
                    return
                if self._receiver is not None:
                    self._receiver.receive(m)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except ValueError as exc:
            log.warning("malformed frame from a peer; closing the connection: %s", exc)
        finally:
            self._inbound.discard(writer)
            writer.close()
