"""``DiskStorage``: the same answers as ``MemoryStorage``, across reopens, snapshots, compaction and crashes."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_model import BOOT, Compact, Create, Persist, apply_op, assert_same, next_op

from raft_core.errors import CorruptLogError, EntryUnavailable, InvariantViolation, LogCompacted, SnapshotOutOfDate
from raft_core.storage import DiskStorage, MemoryStorage, Storage, snapshot_checksum
from raft_core.types import Entry, HardState, Membership, Snapshot, SnapshotMeta


def open_disk(path: Path, **kw: object) -> DiskStorage:
    kw.setdefault("segment_bytes", 700)
    kw.setdefault("cache_entries", 5)
    kw.setdefault("unsafe_skip_fsync", True)
    return DiskStorage.open(path, membership=BOOT, **kw)  # type: ignore[arg-type]


def ents(first: int, n: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=b"e%d" % i) for i in range(first, first + n)]


def test_it_is_a_storage(tmp_path):
    storage: Storage = open_disk(tmp_path)
    storage.close()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), reopen_every=st.sampled_from([1, 3, 10, 1000]))
def test_same_answers_as_memory_storage(seed, reopen_every):
    rng = random.Random(seed)
    mem = MemoryStorage(BOOT)
    with tempfile.TemporaryDirectory() as d:
        disk = open_disk(Path(d))
        assert_same(disk, mem)
        for step in range(60):
            op = next_op(rng, mem)
            want = apply_op(mem, op)
            got = apply_op(disk, op)
            assert got == want, f"step {step}: {op}: disk raised {got}, memory {want}"
            assert_same(disk, mem)
            if step % reopen_every == reopen_every - 1:
                disk.close()
                disk = open_disk(Path(d))
                assert_same(disk, mem)
        disk.close()


def test_errors_match_memory_storage(tmp_path):
    disk, mem = open_disk(tmp_path), MemoryStorage(BOOT)
    for s in (disk, mem):
        s.persist(hard_state=None, entries=ents(1, 10), snapshot=None, sync=True)
        s.create_snapshot(4, b"x")
        s.compact(3)
    calls: list[Callable[[Any], object]] = [
        lambda s: s.entries(3, 5),
        lambda s: s.entries(4, 12),
        lambda s: s.term(2),
        lambda s: s.term(11),
        lambda s: s.compact(5),
        lambda s: s.create_snapshot(4, b""),
        lambda s: s.create_snapshot(11, b""),
        lambda s: s.persist(hard_state=None, entries=[], snapshot=Snapshot(SnapshotMeta(2, 1)), sync=True),
    ]
    for call in calls:
        raised = []
        for s in (disk, mem):
            with pytest.raises(Exception) as err:  # compared just below
                call(s)
            raised.append(type(err.value))
        assert raised[0] == raised[1]
        assert raised[0] in (LogCompacted, EntryUnavailable, InvariantViolation, SnapshotOutOfDate)
    assert disk.term(3) == 1 and disk.entries(4, 11, max_size=0) == ents(4, 1)


def test_hard_state_survives_reopen(tmp_path):
    disk = open_disk(tmp_path, unsafe_skip_fsync=False)
    disk.persist(hard_state=HardState(3, 2, 0), entries=[], snapshot=None, sync=True)
    disk.persist(hard_state=HardState(3, 2, 5), entries=ents(1, 5, term=3), snapshot=None, sync=True)
    disk.close()
    disk = open_disk(tmp_path)
    assert disk.initial_state().hard_state == HardState(3, 2, 5)
    assert disk.initial_state().membership == BOOT


def test_compaction_deletes_segments_and_survives_reopen(tmp_path):
    disk = open_disk(tmp_path, unsafe_skip_fsync=False)
    for i in range(1, 200, 4):
        disk.persist(hard_state=HardState(1, 1, i), entries=ents(i, 4), snapshot=None, sync=True)
    wal = tmp_path / "wal"
    before = sorted(wal.iterdir())
    disk.create_snapshot(150, b"sm@150", Membership.of(1, 2))
    disk.compact(150)
    after = sorted(wal.iterdir())
    assert len(after) < len(before) // 2
    assert disk.first_index() == 151 and disk.term(150) == 1
    disk.close()
    disk = open_disk(tmp_path)
    assert disk.first_index() == 151 and disk.last_index() == 200
    assert disk.entries(151, 201) == ents(151, 50)
    assert disk.snapshot() == Snapshot(SnapshotMeta(150, 1, Membership.of(1, 2)), b"sm@150")
    assert disk.initial_state().membership == Membership.of(1, 2)
    assert disk.initial_state().hard_state == HardState(1, 1, 197)


def test_an_installed_snapshot_replaces_the_log(tmp_path):
    disk = open_disk(tmp_path)
    disk.persist(hard_state=None, entries=ents(1, 30), snapshot=None, sync=True)
    snap = Snapshot(SnapshotMeta(20, 4, Membership.of(1, 2)), b"leader state")
    disk.persist(hard_state=HardState(4, 0, 20), entries=ents(21, 3, term=4), snapshot=snap, sync=True)
    disk.close()
    disk = open_disk(tmp_path)
    assert (disk.first_index(), disk.last_index(), disk.term(20)) == (21, 23, 4)
    assert disk.entries(21, 24) == ents(21, 3, term=4)
    assert disk.snapshot() == snap


def test_a_snapshot_received_in_chunks_is_not_written_twice(tmp_path, monkeypatch):
    disk = open_disk(tmp_path)
    disk.persist(hard_state=None, entries=ents(1, 3), snapshot=None, sync=True)
    snap = Snapshot(SnapshotMeta(50, 2, BOOT), os.urandom(10_000))
    incoming = disk.receive_snapshot(snap.meta, *snapshot_checksum(snap.data))
    for off in range(0, 10_000, 3000):
        incoming.write(off, snap.data[off : off + 3000])
    incoming.finish()

    def no_save(_: Snapshot) -> None:
        raise AssertionError("saved again")

    monkeypatch.setattr(disk.snapshot_store, "save", no_save)
    disk.persist(hard_state=HardState(2, 0, 50), entries=[], snapshot=snap, sync=True)
    assert disk.snapshot() == snap and disk.first_index() == 51


def test_a_crash_between_snapshot_save_and_the_wal_record(tmp_path):
    disk = open_disk(tmp_path)
    disk.persist(hard_state=HardState(2, 1, 5), entries=ents(1, 10, term=2), snapshot=None, sync=True)
    # The runtime saved an installed snapshot, then died before the WAL record (the log diverges at 8).
    snap = Snapshot(SnapshotMeta(40, 3, Membership.of(1, 2)), b"installed")
    disk.snapshot_store.save(snap)
    disk.close()
    disk = open_disk(tmp_path)
    assert disk.snapshot() == snap
    assert (disk.first_index(), disk.last_index(), disk.term(40)) == (41, 40, 3)
    assert disk.initial_state().hard_state.commit == 40
    disk.close()
    assert open_disk(tmp_path).first_index() == 41


def test_a_created_snapshot_lost_its_compaction_only(tmp_path):
    disk = open_disk(tmp_path)
    disk.persist(hard_state=None, entries=ents(1, 10), snapshot=None, sync=True)
    disk.create_snapshot(6, b"sm")
    disk.close()
    disk = open_disk(tmp_path)  # the log goes on after a snapshot taken of it
    assert (disk.first_index(), disk.last_index()) == (1, 10)
    assert disk.snapshot().meta.index == 6


def test_a_lost_snapshot_under_a_compacted_log_is_refused(tmp_path):
    disk = open_disk(tmp_path)
    disk.persist(hard_state=None, entries=ents(1, 10), snapshot=None, sync=True)
    disk.create_snapshot(6, b"sm")
    disk.compact(6)
    disk.close()
    for path in (tmp_path / "snapshots").iterdir():
        path.unlink()
    with pytest.raises(CorruptLogError, match="compacted to index 6"):
        open_disk(tmp_path)


def test_unsafe_skip_fsync_never_syncs(tmp_path, monkeypatch):
    def refuse(_: int) -> None:
        raise AssertionError("synced")

    monkeypatch.setattr(os, "fsync", refuse)
    monkeypatch.setattr(os, "fdatasync", refuse)
    disk = open_disk(tmp_path, unsafe_skip_fsync=True)
    for i in range(1, 100, 3):
        disk.persist(hard_state=HardState(1, 1, i), entries=ents(i, 3), snapshot=None, sync=True)
    disk.create_snapshot(50, b"x")
    disk.compact(50)
    disk.close()


def test_one_fdatasync_per_synced_batch(tmp_path, monkeypatch):
    disk = open_disk(tmp_path, unsafe_skip_fsync=False, segment_bytes=1 << 20)
    calls: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(-fd))
    for i in range(1, 50, 7):
        disk.persist(hard_state=HardState(1, 1, i), entries=ents(i, 7), snapshot=None, sync=True)
    assert len(calls) == 7
    disk.persist(hard_state=HardState(1, 1, 50), entries=[], snapshot=None, sync=False)
    assert len(calls) == 7


def test_hypothetical_ops_are_well_formed():
    # The op generator itself produces each kind of operation.
    rng = random.Random(1)
    mem = MemoryStorage(BOOT)
    kinds: set[type] = set()
    for _ in range(400):
        op = next_op(rng, mem)
        kinds.add(type(op))
        if isinstance(op, Persist) and op.snapshot is not None:
            kinds.add(Snapshot)
        apply_op(mem, op)
    assert kinds == {Persist, Create, Compact, Snapshot}


def test_on_sync_is_told_each_batch_fdatasync(tmp_path: Path) -> None:
    timings: list[float] = []
    storage = DiskStorage.open(tmp_path, membership=BOOT, on_sync=timings.append)
    storage.persist(hard_state=None, entries=ents(1, 1), snapshot=None, sync=True)
    storage.persist(hard_state=None, entries=ents(2, 1), snapshot=None, sync=False)
    storage.persist(hard_state=None, entries=ents(3, 1), snapshot=None, sync=True)
    storage.close()
    assert len(timings) == 2 and all(t >= 0 for t in timings)


def test_the_snapshot_data_is_read_from_its_file_not_kept_in_memory(tmp_path: Path) -> None:
    import gc
    import tracemalloc

    disk = open_disk(tmp_path)
    disk.persist(hard_state=HardState(term=1, vote=1, commit=10), entries=ents(1, 10), snapshot=None, sync=True)
    data = random.Random(7).randbytes(8 * 1024 * 1024)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        disk.create_snapshot(10, data)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1024 * 1024, f"storage keeps {held} bytes after storing an 8 MiB snapshot"
    loaded = disk.snapshot()
    assert loaded.meta.index == 10 and loaded.data == data
    disk.persist(hard_state=None, entries=[], snapshot=Snapshot(SnapshotMeta(12, 2, BOOT), b"installed"), sync=True)
    assert disk.snapshot() == Snapshot(SnapshotMeta(12, 2, BOOT), b"installed")
    disk.close()
    reopened = open_disk(tmp_path)
    assert reopened.snapshot() == Snapshot(SnapshotMeta(12, 2, BOOT), b"installed")
    reopened.close()
