"""The segmented WAL: torn writes, corruption, simulated crashes that drop unsynced data, segments."""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft_core.errors import CorruptLogError, InvariantViolation, StorageError
from raft_core.storage import MemoryStorage
from raft_core.storage.wal import WriteAheadLog
from raft_core.types import Entry, HardState

DATA = b"d" * 37


def batch(first: int, n: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    return [Entry(term, i, data=tag + DATA + str(i).encode()) for i in range(first, first + n)]


def wal_state(w: WriteAheadLog | MemoryStorage) -> tuple[object, ...]:
    first, last = w.first_index(), w.last_index()
    return (
        first,
        last,
        [w.term(i) for i in range(first - 1, last + 1)],
        w.entries(first, last + 1),
        w.hard_state,
    )


def build(directory: Path, batches: int, n: int = 3, **kw: object) -> list[int]:
    """Write ``batches`` synced batches; returns the newest segment's size before each batch and at the end."""
    w = WriteAheadLog(directory, unsafe_skip_fsync=True, **kw)  # type: ignore[arg-type]
    sizes = []
    for b in range(batches):
        sizes.append(os.path.getsize(w.segment_paths()[-1]))
        w.write(entries=batch(b * n + 1, n), hard_state=HardState(1, 1, b * n), sync=True)
    sizes.append(os.path.getsize(w.segment_paths()[-1]))
    w.close()
    return sizes


def expected_after(batches: int, n: int = 3) -> tuple[object, ...]:
    m = MemoryStorage()
    for b in range(batches):
        m.append(batch(b * n + 1, n))
        m.set_hard_state(HardState(1, 1, b * n))
    return wal_state(m)


def segment(directory: Path) -> Path:
    return sorted(directory.glob("*.wal"))[-1]


@pytest.mark.parametrize("n", [1, 3])  # 1: the replay's fast path; 3: the general one
def test_torn_last_record_at_every_offset(tmp_path, n):
    orig = tmp_path / "orig"
    sizes = build(orig, 4, n)
    before, after = sizes[-2], sizes[-1]
    content = segment(orig).read_bytes()
    want = expected_after(3, n)
    work = tmp_path / "work"
    for cut in range(before, after):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / segment(orig).name).write_bytes(content[:cut])
        w = WriteAheadLog(work, unsafe_skip_fsync=True)
        assert wal_state(w) == want, f"cut at {cut}"
        assert os.path.getsize(segment(work)) == before
        if cut % 9 == 0:  # the log goes on from there
            w.write(entries=batch(3 * n + 1, 2, term=2), sync=True)
            w.close()
            w = WriteAheadLog(work, unsafe_skip_fsync=True)
            assert w.last_index() == 3 * n + 2 and w.term(3 * n + 2) == 2
        w.close()


@pytest.mark.parametrize("seed", range(12))
def test_garbage_after_the_last_record_is_dropped(tmp_path, seed):
    rng = random.Random(seed)
    n = 1 + seed % 3
    sizes = build(tmp_path, 3, n)
    garbage = b"\0" * rng.randint(1, 5000) if seed % 2 else rng.randbytes(rng.randint(1, 5000))
    with segment(tmp_path).open("ab") as f:
        f.write(garbage)
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    assert wal_state(w) == expected_after(3, n)
    zeros = seed % 2 == 1  # zeros read as preallocated space: kept for the next records, not truncated
    assert os.path.getsize(segment(tmp_path)) == sizes[-1] + (len(garbage) if zeros else 0)
    w.write(entries=batch(3 * n + 1, 2, term=2), sync=True)  # lands where the records ended
    w.close()
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    assert w.last_index() == 3 * n + 2 and w.term(3 * n + 2) == 2
    w.close()


@pytest.mark.parametrize("n", [1, 3])
def test_a_flipped_byte_inside_the_acknowledged_log_is_refused(tmp_path, n):
    orig = tmp_path / "orig"
    sizes = build(orig, 5, n)
    content = segment(orig).read_bytes()
    lo, hi = sizes[2], sizes[3]  # the third record, followed by two valid records
    work = tmp_path / "work"
    work.mkdir()
    path = work / segment(orig).name
    for at in range(lo, hi):
        damaged = bytearray(content)
        damaged[at] ^= 0x5A
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptLogError) as err:
            WriteAheadLog(work, unsafe_skip_fsync=True)
        assert str(path) in str(err.value)
        assert f"byte offset {lo} " in str(err.value)
        assert path.read_bytes() == bytes(damaged)  # nothing was truncated


