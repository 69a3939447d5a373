"""How a follower handles messages, and the follower-side handlers a candidate also uses once it yields.

A follower appends what its leader sends when the previous entry matches (Log Matching, §5.3), never
commits beyond what it holds in common with the leader, forwards client requests to the leader it knows,
and starts an election at once when told ``TimeoutNow``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raft_core.errors import NotLeader
from raft_core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    TimeoutNow,
    TransferLeader,
)
from raft_core.types import NONE, ReadState

if TYPE_CHECKING:
    from raft_core.raft import Raft


def step_follower(r: Raft, m: Message) -> int | None:
    """Dispatch ``m`` for a follower."""
    if isinstance(m, AppendEntries):
        r.election_elapsed = 0
        r.lead = m.src
        handle_append_entries(r, m)
    elif isinstance(m, Heartbeat):
        r.election_elapsed = 0
        r.lead = m.src
        handle_heartbeat(r, m)
    elif isinstance(m, InstallSnapshot):
        r.election_elapsed = 0
        r.lead = m.src
        handle_snapshot(r, m)
    elif isinstance(m, Propose | ReadIndex | TransferLeader):
        forward_to_leader(r, m)
    elif isinstance(m, ReadIndexResponse):
        r.read_states.append(ReadState(m.index, m.context))
    elif isinstance(m, TimeoutNow):
        r.hup(transfer=True)
    return None


def forward_to_leader(r: Raft, m: Propose | ReadIndex | TransferLeader) -> None:
    """Pass a client request on to the leader; a local request that cannot be raises ``NotLeader``."""
    local = m.src in (r.id, NONE)
    if not local:
        return  # forwarded to us by a node that thought we lead: drop it rather than bounce it around
    if r.lead == NONE or (isinstance(m, Propose | TransferLeader) and not r.config.forward_proposals):
        raise NotLeader(r.lead)
    if isinstance(m, Propose):
        r.send(Propose(src=r.id, dst=r.lead, data=m.data))
    elif isinstance(m, ReadIndex):
        r.send(ReadIndex(src=r.id, dst=r.lead, context=m.context))
    else:
        r.send(TransferLeader(src=r.id, dst=r.lead, target=m.target))


def handle_append_entries(r: Raft, m: AppendEntries) -> None:
    """Append the leader's entries if our log matches at ``prev_index``; else reject with a backtrack hint."""
    log = r.log
    if m.prev_index < log.committed:
        r.send(AppendEntriesResponse(src=r.id, dst=m.src, term=r.term, index=log.committed))
        return
    last_new = log.maybe_append(m.prev_index, m.prev_term, m.commit, m.entries)
    if last_new is not None:
        if not (m.commit_only and not m.entries):  # a commit-only append to a matching log needs no answer
            r.send(AppendEntriesResponse(src=r.id, dst=m.src, term=r.term, index=last_new))
        return
    # Our log does not hold the leader's prev entry. Point the leader at the last entry that may still
    # match: at or below prev_index, of a term no newer than prev_term. One round trip skips a whole term.
    hint_index, hint_term = log.find_conflict_by_term(min(m.prev_index, log.last_index()), m.prev_term)
    r.send(
        AppendEntriesResponse(
            src=r.id,
            dst=m.src,
            term=r.term,
            index=m.prev_index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )


def handle_heartbeat(r: Raft, m: Heartbeat) -> None:
    """Commit what the leader says we hold in common, and answer (echoing the read round)."""
    r.log.commit_to(m.commit)
    r.send(HeartbeatResponse(src=r.id, dst=m.src, term=r.term, read_round=m.read_round))


def handle_snapshot(r: Raft, m: InstallSnapshot) -> None:
    """Adopt the leader's snapshot if it is newer than our log, and tell the leader where we stand."""
    index = r.log.last_index() if r.maybe_restore(m.snapshot) else r.log.committed
    r.send(AppendEntriesResponse(src=r.id, dst=m.src, term=r.term, index=index))
