"""``RaftLog``: persisted plus unstable entries, conflicts, commit and apply positions."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from raft_core.errors import InvariantViolation, LogCompacted
from raft_core.log import RaftLog
from raft_core.storage.memory import MemoryStorage
from raft_core.types import ENTRY_OVERHEAD, Entry, HardState, Membership, Snapshot, SnapshotMeta

MEMBERS = Membership.of(1, 2, 3)


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from (index, term) pairs."""
    return [Entry(term=term, index=index) for index, term in pairs]


def terms(first: int, *values: int) -> list[Entry]:
    """Consecutive entries starting at ``first`` with the given terms."""
    return [Entry(term=t, index=first + n) for n, t in enumerate(values)]


def make_log(
    stored: Sequence[Entry] = (),
    unstable: Sequence[Entry] = (),
    *,
    commit: int = 0,
    storage: MemoryStorage | None = None,
) -> RaftLog:
    """A log over ``stored`` (persisted) followed by ``unstable`` entries, committed up to ``commit``."""
    storage = storage if storage is not None else MemoryStorage(MEMBERS)
    storage.append(list(stored))
    log = RaftLog(storage)
    if unstable:
        log.append(list(unstable))
    log.commit_to(commit)
    return log


def all_entries(log: RaftLog) -> list[Entry]:
    return log.slice(log.first_index(), log.last_index() + 1)


# -- construction and positions -------------------------------------------------------------------------


def test_new_log_over_empty_storage() -> None:
    log = make_log()
    assert (log.first_index(), log.last_index()) == (1, 0)
    assert (log.committed, log.applied) == (0, 0)
    assert log.last_term() == 0
    assert log.maybe_term(0) == 0


def test_new_log_restores_commit_from_the_hard_state() -> None:
    storage = MemoryStorage(MEMBERS)
    storage.append(terms(1, 1, 1, 2))
    storage.set_hard_state(HardState(term=2, vote=1, commit=2))
    log = RaftLog(storage, applied=1)
    assert (log.committed, log.applied) == (2, 1)
    assert log.last_stable_index() == 3
    assert log.unstable_entries() == ()


def test_new_log_after_a_snapshot_starts_after_it() -> None:
    storage = MemoryStorage(MEMBERS)
    storage.append(terms(1, 1, 1, 2, 2))
    storage.create_snapshot(3, b"")
    storage.compact(3)
    log = RaftLog(storage)
    assert (log.first_index(), log.last_index()) == (4, 4)
    assert (log.committed, log.applied) == (3, 3)  # a snapshot is committed and applied by definition
    assert log.maybe_term(3) == 2
    assert log.maybe_term(2) is None


def test_positions_span_storage_and_unstable() -> None:
    log = make_log(terms(1, 1, 1), terms(3, 2, 2))
    assert (log.first_index(), log.last_index()) == (1, 4)
    assert log.last_stable_index() == 2
    assert log.last_term() == 2
    assert [log.maybe_term(i) for i in range(6)] == [0, 1, 1, 2, 2, None]


def test_match_term() -> None:
    log = make_log(terms(1, 1, 2), terms(3, 3))
    assert log.match_term(0, 0)
    assert log.match_term(2, 2)
    assert log.match_term(3, 3)
    assert not log.match_term(2, 1)
    assert not log.match_term(4, 3)


# -- is_up_to_date (§5.4.1) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_index", "last_term", "expected"),
    [
        (3, 2, True),  # same last entry
        (4, 2, True),  # same term, longer
        (2, 2, False),  # same term, shorter
        (1, 3, True),  # a later term wins whatever the length
        (10, 1, False),  # an earlier term loses whatever the length
        (0, 0, False),
    ],
)
def test_is_up_to_date(last_index: int, last_term: int, expected: bool) -> None:
    log = make_log(terms(1, 1, 2, 2))
    assert log.is_up_to_date(last_index, last_term) is expected


def test_anything_is_up_to_date_against_an_empty_log() -> None:
    assert make_log().is_up_to_date(0, 0)


