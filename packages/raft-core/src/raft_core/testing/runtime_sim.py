"""A seeded randomized simulation of real runtime ``Node``s on the virtual loop, and the test cluster it uses.

Each seed runs 3 or 5 ``raft_core.runtime.Node``s over a ``MemoryNetwork`` on a ``VirtualLoop``: random
partitions, message loss, crashes and restarts (a new ``Node`` over the same ``CrashStorage``, which loses
what was never synced, and a fresh state machine), small snapshot thresholds so lagging and restarted nodes
install snapshots through chunked transfers, and clients that propose with sessions and retry the same
(client, seq) on other nodes until they are answered. At the end (network healed, every node at the same
applied index) it checks:

- every node's state machine and session table are identical;
- every acknowledged command was applied exactly once (``SimMachine`` records each (client, seq) it applies);
- every answer to a retry equals the first answer;
- a linearizable read never returns a state older than a write acknowledged before the read began.

A run is a pure function of its seed (nodes get ``rng`` and ``clock`` from the loop)::

    python -m raft_core.testing.runtime_sim --seeds 100
    python -m raft_core.testing.runtime_sim --seed 17 -v
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raft_core.errors import (
    CommandFailed,
    CommitUnknown,
    NodeStopped,
    ProposalDropped,
    RaftError,
    ReadTimeout,
    SessionError,
)
from raft_core.runtime import Command, MemoryNetwork, Node, NodeOptions, SnapshotChunk, WireMessage
from raft_core.runtime.sessions import Verdict
from raft_core.storage.memory import MemoryStorage
from raft_core.storage.protocol import InitialState
from raft_core.testing.virtual_loop import run_virtual
from raft_core.types import Entry, HardState, Membership, NodeId, Snapshot

log = logging.getLogger(__name__)


# -- the replicated state machine ---------------------------------------------------------------------------


def command(client: str, seq: int, value: int = 1, *, fail: bool = False) -> bytes:
    """The bytes of a ``SimMachine`` command: add ``value`` (or, with ``fail``, make ``apply`` raise)."""
    return json.dumps({"c": client, "s": seq, "v": value, "op": "fail" if fail else "add"}).encode()


class SimMachine:
    """A state machine that records every (client, seq) it applies, so a duplicate apply is visible.

    ``apply`` returns ``{"total", "index", "seq"}``: the running total, the entry's log index and the seq, so two
    applications of the same command can never return equal results. ``restores`` counts ``restore`` calls.
    """

    def __init__(self) -> None:
        """An empty state."""
        self.total = 0
        self.applies = 0
        self.dup_applies = 0
        self.seen: dict[str, int] = {}  # "client#seq" -> log index
        self.last_ok: dict[str, int] = {}  # client -> last seq applied without failing
        self.times: list[int] = []  # log time of the last few commands (to check it never goes back)
        self.restores = 0

    def apply(self, cmd: Command) -> object:
        """Apply one command (see ``command``)."""
        doc = json.loads(cmd.data)
        client, seq = str(doc["c"]), int(doc["s"])
        key = f"{client}#{seq}"
        if client and key in self.seen:
            self.dup_applies += 1
        self.seen[key] = cmd.index
        self.applies += 1
        self.times = [*self.times[-4:], cmd.time]
        if doc["op"] == "fail":
            raise ValueError(f"refused {key}")
        self.total += int(doc["v"])
        if client:
            self.last_ok[client] = seq
        return {"total": self.total, "index": cmd.index, "seq": seq}

    def snapshot(self) -> bytes:
        """The whole state as JSON."""
        state = {
            "total": self.total,
            "applies": self.applies,
            "dup": self.dup_applies,
            "seen": self.seen,
            "last_ok": self.last_ok,
            "times": self.times,
        }
        return json.dumps(state, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        """Replace the state with a ``snapshot``."""
        doc = json.loads(data)
        self.total, self.applies, self.dup_applies = int(doc["total"]), int(doc["applies"]), int(doc["dup"])
        self.seen = {str(k): int(v) for k, v in doc["seen"].items()}
        self.last_ok = {str(k): int(v) for k, v in doc["last_ok"].items()}
        self.times = [int(t) for t in doc["times"]]
        self.restores += 1


# -- the network and the cluster -----------------------------------------------------------------------------


class CountingNetwork(MemoryNetwork):
    """A ``MemoryNetwork`` that counts delivered snapshot chunks (per receiver), with a ``tap`` and a ``delay``."""

    def __init__(self, *, seed: int = 0) -> None:
        """A perfect network; ``seed`` drives message loss."""
        super().__init__(seed=seed)
        self.chunks: Counter[NodeId] = Counter()
        self.tap: Callable[[WireMessage], bool] | None = None
        """Called for each message about to be delivered; returning False drops it."""
        self.delay: Callable[[WireMessage], float] | None = None
        """Seconds to hold each message before delivering it (0: at once). A constant per link keeps order."""

    def _deliver(self, m: WireMessage) -> None:
        if self.delay is not None:
            seconds = self.delay(m)
            if seconds > 0:
                asyncio.get_running_loop().call_later(seconds, self._deliver_now, m)
                return
        self._deliver_now(m)

    def _deliver_now(self, m: WireMessage) -> None:
        if self.tap is not None and not self.tap(m):
            return
        if isinstance(m, SnapshotChunk) and m.dst in self._receivers and (m.src, m.dst) not in self._cut:
            self.chunks[m.dst] += 1
        super()._deliver(m)


class CrashStorage:
    """A ``Storage`` over ``MemoryStorage`` that loses what was never synced when its node crashes.

    Writes go to a live ``MemoryStorage`` at once; a durable copy follows only what was synced (a Ready
    persisted with ``sync``, which also makes the earlier unsynced batches durable, as an fsync would) and
    snapshots and compaction (durable by contract). ``crash()`` throws the live state away and goes on from the
    durable copy: a batch persisted without ``sync`` (a commit index only, by the Ready contract) is lost.
    """

    def __init__(self, membership: Membership) -> None:
        """An empty storage bootstrapping ``membership``."""
        self.live = MemoryStorage(membership)
        self.durable = MemoryStorage(membership)
        self._pending: list[tuple[HardState | None, Sequence[Entry], Snapshot | None]] = []
        self.lost_batches = 0

    def crash(self) -> None:
        """Lose every unsynced batch: the live state becomes the durable one."""
        self.lost_batches += len(self._pending)
        self._pending.clear()
        live = copy.copy(self.durable)
        live._ents = list(self.durable._ents)
        self.live = live

    # -- reads ------------------------------------------------------------------------------------------------

    def initial_state(self) -> InitialState:
        """The live hard state and membership."""
        return self.live.initial_state()

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Live entries ``[lo, hi)``."""
        return self.live.entries(lo, hi, max_size)

    def term(self, index: int) -> int:
        """The live term at ``index``."""
        return self.live.term(index)

    def first_index(self) -> int:
        """The live first index."""
        return self.live.first_index()

    def last_index(self) -> int:
        """The live last index."""
        return self.live.last_index()

    def snapshot(self) -> Snapshot:
        """The live snapshot."""
        return self.live.snapshot()

    # -- writes -----------------------------------------------------------------------------------------------

    def persist(
        self, *, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None, sync: bool
    ) -> None:
        """Persist a batch; it becomes durable (with every batch before it) only with ``sync``."""
        self.live.persist(hard_state=hard_state, entries=entries, snapshot=snapshot, sync=sync)
        self._pending.append((hard_state, list(entries), snapshot))
        if sync:
            for hs, ents, snap in self._pending:
                self.durable.persist(hard_state=hs, entries=ents, snapshot=snap, sync=True)
            self._pending.clear()

    def create_snapshot(self, index: int, data: bytes, membership: Membership | None = None) -> Snapshot:
        """Store a snapshot, durably (unsynced batches stay unsynced)."""
        snap = self.live.create_snapshot(index, data, membership)
        if index > self.durable.snapshot().meta.index:
            self.durable.create_snapshot(index, data, membership)
        return snap

    def compact(self, index: int) -> None:
        """Compact the log, durably."""
        self.live.compact(index)
        self.durable.compact(min(index, self.durable.snapshot().meta.index))

    def close(self) -> None:
        """Nothing to release."""


