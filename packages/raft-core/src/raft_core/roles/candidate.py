"""How a (pre-)candidate handles messages: it tallies votes and yields to a leader of its term."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raft_core.errors import NotLeader
from raft_core.messages import (
    AppendEntries,
    Heartbeat,
    InstallSnapshot,
    Message,
    Propose,
    ReadIndex,
    RequestPreVoteResponse,
    RequestVoteResponse,
    TransferLeader,
)
from raft_core.roles.follower import handle_append_entries, handle_heartbeat, handle_snapshot
from raft_core.types import NONE, Role

if TYPE_CHECKING:
    from raft_core.raft import Raft


def step_candidate(r: Raft, m: Message) -> int | None:
    """Dispatch ``m`` for a pre-candidate or candidate."""
    if isinstance(m, AppendEntries):
        r.become_follower(m.term, m.src)  # a leader of our term exists: follow it
        handle_append_entries(r, m)
    elif isinstance(m, Heartbeat):
        r.become_follower(m.term, m.src)
        handle_heartbeat(r, m)
    elif isinstance(m, InstallSnapshot):
        r.become_follower(m.term, m.src)
        handle_snapshot(r, m)
    elif isinstance(m, RequestPreVoteResponse):
        if r.role is Role.PRE_CANDIDATE:
            r.handle_vote_response(m.src, not m.reject)
    elif isinstance(m, RequestVoteResponse):
        if r.role is Role.CANDIDATE:
            r.handle_vote_response(m.src, not m.reject)
    elif isinstance(m, Propose | ReadIndex | TransferLeader) and m.src in (r.id, NONE):
        raise NotLeader(NONE, "an election is in progress and no leader is known yet")
    return None
