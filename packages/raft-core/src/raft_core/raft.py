"""``Raft``: one node's protocol state, the shared term rules every message passes, and role transitions.

Rules owned here (Raft §5, dissertation §9.6, §6.4):

- **Term preamble.** A message from a higher term makes this node a follower of that term before anything
  else happens, except pre-votes (which never change terms) and vote requests that arrive while this node
  believes a live leader exists (check-quorum's leader lease). A message from a lower term is ignored, but a
  stale leader's append or heartbeat, and a pre-vote, are answered with our term so the sender catches up.
- **One vote per term.** A node grants its vote at most once per term, only to a candidate whose log is at
  least as up to date as its own, and the vote is in the hard state persisted before the answer is sent.
- **Role transitions** go through ``become_*``; each resets the timers and any leadership transfer.

The role-specific handling of messages lives in ``raft_core.roles``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from itertools import count, repeat

from raft_core.config import Config
from raft_core.errors import Overloaded
from raft_core.log import RaftLog
from raft_core.messages import (
    CLIENT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    InstallSnapshot,
    Message,
    ReadIndex,
    ReadIndexResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    RequestVote,
    RequestVoteResponse,
)
from raft_core.progress import ProgressState
from raft_core.quorum import VoteResult
from raft_core.read_only import ReadOnly
from raft_core.roles.candidate import step_candidate
from raft_core.roles.follower import step_follower
from raft_core.roles.leader import start_held_reads, step_leader
from raft_core.storage.protocol import LogStorage
from raft_core.tracker import ProgressTracker
from raft_core.types import (
    NONE,
    Entry,
    EntryKind,
    HardState,
    NodeId,
    ReadState,
    Role,
    Snapshot,
    SoftState,
    entries_size,
    payload_size,
)

logger = logging.getLogger(__name__)

StepFn = Callable[["Raft", Message], int | None]


class Raft:
    """The protocol state of one node. Driven by ``RaftNode``; not used directly by applications."""

    def __init__(self, config: Config, storage: LogStorage, rng: random.Random) -> None:
        """Restore a node from ``storage`` as a follower of its persisted term."""
        self.id: NodeId = config.id
        self.config = config
        self.rng = rng
        initial = storage.initial_state()
        self.log = RaftLog(storage, config.applied)
        self.tracker = ProgressTracker(initial.membership, config.max_inflight_msgs, config.max_inflight_bytes)
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.term = 0
        self.vote: NodeId = NONE
        self.lead: NodeId = NONE
        self.role = Role.FOLLOWER
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_ticks
        self.lead_transferee: NodeId = NONE
        self.read_only = ReadOnly()
        self.held_reads: list[ReadIndex] = []
        self.uncommitted_size = 0
        self.pending_bcast = False
        self._step: StepFn = _not_started
        self._tick: Callable[[], None] = self.tick_election
        hard = initial.hard_state
        self._logged_role = (Role.FOLLOWER, hard.term)  # starting up is not worth a log line
        self.become_follower(hard.term, NONE)
        self.vote = hard.vote

    # -- state views ----------------------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        """Term, vote and commit: what must be persisted."""
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        """Leader and role: what is worth reporting."""
        return SoftState(self.lead, self.role)

    def promotable(self) -> bool:
        """Whether this node may campaign: it is a voter and holds no unpersisted snapshot."""
        return self.tracker.is_voter(self.id) and self.log.unstable.snapshot is None

    def committed_entry_in_current_term(self) -> bool:
        """Whether this leader has committed an entry of its own term (needed before serving reads)."""
        return self.log.maybe_term(self.log.committed) == self.term

    # -- input ----------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self._tick()

    def step(self, m: Message) -> int | None:
        """Process one message: the term preamble, then votes, then the role's handler."""
        if m.term == 0:
            if not isinstance(m, CLIENT_MESSAGE_TYPES):
                # Only client requests carry term 0; from a peer anything else is malformed: ignore it.
                logger.warning("%d ignored %s from %d with term 0", self.id, type(m).__name__, m.src)
                return None
        elif m.term > self.term:
            if not self._accept_higher_term(m):
                return None
        elif m.term < self.term:
            self._answer_lower_term(m)
            return None
        if isinstance(m, RequestVote | RequestPreVote):
            self.handle_vote_request(m)
            return None
        return self._step(self, m)

    def _accept_higher_term(self, m: Message) -> bool:
        """Apply the higher-term rule to ``m``; returns False when ``m`` is to be ignored."""
        if isinstance(m, RequestVote | RequestPreVote):
            force = isinstance(m, RequestVote) and m.transfer
            in_lease = (
                self.config.check_quorum and self.lead != NONE and self.election_elapsed < self.config.election_ticks
            )
            if in_lease and not force:
                logger.debug(
                    "%d ignored %s from %d at term %d: leader %d is within its lease",
                    self.id,
                    type(m).__name__,
                    m.src,
                    m.term,
                    self.lead,
                )
                return False
        if isinstance(m, RequestPreVote):
            return True  # a pre-vote never changes our term
        if isinstance(m, RequestPreVoteResponse) and not m.reject:
            return True  # the pre-candidate moves to that term itself when it wins
        leader = m.src if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot) else NONE
        self.become_follower(m.term, leader)
        return True

    def _answer_lower_term(self, m: Message) -> None:
        """Answer a message from an older term so that its sender learns our term, where that helps."""
        if isinstance(m, AppendEntries | Heartbeat):
            # A stale leader must learn the current term and step down (Raft §5.1: reply with our term).
            # With check-quorum on it could otherwise never learn it, since votes are ignored in a lease.
            self.send(AppendEntriesResponse(src=self.id, dst=m.src, term=self.term, index=0))
        elif isinstance(m, RequestPreVote):
            # Reject with our term: a lower-term pre-candidate must learn it, or a cluster whose nodes hold
            # higher terms but shorter logs could stay leaderless.
            self.send(RequestPreVoteResponse(src=self.id, dst=m.src, term=self.term, reject=True))

    # -- votes ----------------------------------------------------------------------------------------------

    def handle_vote_request(self, m: RequestVote | RequestPreVote) -> None:
        """Grant or refuse a (pre-)vote: at most one vote per term, only to an up-to-date log."""
        pre = isinstance(m, RequestPreVote)
        can_vote = self.vote == m.src or (self.vote == NONE and self.lead == NONE) or (pre and m.term > self.term)
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            if pre:
                self.send(RequestPreVoteResponse(src=self.id, dst=m.src, term=m.term))
            else:
                self.election_elapsed = 0
                self.vote = m.src
                self.send(RequestVoteResponse(src=self.id, dst=m.src, term=m.term))
        elif pre:
            self.send(RequestPreVoteResponse(src=self.id, dst=m.src, term=self.term, reject=True))
        else:
            self.send(RequestVoteResponse(src=self.id, dst=m.src, term=self.term, reject=True))

    def hup(self, *, transfer: bool = False) -> None:
        """Start an election (a pre-vote first, unless disabled or a leadership transfer asked for it)."""
        if self.role is Role.LEADER or not self.promotable():
            return
        if transfer or not self.config.pre_vote:
            self.campaign(pre_vote=False, transfer=transfer)
        else:
            self.campaign(pre_vote=True)

    def campaign(self, *, pre_vote: bool, transfer: bool = False) -> None:
        """Ask every voter for a (pre-)vote; wins at once in a single-voter cluster."""
        if pre_vote:
            self.become_pre_candidate()
            term = self.term + 1
        else:
            self.become_candidate()
            term = self.term
        if self.tracker.record_vote(self.id, True) is VoteResult.WON:
            self._won_election(pre_vote)
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for voter in sorted(self.tracker.membership.voters):
            if voter == self.id:
                continue
            if pre_vote:
                self.send(
                    RequestPreVote(
                        src=self.id,
                        dst=voter,
                        term=term,
                        last_index=last_index,
                        last_term=last_term,
                    )
                )
            else:
                self.send(
                    RequestVote(
                        src=self.id,
                        dst=voter,
                        term=term,
                        last_index=last_index,
                        last_term=last_term,
                        transfer=transfer,
                    )
                )

    def handle_vote_response(self, voter: NodeId, granted: bool) -> None:
        """Count a (pre-)vote answer and act on a won or lost election."""
        result = self.tracker.record_vote(voter, granted)
        if result is VoteResult.WON:
            self._won_election(self.role is Role.PRE_CANDIDATE)
        elif result is VoteResult.LOST:
            self.become_follower(self.term, NONE)

    def _won_election(self, pre_vote: bool) -> None:
        if pre_vote:
            self.campaign(pre_vote=False)
        else:
            self.become_leader()
            self.bcast_append()

    # -- role transitions -----------------------------------------------------------------------------------

    def reset(self, term: int) -> None:
        """Common reset of every role change: new term (forgetting the vote), timers, transfer, progress."""
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.config.election_ticks + self.rng.randrange(self.config.election_ticks)
        self.lead_transferee = NONE
        self.tracker.reset_votes()
        self.tracker.reset_progress(self.log.last_index() + 1)
        self.read_only.clear()
        self.held_reads = []
        self.uncommitted_size = 0

    def become_follower(self, term: int, lead: NodeId) -> None:
        """Follow ``lead`` (or nobody yet) in ``term``."""
        self.reset(term)
        self._step = step_follower
        self._tick = self.tick_election
        self.lead = lead
        self._set_role(Role.FOLLOWER)

    def become_pre_candidate(self) -> None:
        """Ask for pre-votes without changing term, forgetting the leader (so our lease cannot block others)."""
        if self.role is Role.LEADER:
            raise AssertionError("a leader cannot become a pre-candidate")
        self._step = step_candidate
        self._tick = self.tick_election
        self.tracker.reset_votes()
        self.lead = NONE
        self._set_role(Role.PRE_CANDIDATE)

    def become_candidate(self) -> None:
        """Move to the next term and vote for ourselves."""
        if self.role is Role.LEADER:
            raise AssertionError("a leader cannot become a candidate")
        self.reset(self.term + 1)
        self._step = step_candidate
        self._tick = self.tick_election
        self.vote = self.id
        self._set_role(Role.CANDIDATE)

    def become_leader(self) -> None:
        """Lead this term: track every follower and append the no-op that commits earlier terms (§5.4.2)."""
        if self.role is Role.FOLLOWER:
            raise AssertionError("a follower cannot become leader without an election")
        self.reset(self.term)
        self._step = step_leader
        self._tick = self.tick_heartbeat
        self.lead = self.id
        me = self.tracker.progress.get(self.id)
        if me is not None:
            me.match = self.log.last_stable_index()
            me.become_replicate()
            me.next = self.log.last_index() + 1
            me.recent_active = True
        self._set_role(Role.LEADER)
        self.append_entries([Entry(self.term, self.log.last_index() + 1, EntryKind.NOOP)])

    def _set_role(self, role: Role) -> None:
        if (role, self.term) != self._logged_role:
            self._logged_role = (role, self.term)
            logger.info("node %d became %s at term %d", self.id, role.value, self.term)
        self.role = role

    # -- ticks ----------------------------------------------------------------------------------------------

    def tick_election(self) -> None:
        """Follower and candidate tick: campaign once the randomized election timeout passes."""
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout and self.promotable():
            self.election_elapsed = 0
            self.hup()

    def tick_heartbeat(self) -> None:
        """Leader tick: heartbeats, the check-quorum test and the transfer deadline."""
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum and not self.check_quorum():
                return
            if self.lead_transferee != NONE:
                logger.info("node %d abandons transfer to %d: timed out", self.id, self.lead_transferee)
                self.lead_transferee = NONE
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self.bcast_heartbeat()

    def check_quorum(self) -> bool:
        """Step down unless a majority was heard from this election timeout; returns whether still leader."""
        if not self.tracker.quorum_active():
            logger.info("node %d steps down at term %d: no quorum heard from", self.id, self.term)
            self.become_follower(self.term, NONE)
            return False
        for node, pr in self.tracker.progress.items():
            pr.recent_active = node == self.id
        return True

    # -- sending --------------------------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue ``m`` for the next Ready."""
        self.msgs.append(m)

    def send_append(self, to: NodeId, *, send_if_empty: bool = True) -> bool:
        """Send ``to`` the entries it needs next (or a snapshot); returns whether anything was sent."""
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        prev_index = pr.next - 1
        prev_term = log.maybe_term(prev_index)
        if prev_term is None:
            return self.send_snapshot(to)
        commit_only = False
        if pr.next > log.last_index():
            if not send_if_empty:
                return False
            entries: tuple[Entry, ...] = ()
            # It holds our whole log: this append only carries the commit index (it is not answered).
            commit_only = pr.state is ProgressState.REPLICATE and pr.match == prev_index == log.last_index()
        else:
            entries = tuple(log.entries_from(pr.next, self.config.max_size_per_msg))
            pr.sent_entries(entries[-1].index, entries_size(entries))
        self.send(
            AppendEntries(
                src=self.id,
                dst=to,
                term=self.term,
                prev_index=prev_index,
                prev_term=prev_term,
                entries=entries,
                commit=log.committed,
                commit_only=commit_only,
            )
        )
        return True

    def send_snapshot(self, to: NodeId) -> bool:
        """Send ``to`` the latest snapshot, if it was recently active; returns whether it was sent."""
        pr = self.tracker.progress[to]
        if not pr.recent_active:
            return False
        snapshot = self.log.snapshot()
        if snapshot.is_empty():
            raise AssertionError(f"node {to} needs compacted entries but there is no snapshot")
        pr.become_snapshot(snapshot.meta.index)
        logger.debug("node %d sends snapshot at %d to %d", self.id, snapshot.meta.index, to)
        self.send(InstallSnapshot(src=self.id, dst=to, term=self.term, snapshot=snapshot))
        return True

    def bcast_append(self) -> None:
        """Send every follower what it needs (at least an empty append carrying the commit index)."""
        for node in self.tracker.progress:
            if node != self.id:
                self.send_append(node)

    def bcast_heartbeat(self) -> None:
        """Send every follower a heartbeat, carrying the newest pending read's round."""
        read_round = self.read_only.last_round()
        committed = self.log.committed
        for node, pr in self.tracker.progress.items():
            if node != self.id:
                self.send(
                    Heartbeat(
                        src=self.id,
                        dst=node,
                        term=self.term,
                        commit=min(pr.match, committed),
                        read_round=read_round,
                    )
                )

    def send_read_state(self, origin: NodeId, context: bytes, index: int) -> None:
        """Tell ``origin`` (this node or a follower) that its read may be served at ``index``."""
        if origin in (self.id, NONE):
            self.read_states.append(ReadState(index, context))
        else:
            self.send(ReadIndexResponse(src=self.id, dst=origin, term=self.term, index=index, context=context))

    # -- log ------------------------------------------------------------------------------------------------

    def append_entries(self, entries: Sequence[Entry]) -> int:
        """Leader: append ``entries`` (already numbered and stamped with our term); returns the first index."""
        size = payload_size(entries)
        limit = self.config.max_uncommitted_size
        if limit and self.uncommitted_size and self.uncommitted_size + size > limit:
            raise Overloaded(f"{self.uncommitted_size} bytes are uncommitted (limit {limit}); retry once they commit")
        self.uncommitted_size += size
        self.log.append(entries)
        return entries[0].index

    def propose(self, data: Sequence[bytes]) -> int:
        """Leader: append commands and replicate them; returns the index of the first."""
        first = self.log.last_index() + 1
        # map() rather than a comprehension: one Entry per command, with no Python-level loop around it.
        entries = list(map(Entry, repeat(self.term), count(first), repeat(EntryKind.NORMAL), data))
        self.append_entries(entries)
        # Replicate when the driver next asks for a Ready: every proposal made until then leaves as one
        # append per follower (batching).
        self.pending_bcast = True
        return first

    def flush_proposals(self) -> None:
        """Send followers the entries proposed since the last Ready, as one append each."""
        if self.pending_bcast:
            self.pending_bcast = False
            if self.role is Role.LEADER:
                self.bcast_append()

    def maybe_commit(self) -> bool:
        """Leader: commit what a majority holds, if it is of this term (Figure 8); returns whether it moved."""
        if not self.log.maybe_commit(self.tracker.committed(), self.term):
            return False
        if self.held_reads and self.committed_entry_in_current_term():
            start_held_reads(self)
        return True

    def on_persisted(self) -> None:
        """The driver persisted the last Ready; a leader now counts its own log toward commit."""
        if self.role is not Role.LEADER:
            return
        me = self.tracker.progress.get(self.id)
        if me is not None and me.maybe_update(self.log.last_stable_index()) and self.maybe_commit():
            self.bcast_append()

    def reduce_uncommitted_size(self, entries: Sequence[Entry]) -> None:
        """Entries were handed out as committed: they no longer count against the uncommitted limit."""
        if self.uncommitted_size:
            self.uncommitted_size = max(0, self.uncommitted_size - payload_size(entries))

    def maybe_restore(self, snapshot: Snapshot) -> bool:
        """Follower: adopt ``snapshot`` if it is newer than our log; returns whether it was adopted."""
        meta = snapshot.meta
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We already hold that entry: just commit up to it; our log beyond it stays.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        self.tracker.set_membership(meta.membership, self.log.last_index() + 1)
        logger.info("node %d restored snapshot at %d/%d", self.id, meta.index, meta.term)
        return True


def _not_started(raft: Raft, m: Message) -> int | None:
    raise AssertionError("Raft.step called before a role was set")


__all__ = ["Raft"]
