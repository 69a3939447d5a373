"""``MemoryNetwork``: an in-process network of ``MemoryTransport``s, for tests and examples.

Messages are delivered on the event loop (``call_soon``), in order per link, never synchronously inside
``send``. Tests can cut links, isolate nodes and drop a fraction of messages (from a seeded ``random.Random``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from raft_core.runtime.transport import Receiver
from raft_core.runtime.wire import WireMessage
from raft_core.types import NodeId


class MemoryNetwork:
    """Links every transport made by ``transport(node)``; faults are set here."""

    def __init__(self, *, seed: int = 0) -> None:
        """Start with no nodes and a perfect network; ``seed`` drives message loss."""
        self._receivers: dict[NodeId, Receiver] = {}
        self._cut: set[tuple[NodeId, NodeId]] = set()
        self._drop_rate = 0.0
        self._rng = random.Random(seed)
        self.sent = 0

    def transport(self, node: NodeId) -> MemoryTransport:
        """The transport of ``node``."""
        return MemoryTransport(self, node)

    # -- faults ---------------------------------------------------------------------------------------------

    def cut(self, a: NodeId, b: NodeId) -> None:
        """Drop every message between ``a`` and ``b`` (both ways)."""
        self._cut |= {(a, b), (b, a)}

    def isolate(self, node: NodeId, others: Sequence[NodeId]) -> None:
        """Cut ``node`` off from each of ``others``."""
        for other in others:
            if other != node:
                self.cut(node, other)

    def heal(self) -> None:
        """Restore every link and stop dropping messages."""
        self._cut.clear()
        self._drop_rate = 0.0

    def drop(self, rate: float) -> None:
        """Drop each message with probability ``rate`` from now on."""
        self._drop_rate = rate

    # -- delivery -------------------------------------------------------------------------------------------

    def _attach(self, node: NodeId, receiver: Receiver) -> None:
        self._receivers[node] = receiver

    def _detach(self, node: NodeId) -> None:
        self._receivers.pop(node, None)

    def _send(self, src: NodeId, messages: Sequence[WireMessage]) -> None:
        loop = asyncio.get_running_loop()
        for m in messages:
            self.sent += 1
            if (src, m.dst) in self._cut or (self._drop_rate and self._rng.random() < self._drop_rate):
                continue
            receiver = self._receivers.get(m.dst)
            if receiver is None:
                sender = self._receivers.get(src)
                if sender is not None:
                    loop.call_soon(sender.unreachable, m.dst)
                continue
            loop.call_soon(self._deliver, m)

    def _deliver(self, m: WireMessage) -> None:
        receiver = self._receivers.get(m.dst)
        if receiver is not None and (m.src, m.dst) not in self._cut:
            receiver.receive(m)


class MemoryTransport:
    """One node's end of a ``MemoryNetwork``."""

    def __init__(self, network: MemoryNetwork, node: NodeId) -> None:
        """Attach ``node`` to ``network`` (it receives once started)."""
        self._network = network
        self._node = node

    async def start(self, receiver: Receiver) -> None:
        """Begin delivering this node's messages to ``receiver``."""
        self._network._attach(self._node, receiver)

    def send(self, messages: Sequence[WireMessage]) -> None:
        """Queue ``messages`` for delivery on the event loop."""
        self._network._send(self._node, messages)

    def address_of(self, node: NodeId) -> str | None:
        """An in-memory node's address is its name."""
        return f"memory://{node}"

    async def close(self) -> None:
        """Detach from the network: messages to this node are dropped from now on."""
        self._network._detach(self._node)