def test_a_bad_record_in_an_older_segment_is_refused(tmp_path):
    build(tmp_path, 12, segment_bytes=600)
    paths = sorted(tmp_path.glob("*.wal"))
    assert len(paths) >= 3
    damaged = bytearray(paths[0].read_bytes())
    damaged[-3] ^= 1  # inside the last record of the oldest segment
    paths[0].write_bytes(bytes(damaged))
    with pytest.raises(CorruptLogError, match="not the newest"):
        WriteAheadLog(tmp_path)


def test_unsynced_records_reaching_disk_out_of_order_are_dropped(tmp_path):
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    w.write(entries=batch(1, 2), sync=True)
    synced_end = os.path.getsize(segment(tmp_path))
    w.write(entries=batch(3, 2), sync=False)
    w.write(hard_state=HardState(1, 1, 4), sync=False)
    w.close()
    damaged = bytearray(segment(tmp_path).read_bytes())
    damaged[synced_end + 20] ^= 0xFF  # the first unsynced record; the one after it is intact
    segment(tmp_path).write_bytes(bytes(damaged))
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    assert w.last_index() == 2 and w.hard_state == HardState()
    assert os.path.getsize(segment(tmp_path)) == synced_end


def test_a_torn_new_segment_header_is_removed(tmp_path):
    build(tmp_path, 2)
    torn = tmp_path / f"{2:016x}.wal"
    torn.write_bytes(b"\x30\x00\x00")
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    assert wal_state(w) == expected_after(2)
    assert not torn.exists()


def test_a_missing_segment_is_refused(tmp_path):
    build(tmp_path, 12, segment_bytes=600)
    paths = sorted(tmp_path.glob("*.wal"))
    paths[1].unlink()
    with pytest.raises(CorruptLogError, match="missing"):
        WriteAheadLog(tmp_path)


def test_segments_roll_and_compaction_deletes_whole_segments(tmp_path):
    w = WriteAheadLog(tmp_path, segment_bytes=1000, cache_entries=2)
    for b in range(30):
        w.write(entries=batch(b * 3 + 1, 3), sync=True)
    before = w.segment_paths()
    assert len(before) > 5
    w.compact(45)
    after = w.segment_paths()
    assert after == before[len(before) - len(after) :] and len(after) < len(before)
    assert all(p.exists() for p in after) and not any(p.exists() for p in before[: -len(after)])
    assert w.first_index() == 46 and w.entries(46, 48) == batch(46, 2)
    w.close()
    w = WriteAheadLog(tmp_path, segment_bytes=1000)
    assert w.first_index() == 46 and w.last_index() == 90 and w.entries(46, 91) == batch(46, 45)
    assert w.term(45) == 1


def test_gaps_are_refused_before_anything_is_written(tmp_path):
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    w.write(entries=batch(1, 2), sync=True)
    size = os.path.getsize(segment(tmp_path))
    with pytest.raises(InvariantViolation):
        w.write(entries=batch(5, 1), sync=True)
    with pytest.raises(ValueError):
        w.write(entries=[Entry(1, 3), Entry(1, 5)], sync=True)
    assert os.path.getsize(segment(tmp_path)) == size


def test_old_entries_are_read_back_from_disk(tmp_path):
    w = WriteAheadLog(tmp_path, cache_entries=4, unsafe_skip_fsync=True, segment_bytes=800)
    for b in range(20):
        w.write(entries=batch(b * 3 + 1, 3), sync=False)
    w.write(entries=batch(25, 4, term=2, tag=b"new"), sync=False)  # overwrite a suffix
    want = batch(1, 24) + batch(25, 4, term=2, tag=b"new")
    assert w.entries(1, 29) == want
    assert w.entries(7, 27, max_size=200) == want[6:9]  # at most 200 bytes of Entry.size()
    assert w.entries(10, 11, max_size=0) == want[9:10]  # always at least one
    w.close()
    w = WriteAheadLog(tmp_path, cache_entries=4, unsafe_skip_fsync=True)
    assert w.entries(1, 29) == want