def sim_options(**overrides: Any) -> NodeOptions:
    """Options for virtual-time clusters: no threads, small snapshots, small chunks, short deadlines."""
    values: dict[str, Any] = {
        "persist_in_thread": False,
        "tick_interval": 0.05,
        "election_ticks": 10,
        "heartbeat_ticks": 1,
        "snapshot_entries": 20,
        "compact_keep_entries": 5,
        "snapshot_chunk_bytes": 256,
        "snapshot_window": 2,
        "snapshot_chunk_timeout": 1.0,
        "proposal_timeout": 3.0,
        "read_timeout": 3.0,
    }
    values.update(overrides)
    return NodeOptions(**values)


class Cluster:
    """N runtime nodes on one ``CountingNetwork``, each over a ``CrashStorage`` that survives restarts.

    Built and used on a running loop: the nodes' clock is the loop's ``time()`` in ms, so on a ``VirtualLoop``
    (the normal case) runs are deterministic; on an ordinary loop it is a real-time smoke run. ``offset_ms`` is
    added to every node's clock (tests move log time with it).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        seed: int = 0,
        options: NodeOptions | None = None,
        machine: Callable[[], SimMachine] = SimMachine,
        lose_unsynced: bool = True,
    ) -> None:
        """Nodes ``1..size`` (not started); with ``lose_unsynced`` a stopped node loses its unsynced writes."""
        self.loop = asyncio.get_running_loop()
        self.ids = list(range(1, size + 1))
        self.seed = seed
        self.rng = random.Random(f"cluster-{seed}")
        self.options = options or sim_options()
        self.net = CountingNetwork(seed=self.rng.getrandbits(32))
        membership = Membership.of(*self.ids)
        self.storages = {i: CrashStorage(membership) for i in self.ids}
        self.make_machine = machine
        self.lose_unsynced = lose_unsynced
        self.nodes: dict[NodeId, Node] = {}
        self.down: set[NodeId] = set(self.ids)
        self.offset_ms = 0
        self.starts = 0
        self.installs = 0  # snapshot restores after start (installed from a leader)
        self.duplicates: Counter[NodeId] = Counter()  # DUPLICATE session verdicts seen, per node
        self.dead: list[Node] = []

    def clock(self) -> int:
        """The nodes' log clock: virtual ms plus ``offset_ms``."""
        return int(self.loop.time() * 1000) + self.offset_ms

    def machine(self, node: NodeId) -> SimMachine:
        """The state machine of ``node``'s current incarnation."""
        sm = self.nodes[node].state_machine
        assert isinstance(sm, SimMachine)
        return sm

    def build(self, node: NodeId, options: NodeOptions | None = None) -> Node:
        """A new (unstarted) ``Node`` for ``node`` over its storage, with a fresh state machine."""
        self.starts += 1
        rng = random.Random(f"{self.seed}-{node}-{self.starts}")
        n = Node(
            node,
            self.make_machine(),
            self.storages[node],
            self.net.transport(node),
            options or self.options,
            rng=rng,
            clock=self.clock,
        )
        # Request numbers are drawn from os.urandom by default; draw them from the seed instead (determinism).
        n._requests = itertools.count(rng.getrandbits(47) << 16)
        self._count_duplicates(n)
        return n

    def _count_duplicates(self, n: Node) -> None:
        sessions = n._applier.sessions
        check = sessions.check
        node = n.id

        def counting(client: str, seq: int) -> tuple[Verdict, Any]:
            verdict, recorded = check(client, seq)
            if verdict is Verdict.DUPLICATE:
                self.duplicates[node] += 1
            return verdict, recorded

        sessions.check = counting  # type: ignore[method-assign]

    async def start(self, node: NodeId, options: NodeOptions | None = None) -> Node:
        """Start ``node`` (again), over its storage and with a fresh state machine."""
        assert node in self.down, f"node {node} is running"
        n = self.build(node, options)
        await n.start()
        machine = n.state_machine
        if isinstance(machine, SimMachine):
            machine.restores = 0  # from now on, a restore is a snapshot installed from a leader
        self.nodes[node] = n
        self.down.discard(node)
        return n

    async def start_all(self) -> None:
        """Start every node that is down."""
        for node in sorted(self.down):
            await self.start(node)

    async def stop(self, node: NodeId) -> None:
        """Stop ``node`` (a crash: what it persisted stays in its storage)."""
        n = self.nodes[node]
        machine = n.state_machine
        if isinstance(machine, SimMachine):
            self.installs += machine.restores
        await n.stop()
        if self.lose_unsynced:
            self.storages[node].crash()
        self.down.add(node)
        self.dead.append(n)

    async def restart(self, node: NodeId) -> Node:
        """Stop and start ``node``."""
        await self.stop(node)
        return await self.start(node)

    async def stop_all(self) -> None:
        """Stop every running node."""
        for node in sorted(set(self.ids) - self.down):
            await self.stop(node)

    def live(self) -> list[Node]:
        """The running nodes, by id."""
        return [self.nodes[i] for i in self.ids if i not in self.down]

    def leader(self) -> Node | None:
        """A running node that is leader with the highest term, if any."""
        leaders = [n for n in self.live() if n.is_leader]
        return max(leaders, key=lambda n: n.status().term) if leaders else None

    async def wait_leader(self, timeout: float = 30.0, among: Sequence[NodeId] | None = None) -> Node:
        """Wait until a running node (of ``among``) is leader and known as such by every running node."""
        async with asyncio.timeout(timeout):
            while True:
                lead = self.leader()
                ok = lead is not None and (among is None or lead.id in among)
                if lead is not None and ok and all(n.leader == lead.id for n in self.live()):
                    return lead
                await asyncio.sleep(self.options.tick_interval)

    async def wait_converged(self, timeout: float = 60.0) -> int:
        """Wait until every running node has applied the leader's commit index; returns that index."""
        async with asyncio.timeout(timeout):
            while True:
                lead = self.leader()
                if lead is not None:
                    commit = lead.status().commit
                    live = self.live()
                    if commit and all(n.applied_index == commit and n.status().commit == commit for n in live):
                        return commit
                await asyncio.sleep(self.options.tick_interval)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll ``predicate`` every tick until it holds; ``TimeoutError`` after ``timeout`` virtual seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(self.options.tick_interval)

    def total_installs(self) -> int:
        """Snapshots installed from a leader so far (by stopped and running incarnations)."""
        running = sum(m.restores for n in self.live() if isinstance(m := n.state_machine, SimMachine))
        return self.installs + running