# -- find_conflict --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], 0),  # nothing to compare
        (ents((1, 1), (2, 2), (3, 3)), 0),  # all held already
        (ents((2, 2), (3, 3)), 0),
        (ents((3, 3)), 0),
        (ents((1, 1), (2, 2), (3, 3), (4, 4), (5, 4)), 4),  # first new entry
        (ents((3, 3), (4, 4)), 4),
        (ents((4, 4), (5, 4)), 4),
        (ents((1, 4), (2, 4)), 1),  # first entry with a different term
        (ents((2, 1), (3, 4), (4, 4)), 2),
        (ents((3, 1), (4, 2), (5, 4), (6, 4)), 3),
    ],
)
def test_find_conflict(entries: list[Entry], expected: int) -> None:
    log = make_log(terms(1, 1, 2, 3))
    assert log.find_conflict(entries) == expected


# -- find_conflict_by_term ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "term", "expected"),
    [
        # Log terms by index: 1:1 2:1 3:3 4:3 5:3 6:5 7:5
        (7, 5, (7, 5)),  # the entry itself qualifies
        (7, 6, (7, 5)),
        (7, 4, (5, 3)),  # skip the whole term-5 run
        (7, 3, (5, 3)),
        (7, 2, (2, 1)),  # skip terms 5 and 3
        (7, 1, (2, 1)),
        (7, 0, (0, 0)),  # nothing is old enough
        (4, 2, (2, 1)),
        (0, 5, (0, 0)),
        (9, 5, (9, 0)),  # beyond our log: unknown term
    ],
)
def test_find_conflict_by_term(index: int, term: int, expected: tuple[int, int]) -> None:
    log = make_log(terms(1, 1, 1, 3, 3, 3, 5, 5))
    assert log.find_conflict_by_term(index, term) == expected


def test_find_conflict_by_term_stops_at_compacted_entries() -> None:
    storage = MemoryStorage(MEMBERS)
    storage.append(terms(1, 1, 2, 3, 3, 4))
    storage.create_snapshot(3, b"")
    storage.compact(3)
    log = RaftLog(storage)
    assert log.find_conflict_by_term(5, 3) == (4, 3)
    assert log.find_conflict_by_term(5, 2) == (2, 0)  # 3 is the snapshot (term 3 > 2); 2 is unknown
    assert log.find_conflict_by_term(3, 3) == (3, 3)


# -- maybe_append ---------------------------------------------------------------------------------------


def test_maybe_append_refuses_a_mismatched_previous_entry() -> None:
    log = make_log(terms(1, 1, 2, 3), commit=1)
    assert log.maybe_append(3, 2, 3, ents((4, 4))) is None  # wrong term at 3
    assert log.maybe_append(4, 3, 3, ents((5, 4))) is None  # no entry at 4
    assert log.last_index() == 3
    assert log.committed == 1  # a refused append commits nothing


def test_maybe_append_appends_new_entries_and_commits() -> None:
    log = make_log(terms(1, 1, 2, 3), commit=1)
    assert log.maybe_append(3, 3, 4, ents((4, 4), (5, 4))) == 5
    assert all_entries(log) == terms(1, 1, 2, 3, 4, 4)
    assert log.committed == 4


def test_maybe_append_commits_no_further_than_the_entries_it_verified() -> None:
    # The leader's commit index may be ahead, but only what is known to match may be committed.
    log = make_log(terms(1, 1, 2, 3, 3, 3))
    assert log.maybe_append(2, 2, 10, ents((3, 3))) == 3
    assert log.committed == 3
    assert log.last_index() == 5  # the entries after the verified ones are kept (not truncated)


def test_maybe_append_never_moves_commit_backwards() -> None:
    log = make_log(terms(1, 1, 2, 3), commit=3)
    assert log.maybe_append(1, 1, 1, []) == 1
    assert log.committed == 3


def test_maybe_append_keeps_entries_it_already_holds() -> None:
    log = make_log(terms(1, 1, 2, 3))
    assert log.maybe_append(0, 0, 0, terms(1, 1, 2)) == 2
    assert log.unstable_entries() == ()  # nothing new to persist
    assert log.last_index() == 3


def test_maybe_append_truncates_a_conflicting_suffix() -> None:
    log = make_log(terms(1, 1, 2, 3, 3), commit=2)
    assert log.maybe_append(2, 2, 2, ents((3, 4))) == 3
    assert all_entries(log) == terms(1, 1, 2, 4)
    assert log.last_index() == 3  # entry 4 of the old term is gone
    assert log.unstable_entries() == tuple(ents((3, 4)))
    assert log.last_stable_index() == 2


