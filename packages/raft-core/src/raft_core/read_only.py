"""ReadIndex bookkeeping (dissertation §6.4): pending linearizable reads and the heartbeat acks they await.

A read is recorded with the commit index at the time it arrived. It is safe to serve once a majority has
answered a heartbeat sent after it arrived (so this node was still leader then) and the state machine has
applied up to the recorded index. Acknowledging a later request also confirms every earlier one.
Contexts must be unique among pending requests; a duplicate is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raft_core.types import NodeId


@dataclass(slots=True)
class ReadRequest:
    """One pending read: who asked (``origin``), its ``context``, the commit ``index`` and the acks so far."""

    origin: NodeId
    context: bytes
    index: int
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    """Pending ReadIndex requests of a leader, in arrival order."""

    __slots__ = ("_pending", "_queue")

    def __init__(self) -> None:
        """No pending reads."""
        self._pending: dict[bytes, ReadRequest] = {}
        self._queue: list[bytes] = []

    def add_request(self, index: int, origin: NodeId, context: bytes, leader: NodeId) -> None:
        """Record a read by ``origin`` that must wait for commit ``index`` (the leader acks it at once)."""
        if context in self._pending:
            return
        self._pending[context] = ReadRequest(origin, context, index, {leader})
        self._queue.append(context)

    def recv_ack(self, node: NodeId, context: bytes) -> set[NodeId] | None:
        """Record that ``node`` answered the heartbeat that carried ``context``; returns the acks so far."""
        request = self._pending.get(context)
        if request is None:
            return None
        request.acks.add(node)
        return request.acks

    def advance(self, context: bytes) -> list[ReadRequest]:
        """Release ``context``'s request and every request that arrived before it, oldest first."""
        if context not in self._pending:
            return []
        position = self._queue.index(context)
        released = [self._pending.pop(ctx) for ctx in self._queue[: position + 1]]
        del self._queue[: position + 1]
        return released

    def last_pending_context(self) -> bytes:
        """The newest pending request's context (empty when none is pending)."""
        return self._queue[-1] if self._queue else b""

    def __len__(self) -> int:
        """How many reads are pending."""
        return len(self._queue)