# -- a simulated crash: the file layer keeps only what was synced, plus some of the rest ---------------------


class SyncLog:
    """Stands in for fdatasync/fsync and remembers, per file, how many bytes a crash cannot take away."""

    def __init__(self) -> None:
        self.synced: dict[str, int] = {}
        self.listed: dict[str, set[str]] = {}

    def sync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.isdir(path):
            self.listed[path] = set(os.listdir(path))
        else:
            self.synced[path] = os.fstat(fd).st_size


def crash(directory: Path, syncs: SyncLog, rng: random.Random) -> None:
    """Make ``directory`` look like a machine crash: unsynced bytes are lost, kept, or torn."""
    listed = syncs.listed.get(str(directory), set())
    for path in sorted(directory.glob("*.wal")):
        if path.name not in listed and rng.random() < 0.5:
            path.unlink()  # its directory entry was never made durable
            continue
        content = path.read_bytes()
        synced = syncs.synced.get(str(path), 0)
        keep = rng.randint(synced, len(content))
        tail = bytearray(content[synced:keep])
        if tail and rng.random() < 0.5:  # unsynced pages reached the disk in any order, or not at all
            a = rng.randrange(len(tail))
            b = rng.randint(a, len(tail))
            tail[a:b] = b"\0" * (b - a) if rng.random() < 0.5 else rng.randbytes(b - a)
        path.write_bytes(content[:synced] + bytes(tail))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_a_crash_keeps_every_synced_batch_and_invents_nothing(seed, tmp_path_factory):
    rng = random.Random(seed)
    preallocate = rng.choice([0, 0, 64, 1000])  # files that grow record by record, or end in zeros
    directory = tmp_path_factory.mktemp("crash")
    syncs = SyncLog()
    model = MemoryStorage()
    states = [wal_state(model)]
    last_synced = 0
    mp = pytest.MonkeyPatch()
    mp.setattr(os, "fdatasync", syncs.sync)
    mp.setattr(os, "fsync", syncs.sync)
    try:
        w = WriteAheadLog(
            directory, segment_bytes=rng.choice([300, 700, 5000]), cache_entries=3, preallocate_bytes=preallocate
        )
        for n in range(1, rng.randint(2, 25)):
            last = model.last_index()
            first = last + 1 if rng.random() < 0.7 else rng.randint(1, last + 1)
            entries = batch(first, rng.randint(0, 6), term=n, tag=rng.randbytes(rng.randrange(8)))
            hs = HardState(n, rng.randint(0, 3), rng.randint(0, 5)) if rng.random() < 0.5 else None
            if not entries and hs is None:
                hs = HardState(n, 1, 0)
            sync = rng.random() < 0.6
            w.write(entries=entries, hard_state=hs, sync=sync)
            model.append(entries)
            if hs is not None:
                model.set_hard_state(hs)
            states.append(wal_state(model))
            if sync:
                last_synced = len(states) - 1
        w.close()
    finally:
        mp.undo()
    crash(directory, syncs, rng)
    recovered = wal_state(WriteAheadLog(directory, unsafe_skip_fsync=True, preallocate_bytes=preallocate))
    matches = [i for i, s in enumerate(states) if s == recovered]
    assert matches, f"recovered a state that was never written: {recovered}"
    assert max(matches) >= last_synced, f"lost synced batch {last_synced}: recovered the state after {matches}"


def test_a_deleted_oldest_segment_is_refused(tmp_path):
    build(tmp_path, 12, segment_bytes=600)
    sorted(tmp_path.glob("*.wal"))[0].unlink()
    with pytest.raises(CorruptLogError, match="no longer exist"):
        WriteAheadLog(tmp_path)


