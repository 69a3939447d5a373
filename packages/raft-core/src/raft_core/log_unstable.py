"""``Unstable``: log entries (and a snapshot) the core holds that the driver has not yet persisted.

Invariant: ``entries[i]`` has index ``offset + i``. When ``entries`` is empty, ``offset`` is the index the
next unstable entry will take (one past the last persisted entry). A pending ``snapshot`` covers everything
below ``offset``.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft_core.types import Entry, Snapshot


class Unstable:
    """Entries and a snapshot waiting to be persisted by the driver."""

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        """Start empty, with the next unstable entry to take index ``offset``."""
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        """The first index of the log if a pending snapshot decides it, else None."""
        if self.snapshot is not None:
            return self.snapshot.meta.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """The last index of the log if unstable state decides it, else None."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, index: int) -> int | None:
        """The term at ``index`` if unstable state holds it, else None."""
        if index < self.offset:
            snap = self.snapshot
            if snap is not None and snap.meta.index == index:
                return snap.meta.term
            return None
        pos = index - self.offset
        if pos >= len(self.entries):
            return None
        return self.entries[pos].term

    def stable_to(self, index: int, term: int) -> None:
        """Forget entries up to ``index`` now that they are persisted, if ``index`` still has ``term``."""
        if index < self.offset or self.maybe_term(index) != term:
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        """Forget the pending snapshot once the one at ``index`` is persisted."""
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        """Replace everything with ``snapshot``; the next entry follows it."""
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, dropping any unstable entries at or after ``entries[0].index``."""
        after = entries[0].index
        end = self.offset + len(self.entries)
        if after == end:
            self.entries.extend(entries)
        elif after <= self.offset:
            # The new entries replace all unstable ones and some persisted ones too: the driver's
            # storage drops the persisted conflicting suffix when it appends them.
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)``, which must lie within the unstable range."""
        return self.entries[lo - self.offset : hi - self.offset]
