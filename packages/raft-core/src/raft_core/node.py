"""``RaftNode``: the public, sans-IO face of one Raft node (tick / step / ready / advance).

It does no I/O, reads no clock and starts no thread. Time passes only through ``tick()``; every input is a
message given to ``step()`` (the convenience verbs ``propose``, ``read_index``, ``transfer_leadership`` build
one); every output comes back in a ``Ready`` that the driver handles in the documented order and then
acknowledges with ``advance()``. Randomness comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from raft_core.config import Config
from raft_core.errors import ReadyNotAdvanced
from raft_core.messages import Message, Propose, ReadIndex, TransferLeader
from raft_core.progress import Progress, ProgressState
from raft_core.raft import Raft
from raft_core.ready import Ready
from raft_core.storage.protocol import LogStorage
from raft_core.types import NodeId, Role, SoftState


@dataclass(slots=True, frozen=True)
class PeerProgress:
    """What a leader knows of one member's log."""

    match: int
    next: int
    state: str
    recent_active: bool
    inflight: int


@dataclass(slots=True, frozen=True)
class Status:
    """A snapshot of a node's state for monitoring: role, term, leader, log positions, peer progress."""

    id: NodeId
    role: Role
    term: int
    vote: NodeId
    leader: NodeId
    commit: int
    applied: int
    last_index: int
    lead_transferee: NodeId
    progress: dict[NodeId, PeerProgress] = field(default_factory=dict)
    """Per-member progress; filled only on the leader."""


