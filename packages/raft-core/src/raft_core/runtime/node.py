"""``Node``: the asyncio driver of one Raft node, and the only concurrent code in raft-core.

It ticks the sans-IO core on a timer and runs the Ready loop in the documented order: persist (in a worker
thread, one fsync per Ready, while the event loop keeps receiving), send, apply, advance. Everything else is
queued for that loop: received messages, proposals, reads, transfers. Between two Readys it feeds the core
ticks first, then messages, then client work, so client load never starves heartbeats; proposals past a
bounded number of waiting commands (or uncommitted bytes) are refused at once with ``Overloaded``.

Public API: ``propose`` (the state machine's result, exactly once with a client session), ``read``
(linearizable, through ReadIndex, on any node), ``status``, ``transfer_leadership`` and leader observers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, overload

from raft_core.errors import (
    CommitUnknown,
    NodeStopped,
    NotLeader,
    Overloaded,
    ProposalDropped,
    RaftError,
    ReadTimeout,
    SessionsUnavailable,
    StorageError,
    TransferFailed,
)
from raft_core.messages import InstallSnapshot, Message, Propose
from raft_core.node import RaftNode, Status
from raft_core.ready import Ready
from raft_core.runtime import envelope
from raft_core.runtime.applier import Applier, Outcome
from raft_core.runtime.held_appends import HeldAppends
from raft_core.runtime.options import NodeOptions
from raft_core.runtime.sessions import SessionTable
from raft_core.runtime.snapshot_transfer import SnapshotReceiver, SnapshotSender
from raft_core.runtime.state_machine import DurableStateMachine, StateMachine
from raft_core.runtime.transport import Transport
from raft_core.runtime.wire import ProposalRefused, SnapshotChunk, SnapshotChunkAck, WireMessage
from raft_core.storage.protocol import Storage
from raft_core.types import NONE, Entry, HardState, NodeId, Role, SoftState

log = logging.getLogger(__name__)

S = TypeVar("S")
T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class LeaderChange:
    """What observers are told when this node's view of the leader (or its own role) changes."""

    node: NodeId
    leader: NodeId
    role: Role
    term: int


class _Expired(Exception):
    """A proposal's timeout passed before its outcome was known (set on its future by ``_expire``)."""


