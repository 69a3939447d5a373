"""``Network``: a synchronous in-memory network of ``MemoryNode``s for protocol tests (no threads, no sleeps).

``send(*msgs)`` delivers messages, lets each receiver handle its Ready, and keeps delivering what they
send until nothing is left. Links can be cut, nodes isolated and message kinds ignored; ``recover()`` heals
everything.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable

from raft_core.config import Config
from raft_core.messages import InstallSnapshot, Message
from raft_core.testing.harness import MemoryNode
from raft_core.types import Membership, NodeId


class Network:
    """Nodes 1..n (or the given ids) connected by a perfect network that tests can break on purpose."""

    def __init__(self, ids: Iterable[NodeId] | int = 3, *, seed: int = 0, **config: object) -> None:
        """Build the nodes; ``config`` overrides ``Config`` fields for all of them."""
        ids = range(1, ids + 1) if isinstance(ids, int) else ids
        self.ids = sorted(ids)
        membership = Membership(voters=frozenset(self.ids))
        self.nodes: dict[NodeId, MemoryNode] = {}
        for node_id in self.ids:
            cfg = Config.build(id=node_id, **config)
            self.nodes[node_id] = MemoryNode(cfg, membership, random.Random(seed * 1000 + node_id))
        self._cut: set[tuple[NodeId, NodeId]] = set()
        self._ignored: set[type] = set()
        self.delivered: list[Message] = []

    def __getitem__(self, node_id: NodeId) -> MemoryNode:
        """The node with that id."""
        return self.nodes[node_id]

    # -- faults ---------------------------------------------------------------------------------------------

    def cut(self, a: NodeId, b: NodeId) -> None:
        """Drop all traffic between ``a`` and ``b`` (both ways)."""
        self._cut |= {(a, b), (b, a)}

    def isolate(self, node: NodeId) -> None:
        """Drop all traffic to and from ``node``."""
        for other in self.ids:
            if other != node:
                self.cut(node, other)

    def ignore(self, kind: type) -> None:
        """Drop every message of ``kind``."""
        self._ignored.add(kind)

    def recover(self) -> None:
        """Heal every cut and stop ignoring message kinds."""
        self._cut.clear()
        self._ignored.clear()

    # -- driving --------------------------------------------------------------------------------------------

    def send(self, *messages: Message) -> None:
        """Deliver ``messages`` and everything they cause, until the network is quiet."""
        queue: deque[Message] = deque(messages)
        while queue:
            m = queue.popleft()
            if (m.src, m.dst) in self._cut or type(m) in self._ignored or m.dst not in self.nodes:
                if isinstance(m, InstallSnapshot) and m.src in self.nodes:
                    # A real transport reports a failed snapshot transfer; so does this network.
                    self.nodes[m.src].node.report_snapshot(m.dst, ok=False)
                continue
            self.delivered.append(m)
            self.nodes[m.dst].node.step(m)
            queue.extend(self.nodes[m.dst].handle_ready())

    def flush(self, node: NodeId) -> None:
        """Handle ``node``'s pending Ready and deliver what it sends."""
        self.send(*self.nodes[node].handle_ready())

    def tick(self, node: NodeId, ticks: int = 1) -> None:
        """Tick ``node`` and deliver what each tick makes it send."""
        for _ in range(ticks):
            self.nodes[node].node.tick()
            self.flush(node)

    def tick_all(self, ticks: int = 1) -> None:
        """Tick every node ``ticks`` times, delivering after each round."""
        for _ in range(ticks):
            for node_id in self.ids:
                self.nodes[node_id].node.tick()
            for node_id in self.ids:
                self.flush(node_id)

    def campaign(self, node: NodeId) -> None:
        """Make ``node`` start an election now and run it to the end."""
        self.nodes[node].node.campaign()
        self.flush(node)

    def propose(self, node: NodeId, data: bytes) -> int | None:
        """Propose ``data`` on ``node`` and replicate it; returns the index the leader gave it."""
        index = self.nodes[node].node.propose(data)
        self.flush(node)
        return index

    def leader(self) -> NodeId | None:
        """The node that is leader of the highest term, if any."""
        leaders = [n for n in self.ids if self.nodes[n].node.soft_state.role.value == "leader"]
        if not leaders:
            return None
        return max(leaders, key=lambda n: self.nodes[n].node.term)
