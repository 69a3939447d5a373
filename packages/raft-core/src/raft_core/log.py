"""``RaftLog``: the log as the core sees it, persisted entries (``LogStorage``) followed by unstable ones.

Invariants owned here: ``applied <= committed <= last_index()``; committed entries are never truncated
(an append that would do so raises ``InvariantViolation`` instead of losing them).
"""

from __future__ import annotations

from collections.abc import Sequence

from raft_core.errors import InvariantViolation, LogCompacted
from raft_core.log_unstable import Unstable
from raft_core.storage.protocol import LogStorage
from raft_core.types import Entry, Snapshot, limit_size


class RaftLog:
    """Persisted plus unstable entries, with the commit and apply positions."""

    __slots__ = ("applied", "committed", "storage", "unstable")

    def __init__(self, storage: LogStorage, applied: int = 0) -> None:
        """Open the log over ``storage``; ``applied`` is where the state machine stands."""
        self.storage = storage
        first = storage.first_index()
        self.unstable = Unstable(storage.last_index() + 1)
        self.committed = first - 1
        self.applied = first - 1
        # A state machine that persists itself may have applied (so committed) past the stored commit index,
        # which is only synced with the next entries or vote.
        commit = max(storage.initial_state().hard_state.commit, applied)
        if commit:
            self.commit_to(commit)
        if applied:
            self.applied_to(max(applied, self.applied))

    # -- positions ----------------------------------------------------------------------------------------

    def first_index(self) -> int:
        """The first index still held (one past the latest snapshot)."""
        snapshot = self.unstable.snapshot  # Unstable.maybe_first_index, inlined: this is on the hot path
        return snapshot.meta.index + 1 if snapshot is not None else self.storage.first_index()

    def last_index(self) -> int:
        """The index of the last entry, persisted or not."""
        unstable = self.unstable  # Unstable.maybe_last_index, inlined: this is on the hot path
        if unstable.entries:
            return unstable.offset + len(unstable.entries) - 1
        if unstable.snapshot is not None:
            return unstable.snapshot.meta.index
        return self.storage.last_index()

    def last_stable_index(self) -> int:
        """The index of the last entry the driver has persisted."""
        return self.unstable.offset - 1

    def maybe_term(self, index: int) -> int | None:
        """The term of the entry at ``index``, or None if it is compacted or does not exist."""
        # Hot path: Unstable.maybe_term, first_index() and last_index() inlined, with the same results.
        unstable = self.unstable
        entries = unstable.entries
        offset = unstable.offset
        if index >= offset:
            pos = index - offset
            return entries[pos].term if pos < len(entries) else None
        snapshot = unstable.snapshot
        if snapshot is not None:
            snap_index = snapshot.meta.index
            if index == snap_index:
                return snapshot.meta.term
            if index < snap_index or not entries:
                return None  # below the first index, or beyond the last one (the snapshot's)
        elif index < self.storage.first_index() - 1 or (not entries and index > self.storage.last_index()):
            return None
        return self.storage.term(index)

    def last_term(self) -> int:
        """The term of the last entry (0 for an empty log)."""
        term = self.maybe_term(self.last_index())
        return term if term is not None else 0

    def match_term(self, index: int, term: int) -> bool:
        """Whether the entry at ``index`` exists and has ``term``."""
        return self.maybe_term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at ``last_index``/``last_term`` is at least as up to date as ours (§5.4.1)."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    # -- conflicts ------------------------------------------------------------------------------------------

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry in ``entries`` that is missing or differs in term (0 if none)."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last index at or below ``index`` whose term is at most ``term``, with that term.

        Used on both sides of a rejected append to skip a whole divergent term per round trip. When the
        term at some index is unknown (compacted), that index is returned with term 0.
        """
        while index > 0:
            our_term = self.maybe_term(index)
            if our_term is None:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- changes --------------------------------------------------------------------------------------------

    def maybe_append(self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]) -> int | None:
        """Append a leader's ``entries`` that follow ``prev_index``/``prev_term`` (Log Matching, §5.3).

        Returns the index of the last new entry, or None when our log has no entry matching the previous
        one (the leader must back up). Entries we already hold are kept; the first conflicting one and
        everything after it are replaced.
        """
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise InvariantViolation(
                    f"entry {conflict} conflicts with the leader's log but is already committed "
                    f"(commit index {self.committed})"
                )
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def append(self, entries: Sequence[Entry]) -> int:
        """Append ``entries`` (possibly replacing an uncommitted suffix); returns the new last index."""
        if not entries:
            return self.last_index()
        if entries[0].index - 1 < self.committed:
            raise InvariantViolation(
                f"appending at {entries[0].index} would overwrite committed entries (commit {self.committed})"
            )
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    def commit_to(self, index: int) -> None:
        """Advance the commit index to ``index`` (never backwards)."""
        if index > self.committed:
            if index > self.last_index():
                raise InvariantViolation(
                    f"commit index {index} is beyond the last index {self.last_index()}: was the log truncated or lost?"
                )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if it is new and its entry has ``term`` (the Figure 8 rule)."""
        if index > self.committed and self.maybe_term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        """Record that the state machine applied everything up to ``index``."""
        if index < self.applied or index > self.committed:
            raise InvariantViolation(f"applied index {index} is outside [{self.applied}, commit {self.committed}]")
        self.applied = index

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the log by ``snapshot`` (to be persisted by the driver), committing what it covers."""
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)

    def stable_to(self, index: int, term: int) -> None:
        """The driver persisted entries up to ``index`` (of ``term``)."""
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        """The driver persisted the snapshot at ``index``."""
        self.unstable.stable_snap_to(index)

    # -- reads ----------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The newest snapshot: a pending one from the leader, else the stored one."""
        return self.unstable.snapshot if self.unstable.snapshot is not None else self.storage.snapshot()

    def unstable_entries(self) -> tuple[Entry, ...]:
        """Entries the driver has yet to persist."""
        return tuple(self.unstable.entries)

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)`` within ``max_size`` bytes (at least one); raises ``LogCompacted`` below the log."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise LogCompacted(f"entry {lo} is compacted (first index is {self.first_index()})")
        offset = self.unstable.offset
        if lo >= offset:
            ents = self.unstable.slice(lo, hi)
            return ents if max_size is None else limit_size(ents, max_size)
        ents = self.storage.entries(lo, min(hi, offset), max_size)
        if hi > offset and len(ents) == min(hi, offset) - lo:
            ents = ents + self.unstable.slice(offset, hi)
            if max_size is not None:
                ents = limit_size(ents, max_size)
        return ents

    def entries_from(self, lo: int, max_size: int | None = None) -> list[Entry]:
        """Entries from ``lo`` to the end of the log, within ``max_size`` bytes."""
        return self.slice(lo, self.last_index() + 1, max_size)

    def next_committed_entries(self, max_size: int) -> list[Entry]:
        """Committed entries not yet applied, within ``max_size`` bytes."""
        lo = max(self.applied + 1, self.first_index())
        if lo > self.committed:
            return []
        return self.slice(lo, self.committed + 1, max_size)

    def has_next_committed_entries(self) -> bool:
        """Whether committed entries await application."""
        return self.committed > max(self.applied, self.first_index() - 1)