# -- the simulation -----------------------------------------------------------------------------------------


class SimFailure(AssertionError):
    """An invariant of the runtime simulation does not hold."""


@dataclass(slots=True)
class SimStats:
    """What one seed exercised."""

    nodes: int = 0
    acked: int = 0
    failed_commands: int = 0
    resends: int = 0
    retries: int = 0
    reads: int = 0
    crashes: int = 0
    partitions: int = 0
    snapshot_installs: int = 0
    chunks: int = 0
    duplicates: int = 0
    unsynced_lost: int = 0
    applied: int = 0
    virtual_seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"nodes={self.nodes} acked={self.acked} failed_cmds={self.failed_commands} retries={self.retries} "
            f"resends={self.resends} reads={self.reads} crashes={self.crashes} partitions={self.partitions} "
            f"installs={self.snapshot_installs} chunks={self.chunks} duplicates={self.duplicates} "
            f"unsynced_lost={self.unsynced_lost} "
            f"applied={self.applied} vtime={self.virtual_seconds:.0f}s"
        )


@dataclass(slots=True)
class SeedResult:
    """The outcome of one seed: ``error`` is None when every invariant held."""

    seed: int
    stats: SimStats
    error: str | None = None
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the seed passed."""
        return self.error is None


RETRYABLE = (CommitUnknown, NodeStopped, ProposalDropped)
"""Errors after which a client retries the same (client, seq) elsewhere (``SessionError`` excepted)."""


class _Sim:
    def __init__(self, seed: int, size: int, duration: float, clients: int, options: NodeOptions) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.size = size
        self.duration = duration
        self.n_clients = clients
        self.cluster = Cluster(size, seed=seed, options=options)
        self.stats = SimStats(nodes=size)
        self.events: list[str] = []
        self.answers: dict[tuple[str, int], object] = {}  # first answer per (client, seq)
        self.acked_ok: dict[str, int] = {}  # client -> highest seq acknowledged without CommandFailed
        self.stopping = False
        self.errors: list[str] = []

    def event(self, text: str) -> None:
        self.events.append(f"{self.cluster.loop.time() - self.t0:8.2f} {text}")

    def fail(self, text: str) -> None:
        self.errors.append(text)
        self.event(f"FAIL {text}")

    async def run(self) -> SeedResult:
        loop = self.cluster.loop
        self.t0 = loop.time()
        c = self.cluster
        await c.start_all()
        tasks = [loop.create_task(self.client(f"c{k}")) for k in range(self.n_clients)]
        tasks.append(loop.create_task(self.reader()))
        try:
            await self.faults()
            self.stopping = True
            c.net.heal()
            for node in sorted(c.down):
                await c.start(node)
            self.event("healed, all nodes up")
            try:
                async with asyncio.timeout(120):
                    await asyncio.gather(*tasks)
            except TimeoutError:
                self.fail("liveness: clients did not finish within 120 s after healing")
            try:
                await c.wait_converged(timeout=60)
            except TimeoutError:
                status = [(n.id, n.status().role.value, n.status().commit, n.applied_index) for n in c.live()]
                self.fail(f"liveness: nodes did not converge within 60 s after healing: {status}")
            else:
                self.check_final()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            s = self.stats
            s.snapshot_installs = c.total_installs()
            s.chunks = sum(c.net.chunks.values())
            s.duplicates = max(c.duplicates.values(), default=0)
            s.unsynced_lost = sum(st.lost_batches for st in c.storages.values())
            s.applied = max((n.applied_index for n in c.live()), default=0)
            s.virtual_seconds = loop.time() - self.t0
            await c.stop_all()
        error = "; ".join(self.errors) if self.errors else None
        return SeedResult(self.seed, self.stats, error, self.events)

    async def faults(self) -> None:
        c, rng = self.cluster, self.rng
        end = c.loop.time() + self.duration
        majority = self.size // 2 + 1
        while c.loop.time() < end:
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            action = rng.choice(["isolate", "split", "drop", "crash", "restart", "heal", "heal", "lag"])
            if action == "isolate":
                node = rng.choice(c.ids)
                c.net.isolate(node, c.ids)
                self.stats.partitions += 1
                self.event(f"isolate {node}")
            elif action == "split":
                shuffled = rng.sample(c.ids, len(c.ids))
                cut = rng.randint(1, self.size - 1)
                for a in shuffled[:cut]:
                    for b in shuffled[cut:]:
                        c.net.cut(a, b)
                self.stats.partitions += 1
                self.event(f"split {sorted(shuffled[:cut])} | {sorted(shuffled[cut:])}")
            elif action == "drop":
                rate = rng.choice([0.02, 0.05, 0.1, 0.2])
                c.net.drop(rate)
                self.event(f"drop {rate}")
            elif action == "crash" and len(c.down) + 1 <= self.size - majority:
                node = rng.choice(sorted(set(c.ids) - c.down))
                await c.stop(node)
                self.stats.crashes += 1
                self.event(f"crash {node}")
            elif action == "restart":
                if c.down:
                    node = rng.choice(sorted(c.down))
                    await c.start(node)
                    self.event(f"start {node}")
                else:
                    node = rng.choice(c.ids)
                    await c.restart(node)
                    self.stats.crashes += 1
                    self.event(f"restart {node}")
            elif action == "lag":
                # Cut one follower off long enough for the log to be compacted past it, then let it back.
                lead = c.leader()
                followers = [i for i in c.ids if lead is None or i != lead.id]
                node = rng.choice(followers)
                c.net.isolate(node, c.ids)
                self.event(f"lag {node}")
                await asyncio.sleep(rng.uniform(2.0, 5.0))
                c.net.heal()
                self.event("heal")
            elif action == "heal":
                c.net.heal()
                self.event("heal")

    async def client(self, name: str) -> None:
        rng = random.Random(f"{self.seed}-{name}")
        session = await self.open_session(name, rng)
        if session is None:
            return
        seq = 0
        while not self.stopping:
            seq += 1
            fail = rng.random() < 0.05
            data = command(name, seq, rng.randint(1, 9), fail=fail)
            first = await self.until_answered(name, session, seq, data, rng)
            if first is None:
                return
            self.answers[(name, seq)] = first
            if isinstance(first, CommandFailed):
                self.stats.failed_commands += 1
            else:
                self.stats.acked += 1
                self.acked_ok[name] = seq
            if rng.random() < 0.25:
                # Ask again with the same session: the answer must be the first one, and nothing re-applied.
                again = await self.until_answered(name, session, seq, data, rng)
                if again is not None:
                    self.stats.resends += 1
                    if _answer_key(again) != _answer_key(first):
                        self.fail(f"{name}#{seq}: retry answered {again!r}, first answer was {first!r}")
            await asyncio.sleep(rng.uniform(0.0, 0.2))

    async def open_session(self, name: str, rng: random.Random) -> str | None:
        """Open a session for client ``name``; its id, or None if no node ever answered.

        Retried until some node answers: a lost answer only leaves an unused session behind.
        """
        for _ in range(2000):
            live = self.cluster.live()
            if live:
                try:
                    return await rng.choice(live).open_session(timeout=rng.choice([0.5, 1.0, 3.0]))
                except RETRYABLE:
                    pass
            await asyncio.sleep(rng.uniform(0.02, 0.3))
        self.fail(f"{name}: could not open a session after 2000 attempts")
        return None

    async def until_answered(self, name: str, session: str, seq: int, data: bytes, rng: random.Random) -> object | None:
        """Propose ``data`` as (name, seq) until some node answers; the answer (a ``CommandFailed`` included)."""
        c = self.cluster
        attempts = 0
        while True:
            live = c.live()
            if not live:
                await asyncio.sleep(0.1)
                continue
            node = rng.choice(live)
            attempts += 1
            if attempts > 1:
                self.stats.retries += 1
            if attempts > 2000:
                self.fail(f"{name}#{seq}: no answer after 2000 attempts")
                return None
            try:
                return await node.propose(data, client=session, seq=seq, timeout=rng.choice([0.5, 1.0, 3.0]))
            except CommandFailed as exc:
                return exc
            except SessionError as exc:
                self.fail(f"{name}#{seq}: unexpected SessionError from node {node.id}: {exc}")
                return None
            except RETRYABLE:
                await asyncio.sleep(rng.uniform(0.02, 0.3))

    async def reader(self) -> None:
        c, rng = self.cluster, random.Random(f"{self.seed}-reader")
        while not self.stopping:
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            live = c.live()
            if not live:
                continue
            node = rng.choice(live)
            before = dict(self.acked_ok)
            try:
                seen = await node.read(lambda sm: dict(sm.last_ok), timeout=2.0)
            except (ReadTimeout, NodeStopped):
                continue
            self.stats.reads += 1
            assert seen is not None
            for client, seq in before.items():
                if seen.get(client, 0) < seq:
                    self.fail(
                        f"stale read on node {node.id}: {client} at seq {seen.get(client, 0)}, "
                        f"but seq {seq} was acknowledged before the read began"
                    )

    def check_final(self) -> None:
        c = self.cluster
        live = c.live()
        states = {n.id: n.state_machine.snapshot() for n in live}
        if len(set(states.values())) != 1:
            self.fail(f"state machines differ: { {i: s[:120] for i, s in states.items()} }")
        tables = {n.id: n._applier.sessions.to_json() for n in live}
        if len(set(tables.values())) != 1:
            self.fail("session tables differ between nodes")
        sm = c.machine(live[0].id)
        if sm.dup_applies:
            self.fail(f"{sm.dup_applies} commands were applied twice")
        for (client, seq), answer in self.answers.items():
            key = f"{client}#{seq}"
            if key not in sm.seen:
                self.fail(f"acknowledged {key} ({answer!r}) is not in the state")
            elif isinstance(answer, dict) and answer.get("index") != sm.seen[key]:
                self.fail(f"{key} answered from index {answer.get('index')}, applied at {sm.seen[key]}")


def _answer_key(answer: object) -> object:
    if isinstance(answer, RaftError):
        return (type(answer).__name__, str(answer))
    return answer


def run_seed(
    seed: int, *, sizes: Sequence[int] = (3, 5), duration: float = 20.0, clients: int = 3, real_time: bool = False
) -> SeedResult:
    """Run one seed (cluster size ``sizes[seed % len(sizes)]``) on a fresh virtual loop.

    With ``real_time`` it runs on an ordinary asyncio loop instead, persisting in worker threads: a smoke run
    of the threaded path, which takes ``duration`` seconds and more, and is not deterministic.
    """
    size = sizes[seed % len(sizes)]

    async def main() -> SeedResult:
        options = sim_options(persist_in_thread=True) if real_time else sim_options()
        return await _Sim(seed, size, duration, clients, options).run()

    return asyncio.run(main()) if real_time else run_virtual(main(), seed=seed)


# -- command line -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run seeds; print one line per failure with its replay command, then a summary. Exit 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m raft_core.testing.runtime_sim", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=50, help="how many seeds to run (default 50)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="run only this seed (a replay)")
    parser.add_argument("--nodes", default="3,5", help="cluster sizes, cycled by seed (default 3,5)")
    parser.add_argument("--duration", type=float, default=20.0, help="virtual seconds of faults (default 20)")
    parser.add_argument("--clients", type=int, default=3, help="concurrent clients (default 3)")
    parser.add_argument(
        "--real-time", action="store_true", help="run on a real loop with threaded persistence (not deterministic)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each seed's events and stats")
    args = parser.parse_args(argv)
    sizes = tuple(int(n) for n in args.nodes.split(","))
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    failed = 0
    totals = SimStats()
    began = time.perf_counter()
    for seed in seeds:
        result = run_seed(seed, sizes=sizes, duration=args.duration, clients=args.clients, real_time=args.real_time)
        totals.snapshot_installs += result.stats.snapshot_installs
        totals.duplicates += result.stats.duplicates
        totals.acked += result.stats.acked
        if args.verbose:
            for line in result.events:
                print(line)
            print(f"seed {seed}: {result.stats}")
        if not result.ok:
            failed += 1
            extra = f" --nodes {args.nodes} --duration {args.duration} --clients {args.clients}"
            print(f"seed {seed} FAILED: {result.error}")
            print(f"  replay: python -m raft_core.testing.runtime_sim --seed {seed}{extra} -v")
    elapsed = time.perf_counter() - began
    print(
        f"{len(seeds) - failed} passed, {failed} failed ({elapsed:.1f}s; acked={totals.acked} "
        f"snapshot_installs={totals.snapshot_installs} session_duplicates={totals.duplicates})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
