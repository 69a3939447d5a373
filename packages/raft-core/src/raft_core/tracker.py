"""``ProgressTracker``: the leader's view of every member (progress) and a candidate's tally of votes."""

from __future__ import annotations

from raft_core import quorum
from raft_core.inflights import Inflights
from raft_core.progress import Progress
from raft_core.quorum import VoteResult
from raft_core.types import Membership, NodeId


class ProgressTracker:
    """Per-member progress, the votes of the current election, and the membership they are counted in."""

    __slots__ = ("max_inflight_bytes", "max_inflight_msgs", "membership", "progress", "votes")

    def __init__(self, membership: Membership, max_inflight_msgs: int, max_inflight_bytes: int) -> None:
        """Track ``membership``, with in-flight windows of the given size per follower."""
        self.membership = membership
        self.max_inflight_msgs = max_inflight_msgs
        self.max_inflight_bytes = max_inflight_bytes
        self.progress: dict[NodeId, Progress] = {}
        self.votes: dict[NodeId, bool] = {}

    def reset_progress(self, next_index: int) -> None:
        """Forget all progress: every member is probed from ``next_index``."""
        learners = self.membership.learners
        self.progress = {
            node: Progress(
                next_index,
                Inflights(self.max_inflight_msgs, self.max_inflight_bytes),
                is_learner=node in learners,
            )
            for node in sorted(self.membership.members())
        }

    def set_membership(self, membership: Membership, next_index: int) -> None:
        """Switch to ``membership`` (e.g. from a snapshot), resetting progress."""
        self.membership = membership
        self.reset_progress(next_index)

    def committed(self) -> int:
        """The largest index a majority of voters has persisted."""
        progress = self.progress
        return quorum.committed_index(
            self.membership.voters, {node: progress[node].match for node in self.membership.voters}
        )

    def quorum_active(self) -> bool:
        """Whether a majority of voters was recently heard from."""
        active = [node for node, pr in self.progress.items() if pr.recent_active]
        return quorum.has_quorum(self.membership.voters, active)

    def reset_votes(self) -> None:
        """Start a new tally."""
        self.votes = {}

    def record_vote(self, node: NodeId, granted: bool) -> VoteResult:
        """Count ``node``'s first answer in this election and return the tally."""
        self.votes.setdefault(node, granted)
        return quorum.vote_result(self.membership.voters, self.votes)

    def is_voter(self, node: NodeId) -> bool:
        """Whether ``node`` votes."""
        return node in self.membership.voters