def _expire(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_exception(_Expired())


class Node:
    """One Raft node on asyncio: a state machine replicated over ``transport``, persisted in ``storage``.

    Use ``async with Node(...) as node:`` (or ``await start()`` / ``await stop()``). The cluster's members
    are the membership ``storage`` was created with.
    """

    def __init__(
        self,
        node_id: NodeId,
        state_machine: StateMachine,
        storage: Storage,
        transport: Transport,
        options: NodeOptions | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """Wire the parts together; nothing runs until ``start``.

        ``rng`` draws election timeouts; ``clock`` gives the log time (ms since the epoch) written into each
        proposal (the wall clock by default; simulations pass a virtual one).
        """
        self.id = node_id
        self.options = options or NodeOptions()
        self.state_machine = state_machine
        self._storage = storage
        self._transport = transport
        self._rng = rng
        self._clock = clock or _wall_clock_ms
        opts = self.options
        self._applier = Applier(state_machine, SessionTable())
        self._durable = isinstance(state_machine, DurableStateMachine)
        self._core: RaftNode | None = None
        self._sender = SnapshotSender(
            node_id,
            self._send,
            self._report_snapshot,
            chunk_bytes=opts.snapshot_chunk_bytes,
            window=opts.snapshot_window,
            ack_timeout=opts.snapshot_chunk_timeout,
        )
        self._receiver = SnapshotReceiver(node_id, storage, self._send)
        self._held_appends = HeldAppends(self._send, self._call_later, opts.empty_append_delay)
        self._executor: ThreadPoolExecutor | None = None
        # Work queued for the Ready loop.
        self._wake = asyncio.Event()
        self._ticks = 0
        self._inbox: deque[WireMessage] = deque()
        self._proposals: deque[tuple[bytes, int]] = deque()
        self._read_queue: deque[bytes] = deque()
        self._queued_reads: set[bytes] = set()  # the contexts in _read_queue
        self._transfers: deque[NodeId] = deque()
        self._parked: dict[int, bytes] = {}  # request -> data: proposals waiting for a leader to be known
        self._resendable: set[int] = set()  # requests that carry a session: duplicates are harmless
        self._forwarded: dict[int, bytes] = {}  # resendable requests forwarded to the leader, not yet answered
        self._unsynced_hard_state: HardState | None = None  # a commit-only change, stored with the next sync
        self._durable_term_vote = (0, 0)  # (term, vote) as last persisted
        # Callers waiting for an answer.
        self._waiting: dict[int, asyncio.Future[object]] = {}
        self._by_index: dict[int, int] = {}  # log index -> request, for this leader's own proposals
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._reads_to_apply: list[tuple[int, bytes]] = []  # heap of (read index, context)
        self._apply_waiters: list[tuple[int, int, asyncio.Future[int]]] = []  # heap of (index, tiebreak, future)
        self._observers: list[Callable[[LeaderChange], None]] = []
        self._leader_waiters: list[asyncio.Future[None]] = []
        # Request numbers (and read contexts) start at random, from the system's generator and never from
        # ``rng``: a restarted node must not reuse a number that entries still in the log carry.
        self._requests = itertools.count(random.SystemRandom().getrandbits(47) << 16)
        self._ticks_since_read_retry = 0
        self._applied = 0
        self._snapshot_index = 0
        self._snapshot_failed_at = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped: RaftError | None = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore from the latest snapshot, replay the committed log, and start ticking and serving."""
        if self._started or self._stopped is not None:
            raise RuntimeError("node already started (a stopped node cannot start again: build a new one)")
        self._started = True
        try:
            await self._start()
        except BaseException as exc:
            # Undo the partial start (no thread, task or open file is left behind). The storage is closed,
            # so this node is done: build a new Node over reopened storage to try again.
            self._stopped = NodeStopped(f"node {self.id} failed to start: {exc!r}")
            await self.stop()
            self._core = None
            raise

    async def _start(self) -> None:
        snapshot = self._storage.snapshot()
        applied = self._restore_state_machine(snapshot.meta.index, snapshot.data)
        self._applied, self._snapshot_index = applied, snapshot.meta.index
        stored = self._storage.initial_state().hard_state
        self._durable_term_vote = (stored.term, stored.vote)
        config = self.options.core_config(self.id, applied=applied)
        self._core = RaftNode(config, self._storage, self._rng)
        if self.options.persist_in_thread:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"raft-{self.id}-storage")
        await self._transport.start(self)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._tick())]
        self._wake.set()  # replay committed entries now
        log.info("node %d started at applied index %d", self.id, self._applied)

    def _restore_state_machine(self, snapshot_index: int, data: bytes) -> int:
        """Bring the state machine to where it resumes from at start; returns that applied index.

        A durable state machine at or past the latest snapshot resumes from its own position (only the
        runtime's part of the snapshot is restored); any other is restored from the snapshot.
        """
        sm = self._applier.state_machine
        if isinstance(sm, DurableStateMachine):
            index, time_ms = sm.durable_position()
            if index >= snapshot_index:
                last = self._storage.last_index()
                if index > last:
                    raise StorageError(
                        f"the state machine has applied up to {index} but the log ends at {last}: "
                        "the data directory mixes a newer state with an older log"
                    )
                if snapshot_index:
                    self._applier.restore_runtime(data)
                self._applier.sessions.advance(time_ms)
                return index
        if snapshot_index:
            self._applier.restore(data)
        return snapshot_index

    async def stop(self) -> None:
        """Stop serving: waiting callers get ``NodeStopped``; storage and transport are closed."""
        if self._stopped is None:
            self._stopped = NodeStopped(f"node {self.id} is stopped")
        self._wake.set()
        self._held_appends.drop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._sender.close()
        self._receiver.abort()
        await self._transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._started:
            if self._unsynced_hard_state is not None:  # a clean stop keeps the newest commit index too
                hard_state, self._unsynced_hard_state = self._unsynced_hard_state, None
                try:
                    self._storage.persist(hard_state=hard_state, entries=(), snapshot=None, sync=True)
                except Exception as exc:  # harmless: the leader tells a restarted node the commit index again
                    log.warning("node %d could not store its last commit index on stop: %s", self.id, exc)
            self._storage.close()
            self._started = False
        self._fail_all(self._stopped)

    async def __aenter__(self) -> Node:
        """Start the node."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the node."""
        await self.stop()

    # -- public API -----------------------------------------------------------------------------------------

    async def propose(
        self,
        command: bytes,
        *,
        client: str | None = None,
        seq: int = 0,
        floor: int | None = None,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> object:
        """Replicate ``command``; returns the state machine's result once applied on this node.

        With ``client`` (a session from ``open_session``) and ``seq`` (1, 2, 3, ... per client) the command
        is applied exactly once: a retry with the same pair, to any node, returns the first result.
        ``floor`` is the lowest number whose answer the client still waits for (default ``seq``: none
        earlier); answers below it are dropped. Raises ``NotLeader`` (with the leader's id and address)
        when this node does not forward, ``Overloaded`` when too much is waiting (here or on the leader),
        ``ProposalDropped`` when it was certainly not applied, ``CommitUnknown`` after ``timeout`` (the
        outcome is unknown: retry with the same session to be safe), ``CommandFailed`` when the state
        machine refused it, and ``SessionError`` when the session is unknown or expired.

        ``idempotent`` says that applying ``command`` twice has the effect (and answer) of applying it once, as
        with a state machine that deduplicates by a request id inside the command: a follower that forwarded
        it then forwards it again when a new leader appears, instead of leaving it to time out with the old one.
        """
        self._check_running()
        if len(command) > self.options.max_command_bytes:
            raise ValueError(
                f"command of {len(command)} bytes exceeds max_command_bytes ({self.options.max_command_bytes})"
            )
        request = next(self._requests)
        if client:
            self._check_sessions()
            data = envelope.encode(
                self.id, request, self._clock(), command, client, seq, seq if floor is None else floor
            )
            return await self._submit(request, data, timeout, resendable=True)
        data = envelope.encode(self.id, request, self._clock(), command)
        return await self._submit(request, data, timeout, resendable=idempotent)

    async def open_session(self, *, timeout: float | None = None) -> str:
        """Open an exactly-once session and return its client id (the log index of its opening entry).

        Commands proposed with it are applied at most once each, even when retried on another node. A
        session unused for ``NodeOptions.session_ttl`` of log time expires; commands for it then fail with
        ``SessionError`` and were not applied. Ids are never reused: after a ``SessionError``, open a new
        session (and treat commands whose outcome was unknown as possibly applied).
        """
        self._check_running()
        self._check_sessions()
        opts = self.options
        request = next(self._requests)
        data = envelope.encode_register(
            self.id, request, self._clock(), int(opts.session_ttl * 1000), opts.max_sessions
        )
        client = await self._submit(request, data, timeout, resendable=True)  # a lost duplicate only idles
        assert isinstance(client, str)
        return client

    def _check_sessions(self) -> None:
        if self._durable:
            raise SessionsUnavailable(
                "client sessions are off: the state machine is durable and deduplicates commands itself"
            )

    async def _submit(self, request: int, data: bytes, timeout: float | None, *, resendable: bool = False) -> object:
        """Queue ``data`` for proposing and wait for its outcome.

        A ``resendable`` command (one whose duplicates the session table answers without applying) that was
        forwarded is forwarded again when a new leader appears: the old leader may have died with it.
        """
        if len(self._waiting) >= self.options.max_pending_proposals:
            raise Overloaded(
                f"{len(self._waiting)} proposals are already waiting on node {self.id} "
                f"(limit {self.options.max_pending_proposals}); retry shortly"
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._waiting[request] = future
        if resendable:
            self._resendable.add(request)
        self._proposals.append((data, request))
        self._wake.set()
        deadline = self.options.proposal_timeout if timeout is None else timeout
        # A timer that fails the future, rather than asyncio.timeout: half the cost, on every proposal.
        timer = loop.call_later(deadline, _expire, future)
        try:
            return await future
        except _Expired:
            raise CommitUnknown(
                f"no outcome within {deadline:.1f}s on node {self.id} (leader: {self.leader or 'unknown'}); "
                "the command may or may not be applied"
            ) from None
        finally:
            timer.cancel()
            self._waiting.pop(request, None)
            self._parked.pop(request, None)
            self._resendable.discard(request)
            self._forwarded.pop(request, None)

    @overload
    async def read(self, query: None = None, *, timeout: float | None = None) -> None: ...

    @overload
    async def read(self, query: Callable[[Any], T], *, timeout: float | None = None) -> T: ...

    async def read(self, query: Callable[[Any], T] | None = None, *, timeout: float | None = None) -> T | None:
        """A linearizable read: ``query(state_machine)`` once this node is up to date (None without a query).

        "Up to date" means this node applied at least what the leader had committed when the read began.
        Works on followers too (ReadIndex asks the leader). Raises ``ReadTimeout`` after ``timeout``.
        """
        self._check_running()
        if len(self._reads) >= self.options.max_pending_reads:
            raise Overloaded(
                f"{len(self._reads)} reads are already waiting on node {self.id} "
                f"(limit {self.options.max_pending_reads}); retry shortly"
            )
        context = next(self._requests).to_bytes(8, "little")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[context] = future
        self._queue_read(context)
        self._wake.set()
        deadline = self.options.read_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(deadline):
                await future
        except TimeoutError:
            raise ReadTimeout(
                f"no leader confirmed the read within {deadline:.1f}s (leader: {self.leader or 'unknown'})"
            ) from None
        finally:
            self._reads.pop(context, None)
        return query(self.state_machine) if query is not None else None

    async def wait_applied(self, index: int, *, timeout: float | None = None) -> int:
        """Wait until this node has applied ``index``; returns the applied index then (not a linearizable read).

        For reads that must not go back in time for one client (it passes the applied index it last saw) but
        need not see the newest writes. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        self._check_running()
        if self._applied >= index:
            return self._applied
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._apply_waiters, (index, next(self._requests), future))
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            if not future.done():
                future.cancel()

    async def transfer_leadership(self, target: NodeId, *, timeout: float | None = None) -> None:
        """Hand leadership to ``target`` and wait until this node sees it lead; ``TransferFailed`` if not."""
        self._check_running()
        self._transfers.append(target)
        self._wake.set()
        deadline = self.options.election_ticks * self.options.tick_interval * 3 if timeout is None else timeout
        try:
            await self.wait_for_leader(lambda leader: leader == target, timeout=deadline)
        except TimeoutError:
            raise TransferFailed(f"node {target} did not become leader within {deadline:.1f}s") from None

    async def wait_for_leader(
        self, predicate: Callable[[NodeId], bool] = bool, *, timeout: float | None = None
    ) -> NodeId:
        """Wait until the known leader satisfies ``predicate`` (by default: any leader); returns it.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate(self.leader):
                self._check_running()
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._leader_waiters.append(waiter)
                await waiter
        return self.leader

    def add_observer(self, observer: Callable[[LeaderChange], None]) -> Callable[[], None]:
        """Call ``observer`` on every leader or role change (on the event loop); returns an unsubscriber."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def status(self) -> Status:
        """Role, term, leader, commit and applied index, and (on a leader) each peer's progress."""
        return self._require_core().status()

    @property
    def leader(self) -> NodeId:
        """The leader this node knows of (0 if none)."""
        return self._core.leader if self._core is not None else NONE

    @property
    def is_leader(self) -> bool:
        """Whether this node is the leader."""
        return self._core is not None and self._core.role is Role.LEADER

    @property
    def applied_index(self) -> int:
        """The index of the last entry applied to the state machine."""
        return self._applied

    def leader_address(self) -> str | None:
        """The known leader's address, if the transport knows it."""
        leader = self.leader
        return self._transport.address_of(leader) if leader != NONE else None

    # -- the Receiver protocol (called by the transport) ----------------------------------------------------

    def receive(self, message: WireMessage) -> None:
        """Queue a received message for the Ready loop."""
        if self._stopped is not None:
            return
        if len(self._inbox) >= self.options.max_inbox_messages:
            # The peers' in-flight limits keep the inbox far below this; a flood is dropped, as a lossy network
            # would drop it, rather than grow memory without bound.
            log.warning("node %d dropped %s from node %d: inbox full", self.id, type(message).__name__, message.src)
            return
        self._inbox.append(message)
        self._wake.set()

    def unreachable(self, node: NodeId) -> None:
        """The transport could not deliver to ``node``."""
        if self._core is not None:
            self._core.report_unreachable(node)

    # -- the loops ------------------------------------------------------------------------------------------

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.options.tick_interval
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._ticks += 1
            self._wake.set()
            due += interval
            if loop.time() - due > 2 * interval:
                due = loop.time() + interval  # the loop was blocked: skip the missed ticks, never burst

    async def _run(self) -> None:
        core = self._require_core()
        try:
            while self._stopped is None:
                await self._wake.wait()
                self._wake.clear()
                self._feed(core)
                while self._stopped is None and core.has_ready():
                    await self._handle_ready(core, core.ready())
                    await asyncio.sleep(0)  # let the transport and the ticker in between two Readys
                    self._feed(core)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # storage failed, or an invariant broke: stop rather than risk wrong answers
            log.critical("node %d stops: %s", self.id, exc, exc_info=True)
            self._stopped = NodeStopped(f"node {self.id} stopped after a failure: {exc}")
            self._fail_all(self._stopped)

    def _feed(self, core: RaftNode) -> None:
        """Give the core what arrived: ticks first, then peer messages, then client work."""
        if self._ticks:
            ticks, self._ticks = self._ticks, 0
            for _ in range(ticks):
                core.tick()
            self._ticks_since_read_retry += ticks
            if self._ticks_since_read_retry >= self.options.election_ticks:
                self._ticks_since_read_retry = 0
                self._retry_reads()
        inbox = self._inbox
        while inbox:
            self._step(core, inbox.popleft())
        while self._proposals:
            self._propose(core, *self._proposals.popleft())
        while self._read_queue:
            context = self._read_queue.popleft()
            self._queued_reads.discard(context)
            if context in self._reads:
                with contextlib.suppress(NotLeader):  # retried when a leader is known (see _retry_reads)
                    core.read_index(context)
        while self._transfers:
            try:
                core.transfer_leadership(self._transfers.popleft())
            except ProposalDropped as exc:
                log.info("leadership transfer not started: %s", exc)

    def _step(self, core: RaftNode, m: WireMessage) -> None:
        if isinstance(m, SnapshotChunk):
            installed = self._receiver.on_chunk(m)
            if installed is not None:
                core.step(installed)
        elif isinstance(m, SnapshotChunkAck):
            self._sender.on_ack(m)
        elif isinstance(m, ProposalRefused):
            self._refused(m)
        elif isinstance(m, Propose) and core.role is Role.LEADER:
            # Proposed here rather than stepped, so that a refusal raises and the follower hears of it at once
            # (the core drops a refused forwarded proposal silently).
            try:
                core.propose_many(m.data)
            except ProposalDropped as exc:
                self._refuse(core, m, exc)
        else:
            try:
                core.step(m)
            except ProposalDropped as exc:  # a forwarded request this node cannot take now
                log.debug("node %d refused %s from node %d: %s", self.id, type(m).__name__, m.src, exc)

    def _refuse(self, core: RaftNode, m: Propose, exc: ProposalDropped) -> None:
        """Tell the follower that forwarded ``m`` that none of it was appended."""
        requests = []
        for data in m.data:
            with contextlib.suppress(envelope.EnvelopeError):
                requests.append(envelope.decode(data).request)
        refusal = ProposalRefused(
            src=self.id,
            dst=m.src,
            term=core.term,
            requests=tuple(requests),
            reason=str(exc),
            overloaded=isinstance(exc, Overloaded),
        )
        self._send((refusal,))

    def _refused(self, m: ProposalRefused) -> None:
        for request in m.requests:
            future = self._waiting.get(request)
            if future is not None and not future.done():
                kind = Overloaded if m.overloaded else ProposalDropped
                future.set_exception(kind(f"the leader (node {m.src}) refused the command: {m.reason}"))

    def _propose(self, core: RaftNode, data: bytes, request: int) -> None:
        future = self._waiting.get(request)
        if future is None or future.done():
            return  # the caller gave up already
        try:
            index = core.propose(data)
        except NotLeader as exc:
            if exc.leader == NONE and self.options.forward_proposals:
                self._parked[request] = data  # proposed again once a leader is known
            else:
                address = self._transport.address_of(exc.leader) if exc.leader != NONE else None
                future.set_exception(NotLeader(exc.leader, address=address))
        except ProposalDropped as exc:
            future.set_exception(exc)
        else:
            if index is not None:
                self._by_index[index] = request
            elif request in self._resendable:
                self._forwarded[request] = data

    async def _handle_ready(self, core: RaftNode, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(core, rd.soft_state)
        if core.role is Role.LEADER and rd.snapshot is None and not self._changes_term_or_vote(rd):
            # Raft §10.2.1: a leader's messages promise nothing about its own disk (it counts its entries
            # toward a commit only once persisted), so it sends them, and applies what is already committed,
            # while its fsync runs: the leader's and the followers' fsyncs overlap.
            if rd.messages:
                self._send_messages(rd.messages)
            persisting = self._start_persist(rd)
            self._apply_ready(rd)
            if persisting is not None:
                await persisting
        else:
            persisting = self._start_persist(rd)
            if persisting is not None:
                await persisting
            if rd.messages:
                self._send_messages(rd.messages)
            if rd.snapshot is not None:
                self._restore(rd.snapshot.meta.index, rd.snapshot.data)
            self._apply_ready(rd)
        core.advance(rd)
        self._resolve_reads()
        self._resolve_apply_waiters()
        await self._maybe_snapshot()

    def _apply_ready(self, rd: Ready) -> None:
        if rd.committed_entries:
            # One batch per Ready: nothing awaits in between, so no caller runs before the batch is closed.
            self._applier.begin_batch()
            for entry in rd.committed_entries:
                self._apply(entry)
            self._applier.end_batch()
        for rs in rd.read_states:
            if rs.context in self._reads:
                heapq.heappush(self._reads_to_apply, (rs.index, rs.context))

    def _changes_term_or_vote(self, rd: Ready) -> bool:
        hs = rd.hard_state
        return hs is not None and (hs.term, hs.vote) != self._durable_term_vote

    def _start_persist(self, rd: Ready) -> asyncio.Future[None] | None:
        """Start persisting the Ready (None when there is nothing to write now).

        Every record written is synced; a commit-only change waits for the next sync. Losing a commit
        index in a crash is harmless (the leader tells it again), and writing only synced records keeps the
        log's promise: damage inside what was acknowledged is detected, never truncated.
        """
        if not rd.must_sync:
            if rd.hard_state is not None:
                self._unsynced_hard_state = rd.hard_state
            return None
        hard_state = rd.hard_state if rd.hard_state is not None else self._unsynced_hard_state
        self._unsynced_hard_state = None
        if hard_state is not None:
            self._durable_term_vote = (hard_state.term, hard_state.vote)
        persist = partial(
            self._storage.persist, hard_state=hard_state, entries=rd.entries, snapshot=rd.snapshot, sync=True
        )
        if self._executor is not None:
            return asyncio.get_running_loop().run_in_executor(self._executor, persist)
        persist()
        return None

    def _send_messages(self, messages: Sequence[Message]) -> None:
        plain: list[WireMessage] = []
        for m in self._held_appends.filter(messages):
            if isinstance(m, InstallSnapshot):
                self._sender.start(m)
            else:
                plain.append(m)
        if plain:
            self._transport.send(plain)

    @staticmethod
    def _call_later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)

    def _send(self, messages: Sequence[WireMessage]) -> None:
        if self._stopped is None:
            self._transport.send(messages)

    def _report_snapshot(self, node: NodeId, ok: bool) -> None:
        if self._core is not None and self._stopped is None:
            self._core.report_snapshot(node, ok=ok)
            self._wake.set()

    # -- applying -------------------------------------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        expected = self._by_index.pop(entry.index, None) if self._by_index else None
        outcome = self._applier.apply(entry)
        self._applied = entry.index
        if outcome is not None and outcome.origin == self.id:
            self._resolve(outcome)
        if expected is not None and (outcome is None or outcome.origin != self.id or outcome.request != expected):
            future = self._waiting.get(expected)
            if future is not None and not future.done():
                future.set_exception(
                    ProposalDropped(f"entry {entry.index} was overwritten by a new leader: the command was not applied")
                )

    def _resolve(self, outcome: Outcome) -> None:
        future = self._waiting.get(outcome.request)
        if future is None or future.done():
            return
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.value)

    def _restore(self, index: int, data: bytes) -> None:
        self._applier.restore(data)
        self._applied = self._snapshot_index = index
        lost = [request for i, request in self._by_index.items() if i <= index]
        self._by_index = {i: r for i, r in self._by_index.items() if i > index}
        for request in lost:
            future = self._waiting.get(request)
            if future is not None and not future.done():
                future.set_exception(CommitUnknown("a snapshot replaced the log; the outcome is unknown"))
        log.info("node %d restored a snapshot at index %d", self.id, index)

    async def _maybe_snapshot(self) -> None:
        opts = self.options
        since = self._applied - max(self._snapshot_index, self._snapshot_failed_at)
        if since <= 0 or (since < opts.snapshot_entries and self._applier.bytes_since_snapshot < opts.snapshot_bytes):
            return
        index = self._applied
        try:
            data = self._applier.snapshot_data()
        except Exception as exc:  # the state machine cannot serialize itself: keep serving, try again later
            log.error("node %d could not take a snapshot at %d: %s", self.id, index, exc)
            self._snapshot_failed_at = index  # try again after as many entries more
            return
        await self._storage_call(self._storage.create_snapshot, index, data)
        self._snapshot_index = index
        keep_from = index - opts.compact_keep_entries
        if keep_from >= self._storage.first_index():
            await self._storage_call(self._storage.compact, keep_from)
        log.info("node %d took a snapshot at index %d (%d bytes)", self.id, index, len(data))

    async def _storage_call(self, fn: Callable[..., S], *args: Any) -> S:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    # -- reads, leaders, failures ---------------------------------------------------------------------------

    def _resolve_reads(self) -> None:
        heap = self._reads_to_apply
        while heap and heap[0][0] <= self._applied:
            _, context = heapq.heappop(heap)
            future = self._reads.get(context)
            if future is not None and not future.done():
                future.set_result(self._applied)

    def _resolve_apply_waiters(self) -> None:
        heap = self._apply_waiters
        while heap and heap[0][0] <= self._applied:
            future = heapq.heappop(heap)[2]
            if not future.done():
                future.set_result(self._applied)

    def _retry_reads(self) -> None:
        """Ask again for reads not yet answered (the request or its answer may have been lost)."""
        waiting = {context for _, context in self._reads_to_apply}
        for context, future in self._reads.items():
            if not future.done() and context not in waiting:
                self._queue_read(context)

    def _queue_read(self, context: bytes) -> None:
        if context not in self._queued_reads:
            self._queued_reads.add(context)
            self._read_queue.append(context)

    def _on_soft_state(self, core: RaftNode, soft: SoftState) -> None:
        change = LeaderChange(self.id, soft.leader, soft.role, core.term)
        log.info("node %d: leader %d, role %s, term %d", self.id, soft.leader, soft.role.value, core.term)
        if soft.role is not Role.LEADER:
            self._sender.cancel_all()
            self._held_appends.drop()
        if soft.leader != NONE:
            parked, self._parked = self._parked, {}
            self._proposals.extend((data, request) for request, data in parked.items())
            forwarded, self._forwarded = self._forwarded, {}
            self._proposals.extend((data, request) for request, data in forwarded.items())
            self._retry_reads()
        waiters, self._leader_waiters = self._leader_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        for observer in list(self._observers):
            try:
                observer(change)
            except Exception:
                log.exception("leader observer %r failed", observer)

    def _fail_all(self, error: RaftError) -> None:
        futures: list[asyncio.Future[Any]] = [*self._waiting.values(), *self._reads.values(), *self._leader_waiters]
        futures += [waiter[2] for waiter in self._apply_waiters]
        self._apply_waiters.clear()
        for future in futures:
            if not future.done():
                future.set_exception(error)
        self._parked.clear()
        self._forwarded.clear()
        self._proposals.clear()

    def _check_running(self) -> None:
        if self._stopped is not None:
            raise NodeStopped(str(self._stopped))
        if self._core is None:
            raise NodeStopped(f"node {self.id} is not started")

    def _require_core(self) -> RaftNode:
        if self._core is None:
            raise NodeStopped(f"node {self.id} is not started")
        return self._core


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
