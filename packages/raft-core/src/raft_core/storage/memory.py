"""``MemoryStorage``: a ``LogStorage`` kept in memory, for tests, simulations and examples.

Invariant: ``_ents[0]`` is a placeholder entry whose index and term are the snapshot's; real entries follow
it contiguously, so the entry at index ``i`` is ``_ents[i - _ents[0].index]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from raft_core.errors import EntryUnavailable, InvariantViolation, LogCompacted, SnapshotOutOfDate
from raft_core.storage.protocol import InitialState
from raft_core.types import Entry, HardState, Membership, Snapshot, SnapshotMeta, limit_size


class MemoryStorage:
    """A log, hard state and snapshot held in memory. The driver writes it; the core reads it."""

    def __init__(self, membership: Membership | None = None) -> None:
        """Start empty; ``membership`` is the cluster a new node bootstraps with."""
        self._hard_state = HardState()
        self._snapshot = Snapshot(SnapshotMeta(membership=membership or Membership()))
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # -- reads (the LogStorage protocol) ----------------------------------------------------------------

    def initial_state(self) -> InitialState:
        """The stored hard state and the membership of the latest snapshot."""
        return InitialState(self._hard_state, self._snapshot.meta.membership)

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, at most ``max_size`` payload bytes but always at least one."""
        offset = self._ents[0].index
        if lo <= offset:
            raise LogCompacted(f"entry {lo} is compacted (first stored index is {offset + 1})")
        if hi > self.last_index() + 1:
            raise EntryUnavailable(f"entries up to {hi - 1} requested, last index is {self.last_index()}")
        ents = self._ents[lo - offset : hi - offset]
        if max_size is None or len(ents) <= 1:
            return ents
        return limit_size(ents, max_size)

    def term(self, index: int) -> int:
        """The term of the entry at ``index`` (the snapshot's term at the snapshot's index)."""
        offset = self._ents[0].index
        if index < offset:
            raise LogCompacted(f"term of {index} is compacted (snapshot index is {offset})")
        if index - offset >= len(self._ents):
            raise EntryUnavailable(f"term of {index} requested, last index is {self.last_index()}")
        return self._ents[index - offset].term

    def first_index(self) -> int:
        """One past the snapshot's index."""
        return self._ents[0].index + 1

    def last_index(self) -> int:
        """The last stored entry's index."""
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        """The latest snapshot."""
        return self._snapshot

    @property
    def hard_state(self) -> HardState:
        """The stored hard state."""
        return self._hard_state

    # -- writes (the driver's side) ---------------------------------------------------------------------

    def persist(
        self,
        *,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool,
    ) -> None:
        """Store one Ready batch: snapshot, then entries, then hard state (``sync`` changes nothing here)."""
        if snapshot is not None:
            self.apply_snapshot(snapshot)
        self.append(entries)
        if hard_state is not None:
            self._hard_state = hard_state

    def close(self) -> None:
        """Nothing to release."""

    def set_hard_state(self, hard_state: HardState) -> None:
        """Store a new hard state."""
        self._hard_state = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, first dropping any stored entries at or after ``entries[0].index``."""
        if not entries:
            return
        first = entries[0].index
        offset = self._ents[0].index
        if first <= offset:
            # Entries the snapshot already covers are dropped; keep only what follows it.
            entries = [e for e in entries if e.index > offset]
            if not entries:
                return
            first = entries[0].index
        if first > self.last_index() + 1:
            raise InvariantViolation(f"append at {first} would leave a gap after last index {self.last_index()}")
        del self._ents[first - offset :]
        self._ents.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the log with ``snapshot``: every stored entry is dropped."""
        if snapshot.meta.index < self._snapshot.meta.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snapshot.meta.index} is older than the stored one at {self._snapshot.meta.index}"
            )
        self._snapshot = snapshot
        self._ents = [Entry(term=snapshot.meta.term, index=snapshot.meta.index)]

    def create_snapshot(self, index: int, data: bytes, membership: Membership | None = None) -> Snapshot:
        """Record a snapshot of the state machine as of ``index`` (which must be stored); returns it.

        The log is not compacted: call ``compact`` for that.
        """
        if index <= self._snapshot.meta.index:
            raise SnapshotOutOfDate(
                f"snapshot at {index} is not newer than the stored one at {self._snapshot.meta.index}"
            )
        if index > self.last_index():
            raise EntryUnavailable(f"snapshot at {index} is beyond last index {self.last_index()}")
        meta = SnapshotMeta(
            index=index,
            term=self.term(index),
            membership=membership or self._snapshot.meta.membership,
        )
        self._snapshot = Snapshot(meta, data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop every entry up to and including ``index`` (which the snapshot must already cover)."""
        offset = self._ents[0].index
        if index <= offset:
            return
        if index > self._snapshot.meta.index:
            raise InvariantViolation(
                f"cannot compact to {index}: the snapshot only covers up to {self._snapshot.meta.index}"
            )
        keep = self._ents[index - offset :]
        self._ents = [Entry(term=keep[0].term, index=keep[0].index), *keep[1:]]