def test_maybe_append_truncates_unstable_entries_too() -> None:
    log = make_log(terms(1, 1), terms(2, 1, 1, 1))
    assert log.maybe_append(2, 1, 0, ents((3, 2))) == 3
    assert all_entries(log) == terms(1, 1, 1, 2)


def test_maybe_append_refuses_to_truncate_committed_entries() -> None:
    log = make_log(terms(1, 1, 2, 3), commit=3)
    with pytest.raises(InvariantViolation, match="committed"):
        log.maybe_append(1, 1, 3, ents((2, 9), (3, 9)))
    assert all_entries(log) == terms(1, 1, 2, 3)  # untouched


def test_maybe_append_may_replace_the_entry_right_after_commit() -> None:
    log = make_log(terms(1, 1, 2, 3), commit=2)
    assert log.maybe_append(2, 2, 2, ents((3, 9))) == 3
    assert log.maybe_term(3) == 9


def test_append_over_committed_entries_is_refused() -> None:
    log = make_log(terms(1, 1, 1, 1), commit=2)
    with pytest.raises(InvariantViolation):
        log.append(ents((2, 2)))
    assert log.append([]) == 3


# -- commit and apply -----------------------------------------------------------------------------------


def test_commit_to_beyond_the_log_is_an_invariant_violation() -> None:
    log = make_log(terms(1, 1, 1))
    with pytest.raises(InvariantViolation):
        log.commit_to(3)


def test_commit_to_never_goes_backwards() -> None:
    log = make_log(terms(1, 1, 1), commit=2)
    log.commit_to(1)
    assert log.committed == 2


def test_maybe_commit_only_commits_entries_of_the_given_term() -> None:
    # Figure 8: a leader of term 3 must not commit index 2 (term 2) by counting replicas.
    log = make_log(terms(1, 1, 2, 3))
    assert not log.maybe_commit(2, 3)
    assert log.committed == 0
    assert log.maybe_commit(3, 3)
    assert log.committed == 3
    assert not log.maybe_commit(3, 3)  # nothing new


def test_applied_to_bounds() -> None:
    log = make_log(terms(1, 1, 1, 1), commit=2)
    log.applied_to(2)
    assert log.applied == 2
    with pytest.raises(InvariantViolation):
        log.applied_to(3)  # not committed
    with pytest.raises(InvariantViolation):
        log.applied_to(1)  # backwards


# -- slice ----------------------------------------------------------------------------------------------


def sized(first: int, count: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=first + n, data=b"x" * 4) for n in range(count)]


SIZE = 4 + ENTRY_OVERHEAD


def test_slice_across_storage_and_unstable() -> None:
    log = make_log(sized(1, 3), sized(4, 3, term=2))
    assert [e.index for e in log.slice(1, 7)] == [1, 2, 3, 4, 5, 6]
    assert [e.index for e in log.slice(2, 5)] == [2, 3, 4]
    assert [e.index for e in log.slice(4, 6)] == [4, 5]  # unstable only
    assert [e.index for e in log.slice(1, 3)] == [1, 2]  # storage only
    assert log.slice(3, 3) == []


@pytest.mark.parametrize(
    ("lo", "hi", "max_size", "expected"),
    [
        (1, 7, SIZE * 6, [1, 2, 3, 4, 5, 6]),
        (1, 7, SIZE * 4, [1, 2, 3, 4]),  # the limit falls in the unstable part
        (1, 7, SIZE * 2, [1, 2]),  # storage stops early: unstable entries are not added after a gap
        (2, 7, SIZE * 2 + 1, [2, 3]),
        (4, 7, SIZE * 2, [4, 5]),  # unstable only
        (1, 7, 0, [1]),  # always at least one entry
        (4, 7, 0, [4]),
    ],
)
def test_slice_with_max_size(lo: int, hi: int, max_size: int, expected: list[int]) -> None:
    log = make_log(sized(1, 3), sized(4, 3, term=2))
    assert [e.index for e in log.slice(lo, hi, max_size)] == expected


