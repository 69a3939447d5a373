"""``SnapshotStore``: durable, checksummed state machine snapshots in a directory, and chunked receipt.

One file per snapshot, ``snap-<index:020d>-<term:020d>.snap``::

    magic b"RAFTSNP1", index u64, term u64, size u64, data crc32 u32, voters u32, learners u32, 0 u32,
    voter ids u64 each, learner ids u64 each, header crc32 u32 (of everything before it), then the data

A snapshot is written to a ``.tmp`` file (a chunked transfer to a ``.partial`` file), fsynced, renamed into
place and the directory fsynced, so a crash leaves either the whole snapshot or none of it; leftovers are
removed when the store is opened. The newest ``retain`` snapshots are kept.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from pathlib import Path

from raft_core.errors import CorruptLogError, StorageError
from raft_core.storage.wal import fsync_dir, write_all
from raft_core.types import Membership, Snapshot, SnapshotMeta

log = logging.getLogger(__name__)

MAGIC = b"RAFTSNP1"
_FIXED = struct.Struct("<8sQQQIIII")
_CRC = struct.Struct("<I")
_NAME = re.compile(r"^snap-(\d{20})-(\d{20})\.snap$")
_LEFTOVER = re.compile(r"^snap-.*\.(tmp|partial)$")


class CorruptSnapshotError(CorruptLogError):
    """No stored snapshot passes its checksums, though snapshot files exist (the message names them)."""


class SnapshotTransferError(StorageError):
    """A chunked snapshot transfer went wrong: a chunk out of order, or a size or checksum mismatch."""


def snapshot_checksum(data: bytes) -> tuple[int, int]:
    """The ``(size, crc32)`` of a snapshot's data, which a sender announces before streaming it."""
    return len(data), zlib.crc32(data)


def encode_header(meta: SnapshotMeta, size: int, checksum: int) -> bytes:
    """The header of a snapshot file (see the module docstring)."""
    voters = sorted(meta.membership.voters)
    learners = sorted(meta.membership.learners)
    head = _FIXED.pack(MAGIC, meta.index, meta.term, size, checksum, len(voters), len(learners), 0) + struct.pack(
        f"<{len(voters) + len(learners)}Q", *voters, *learners
    )
    return head + _CRC.pack(zlib.crc32(head))


def decode_header(raw: bytes) -> tuple[SnapshotMeta, int, int, int]:
    """Parse a snapshot file's header: ``(meta, size, data crc, header length)``; raises ``ValueError``."""
    if len(raw) < _FIXED.size or raw[:8] != MAGIC:
        raise ValueError("not a snapshot file (bad magic)")
    _, index, term, size, checksum, nv, nl, _ = _FIXED.unpack_from(raw)
    ids_end = _FIXED.size + 8 * (nv + nl)
    if len(raw) < ids_end + _CRC.size:
        raise ValueError("truncated header")
    (crc,) = _CRC.unpack_from(raw, ids_end)
    if zlib.crc32(raw[:ids_end]) != crc:
        raise ValueError("header checksum mismatch")
    ids = struct.unpack_from(f"<{nv + nl}Q", raw, _FIXED.size)
    membership = Membership(voters=frozenset(ids[:nv]), learners=frozenset(ids[nv:]))
    return SnapshotMeta(index=index, term=term, membership=membership), size, checksum, ids_end + _CRC.size


def _name(meta: SnapshotMeta) -> str:
    return f"snap-{meta.index:020d}-{meta.term:020d}.snap"


