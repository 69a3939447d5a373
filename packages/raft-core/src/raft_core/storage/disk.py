"""``DiskStorage``: the durable ``Storage``: a write-ahead log (``wal/``) and a snapshot store (``snapshots/``).

Its reads answer exactly as ``MemoryStorage`` would after the same calls; every write is durable when it
returns (``persist(sync=False)`` excepted), with one WAL record and at most one ``fdatasync`` per batch.

Snapshots are saved to the store before the WAL records them, so on open the newest valid snapshot in the
store wins over the log: if the log does not hold the snapshot's index with the snapshot's term (an installed
snapshot whose WAL record was lost in a crash), the log is reset to the snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from raft_core.errors import CorruptLogError, EntryUnavailable, InvariantViolation, SnapshotOutOfDate
from raft_core.storage.protocol import InitialState
from raft_core.storage.snapshot_store import IncomingSnapshot, SnapshotStore, snapshot_checksum
from raft_core.storage.wal import DEFAULT_CACHE_ENTRIES, DEFAULT_PREALLOCATE_BYTES, DEFAULT_SEGMENT_BYTES, WriteAheadLog
from raft_core.types import Entry, HardState, Membership, Snapshot, SnapshotMeta


class DiskStorage:
    """A ``Storage`` on disk. Open it with ``DiskStorage.open``; calls must not be concurrent."""

    def __init__(self, wal: WriteAheadLog, store: SnapshotStore, snapshot: Snapshot) -> None:
        """Wrap an opened log and store (use ``DiskStorage.open``, which also reconciles them)."""
        self._wal = wal
        self._store = store
        self._snapshot_meta = snapshot.meta  # the data stays in its file: memory does not grow with the state
        self._snapshot_in_store = snapshot.meta.index > 0 or bool(snapshot.data)  # else: the bootstrap one

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        membership: Membership,
        unsafe_skip_fsync: bool = False,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        retain_snapshots: int = 2,
        on_sync: Callable[[float], None] | None = None,
        preallocate_bytes: int = DEFAULT_PREALLOCATE_BYTES,
    ) -> DiskStorage:
        """Open (creating if needed) the storage in ``directory`` and recover its state.

        Args:
            directory: The node's data directory.
            membership: What a brand-new node bootstraps with; once a snapshot exists, its membership wins.
            unsafe_skip_fsync: Never fsync. UNSAFE: a crash may lose acknowledged writes and votes, breaking
                Raft's guarantees. For tests and benchmarks only.
            segment_bytes: WAL segment size before rolling to a new file.
            cache_entries: How many recent entries the WAL keeps decoded in memory.
            retain_snapshots: How many snapshots the store keeps.
            on_sync: Told the seconds each log batch's ``fdatasync`` took (for metrics), in the writing thread.
            preallocate_bytes: Zero-filled space kept ahead of the log's records, so that a batch's sync writes
                data only (see ``raft_core.storage.wal``); 0 lets the files grow record by record.

        Raises:
            CorruptLogError: The log or every snapshot is damaged, or they contradict each other.
        """
        root = Path(directory)
        store = SnapshotStore(root / "snapshots", retain=retain_snapshots, unsafe_skip_fsync=unsafe_skip_fsync)
        wal = WriteAheadLog(
            root / "wal",
            segment_bytes=segment_bytes,
            cache_entries=cache_entries,
            unsafe_skip_fsync=unsafe_skip_fsync,
            on_sync=on_sync,
            preallocate_bytes=preallocate_bytes,
        )
        try:
            snapshot = store.latest() or Snapshot(SnapshotMeta(membership=membership))
            _reconcile(wal, snapshot, root)
        except BaseException:
            wal.close()
            raise
        return cls(wal, store, snapshot)

    # -- reads (the LogStorage protocol) --------------------------------------------------------------------

    def initial_state(self) -> InitialState:
        """The stored hard state and the membership of the latest snapshot."""
        return InitialState(self._wal.hard_state, self._snapshot_meta.membership)

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, at most ``max_size`` bytes (``Entry.size``) but always at least one."""
        return self._wal.entries(lo, hi, max_size)

    def term(self, index: int) -> int:
        """The term of the entry at ``index`` (the snapshot's term at ``first_index() - 1``)."""
        return self._wal.term(index)

    def first_index(self) -> int:
        """One past the compaction point (the latest installed snapshot or ``compact`` index)."""
        return self._wal.first_index()

    def last_index(self) -> int:
        """The last stored entry's index."""
        return self._wal.last_index()

    def snapshot(self) -> Snapshot:
        """The latest snapshot (an empty one, of index 0, carrying the bootstrap membership, if none).

        Its data is read from the snapshot file on each call (the node needs it only to start and to send a
        lagging follower a snapshot), so a large state is never held in memory between those.
        """
        meta = self._snapshot_meta
        return self._store.load(meta) if self._snapshot_in_store else Snapshot(meta)

    @property
    def hard_state(self) -> HardState:
        """The stored hard state."""
        return self._wal.hard_state

    @property
    def wal(self) -> WriteAheadLog:
        """The underlying write-ahead log."""
        return self._wal

    @property
    def snapshot_store(self) -> SnapshotStore:
        """The underlying snapshot store."""
        return self._store

    # -- writes ---------------------------------------------------------------------------------------------

    def persist(
        self,
        *,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        snapshot: Snapshot | None,
        sync: bool,
    ) -> None:
        """Persist one Ready batch: snapshot, then entries, then hard state, as one WAL record.

        A snapshot is saved to the store first (skipped if the store already holds exactly it, as after a
        chunked ``receive_snapshot``); the WAL record then drops every stored entry, as
        ``MemoryStorage.apply_snapshot`` does, and appends ``entries`` after it. With ``sync`` everything is
        durable when this returns (the WAL record costs one ``fdatasync``).

        Raises:
            SnapshotOutOfDate: ``snapshot`` is older than the stored one.
            InvariantViolation: ``entries`` would leave a gap after the last index.
        """
        reset = None
        if entries and entries[0].index > (snapshot.meta.index if snapshot is not None else self.last_index()) + 1:
            raise InvariantViolation(f"append at {entries[0].index} would leave a gap after the last index")
        if snapshot is not None:
            meta = snapshot.meta
            if meta.index < self._snapshot_meta.index:
                raise SnapshotOutOfDate(
                    f"snapshot at {meta.index} is older than the stored one at {self._snapshot_meta.index}"
                )
            size, checksum = snapshot_checksum(snapshot.data)
            if not self._store.contains(meta, size, checksum):
                self._store.save(snapshot)
            reset = (meta.index, meta.term)
        self._wal.write(hard_state=hard_state, entries=entries, reset=reset, sync=sync)
        if snapshot is not None:
            self._snapshot_meta, self._snapshot_in_store = snapshot.meta, True

    def create_snapshot(self, index: int, data: bytes, membership: Membership | None = None) -> Snapshot:
        """Durably store a snapshot of the state machine as of ``index`` (which must be stored); returns it.

        The log is not compacted: call ``compact`` for that.

        Raises:
            SnapshotOutOfDate: ``index`` is not newer than the stored snapshot.
            EntryUnavailable: ``index`` is beyond the last index.
        """
        if index <= self._snapshot_meta.index:
            raise SnapshotOutOfDate(
                f"snapshot at {index} is not newer than the stored one at {self._snapshot_meta.index}"
            )
        if index > self.last_index():
            raise EntryUnavailable(f"snapshot at {index} is beyond last index {self.last_index()}")
        meta = SnapshotMeta(
            index=index,
            term=self.term(index),
            membership=membership if membership is not None else self._snapshot_meta.membership,
        )
        snapshot = Snapshot(meta, data)
        self._store.save(snapshot)
        self._snapshot_meta, self._snapshot_in_store = meta, True
        return snapshot

    def receive_snapshot(self, meta: SnapshotMeta, size: int, checksum: int) -> IncomingSnapshot:
        """Start receiving a snapshot in chunks (InstallSnapshot); persist it afterwards as usual.

        ``IncomingSnapshot.finish()`` makes the file durable; the ``persist(snapshot=...)`` that follows then
        finds it in the store and only writes the WAL record.
        """
        return self._store.receive(meta, size, checksum)

    def compact(self, index: int) -> None:
        """Drop every entry up to and including ``index`` (which the latest snapshot must cover).

        The compaction point is made durable, then WAL segments holding nothing after it are deleted.

        Raises:
            InvariantViolation: ``index`` lies beyond the latest snapshot.
        """
        if index <= self._wal.base[0]:
            return
        if index > self._snapshot_meta.index:
            raise InvariantViolation(
                f"cannot compact to {index}: the snapshot only covers up to {self._snapshot_meta.index}"
            )
        self._wal.compact(index)

    def close(self) -> None:
        """Close the log's files."""
        self._wal.close()


def _reconcile(wal: WriteAheadLog, snapshot: Snapshot, root: Path) -> None:
    """Make the log agree with the newest valid snapshot (which was saved before the log recorded it)."""
    index, term = snapshot.meta.index, snapshot.meta.term
    base_index, base_term = wal.base
    if index > base_index:
        if index <= wal.last_index() and wal.term(index) == term:
            return  # a snapshot taken of the log (create_snapshot): the log goes on after it
        # An installed snapshot whose WAL record was lost: the snapshot replaces the log, as persist() would have.
        hs = wal.hard_state
        wal.write(reset=(index, term), hard_state=HardState(hs.term, hs.vote, max(hs.commit, index)), sync=True)
        return
    if index < base_index or term != base_term:
        raise CorruptLogError(
            f"{root}: the log was compacted to index {base_index} (term {base_term}) but the newest valid snapshot "
            f"is at index {index} (term {term}): the snapshot covering the log's start is missing or damaged. "
            "Restore the data directory from a backup, or move it away so the node rejoins empty."
        )