class RaftNode:
    """One Raft node, driven from outside. See ``Ready`` for the driver's contract."""

    def __init__(self, config: Config, storage: LogStorage, rng: random.Random | None = None) -> None:
        """Start (or restart) a node from ``storage``; ``rng`` draws election timeouts (seeded by id if None)."""
        self._raft = Raft(config, storage, rng if rng is not None else random.Random(config.id))
        self._prev_soft = self._raft.soft_state()
        self._prev_hard = self._raft.hard_state()
        self._outstanding: Ready | None = None

    # -- input ----------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (the driver calls this on a timer)."""
        self._check_idle("tick")
        self._raft.tick()

    def step(self, message: Message) -> None:
        """Process a message received from a peer (or a client request built by the caller)."""
        self._check_idle("step")
        self._raft.step(message)

    def campaign(self) -> None:
        """Start an election now (through a pre-vote if enabled), as if the election timeout had passed."""
        self._check_idle("campaign")
        self._raft.hup()

    def propose(self, data: bytes) -> int | None:
        """Propose one command. Returns its log index on the leader, or None when forwarded to the leader.

        Raises ``NotLeader`` (naming the leader, if known) when this node cannot take or forward it,
        ``TransferInProgress`` during a leadership transfer and ``Overloaded`` past the uncommitted limit.
        An index is not a promise: the entry commits only if it is later applied at that index.
        """
        return self.propose_many((data,))

    def propose_many(self, data: Iterable[bytes]) -> int | None:
        """Propose several commands as one batch; returns the first one's index (see ``propose``)."""
        self._check_idle("propose")
        raft = self._raft
        return raft.step(Propose(src=raft.id, dst=raft.id, data=tuple(data)))

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; a ``ReadState`` with this (unique) ``context`` arrives in a Ready.

        Raises ``NotLeader`` when no leader is known. If leadership changes first, no ReadState comes:
        the caller retries after a timeout or a role change.
        """
        self._check_idle("read_index")
        raft = self._raft
        raft.step(ReadIndex(src=raft.id, dst=raft.id, context=context))

    def transfer_leadership(self, target: NodeId) -> None:
        """Ask that ``target`` become leader (forwarded to the leader when called on a follower)."""
        self._check_idle("transfer_leadership")
        raft = self._raft
        raft.step(TransferLeader(src=raft.id, dst=raft.id, target=target))

    def report_unreachable(self, node: NodeId) -> None:
        """The driver could not deliver to ``node``: stop streaming to it and probe again.

        Like ``report_snapshot``, this may be called at any time, even while a Ready is being handled.
        """
        pr = self._raft.tracker.progress.get(node)
        leading = self._raft.role is Role.LEADER and node != self._raft.id
        if leading and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node: NodeId, *, ok: bool) -> None:
        """The driver finished sending a snapshot to ``node`` (``ok``) or gave up on it."""
        pr = self._raft.tracker.progress.get(node)
        if self._raft.role is not Role.LEADER or pr is None:
            return
        if pr.state is ProgressState.SNAPSHOT:
            if not ok:
                pr.pending_snapshot = 0
            pr.become_probe()
            pr.probe_sent = True  # wait for the follower's answer (or a heartbeat) before probing again

    # -- output ---------------------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return anything to do."""
        raft = self._raft
        log = raft.log
        prev_soft = self._prev_soft
        prev_hard = self._prev_hard
        return bool(
            raft.pending_bcast
            or raft.msgs
            or log.unstable.entries
            or log.unstable.snapshot is not None
            or log.has_next_committed_entries()
            or raft.read_states
            # Field by field: the same test as comparing soft_state() and hard_state(), without building them.
            or raft.lead != prev_soft.leader
            or raft.role is not prev_soft.role
            or raft.term != prev_hard.term
            or raft.vote != prev_hard.vote
            or log.committed != prev_hard.commit
        )

    def ready(self) -> Ready:
        """Collect the work to do; handle it as ``Ready`` documents, then call ``advance``."""
        self._check_idle("ready")
        raft = self._raft
        raft.flush_proposals()
        log = raft.log
        prev_soft = self._prev_soft
        prev_hard = self._prev_hard
        # Build the states only when they changed (the same result as building and comparing them).
        soft_changed = raft.lead != prev_soft.leader or raft.role is not prev_soft.role
        vote_changed = raft.term != prev_hard.term or raft.vote != prev_hard.vote
        entries = log.unstable_entries()
        snapshot = log.unstable.snapshot
        ready = Ready(
            soft_state=raft.soft_state() if soft_changed else None,
            hard_state=raft.hard_state() if vote_changed or log.committed != prev_hard.commit else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(log.next_committed_entries(raft.config.max_committed_size_per_ready)),
            messages=tuple(raft.msgs),
            read_states=tuple(raft.read_states),
            must_sync=bool(entries) or snapshot is not None or vote_changed,
        )
        self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was persisted, sent and applied."""
        if ready is not self._outstanding:
            raise ReadyNotAdvanced("advance() must be given the Ready that ready() returned last")
        self._outstanding = None
        raft = self._raft
        log = raft.log
        if ready.soft_state is not None:
            self._prev_soft = ready.soft_state
        if ready.hard_state is not None:
            self._prev_hard = ready.hard_state
        if ready.snapshot is not None:
            log.stable_snap_to(ready.snapshot.meta.index)
            log.applied = max(log.applied, ready.snapshot.meta.index)
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
        if ready.committed_entries:
            log.applied_to(ready.committed_entries[-1].index)
            raft.reduce_uncommitted_size(ready.committed_entries)
        raft.msgs.clear()
        raft.read_states.clear()
        raft.on_persisted()

    def _check_idle(self, what: str) -> None:
        if self._outstanding is not None:
            raise ReadyNotAdvanced(f"{what}() called before advance() acknowledged the last Ready")

    # -- views ----------------------------------------------------------------------------------------------

    @property
    def id(self) -> NodeId:
        """This node's id."""
        return self._raft.id

    @property
    def role(self) -> Role:
        """This node's current role."""
        return self._raft.role

    @property
    def term(self) -> int:
        """This node's current term."""
        return self._raft.term

    @property
    def leader(self) -> NodeId:
        """The leader this node knows of (0 if none)."""
        return self._raft.lead

    @property
    def soft_state(self) -> SoftState:
        """Leader and role."""
        return self._raft.soft_state()

    def status(self) -> Status:
        """Role, term, leader, commit and applied index, and (on a leader) each member's progress."""
        raft = self._raft
        progress: dict[NodeId, PeerProgress] = {}
        if raft.role is Role.LEADER:
            progress = {node: _peer(pr) for node, pr in raft.tracker.progress.items()}
        return Status(
            id=raft.id,
            role=raft.role,
            term=raft.term,
            vote=raft.vote,
            leader=raft.lead,
            commit=raft.log.committed,
            applied=raft.log.applied,
            last_index=raft.log.last_index(),
            lead_transferee=raft.lead_transferee,
            progress=progress,
        )


def _peer(pr: Progress) -> PeerProgress:
    return PeerProgress(pr.match, pr.next, pr.state.value, pr.recent_active, pr.inflights.count())
