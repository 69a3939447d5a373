"""How a leader handles messages: replication responses, heartbeats, proposals, reads and transfers.

Rules owned here: the leader commits only entries of its own term by counting replicas (Figure 8; earlier
entries commit with them); it answers a linearizable read only after committing an entry of its term and
hearing from a majority after the read arrived (§6.4); during a leadership transfer it accepts no proposals.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from raft_core.errors import ProposalDropped, TransferInProgress
from raft_core.messages import (
    AppendEntriesResponse,
    HeartbeatResponse,
    Message,
    Propose,
    ReadIndex,
    TimeoutNow,
    TransferLeader,
)
from raft_core.progress import ProgressState
from raft_core.types import NONE, NodeId

if TYPE_CHECKING:
    from raft_core.raft import Raft

logger = logging.getLogger(__name__)


def step_leader(r: Raft, m: Message) -> int | None:
    """Dispatch ``m`` for a leader; returns the first index of a local proposal."""
    if isinstance(m, AppendEntriesResponse):
        handle_append_response(r, m)
    elif isinstance(m, HeartbeatResponse):
        handle_heartbeat_response(r, m)
    elif isinstance(m, Propose):
        return handle_propose(r, m)
    elif isinstance(m, ReadIndex):
        handle_read_index(r, m)
    elif isinstance(m, TransferLeader):
        handle_transfer_leader(r, m)
    return None


def handle_propose(r: Raft, m: Propose) -> int | None:
    """Append proposed commands; a local proposal that cannot be accepted raises, a forwarded one is dropped."""
    if not m.data:
        return None
    try:
        if r.lead_transferee != NONE:
            raise TransferInProgress(r.lead_transferee)
        if r.id not in r.tracker.progress:
            raise ProposalDropped("this leader has been removed from the cluster")
        return r.propose(m.data)
    except ProposalDropped:
        if m.src in (r.id, NONE):
            raise
        logger.debug("node %d dropped %d commands forwarded by %d", r.id, len(m.data), m.src)
        return None


def handle_append_response(r: Raft, m: AppendEntriesResponse) -> None:
    """Update the follower's progress; back up on a rejection, commit and send more on success."""
    pr = r.tracker.progress.get(m.src)
    if pr is None:
        return
    pr.recent_active = True
    if m.reject:
        next_probe = m.reject_hint
        if m.log_term > 0:
            # Skip our entries of terms newer than the follower's hint in one step.
            next_probe = r.log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
        if pr.maybe_decr_to(m.index, next_probe):
            if pr.state is ProgressState.REPLICATE:
                pr.become_probe()
            r.send_append(m.src)
        return
    if m.index > r.log.last_index():
        # A follower cannot hold more of this leader's log than the leader has: a confused or hostile peer.
        logger.warning("%d ignored an append response from %d claiming index %d", r.id, m.src, m.index)
        return
    was_paused = pr.is_paused()
    # A probe answered at the index we already knew still proves where the logs match.
    if not pr.maybe_update(m.index) and not (pr.state is ProgressState.PROBE and pr.match == m.index):
        return
    if pr.state is ProgressState.PROBE:
        pr.become_replicate()
    elif pr.state is ProgressState.SNAPSHOT:
        if pr.match + 1 >= r.log.first_index():
            # The follower now holds what it needs to follow our log: stream from its match.
            pr.become_probe()
            pr.become_replicate()
        elif pr.match >= pr.pending_snapshot:
            # It installed the snapshot, but we compacted past it meanwhile: probe, which sends a newer one.
            pr.become_probe()
    elif pr.state is ProgressState.REPLICATE:
        pr.inflights.free_le(m.index)
    if r.maybe_commit():
        r.bcast_append()
    elif was_paused:
        r.send_append(m.src)
    while r.send_append(m.src, send_if_empty=False):
        pass
    if m.src == r.lead_transferee and pr.match == r.log.last_index():
        send_timeout_now(r, m.src)


def handle_heartbeat_response(r: Raft, m: HeartbeatResponse) -> None:
    """Mark the follower active, resume replication to it, and count its answer toward pending reads."""
    pr = r.tracker.progress.get(m.src)
    if pr is None:
        return
    pr.recent_active = True
    pr.probe_sent = False
    if pr.state is ProgressState.REPLICATE and pr.inflights.full():
        pr.inflights.free_first_one()  # acks may have been lost: let one more append through to find out
    if pr.match < r.log.last_index():
        r.send_append(m.src)
    if m.read_round:
        r.read_only.recv_ack(m.src, m.read_round)
        release_confirmed_reads(r)


def handle_read_index(r: Raft, m: ReadIndex) -> None:
    """Start confirming leadership for a read; hold it first if nothing of our term is committed yet."""
    if not r.committed_entry_in_current_term():
        # Our commit index may lag the previous leader's: we learn the true one only by committing
        # an entry of our own term. Hold the read until then.
        r.held_reads.append(m)
        return
    r.read_only.add_request(r.log.committed, m.src, m.context)
    confirm_reads(r)


def start_held_reads(r: Raft) -> None:
    """Our first entry of this term committed: start confirming the reads that were held for it."""
    held, r.held_reads = r.held_reads, []
    for m in held:
        r.read_only.add_request(r.log.committed, m.src, m.context)
    confirm_reads(r)


def confirm_reads(r: Raft) -> None:
    """Release what is already confirmed (a one-voter cluster needs nobody), and ask peers for the rest."""
    release_confirmed_reads(r)
    if len(r.read_only):
        r.bcast_heartbeat()


def release_confirmed_reads(r: Raft) -> None:
    """Answer every read a majority has confirmed, oldest first."""
    for request in r.read_only.release(r.tracker.membership.voters, r.id):
        r.send_read_state(request.origin, request.context, request.index)


def handle_transfer_leader(r: Raft, m: TransferLeader) -> None:
    """Hand leadership to ``m.target`` once it holds our whole log (§3.10)."""
    target = m.target
    pr = r.tracker.progress.get(target)
    if pr is None or pr.is_learner:
        logger.info("node %d ignores transfer to %d: not a voter", r.id, target)
        return
    if r.lead_transferee != NONE:
        if r.lead_transferee == target:
            return
        logger.info("node %d abandons transfer to %d for %d", r.id, r.lead_transferee, target)
    if target == r.id:
        r.lead_transferee = NONE
        return
    r.election_elapsed = 0  # the transfer must finish within one election timeout
    r.lead_transferee = target
    if pr.match == r.log.last_index():
        send_timeout_now(r, target)
    else:
        r.send_append(target)


def send_timeout_now(r: Raft, to: NodeId) -> None:
    """Tell ``to`` to campaign at once."""
    r.send(TimeoutNow(src=r.id, dst=to, term=r.term))
