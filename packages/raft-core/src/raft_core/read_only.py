"""ReadIndex bookkeeping (dissertation §6.4): a leader's pending linearizable reads and who confirmed them.

Each read is recorded with the commit index at the time it arrived and a *round* number that this node
assigns (increasing for the node's whole life, never reused). Heartbeats carry the newest pending round; a
follower's answer to a heartbeat of round ``r`` proves that it still followed this leader, in this term,
after every read of round ``<= r`` arrived. A read is confirmed once a majority of voters (the leader
included) proved that, and it is released in arrival order. It may then be served once the state machine
has applied its index. Callers' contexts are only carried along: two reads may share one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from raft_core import quorum
from raft_core.types import NodeId


@dataclass(slots=True, frozen=True)
class ReadRequest:
    """One pending read: who asked (``origin``), its ``context``, the commit ``index`` and its ``round``."""

    origin: NodeId
    context: bytes
    index: int
    round: int


class ReadOnly:
    """Pending ReadIndex requests of a leader, in arrival order, and the newest round each peer confirmed."""

    __slots__ = ("_acked", "_queue", "_round")

    def __init__(self) -> None:
        """No pending reads."""
        self._queue: deque[ReadRequest] = deque()
        self._acked: dict[NodeId, int] = {}
        self._round = 0

    def add_request(self, index: int, origin: NodeId, context: bytes) -> int:
        """Record a read by ``origin`` that must wait for commit ``index``; returns its round."""
        self._round += 1
        self._queue.append(ReadRequest(origin, context, index, self._round))
        return self._round

    def recv_ack(self, node: NodeId, read_round: int) -> None:
        """``node`` answered a heartbeat of ``read_round``."""
        if read_round > self._acked.get(node, 0):
            self._acked[node] = read_round

    def release(self, voters: Collection[NodeId], leader: NodeId) -> list[ReadRequest]:
        """Remove and return the reads a majority of ``voters`` has confirmed, oldest first."""
        released: list[ReadRequest] = []
        acked = self._acked
        while self._queue:
            request = self._queue[0]
            confirmed = [v for v in voters if v == leader or acked.get(v, 0) >= request.round]
            if not quorum.has_quorum(voters, confirmed):
                break
            released.append(self._queue.popleft())
        return released

    def last_round(self) -> int:
        """The newest pending read's round (0 when none is pending)."""
        return self._queue[-1].round if self._queue else 0

    def clear(self) -> None:
        """Forget pending reads and confirmations (on a role change); rounds keep increasing."""
        self._queue.clear()
        self._acked.clear()

    def __len__(self) -> int:
        """How many reads are pending."""
        return len(self._queue)
