"""The snapshot store: atomic saves, retention, corruption, chunked receipt with a crash in the middle."""

from __future__ import annotations

import logging
import os

import pytest

from raft_core.storage import CorruptSnapshotError, SnapshotStore, SnapshotTransferError, snapshot_checksum
from raft_core.types import Membership, Snapshot, SnapshotMeta


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    members = Membership(voters=frozenset({1, 2, 3}), learners=frozenset({7}))
    return Snapshot(SnapshotMeta(index, term, members), data if data is not None else b"state-%d" % index * 50)


def test_save_and_latest_round_trip(tmp_path):
    store = SnapshotStore(tmp_path)
    assert store.latest() is None
    store.save(snap(5))
    store.save(snap(9, 2))
    assert store.latest() == snap(9, 2)
    assert SnapshotStore(tmp_path).latest() == snap(9, 2)


def test_only_the_newest_are_retained(tmp_path):
    store = SnapshotStore(tmp_path, retain=2)
    for i in (3, 1, 8, 5):
        store.save(snap(i))
    assert [p.name for p in store.paths()] == [
        "snap-00000000000000000005-00000000000000000001.snap",
        "snap-00000000000000000008-00000000000000000001.snap",
    ]


def test_a_save_interrupted_before_its_rename_leaves_nothing(tmp_path, monkeypatch):
    store = SnapshotStore(tmp_path)
    store.save(snap(4))

    def crash(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save(snap(6))
    monkeypatch.undo()
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # as a crash would leave it
    reopened = SnapshotStore(tmp_path)
    assert reopened.latest() == snap(4)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("where", ["header", "data", "truncated"])
def test_a_corrupt_newest_snapshot_falls_back_with_a_warning(tmp_path, caplog, where):
    store = SnapshotStore(tmp_path)
    store.save(snap(4))
    store.save(snap(6))
    newest = store.paths()[-1]
    raw = bytearray(newest.read_bytes())
    if where == "truncated":
        raw = raw[:-1]
    else:
        raw[10 if where == "header" else -5] ^= 0x01
    newest.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        assert store.latest() == snap(4)
    assert newest.name in caplog.text


def test_when_every_snapshot_is_corrupt_latest_raises(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(snap(4))
    path = store.paths()[0]
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptSnapshotError, match=path.name):
        store.latest()


def test_contains_checks_meta_size_and_checksum(tmp_path):
    store = SnapshotStore(tmp_path)
    s = snap(4)
    store.save(s)
    assert store.contains(s.meta, *snapshot_checksum(s.data))
    assert not store.contains(s.meta, *snapshot_checksum(s.data + b"x"))
    assert not store.contains(snap(5).meta, *snapshot_checksum(s.data))


def test_chunked_receive(tmp_path):
    store = SnapshotStore(tmp_path)
    s = snap(12, 3, data=os.urandom(100_000))
    size, crc = snapshot_checksum(s.data)
    incoming = store.receive(s.meta, size, crc)
    for off in range(0, size, 8192):
        incoming.write(off, s.data[off : off + 8192])
        assert incoming.received == min(off + 8192, size)
    assert incoming.finish() == s
    assert store.latest() == s


def test_chunks_must_come_in_order(tmp_path):
    store = SnapshotStore(tmp_path)
    s = snap(3)
    incoming = store.receive(s.meta, *snapshot_checksum(s.data))
    incoming.write(0, s.data[:10])
    with pytest.raises(SnapshotTransferError, match="resend from offset 10"):
        incoming.write(20, s.data[20:30])
    with pytest.raises(SnapshotTransferError, match="past the announced size"):
        incoming.write(10, s.data[10:] + b"extra")
    incoming.write(10, s.data[10:])
    incoming.finish()
    with pytest.raises(SnapshotTransferError, match="already finished"):
        incoming.write(len(s.data), b"")


def test_a_bad_checksum_fails_the_transfer_and_leaves_nothing(tmp_path):
    store = SnapshotStore(tmp_path)
    s = snap(3)
    size, crc = snapshot_checksum(s.data)
    incoming = store.receive(s.meta, size, crc ^ 1)
    incoming.write(0, s.data)
    with pytest.raises(SnapshotTransferError, match="crc"):
        incoming.finish()
    assert list(tmp_path.iterdir()) == []
    incoming = store.receive(s.meta, size + 1, crc)
    incoming.write(0, s.data)
    with pytest.raises(SnapshotTransferError, match="received"):
        incoming.finish()
    assert store.latest() is None


def test_a_crash_mid_transfer_restarts_clean(tmp_path):
    store = SnapshotStore(tmp_path)
    store.save(snap(2))
    s = snap(10, 2, data=os.urandom(50_000))
    size, crc = snapshot_checksum(s.data)
    incoming = store.receive(s.meta, size, crc)
    incoming.write(0, s.data[:20_000])
    # The process dies here: no finish, no abort.
    assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    restarted = SnapshotStore(tmp_path)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    assert restarted.latest() == snap(2)
    again = restarted.receive(s.meta, size, crc)
    for off in range(0, size, 16_000):
        again.write(off, s.data[off : off + 16_000])
    again.finish()
    assert SnapshotStore(tmp_path).latest() == s


def test_abort_removes_the_partial_file(tmp_path):
    store = SnapshotStore(tmp_path)
    s = snap(3)
    incoming = store.receive(s.meta, *snapshot_checksum(s.data))
    incoming.write(0, s.data[:5])
    incoming.abort()
    incoming.abort()
    assert list(tmp_path.iterdir()) == []


def test_unsafe_skip_fsync_never_syncs(tmp_path, monkeypatch):
    def refuse(_: int) -> None:
        raise AssertionError("fsync called")

    monkeypatch.setattr(os, "fsync", refuse)
    store = SnapshotStore(tmp_path, unsafe_skip_fsync=True)
    store.save(snap(1))
    s = snap(2)
    incoming = store.receive(s.meta, *snapshot_checksum(s.data))
    incoming.write(0, s.data)
    incoming.finish()
    assert store.latest() == s