class SnapshotStore:
    """Snapshots of the state machine, durable and checksummed, newest ``retain`` kept.

    Args:
        directory: Where the snapshot files live (created if missing). Leftover ``.tmp`` and ``.partial``
            files (a crash mid-save or mid-transfer) are removed.
        retain: How many of the newest snapshots to keep (at least 1).
        unsafe_skip_fsync: Never fsync. UNSAFE: a crash may lose a saved snapshot. For tests and benchmarks only.
    """

    def __init__(self, directory: str | os.PathLike[str], *, retain: int = 2, unsafe_skip_fsync: bool = False) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retain = retain
        self._sync = not unsafe_skip_fsync
        removed = False
        for path in self.directory.iterdir():
            if _LEFTOVER.match(path.name):
                log.info("%s: removing a snapshot left incomplete by a crash", path)
                path.unlink()
                removed = True
        if removed:
            self._fsync_dir()

    def paths(self) -> list[Path]:
        """The complete snapshot files, oldest first."""
        found = []
        for path in self.directory.iterdir():
            m = _NAME.match(path.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2)), path))
        found.sort()
        return [p for _, _, p in found]

    def save(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` durably (temp file, fsync, rename, fsync directory); keep the newest ``retain``."""
        size, checksum = snapshot_checksum(snapshot.data)
        target = self.directory / _name(snapshot.meta)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, encode_header(snapshot.meta, size, checksum))
            write_all(fd, snapshot.data)
            if self._sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        self._install(tmp, target)

    def contains(self, meta: SnapshotMeta, size: int, checksum: int) -> bool:
        """Whether a snapshot with exactly this metadata, size and checksum is stored (header check only)."""
        path = self.directory / _name(meta)
        try:
            with path.open("rb") as f:
                stored, stored_size, stored_crc, _ = decode_header(f.read(64 * 1024))
        except (OSError, ValueError):
            return False
        return stored == meta and stored_size == size and stored_crc == checksum

    def latest(self) -> Snapshot | None:
        """The newest snapshot that passes its checksums, or None if there is none.

        A corrupt newer snapshot is skipped with a logged warning (an older valid one is returned).

        Raises:
            CorruptSnapshotError: Snapshot files exist but none of them is valid.
        """
        paths = self.paths()
        for path in reversed(paths):
            try:
                return self._load(path)
            except (OSError, ValueError) as exc:
                log.warning("%s: skipping a corrupt snapshot (%s); trying an older one", path, exc)
        if paths:
            raise CorruptSnapshotError(
                f"{self.directory}: no snapshot passes its checksums ({', '.join(p.name for p in paths)}). "
                "Restore the data directory from a backup, or move it away so the node rejoins empty."
            )
        return None

    def load(self, meta: SnapshotMeta) -> Snapshot:
        """The stored snapshot with exactly ``meta``, read and checked.

        Raises:
            CorruptSnapshotError: It is missing or fails its checksums.
        """
        path = self.directory / _name(meta)
        try:
            snapshot = self._load(path)
        except (OSError, ValueError) as exc:
            raise CorruptSnapshotError(f"{path}: the snapshot cannot be read ({exc})") from exc
        if snapshot.meta != meta:
            raise CorruptSnapshotError(f"{path}: holds another snapshot than the one expected")
        return snapshot

    def receive(self, meta: SnapshotMeta, size: int, checksum: int) -> IncomingSnapshot:
        """Start receiving a snapshot of ``size`` bytes whose data has crc32 ``checksum``, in chunks."""
        return IncomingSnapshot(self, meta, size, checksum)

    # -- internals ------------------------------------------------------------------------------------------

    def _load(self, path: Path) -> Snapshot:
        raw = path.read_bytes()
        meta, size, checksum, start = decode_header(raw)
        if _name(meta) != path.name:
            raise ValueError("header does not match the file name")
        data = raw[start:]
        if len(data) != size:
            raise ValueError(f"data is {len(data)} bytes, header says {size}")
        if zlib.crc32(data) != checksum:
            raise ValueError("data checksum mismatch")
        return Snapshot(meta, data)

    def _install(self, tmp: Path, target: Path) -> None:
        os.replace(tmp, target)
        for old in self.paths()[: -self.retain]:
            old.unlink()
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        if self._sync:
            fsync_dir(self.directory)


class IncomingSnapshot:
    """A snapshot being received in chunks (InstallSnapshot); it becomes the store's latest on ``finish``."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta, size: int, checksum: int) -> None:
        self.meta = meta
        self.size = size
        self.checksum = checksum
        self.received = 0
        """Bytes of data received so far: the offset the next chunk must start at."""
        self._store = store
        self._crc = 0
        self._target = store.directory / _name(meta)
        self._tmp = self._target.with_name(self._target.name + ".partial")
        try:
            header = encode_header(meta, size, checksum)  # before opening anything: bad values raise here
        except (struct.error, ValueError, OverflowError) as exc:
            raise SnapshotTransferError(
                f"snapshot {meta.index}: invalid size {size} or checksum {checksum}: {exc}"
            ) from None
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(self._fd, header)
        except OSError:
            os.close(self._fd)
            self._fd = None
            self._tmp.unlink(missing_ok=True)
            raise

    def write(self, offset: int, data: bytes) -> None:
        """Append the chunk ``data`` found at ``offset`` of the snapshot's data.

        Raises:
            SnapshotTransferError: ``offset`` is not ``received`` (chunks must come in order, without gaps), the
                chunk runs past the announced size, or the transfer was finished or aborted.
        """
        fd = self._open_fd()
        if offset != self.received:
            raise SnapshotTransferError(
                f"snapshot {self.meta.index}: chunk at offset {offset}, but {self.received} bytes were received "
                f"so far; resend from offset {self.received}"
            )
        if offset + len(data) > self.size:
            raise SnapshotTransferError(
                f"snapshot {self.meta.index}: chunk ends at {offset + len(data)}, past the announced size {self.size}"
            )
        write_all(fd, data)
        self._crc = zlib.crc32(data, self._crc)
        self.received += len(data)

    def finish(self) -> Snapshot:
        """Check size and checksum, make the snapshot durable and the store's latest; returns it.

        Raises:
            SnapshotTransferError: Size or checksum differ from what was announced (the partial file is removed).
        """
        fd = self._open_fd()
        if self.received != self.size or self._crc != self.checksum:
            self.abort()
            raise SnapshotTransferError(
                f"snapshot {self.meta.index}: received {self.received} bytes with crc {self._crc:#010x}, "
                f"announced {self.size} bytes with crc {self.checksum:#010x}"
            )
        try:
            if self._store._sync:
                os.fsync(fd)
        finally:
            os.close(fd)
            self._fd = None
        self._store._install(self._tmp, self._target)
        return self._store._load(self._target)

    def abort(self) -> None:
        """Drop the partial snapshot (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._tmp.unlink(missing_ok=True)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise SnapshotTransferError(f"snapshot {self.meta.index}: the transfer is already finished or aborted")
        return self._fd
