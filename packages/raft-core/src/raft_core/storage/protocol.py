"""Storage protocols: ``LogStorage`` (what the core reads) and ``Storage`` (what the runtime also writes).

The core never writes; the driver does, one ``Ready`` batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from raft_core.types import Entry, HardState, Membership, Snapshot


@dataclass(slots=True, frozen=True)
class InitialState:
    """What a node restarts from: its persisted hard state and the membership in force."""

    hard_state: HardState
    membership: Membership


class LogStorage(Protocol):
    """Read access to a node's persisted log, hard state and latest snapshot.

    Indexes run from ``first_index()`` to ``last_index()``; everything before ``first_index()`` has been
    compacted into ``snapshot()``, whose index is ``first_index() - 1``. ``term(first_index() - 1)`` must
    answer with the snapshot's term.
    """

    def initial_state(self) -> InitialState:
        """The persisted hard state and membership."""
        ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, stopping before ``max_size`` payload bytes (always at least one).

        Raises ``LogCompacted`` if ``lo < first_index()`` and ``EntryUnavailable`` if ``hi > last_index() + 1``.
        """
        ...

    def term(self, index: int) -> int:
        """The term of the entry at ``index``, for ``first_index() - 1 <= index <= last_index()``.

        Raises ``LogCompacted`` below that range and ``EntryUnavailable`` above it.
        """
        ...

    def first_index(self) -> int:
        """The first index whose entry is still stored (one past the snapshot)."""
        ...

    def last_index(self) -> int:
        """The index of the last stored entry (the snapshot's index when no entry follows it)."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot (an empty one, of index 0, if there is none)."""
        ...


class Storage(LogStorage, Protocol):
    """A ``LogStorage`` the runtime writes: one Ready batch at a time, then snapshots and compaction.

    Calls are never concurrent: the runtime makes them one after another (possibly from a worker thread).
    """

    def persist(
        self,
        *,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool,
    ) -> None:
        """Persist one Ready's ``snapshot``, ``entries`` and ``hard_state`` as one batch.

        The snapshot comes first (it replaces every entry it covers); entries first drop any stored entries
        at or after ``entries[0].index``; the hard state is stored last. With ``sync`` all of it is durable
        (one fsync for the batch) when this returns; a crash never leaves part of a synced batch.
        """
        ...

    def create_snapshot(self, index: int, data: bytes, membership: Membership | None = None) -> Snapshot:
        """Store (durably) a state machine snapshot as of the applied ``index``; returns it.

        The log is not compacted: call ``compact`` for that.
        """
        ...

    def compact(self, index: int) -> None:
        """Drop every entry up to and including ``index`` (which the latest snapshot must cover)."""
        ...

    def close(self) -> None:
        """Release files and handles. The storage is not used afterwards."""
        ...
