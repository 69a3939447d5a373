"""``LogStorage``: what the core reads from durable storage. The core never writes; the driver does."""

from __future__ import annotations

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
