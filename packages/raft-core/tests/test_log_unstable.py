"""``Unstable``: entries and a snapshot held until the driver persists them; entries[i] has index offset + i."""

from __future__ import annotations

import pytest

from raft_core.log_unstable import Unstable
from raft_core.types import Entry, Membership, Snapshot, SnapshotMeta


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from (index, term) pairs."""
    return [Entry(term=term, index=index) for index, term in pairs]


def snap(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMeta(index=index, term=term, membership=Membership.of(1, 2, 3)))


def unstable(offset: int, entries: list[Entry] | None = None, snapshot: Snapshot | None = None) -> Unstable:
    u = Unstable(offset)
    u.entries = list(entries or [])
    u.snapshot = snapshot
    return u


def check_invariant(u: Unstable) -> None:
    assert [e.index for e in u.entries] == list(range(u.offset, u.offset + len(u.entries)))


# -- first, last, term -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("u", "first", "last"),
    [
        (unstable(1), None, None),  # nothing unstable: storage decides both
        (unstable(5, ents((5, 1))), None, 5),  # entries but no snapshot: storage decides the first index
        (unstable(5, ents((5, 1), (6, 1))), None, 6),
        (unstable(5, [], snap(4, 1)), 5, 4),  # only a snapshot: it decides both
        (unstable(5, ents((5, 1), (6, 2)), snap(4, 1)), 5, 6),
    ],
)
def test_first_and_last_index(u: Unstable, first: int | None, last: int | None) -> None:
    assert u.maybe_first_index() == first
    assert u.maybe_last_index() == last


@pytest.mark.parametrize(
    ("u", "index", "term"),
    [
        (unstable(5, ents((5, 1))), 5, 1),
        (unstable(5, ents((5, 1))), 6, None),  # beyond the last entry
        (unstable(5, ents((5, 1))), 4, None),  # persisted: storage knows
        (unstable(5, ents((5, 1)), snap(4, 1)), 4, 1),  # the snapshot's own index
        (unstable(5, ents((5, 1)), snap(4, 1)), 3, None),  # covered by the snapshot: unknown
        (unstable(5, [], snap(4, 2)), 4, 2),
        (unstable(5, [], snap(4, 2)), 5, None),
        (unstable(1), 0, None),
        (unstable(1), 1, None),
    ],
)
def test_maybe_term(u: Unstable, index: int, term: int | None) -> None:
    assert u.maybe_term(index) == term


# -- stable_to -------------------------------------------------------------------------------------------


def test_stable_to_forgets_the_persisted_prefix() -> None:
    u = unstable(5, ents((5, 1), (6, 1), (7, 1)))
    u.stable_to(6, 1)
    assert u.offset == 7
    assert u.entries == ents((7, 1))
    check_invariant(u)
    u.stable_to(7, 1)
    assert u.offset == 8
    assert u.entries == []


def test_stable_to_ignores_a_term_mismatch() -> None:
    # The entry at 6 was replaced (by a new leader's) after the driver was asked to persist the old one.
    u = unstable(5, ents((5, 1), (6, 2)))
    u.stable_to(6, 1)
    assert u.offset == 5
    assert len(u.entries) == 2


@pytest.mark.parametrize("index", [3, 4, 9])
def test_stable_to_ignores_indexes_outside_the_entries(index: int) -> None:
    u = unstable(5, ents((5, 1), (6, 1)), snap(4, 1))
    u.stable_to(index, 1)
    assert u.offset == 5
    assert len(u.entries) == 2


def test_stable_snap_to_only_forgets_the_matching_snapshot() -> None:
    u = unstable(5, [], snap(4, 1))
    u.stable_snap_to(3)
    assert u.snapshot is not None
    u.stable_snap_to(4)
    assert u.snapshot is None
    u.stable_snap_to(4)  # nothing pending: harmless
    assert u.snapshot is None


# -- restore ---------------------------------------------------------------------------------------------


def test_restore_replaces_everything_with_the_snapshot() -> None:
    u = unstable(5, ents((5, 1), (6, 1)))
    s = snap(10, 3)
    u.restore(s)
    assert u.offset == 11
    assert u.entries == []
    assert u.snapshot is s
    assert u.maybe_first_index() == 11
    assert u.maybe_last_index() == 10
    assert u.maybe_term(10) == 3


# -- truncate_and_append ---------------------------------------------------------------------------------


def test_append_directly_after_the_last_entry() -> None:
    u = unstable(5, ents((5, 1)))
    u.truncate_and_append(ents((6, 1), (7, 1)))
    assert u.offset == 5
    assert u.entries == ents((5, 1), (6, 1), (7, 1))
    check_invariant(u)


def test_append_to_an_empty_unstable() -> None:
    u = unstable(5)
    u.truncate_and_append(ents((5, 1)))
    assert u.offset == 5
    assert u.entries == ents((5, 1))


def test_append_replacing_every_unstable_entry() -> None:
    u = unstable(5, ents((5, 1), (6, 1)))
    u.truncate_and_append(ents((5, 2), (6, 2)))
    assert u.offset == 5
    assert u.entries == ents((5, 2), (6, 2))
    check_invariant(u)


def test_append_below_the_offset_moves_the_offset_back() -> None:
    # The new entries also replace persisted ones: the driver's storage drops those when it appends these.
    u = unstable(5, ents((5, 1), (6, 1)))
    u.truncate_and_append(ents((4, 2), (5, 2)))
    assert u.offset == 4
    assert u.entries == ents((4, 2), (5, 2))
    check_invariant(u)


def test_append_truncating_in_the_middle() -> None:
    u = unstable(5, ents((5, 1), (6, 1), (7, 1)))
    u.truncate_and_append(ents((6, 2), (7, 2), (8, 2)))
    assert u.offset == 5
    assert u.entries == ents((5, 1), (6, 2), (7, 2), (8, 2))
    check_invariant(u)


# -- slice -----------------------------------------------------------------------------------------------


def test_slice() -> None:
    u = unstable(5, ents((5, 1), (6, 1), (7, 2)))
    assert u.slice(5, 8) == ents((5, 1), (6, 1), (7, 2))
    assert u.slice(6, 7) == ents((6, 1))
    assert u.slice(7, 7) == []