def test_compaction_after_an_overwrite_below_a_newer_segment_base(tmp_path):
    # Segments are deleted by the base recorded in the next one, yet a later record may overwrite entries
    # below that base (an uncommitted suffix replaced by a new leader): replay must still come out right.
    w = WriteAheadLog(tmp_path, segment_bytes=600, unsafe_skip_fsync=True)
    model = MemoryStorage()
    for first in range(1, 31, 3):
        w.write(entries=batch(first, 3), sync=True)
        model.append(batch(first, 3))
    w.write(entries=batch(5, 3, term=2), sync=True)  # overwrite 5.. (last index drops to 7)
    model.append(batch(5, 3, term=2))
    for first in range(8, 40, 4):
        w.write(entries=batch(first, 4, term=2), sync=True)
        model.append(batch(first, 4, term=2))
    segments = len(w.segment_paths())
    w.compact(30)
    assert len(w.segment_paths()) < segments
    w.close()
    w = WriteAheadLog(tmp_path, segment_bytes=600)
    assert (w.first_index(), w.last_index(), w.term(30)) == (31, 39, 2)
    assert w.entries(31, 40) == model.entries(31, 40)


def test_after_a_failed_fsync_the_log_refuses_writes_until_reopened(tmp_path, monkeypatch):
    w = WriteAheadLog(tmp_path)
    w.write(entries=batch(1, 2), sync=True)

    def fail(_: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fail)
    with pytest.raises(OSError):
        w.write(entries=batch(3, 2), sync=True)
    monkeypatch.undo()
    assert w.last_index() == 2  # not acknowledged, so not visible
    with pytest.raises(StorageError, match="close and reopen"):
        w.write(entries=batch(3, 2), sync=True)
    w.close()
    assert WriteAheadLog(tmp_path).entries(1, 3) == batch(1, 2)


# -- preallocated segments --------------------------------------------------------------------------------------


def test_preallocated_space_is_kept_and_read_as_the_end_of_the_records(tmp_path, caplog):
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True, preallocate_bytes=4096)
    for b in range(3):
        w.write(entries=batch(3 * b + 1, 3), hard_state=HardState(1, 1, 3 * b), sync=True)
    w.close()
    content = segment(tmp_path).read_bytes()
    assert len(content) >= 4096  # a first chunk of zeros, written ahead of the records
    records = len(content.rstrip(b"\0"))
    assert records < len(content)  # the records, then zeros
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True, preallocate_bytes=4096)
    assert wal_state(w) == expected_after(3)
    assert os.path.getsize(segment(tmp_path)) == len(content)  # nothing truncated
    assert "torn" not in caplog.text
    w.write(entries=batch(10, 2, term=2), sync=True)  # into the zeros, where the records ended
    w.close()
    grown = segment(tmp_path).read_bytes()
    assert len(grown) == len(content) and grown[:records] == content[:records]
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True)
    assert w.last_index() == 11 and w.term(11) == 2 and w.entries(1, 10) == batch(1, 9)
    w.close()


def test_a_segment_is_cut_to_its_records_before_the_next_one_starts(tmp_path):
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True, segment_bytes=600, preallocate_bytes=400)
    for b in range(12):
        w.write(entries=batch(3 * b + 1, 3), hard_state=HardState(1, 1, 3 * b), sync=True)
    w.close()
    paths = sorted(tmp_path.glob("*.wal"))
    assert len(paths) >= 3
    for old in paths[:-1]:
        assert not old.read_bytes().endswith(b"\0")  # ends with its last record's data
    assert paths[-1].read_bytes().endswith(b"\0" * 8)
    w = WriteAheadLog(tmp_path)
    assert wal_state(w) == expected_after(12)
    w.close()


def test_a_torn_write_into_preallocated_space_is_dropped(tmp_path, caplog):
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True, preallocate_bytes=4096)
    w.write(entries=batch(1, 3), sync=True)
    w.write(entries=batch(4, 3), sync=True)
    w.close()
    content = bytearray(segment(tmp_path).read_bytes())
    records = len(bytes(content).rstrip(b"\0"))
    content[records : records + 30] = b"\x40\x00\x00\x00" + bytes(range(1, 27))  # a record's first bytes only
    segment(tmp_path).write_bytes(bytes(content))
    w = WriteAheadLog(tmp_path, unsafe_skip_fsync=True, preallocate_bytes=4096)
    assert w.last_index() == 6 and w.entries(1, 7) == batch(1, 6)
    assert "torn write" in caplog.text
    assert os.path.getsize(segment(tmp_path)) == records  # cut where the records end; zeros come back on the next write
    w.write(entries=batch(7, 1), sync=True)
    assert os.path.getsize(segment(tmp_path)) > records + 4000
    w.close()
    assert WriteAheadLog(tmp_path, unsafe_skip_fsync=True).last_index() == 7
