"""Quorum arithmetic: committed index, vote tallies and active quorums over a set of voters."""

from __future__ import annotations

import pytest

from raft_core.quorum import VoteResult, committed_index, has_quorum, majority, vote_result

Y, N = True, False


@pytest.mark.parametrize(("size", "expected"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_majority(size: int, expected: int) -> None:
    assert majority(size) == expected


@pytest.mark.parametrize(
    ("voters", "acked", "expected"),
    [
        # A single voter commits whatever it has.
        ({1}, {1: 7}, 7),
        ({1}, {}, 0),
        # Three voters: the median of the acknowledged indexes.
        ({1, 2, 3}, {1: 5, 2: 3, 3: 1}, 3),
        ({1, 2, 3}, {1: 5, 2: 5, 3: 1}, 5),
        ({1, 2, 3}, {1: 5, 2: 5, 3: 5}, 5),
        # A voter that acknowledged nothing counts as index 0.
        ({1, 2, 3}, {1: 5}, 0),
        ({1, 2, 3}, {1: 5, 2: 4}, 4),
        # Four voters need three acks: the second-lowest index.
        ({1, 2, 3, 4}, {1: 4, 2: 3, 3: 2, 4: 1}, 2),
        ({1, 2, 3, 4}, {1: 9, 2: 9, 3: 1, 4: 1}, 1),
        # Five voters: the third-highest.
        ({1, 2, 3, 4, 5}, {1: 10, 2: 9, 3: 8, 4: 2, 5: 1}, 8),
        # Acks from non-voters (learners, removed nodes) do not count.
        ({1, 2, 3}, {1: 5, 4: 5, 5: 5}, 0),
        ({1, 2, 3}, {1: 5, 2: 2, 4: 9, 5: 9}, 2),
    ],
)
def test_committed_index(voters: set[int], acked: dict[int, int], expected: int) -> None:
    assert committed_index(voters, acked) == expected


def test_committed_index_of_an_empty_configuration_is_unbounded() -> None:
    # Nobody to wait for: everything is committed (joint configurations rely on this for their empty half).
    assert committed_index(set(), {1: 3}) >= 1 << 63


def test_committed_index_does_not_depend_on_ack_order() -> None:
    acked = {1: 3, 2: 8, 3: 5, 4: 1, 5: 8}
    reordered = dict(reversed(list(acked.items())))
    assert committed_index(set(acked), acked) == committed_index(set(acked), reordered) == 5


@pytest.mark.parametrize(
    ("voters", "votes", "expected"),
    [
        # One voter decides alone.
        ({1}, {}, VoteResult.PENDING),
        ({1}, {1: Y}, VoteResult.WON),
        ({1}, {1: N}, VoteResult.LOST),
        # Two voters need both.
        ({1, 2}, {1: Y}, VoteResult.PENDING),
        ({1, 2}, {1: Y, 2: Y}, VoteResult.WON),
        ({1, 2}, {1: Y, 2: N}, VoteResult.LOST),
        ({1, 2}, {2: N}, VoteResult.LOST),  # one rejection already rules out a majority of two
        # Three voters.
        ({1, 2, 3}, {}, VoteResult.PENDING),
        ({1, 2, 3}, {1: Y}, VoteResult.PENDING),
        ({1, 2, 3}, {1: Y, 2: N}, VoteResult.PENDING),  # voter 3 still decides
        ({1, 2, 3}, {1: Y, 2: Y}, VoteResult.WON),
        ({1, 2, 3}, {1: Y, 2: N, 3: Y}, VoteResult.WON),
        ({1, 2, 3}, {1: Y, 2: N, 3: N}, VoteResult.LOST),
        ({1, 2, 3}, {2: N, 3: N}, VoteResult.LOST),
        # Four voters: a 2-2 split is lost, not pending (three grants are needed and only two are possible).
        ({1, 2, 3, 4}, {1: Y, 2: Y, 3: N}, VoteResult.PENDING),
        ({1, 2, 3, 4}, {1: Y, 2: Y, 3: N, 4: N}, VoteResult.LOST),
        ({1, 2, 3, 4}, {3: N, 4: N}, VoteResult.LOST),
        ({1, 2, 3, 4}, {1: Y, 2: Y, 3: Y}, VoteResult.WON),
        # Five voters.
        ({1, 2, 3, 4, 5}, {1: Y, 2: Y, 3: N, 4: N}, VoteResult.PENDING),
        ({1, 2, 3, 4, 5}, {1: Y, 2: N, 3: N, 4: N}, VoteResult.LOST),
        ({1, 2, 3, 4, 5}, {1: Y, 2: Y, 3: Y}, VoteResult.WON),
        # Votes from non-voters are ignored, both grants and rejections.
        ({1, 2, 3}, {1: Y, 4: Y, 5: Y}, VoteResult.PENDING),
        ({1, 2, 3}, {1: Y, 2: Y, 4: N, 5: N, 6: N}, VoteResult.WON),
        ({1, 2, 3}, {4: N, 5: N}, VoteResult.PENDING),
    ],
)
def test_vote_result(voters: set[int], votes: dict[int, bool], expected: VoteResult) -> None:
    assert vote_result(voters, votes) is expected


def test_vote_result_of_an_empty_configuration_is_won() -> None:
    assert vote_result(set(), {}) is VoteResult.WON


@pytest.mark.parametrize(
    ("voters", "active", "expected"),
    [
        ({1}, {1}, True),
        ({1}, set(), False),
        ({1, 2, 3}, {1, 2}, True),
        ({1, 2, 3}, {1, 2, 3}, True),
        ({1, 2, 3}, {1}, False),
        ({1, 2, 3, 4}, {1, 2}, False),
        ({1, 2, 3, 4}, {1, 2, 4}, True),
        # Active non-voters do not make up for missing voters.
        ({1, 2, 3}, {1, 4, 5, 6}, False),
        ({1, 2, 3, 4, 5}, {1, 2, 6}, False),
        ({1, 2, 3, 4, 5}, {1, 2, 5}, True),
    ],
)
def test_has_quorum(voters: set[int], active: set[int], expected: bool) -> None:
    assert has_quorum(voters, active) is expected


def test_has_quorum_accepts_any_collection() -> None:
    assert has_quorum(frozenset({1, 2, 3}), [2, 3])
    assert not has_quorum([1, 2, 3], (3,))