def test_slice_below_the_first_index_raises_log_compacted() -> None:
    storage = MemoryStorage(MEMBERS)
    storage.append(sized(1, 5))
    storage.create_snapshot(3, b"")
    storage.compact(3)
    log = RaftLog(storage)
    with pytest.raises(LogCompacted):
        log.slice(3, 5)
    assert [e.index for e in log.slice(4, 6)] == [4, 5]


def test_slice_after_a_truncation_reads_the_new_entries_not_the_stale_stored_ones() -> None:
    log = make_log(terms(1, 1, 1, 1, 1))
    log.maybe_append(1, 1, 0, ents((2, 2)))
    assert log.slice(1, 3) == ents((1, 1), (2, 2))
    assert log.last_index() == 2
    assert log.maybe_term(3) is None  # still in storage until the driver persists, but no longer ours


def test_entries_from() -> None:
    log = make_log(sized(1, 2), sized(3, 2))
    assert [e.index for e in log.entries_from(2)] == [2, 3, 4]
    assert log.entries_from(5) == []
    assert [e.index for e in log.entries_from(1, SIZE)] == [1]


# -- next_committed_entries ----------------------------------------------------------------------------


def test_next_committed_entries() -> None:
    log = make_log(sized(1, 3), sized(4, 2), commit=4)
    assert log.has_next_committed_entries()
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [1, 2, 3, 4]
    log.applied_to(2)
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [3, 4]
    assert [e.index for e in log.next_committed_entries(SIZE)] == [3]
    assert [e.index for e in log.next_committed_entries(0)] == [3]
    log.applied_to(4)
    assert not log.has_next_committed_entries()
    assert log.next_committed_entries(1 << 20) == []


def test_next_committed_entries_starts_after_a_snapshot() -> None:
    storage = MemoryStorage(MEMBERS)
    storage.append(sized(1, 6))
    storage.create_snapshot(3, b"")
    storage.compact(3)
    storage.set_hard_state(HardState(term=1, commit=5))
    log = RaftLog(storage)
    assert log.applied == 3
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [4, 5]


def test_nothing_committed_nothing_to_apply() -> None:
    log = make_log(sized(1, 3))
    assert not log.has_next_committed_entries()
    assert log.next_committed_entries(1 << 20) == []


# -- restore and stability -----------------------------------------------------------------------------


def test_restore_replaces_the_log_with_a_snapshot() -> None:
    log = make_log(terms(1, 1, 1), terms(3, 2), commit=1)
    snapshot = Snapshot(SnapshotMeta(index=10, term=4, membership=MEMBERS), b"state")
    log.restore(snapshot)
    assert (log.first_index(), log.last_index()) == (11, 10)
    assert log.committed == 10
    assert log.last_term() == 4
    assert log.maybe_term(10) == 4
    assert log.maybe_term(3) is None
    assert log.snapshot() is snapshot
    assert log.unstable_entries() == ()
    assert not log.has_next_committed_entries()  # the snapshot itself restores the state machine
    # New entries follow the snapshot.
    assert log.maybe_append(10, 4, 11, ents((11, 4))) == 11
    assert log.committed == 11


def test_snapshot_falls_back_to_the_stored_one() -> None:
    storage = MemoryStorage(MEMBERS)
    storage.append(terms(1, 1, 1))
    stored = storage.create_snapshot(2, b"x")
    log = RaftLog(storage)
    assert log.snapshot() == stored


def test_stable_to_moves_entries_out_of_unstable() -> None:
    storage = MemoryStorage(MEMBERS)
    log = make_log(terms(1, 1), terms(2, 1, 1), storage=storage)
    assert log.last_stable_index() == 1
    storage.append(list(log.unstable_entries()))
    log.stable_to(3, 1)
    assert log.unstable_entries() == ()
    assert log.last_stable_index() == 3
    assert all_entries(log) == terms(1, 1, 1, 1)


def test_stable_snap_to_hands_the_snapshot_over_to_storage() -> None:
    storage = MemoryStorage(MEMBERS)
    log = make_log(storage=storage)
    snapshot = Snapshot(SnapshotMeta(index=5, term=2, membership=MEMBERS))
    log.restore(snapshot)
    storage.apply_snapshot(snapshot)
    log.stable_snap_to(5)
    assert log.unstable.snapshot is None
    assert (log.first_index(), log.last_index()) == (6, 5)
    assert log.maybe_term(5) == 2
