"""Majority arithmetic: which index a majority has acknowledged, and whether a vote is won.

A leaf module: it knows node ids and numbers, nothing of messages, logs or roles.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping


class VoteResult(enum.Enum):
    """The state of an election's tally."""

    PENDING = "pending"
    """Neither a majority of grants nor of rejections yet."""
    LOST = "lost"
    """A majority rejected: the election cannot be won."""
    WON = "won"
    """A majority granted."""


def majority(size: int) -> int:
    """How many of ``size`` voters make a majority."""
    return size // 2 + 1


def committed_index(voters: Collection[int], acked: Mapping[int, int]) -> int:
    """The largest index that a majority of ``voters`` has acknowledged (``acked`` maps voter -> index).

    Voters missing from ``acked`` count as having acknowledged nothing. An empty configuration commits
    everything (there is nobody to wait for), which only happens in tests that build one on purpose.
    """
    if not voters:
        return 1 << 63
    indexes = sorted((acked.get(v, 0) for v in voters), reverse=True)
    return indexes[majority(len(indexes)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Tally ``votes`` (voter -> granted) over ``voters``; votes from non-voters are ignored."""
    if not voters:
        return VoteResult.WON
    granted = rejected = 0
    for voter in voters:
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = majority(len(voters))
    if granted >= need:
        return VoteResult.WON
    if rejected >= need or len(voters) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Collection[int], active: Collection[int]) -> bool:
    """Whether the nodes in ``active`` include a majority of ``voters``."""
    count = sum(1 for v in voters if v in active)
    return count >= majority(len(voters))
