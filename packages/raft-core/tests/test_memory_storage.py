"""``MemoryStorage``: the in-memory ``LogStorage`` the driver writes and the core reads."""

from __future__ import annotations

import pytest

from raft_core.errors import EntryUnavailable, InvariantViolation, LogCompacted, SnapshotOutOfDate
from raft_core.storage.memory import MemoryStorage
from raft_core.storage.protocol import LogStorage
from raft_core.types import ENTRY_OVERHEAD, Entry, HardState, Membership, Snapshot, SnapshotMeta, limit_size

MEMBERS = Membership.of(1, 2, 3)


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from (index, term) pairs."""
    return [Entry(term=term, index=index) for index, term in pairs]


def storage_with(*pairs: tuple[int, int]) -> MemoryStorage:
    s = MemoryStorage(MEMBERS)
    s.append(ents(*pairs))
    return s


def test_satisfies_the_log_storage_protocol() -> None:
    storage: LogStorage = MemoryStorage()
    assert storage.first_index() == 1


def test_new_storage_is_empty() -> None:
    s = MemoryStorage(MEMBERS)
    assert s.first_index() == 1
    assert s.last_index() == 0
    assert s.term(0) == 0
    assert s.entries(1, 1) == []
    assert s.snapshot().is_empty()
    initial = s.initial_state()
    assert initial.hard_state == HardState()
    assert initial.membership == MEMBERS


def test_hard_state_round_trips() -> None:
    s = MemoryStorage()
    s.set_hard_state(HardState(term=3, vote=2, commit=1))
    assert s.hard_state == HardState(term=3, vote=2, commit=1)
    assert s.initial_state().hard_state == HardState(term=3, vote=2, commit=1)


# -- append ----------------------------------------------------------------------------------------------


def test_append_extends_the_log() -> None:
    s = storage_with((1, 1), (2, 1))
    s.append(ents((3, 2)))
    assert s.last_index() == 3
    assert s.entries(1, 4) == ents((1, 1), (2, 1), (3, 2))


def test_append_overwrites_the_suffix_from_its_first_index() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1), (4, 1))
    s.append(ents((3, 2)))
    assert s.last_index() == 3  # entry 4 is gone, though the new batch did not reach it
    assert s.entries(1, 4) == ents((1, 1), (2, 1), (3, 2))


def test_append_overwriting_everything() -> None:
    s = storage_with((1, 1), (2, 1))
    s.append(ents((1, 3), (2, 3), (3, 3)))
    assert s.entries(1, 4) == ents((1, 3), (2, 3), (3, 3))


def test_append_nothing_is_a_no_op() -> None:
    s = storage_with((1, 1))
    s.append([])
    assert s.last_index() == 1


def test_append_with_a_gap_is_refused() -> None:
    s = storage_with((1, 1), (2, 1))
    with pytest.raises(InvariantViolation, match="gap"):
        s.append(ents((4, 1)))
    assert s.last_index() == 2


def test_append_drops_entries_the_snapshot_covers() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1), (4, 1))
    s.create_snapshot(3, b"state")
    s.compact(3)
    s.append(ents((2, 1), (3, 1), (4, 2), (5, 2)))
    assert s.first_index() == 4
    assert s.entries(4, 6) == ents((4, 2), (5, 2))


def test_append_entirely_covered_by_the_snapshot_is_a_no_op() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1))
    s.create_snapshot(2, b"")
    s.compact(2)
    s.append(ents((1, 1), (2, 1)))
    assert (s.first_index(), s.last_index()) == (3, 3)


# -- reads and their errors -----------------------------------------------------------------------------


def test_entries_errors() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1), (4, 1), (5, 1))
    s.create_snapshot(2, b"")
    s.compact(2)
    with pytest.raises(LogCompacted):
        s.entries(2, 4)  # 2 is the snapshot's index: its entry is gone
    with pytest.raises(LogCompacted):
        s.entries(1, 4)
    with pytest.raises(EntryUnavailable):
        s.entries(3, 7)
    assert s.entries(3, 6) == ents((3, 1), (4, 1), (5, 1))


def test_term_errors() -> None:
    s = storage_with((1, 1), (2, 2), (3, 3), (4, 3))
    s.create_snapshot(2, b"")
    s.compact(2)
    assert s.term(2) == 2  # the snapshot's index answers with the snapshot's term
    assert s.term(4) == 3
    with pytest.raises(LogCompacted):
        s.term(1)
    with pytest.raises(EntryUnavailable):
        s.term(5)


def test_entries_max_size() -> None:
    s = MemoryStorage()
    s.append([Entry(term=1, index=i, data=b"x" * 10) for i in range(1, 6)])
    size = 10 + ENTRY_OVERHEAD
    assert len(s.entries(1, 6)) == 5
    assert len(s.entries(1, 6, max_size=size * 5)) == 5
    assert len(s.entries(1, 6, max_size=size * 3)) == 3
    assert len(s.entries(1, 6, max_size=size * 3 + size - 1)) == 3
    assert len(s.entries(1, 6, max_size=size)) == 1
    assert len(s.entries(1, 6, max_size=0)) == 1  # always at least one, or a big entry would never be sent


def test_limit_size() -> None:
    batch = [Entry(term=1, index=i, data=b"ab") for i in range(1, 4)]
    each = 2 + ENTRY_OVERHEAD
    assert limit_size(batch, each * 2) == batch[:2]
    assert limit_size(batch, 1) == batch[:1]
    assert limit_size(batch, 10**9) == batch
    assert limit_size([], 5) == []


# -- snapshots and compaction ---------------------------------------------------------------------------


def test_create_snapshot_records_index_term_data_and_membership() -> None:
    s = storage_with((1, 1), (2, 2), (3, 2))
    snapshot = s.create_snapshot(2, b"state")
    assert snapshot.meta == SnapshotMeta(index=2, term=2, membership=MEMBERS)
    assert snapshot.data == b"state"
    assert s.snapshot() == snapshot
    # The log is untouched until compact().
    assert (s.first_index(), s.last_index()) == (1, 3)


def test_create_snapshot_with_a_new_membership() -> None:
    s = storage_with((1, 1), (2, 1))
    other = Membership.of(1, 2, 3, 4)
    assert s.create_snapshot(2, b"", other).meta.membership == other
    assert s.initial_state().membership == other


def test_create_snapshot_errors() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1))
    s.create_snapshot(2, b"")
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(2, b"")
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(1, b"")
    with pytest.raises(EntryUnavailable):
        s.create_snapshot(4, b"")
    assert s.snapshot().meta.index == 2


def test_compact_drops_entries_up_to_the_index() -> None:
    s = storage_with((1, 1), (2, 1), (3, 2), (4, 2), (5, 3))
    s.create_snapshot(4, b"")
    s.compact(3)
    assert (s.first_index(), s.last_index()) == (4, 5)
    assert s.term(3) == 2
    assert s.entries(4, 6) == ents((4, 2), (5, 3))
    s.compact(4)
    assert (s.first_index(), s.last_index()) == (5, 5)
    assert s.term(4) == 2


def test_compact_at_or_below_the_current_start_is_a_no_op() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1))
    s.create_snapshot(2, b"")
    s.compact(2)
    s.compact(2)
    s.compact(1)
    assert (s.first_index(), s.last_index()) == (3, 3)


def test_compact_beyond_the_snapshot_is_refused() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1))
    s.create_snapshot(1, b"")
    with pytest.raises(InvariantViolation):
        s.compact(2)
    assert s.first_index() == 1


def test_apply_snapshot_replaces_the_log() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1))
    snapshot = Snapshot(SnapshotMeta(index=10, term=4, membership=Membership.of(1, 2)), b"state")
    s.apply_snapshot(snapshot)
    assert s.snapshot() == snapshot
    assert (s.first_index(), s.last_index()) == (11, 10)
    assert s.term(10) == 4
    assert s.initial_state().membership == Membership.of(1, 2)
    with pytest.raises(LogCompacted):
        s.term(3)
    s.append(ents((11, 4)))
    assert s.entries(11, 12) == ents((11, 4))


def test_apply_snapshot_drops_entries_beyond_it_too() -> None:
    s = storage_with((1, 1), (2, 1), (3, 1), (4, 1))
    s.apply_snapshot(Snapshot(SnapshotMeta(index=2, term=1, membership=MEMBERS)))
    assert (s.first_index(), s.last_index()) == (3, 2)


def test_apply_an_older_snapshot_is_refused() -> None:
    s = MemoryStorage(MEMBERS)
    s.apply_snapshot(Snapshot(SnapshotMeta(index=5, term=2, membership=MEMBERS)))
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(SnapshotMeta(index=4, term=2, membership=MEMBERS)))
    assert s.snapshot().meta.index == 5
