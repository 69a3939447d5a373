"""``Transport`` and ``Receiver``: the plug point between a runtime node and the network.

A transport moves ``WireMessage``s between nodes and nothing more: it never blocks the sender, never grows
without bound (a full or dead peer's messages are dropped and the receiver told the peer is unreachable), and
gives received messages to the runtime's ``Receiver`` on the runtime's event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from raft_core.runtime.wire import WireMessage
from raft_core.types import NodeId


class Receiver(Protocol):
    """What a transport calls back into (the runtime node implements this)."""

    def receive(self, message: WireMessage) -> None:
        """A message arrived for this node. Called on the runtime's event loop; must not block."""
        ...

    def unreachable(self, node: NodeId) -> None:
        """A message to ``node`` could not be delivered (the peer is down, cut off or too slow)."""
        ...


class Transport(Protocol):
    """Moves messages between this node and its peers."""

    async def start(self, receiver: Receiver) -> None:
        """Begin delivering messages addressed to this node to ``receiver``."""
        ...

    def send(self, messages: Sequence[WireMessage]) -> None:
        """Queue ``messages`` (each names its ``dst``) for delivery. Never blocks.

        Order is kept per peer within a class of messages (a transport may give votes and heartbeats their
        own lane, ahead of appends); Raft does not rely on order across classes. A message may be lost but
        is delivered at most once: the runtime takes a refusal of a forwarded proposal to mean that nothing
        of it was appended.
        """
        ...

    def address_of(self, node: NodeId) -> str | None:
        """Where ``node`` can be reached (for "not leader, try there" hints), if this transport knows."""
        ...

    async def close(self) -> None:
        """Stop sending and receiving; release connections."""
        ...
