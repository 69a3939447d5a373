"""``SimCluster``: N ``MemoryNode``s over a seeded in-memory network that drops, duplicates, delays and cuts.

Time is a tick counter. One ``tick()`` ticks every running node and then delivers every message due at that
tick (a message sent with delay 0 is delivered within the same tick, so a whole exchange can complete in
one tick on a calm network). Faults are set from outside (see ``runner``): network parameters, directed
link cuts, crashes (optionally in the middle of handling a Ready: persisted but nothing sent) and restarts.
Every Ready is handled in contract order with the invariant hooks called in between.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from raft_core.config import Config
from raft_core.errors import ProposalDropped
from raft_core.messages import InstallSnapshot, Message
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.harness import MemoryNode
from raft_core.testing.sim.invariants import InvariantFailure, Invariants
from raft_core.testing.sim.trace import DELIVER, READY, Trace
from raft_core.types import Membership, NodeId, Role

MAX_DELIVERIES_PER_TICK = 200_000
"""A tick that delivers more messages than this is stuck in a message storm: reported as a failure."""


@dataclass(slots=True, frozen=True)
class NetParams:
    """How the network treats each message: drop and duplicate probabilities, and delays in ticks."""

    drop: float = 0.0
    dup: float = 0.0
    max_delay: int = 0
    """Each message waits 0..max_delay ticks (so messages overtake each other)."""
    long_delay: float = 0.0
    """Probability that a message is held much longer, up to ``long_delay_max`` extra ticks."""
    long_delay_max: int = 0

    def describe(self) -> str:
        """``drop=10% dup=2% delay=0..3 long=5%<=40``."""
        text = f"drop={self.drop:.0%} dup={self.dup:.0%} delay=0..{self.max_delay}"
        if self.long_delay:
            text += f" long={self.long_delay:.0%}<={self.long_delay_max}"
        return text


RELIABLE = NetParams()
"""No loss, no duplicates, no delay."""


class SimCluster:
    """Nodes 1..size, their network and the checks, all driven by one ``random.Random``."""

    def __init__(
        self, size: int, rng: random.Random, config: Mapping[str, object] | None = None, trace: Trace | None = None
    ) -> None:
        """Build ``size`` fresh nodes; ``config`` overrides ``Config`` fields; node rngs are drawn from ``rng``."""
        self.ids: list[NodeId] = list(range(1, size + 1))
        self.rng = rng
        self.trace = trace if trace is not None else Trace()
        membership = Membership(voters=frozenset(self.ids))
        self.nodes: dict[NodeId, MemoryNode] = {}
        for node_id in self.ids:
            cfg = Config.build(id=node_id, **(config or {}))
            self.nodes[node_id] = MemoryNode(cfg, membership, random.Random(rng.getrandbits(64)))
        self.storages: dict[NodeId, MemoryStorage] = {n: self.nodes[n].storage for n in self.ids}
        self.invariants = Invariants(self.storages)
        for mn in self.nodes.values():
            mn.on_apply = self.invariants.on_apply
        self.up: dict[NodeId, bool] = dict.fromkeys(self.ids, True)
        self.net = RELIABLE
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.now = 0
        self._due: dict[int, list[Message]] = {}
        self._crash_after_persist: set[NodeId] = set()
        self.delivered = 0
        self.dropped = 0
        self.drop_if: Callable[[Message], bool] | None = None
        """Scripted tests: drop every message this returns True for (like ``Network.ignore``)."""
        self.observe: Callable[[Message], None] | None = None
        """Scripted tests: called with every message just before it is delivered."""

    @property
    def majority(self) -> int:
        """How many nodes make a majority."""
        return len(self.ids) // 2 + 1

    # -- time and messages ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Run tick ``now``: tick every running node, deliver every message due, move to the next tick."""
        now = self.now
        nodes = self.nodes
        for node_id, running in self.up.items():
            if running:
                mn = nodes[node_id]
                mn.node.tick()
                self._drain(mn)
        self.deliver_due()
        self.now = now + 1

    def deliver_due(self) -> None:
        """Deliver every message due by now, and whatever they cause that is due now too (no node ticks)."""
        now = self.now
        due = self._due.get(now)
        if due is None:
            return
        i = 0
        while i < len(due):
            self._deliver(due[i])
            i += 1
            if i > MAX_DELIVERIES_PER_TICK:
                raise InvariantFailure("liveness", f"more than {MAX_DELIVERIES_PER_TICK} messages in tick {now}")
        del self._due[now]

    def run(self, ticks: int) -> None:
        """Run ``ticks`` ticks with no outside intervention."""
        for _ in range(ticks):
            self.tick()

    def _send(self, m: Message) -> None:
        net = self.net
        rng = self.rng
        if net.drop and rng.random() < net.drop:
            self._lost(m, "loss")
            return
        self._schedule(m)
        if net.dup and rng.random() < net.dup:
            self._schedule(m)

    def _schedule(self, m: Message) -> None:
        net = self.net
        at = self.now
        if net.max_delay:
            at += int(self.rng.random() * (net.max_delay + 1))
        if net.long_delay and self.rng.random() < net.long_delay:
            at += 1 + int(self.rng.random() * net.long_delay_max)
        due = self._due.get(at)
        if due is None:
            self._due[at] = [m]
        else:
            due.append(m)

    def _deliver(self, m: Message) -> None:
        dst = m.dst
        if not self.up.get(dst, False):
            self._lost(m, "down")
            return
        if (m.src, dst) in self.blocked:
            self._lost(m, "cut")
            return
        if self.drop_if is not None and self.drop_if(m):
            self._lost(m, "filtered")
            return
        if self.observe is not None:
            self.observe(m)
        self.delivered += 1
        self.trace.add((self.now, DELIVER, dst, m))
        mn = self.nodes[dst]
        mn.node.step(m)
        self._drain(mn)
        if isinstance(m, InstallSnapshot):
            self._report_snapshot(m, ok=True)

    def _lost(self, m: Message, why: str) -> None:
        self.dropped += 1
        self.trace.drop(self.now, m, why)
        if isinstance(m, InstallSnapshot):
            self._report_snapshot(m, ok=False)

    def _report_snapshot(self, m: InstallSnapshot, *, ok: bool) -> None:
        """Tell the sender how its snapshot transfer ended, as a real transport would."""
        if self.up.get(m.src, False):
            self.nodes[m.src].node.report_snapshot(m.dst, ok=ok)

    def _drain(self, mn: MemoryNode) -> None:
        """Handle every pending Ready of ``mn`` in contract order (persist, send, apply, advance), checking."""
        node = mn.node
        inv = self.invariants
        if node.role is Role.LEADER:
            inv.on_leader(mn)
        while node.has_ready():
            ready = node.ready()
            durable = ready.entries or ready.snapshot is not None
            if durable:
                inv.before_persist(mn, ready)
            if durable or ready.hard_state is not None:
                mn.persist(ready)
                inv.on_persist(mn, ready)
                self.trace.add((self.now, READY, mn.id, ready))
            elif ready.soft_state is not None or ready.committed_entries or ready.read_states:
                self.trace.add((self.now, READY, mn.id, ready))
            if self._crash_after_persist and mn.id in self._crash_after_persist:
                self._crash_after_persist.discard(mn.id)
                self.up[mn.id] = False
                self.trace.fault(self.now, mn.id, "crashed after persisting a Ready, before sending it")
                return
            for m in ready.messages:
                self._send(m)
            if ready.committed_entries or ready.snapshot is not None or ready.read_states:
                mn.apply(ready)
                if ready.read_states:
                    inv.on_read_states(mn.id, ready.read_states)
            node.advance(ready)

    # -- faults -----------------------------------------------------------------------------------------

    def set_net(self, net: NetParams) -> None:
        """Change how the network treats messages sent from now on."""
        if net != self.net:
            self.net = net
            self.trace.fault(self.now, 0, f"network: {net.describe()}")

    def crash(self, node: NodeId, *, mid_ready: bool = False) -> None:
        """Crash ``node`` now, or (``mid_ready``) right after it persists its next Ready, before it sends it."""
        if not self.up[node]:
            return
        if mid_ready:
            self._crash_after_persist.add(node)
            self.trace.fault(self.now, node, "will crash in the middle of its next Ready")
            return
        self.up[node] = False
        self.trace.fault(self.now, node, "crashed")

    def cancel_pending_crashes(self) -> None:
        """Forget crashes scheduled for the middle of a next Ready (the nodes stay up)."""
        self._crash_after_persist.clear()

    def restart(self, node: NodeId) -> None:
        """Restart a crashed ``node`` from what it persisted (a running node is crashed first)."""
        self._crash_after_persist.discard(node)
        mn = self.nodes[node]
        mn.restart()
        self.up[node] = True
        self.trace.fault(self.now, node, f"restarted (term {mn.node.term}, commit {mn.node.status().commit})")
        self._drain(mn)

    def down(self) -> list[NodeId]:
        """The crashed nodes."""
        return [n for n in self.ids if not self.up[n]]

    def running(self) -> list[NodeId]:
        """The running nodes."""
        return [n for n in self.ids if self.up[n]]

    def heal(self) -> None:
        """Remove every link cut."""
        if self.blocked:
            self.blocked.clear()
            self.trace.fault(self.now, 0, "partitions healed")

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Cut every link between different groups (both ways); nodes in no group are isolated."""
        sets = [set(g) for g in groups]
        self.blocked = {
            (a, b) for a in self.ids for b in self.ids if a != b and not any(a in g and b in g for g in sets)
        }
        text = " | ".join(",".join(str(n) for n in sorted(g)) for g in sets)
        self.trace.fault(self.now, 0, f"partition {text}")

    def cut(self, src: NodeId, dst: NodeId) -> None:
        """Drop messages from ``src`` to ``dst`` (one way)."""
        self.blocked.add((src, dst))
        self.trace.fault(self.now, 0, f"cut {src}->{dst}")

    def isolate(self, node: NodeId) -> None:
        """Cut ``node`` off from everyone, both ways."""
        for other in self.ids:
            if other != node:
                self.blocked.add((node, other))
                self.blocked.add((other, node))
        self.trace.fault(self.now, node, "isolated")

    def reconnect(self, node: NodeId) -> None:
        """Restore every link to and from ``node``."""
        before = len(self.blocked)
        self.blocked = {(a, b) for a, b in self.blocked if node not in (a, b)}
        if len(self.blocked) != before:
            self.trace.fault(self.now, node, "reconnected")

    def connected(self, a: NodeId, b: NodeId) -> bool:
        """Whether messages flow both ways between ``a`` and ``b``."""
        return (a, b) not in self.blocked and (b, a) not in self.blocked

    # -- clients ----------------------------------------------------------------------------------------

    def propose(self, node: NodeId, *data: bytes) -> int | None:
        """Propose ``data`` at ``node``; returns the leader's index, or None if refused or forwarded."""
        mn = self.nodes[node]
        if not self.up[node]:
            return None
        self.trace.client(self.now, node, "propose " + ", ".join(d.decode(errors="replace") for d in data))
        try:
            index = mn.node.propose_many(data)
        except ProposalDropped as exc:
            self.trace.client(self.now, node, f"refused: {type(exc).__name__}")
            index = None
        self._drain(mn)
        return index

    def read_index(self, node: NodeId, context: bytes) -> None:
        """Issue a linearizable read at ``node``; the invariants check the ReadState that answers it."""
        if not self.up[node]:
            return
        mn = self.nodes[node]
        self.invariants.on_read_issued(context)
        self.trace.client(self.now, node, f"read_index {context.decode()}")
        try:
            mn.node.read_index(context)
        except ProposalDropped:
            return
        self._drain(mn)

    def transfer(self, node: NodeId, target: NodeId) -> None:
        """Ask ``node`` to hand leadership to ``target``."""
        if not self.up[node]:
            return
        self.trace.client(self.now, node, f"transfer leadership to {target}")
        try:
            self.nodes[node].node.transfer_leadership(target)
        except ProposalDropped:
            return
        self._drain(self.nodes[node])

    def campaign(self, node: NodeId) -> None:
        """Make ``node`` start an election now."""
        if self.up[node]:
            self.trace.client(self.now, node, "campaign")
            self.nodes[node].node.campaign()
            self._drain(self.nodes[node])

    def snapshot(self, node: NodeId, keep: int) -> None:
        """Snapshot ``node``'s state machine and compact its log, keeping ``keep`` entries before it."""
        if self.up[node]:
            snap = self.nodes[node].take_snapshot(keep)
            if snap is not None:
                self.trace.client(self.now, node, f"snapshot at {snap.meta.term}/{snap.meta.index}, keep {keep}")

    # -- views ------------------------------------------------------------------------------------------

    def leader(self) -> NodeId | None:
        """The running node that leads the highest term, if any."""
        best: NodeId | None = None
        best_term = -1
        for node_id in self.ids:
            node = self.nodes[node_id].node
            if self.up[node_id] and node.role is Role.LEADER and node.term > best_term:
                best, best_term = node_id, node.term
        return best

    def stable_leader(self, group: Iterable[NodeId]) -> NodeId | None:
        """The leader every node of ``group`` is up, following, and agrees on the term of; else None."""
        members = list(group)
        lead = self.leader()
        if lead is None or lead not in members:
            return None
        term = self.nodes[lead].node.term
        for node_id in members:
            node = self.nodes[node_id].node
            if not self.up[node_id] or node.leader != lead or node.term != term:
                return None
        return lead

    def applied_index(self, node: NodeId) -> int:
        """The last index ``node`` has applied."""
        return self.nodes[node].applied.last_index
