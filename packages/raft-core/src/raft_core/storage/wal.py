"""``WriteAheadLog``: a segmented, append-only, checksummed log of persisted batches in one directory.

Files are ``<seq:016x>.wal``; each starts with a ``SEGMENT`` record and holds ``BATCH`` records (see
``record.py``). One batch is one record, written with one ``write`` and at most one ``fdatasync``. No file is
ever rewritten: an overwrite of an uncommitted suffix is a record whose first entry index is at or below the
last index, and replay drops what it replaces. A segment rolls once it would exceed ``segment_bytes``; the old
segment is synced first, so only the newest segment can ever hold a torn write.

Preallocation (``preallocate_bytes``, on in ``DiskStorage``): the newest segment is extended ahead of its
records by writing zeros, a chunk at a time, so that most records land inside the file: their
``fdatasync`` then writes data only, where an append that grows the file also commits the file system's
journal (2x the latency and CPU here, and the journal is shared by every log on the disk). Replay reads zeros
where a record header should be as the end of the records (nothing follows); a segment is cut to its records
before the next one is created, so only the newest segment holds zeros.

In memory, by design: the term of every entry (``array('Q')``: 8 bytes per entry), a location table per record
holding entries (36 bytes per record), and a bounded cache of the most recent entries. Older entries are read
back with ``os.pread`` and decoded.

Recovery: every record's checksum is verified. A bad record in the newest segment that no later valid record
shows to have been synced (a torn or partial write, unsynced writes reaching the disk out of order, garbage
after the last record) is truncated away together with what follows: none of it was acknowledged. A bad
record inside the acknowledged prefix (a valid record written after it was synced follows), or anywhere in
an older segment, raises ``CorruptLogError`` naming the file and the offset.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from pathlib import Path

from raft_core.errors import CorruptLogError, EntryUnavailable, InvariantViolation, LogCompacted, StorageError
from raft_core.storage.record import (
    _BIG_ENDIAN,
    FLAG_ENTRIES,
    FLAG_HARD_STATE,
    HEADER,
    HEADER_SIZE,
    KIND_BATCH,
    Batch,
    RecordError,
    SegmentHeader,
    check_contiguous,
    check_record,
    decode_body,
    encode_batch,
    encode_segment_header,
    next_valid_record,
    synced_of,
)
from raft_core.types import Entry, EntryKind, HardState, limit_size

log = logging.getLogger(__name__)
_TERM = attrgetter("term")

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
DEFAULT_PREALLOCATE_BYTES = 4 * 1024 * 1024
"""The zero-filled space ``DiskStorage`` keeps ahead of the newest segment's records (0 turns it off)."""
_ZEROS = bytes(64 * 1024)
DEFAULT_CACHE_ENTRIES = 8192
_HEADER_LEN = len(encode_segment_header(SegmentHeader(0, 0, 0, 0, 0, HardState())))
_UNKNOWN_TERM = 2**64 - 1
_FAST = struct.Struct("<BQQB")  # a batch body's kind, offset, synced, flags
_HS = struct.Struct("<QQQ")
_ONE = struct.Struct("<QIQBI")  # first index, count; then one entry's term, kind and data length
_NAME = re.compile(r"^([0-9a-f]{16})\.wal$")
_ADVICE = (
    "The acknowledged log is damaged, so this node refuses to start rather than serve or vote with wrong data. "
    "Restore the node's data directory from a backup, or (if a majority of the cluster is healthy) move the "
    "directory away and let the node rejoin empty and catch up from the leader."
)


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    fd: int
    base_index: int
    size: int  # bytes of records
    allocated: int = 0  # bytes of the file (records, then zeros); at least ``size``

    def __post_init__(self) -> None:
        self.allocated = max(self.allocated, self.size)


class WriteAheadLog:
    """A segmented write-ahead log; opening it recovers the state the records describe.

    State (mirroring ``MemoryStorage``): a base point ``(index, term)`` (the compaction point or an installed
    snapshot: ``term(base) `` answers, entries below it are gone), the entries after it, and the hard state.

    Args:
        directory: Where the segment files live (created if missing).
        segment_bytes: Roll to a new segment once the current one would grow beyond this.
        cache_entries: How many of the most recent entries to keep decoded in memory.
        unsafe_skip_fsync: Never fsync. UNSAFE: a crash may lose or tear acknowledged batches. For tests and
            benchmarks only.
        on_sync: Told the seconds each batch's ``fdatasync`` took (metrics); called in the writing thread.
        preallocate_bytes: Zero-filled space to keep ahead of the newest segment's records (see the module);
            0: files grow with each record.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        unsafe_skip_fsync: bool = False,
        on_sync: Callable[[float], None] | None = None,
        preallocate_bytes: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self._on_sync = on_sync
        self._preallocate = max(preallocate_bytes, 0)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._cache_cap = max(cache_entries, 0)
        self._sync = not unsafe_skip_fsync
        self._base_index = 0
        self._base_term = 0
        self._terms = array("Q", [0])  # _terms[i] is the term of index _base_index + i
        self._hard_state = HardState()
        # One row per record holding live entries, in index order.
        self._rec_lo = array("Q")  # first live index the record provided when applied
        self._rec_first = array("Q")  # index of the record's first encoded entry
        self._rec_seg = array("I")
        self._rec_off = array("Q")  # byte offset of the record's header
        self._rec_len = array("I")  # body length
        self._cache: list[Entry] = []
        self._cache_first = 1
        self._segments: list[_Segment] = []
        self._synced = 0  # bytes of the newest segment known durable (an fdatasync returned)
        self._failed: OSError | None = None  # a write or sync failed: the file's state is unknown
        self._unknown_hi = 0  # during recovery: entries up to here were in deleted segments (must end compacted)
        self._recover()

    def _fdatasync(self, fd: int) -> None:
        """``fdatasync(fd)``, timed for ``on_sync`` (the batch's durability point)."""
        if self._on_sync is None:
            os.fdatasync(fd)
            return
        start = time.perf_counter()
        os.fdatasync(fd)
        self._on_sync(time.perf_counter() - start)

    # -- reads ----------------------------------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        """The last persisted hard state."""
        return self._hard_state

    @property
    def base(self) -> tuple[int, int]:
        """The base point ``(index, term)``: the compaction point or the last installed snapshot."""
        return self._base_index, self._base_term

    def first_index(self) -> int:
        """One past the base index."""
        return self._base_index + 1

    def last_index(self) -> int:
        """The last entry's index (the base index when there is none)."""
        return self._base_index + len(self._terms) - 1

    def segment_paths(self) -> list[Path]:
        """The segment files, oldest first."""
        return [s.path for s in self._segments]

    def term(self, index: int) -> int:
        """The term of the entry at ``index`` (the base term at the base index)."""
        if index < self._base_index:
            raise LogCompacted(f"term of {index} is compacted (snapshot index is {self._base_index})")
        if index > self.last_index():
            raise EntryUnavailable(f"term of {index} requested, last index is {self.last_index()}")
        return self._terms[index - self._base_index]

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries ``[lo, hi)``, at most ``max_size`` bytes (``Entry.size``) but always at least one."""
        if lo <= self._base_index:
            raise LogCompacted(f"entry {lo} is compacted (first stored index is {self._base_index + 1})")
        if hi > self.last_index() + 1:
            raise EntryUnavailable(f"entries up to {hi - 1} requested, last index is {self.last_index()}")
        if lo >= hi:
            return []
        cache_first = self._cache_first
        if lo >= cache_first:
            ents = self._cache[lo - cache_first : hi - cache_first]
        else:
            ents = self._read(lo, min(hi, cache_first), max_size)
            if hi > cache_first and len(ents) == cache_first - lo:
                ents.extend(self._cache[: hi - cache_first])
        if max_size is None or len(ents) <= 1:
            return ents
        return limit_size(ents, max_size)

    def _read(self, lo: int, hi: int, max_size: int | None) -> list[Entry]:
        out: list[Entry] = []
        r = bisect_right(self._rec_lo, lo) - 1
        fds = {s.seq: s for s in self._segments}
        index = lo
        size = 0
        while index < hi:
            seg = fds[self._rec_seg[r]]
            off = self._rec_off[r]
            length = self._rec_len[r]
            raw = os.pread(seg.fd, HEADER_SIZE + length, off)
            body = raw[HEADER_SIZE:]
            if len(body) != length or zlib.crc32(body) != HEADER.unpack_from(raw)[1]:
                raise CorruptLogError(
                    f"{seg.path}: record at byte offset {off} no longer matches its checksum. {_ADVICE}"
                )
            batch = decode_body(body)
            if not isinstance(batch, Batch) or batch.entries is None:
                raise CorruptLogError(f"{seg.path}: record at byte offset {off} holds no entries. {_ADVICE}")
            end = self._rec_lo[r + 1] if r + 1 < len(self._rec_lo) else self.last_index() + 1
            take = min(hi, end)
            first = self._rec_first[r]
            ents = batch.entries.to_entries(index - first, take - first)
            out.extend(ents)
            index = take
            r += 1
            if max_size is not None:
                size += sum(e.size() for e in ents)
                if size > max_size:
                    break
        return out

    # -- writes ---------------------------------------------------------------------------------------------

    def write(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        reset: tuple[int, int] | None = None,
        compact: int | None = None,
        sync: bool = True,
    ) -> None:
        """Persist one batch as one record: ``reset``, then ``compact``, then ``entries``, then ``hard_state``.

        ``reset=(index, term)`` drops every entry and makes ``(index, term)`` the base (an installed snapshot);
        ``compact=index`` drops the entries up to ``index``; entries first drop any stored entries at or after
        their first index (those at or below the base are skipped). With ``sync`` the record is durable (one
        ``fdatasync``) when this returns.

        Raises:
            InvariantViolation: The entries would leave a gap after the last index, or ``compact`` lies beyond it.
        """
        if self._failed is not None:
            raise StorageError(f"{self.directory}: an earlier write failed ({self._failed}); close and reopen the log")
        base, last = self._base_index, self.last_index()
        if reset is not None:
            base = last = reset[0]
        point = None
        if compact is not None and compact > base:
            if compact > last:
                raise InvariantViolation(f"cannot compact to {compact}: the last index is {last}")
            point = (compact, reset[1] if reset is not None and compact == reset[0] else self.term(compact))
            base = compact
        if entries:
            check_contiguous(entries)
            first = entries[0].index
            if first <= base:
                entries = entries[base + 1 - first :]
            if entries and entries[0].index > last + 1:
                raise InvariantViolation(f"append at {entries[0].index} would leave a gap after last index {last}")
        if hard_state is None and reset is None and point is None and not entries:
            if sync:
                if self._sync:
                    self._fdatasync(self._segments[-1].fd)
                self._synced = self._segments[-1].size
            return
        seg = self._segments[-1]
        record = encode_batch(
            seg.size, self._synced, hard_state=hard_state, reset=reset, compact=point, entries=entries
        )
        if seg.size + len(record) > self._segment_bytes and seg.size > _HEADER_LEN:
            seg = self._roll()
            record = encode_batch(
                seg.size, self._synced, hard_state=hard_state, reset=reset, compact=point, entries=entries
            )
        offset = seg.size
        try:
            if self._preallocate and offset + len(record) > seg.allocated:
                self._extend(seg, offset + len(record))
            write_all(seg.fd, record, offset)
            if sync and self._sync:
                self._fdatasync(seg.fd)
        except OSError as exc:  # never retry an fsync: what reached the disk is unknown until recovery
            self._failed = exc
            raise
        seg.size += len(record)
        if sync:
            self._synced = seg.size
        self._apply(reset, point, hard_state)
        if entries:
            self._append_columns(
                entries[0].index, array("Q", map(_TERM, entries)), seg.seq, offset, len(record) - HEADER_SIZE
            )
            self._cache_append(entries)

    def compact(self, index: int) -> None:
        """Durably drop the entries up to ``index``, then delete the segments that hold nothing after it."""
        if index <= self._base_index:
            return
        self.write(compact=index, sync=True)
        segments = self._segments
        doomed = 0
        while doomed + 1 < len(segments) and segments[doomed + 1].base_index <= index:
            doomed += 1
        if not doomed:
            return
        for seg in segments[:doomed]:
            os.close(seg.fd)
            seg.path.unlink()
        del segments[:doomed]
        if self._sync:
            fsync_dir(self.directory)

    def close(self) -> None:
        """Close every segment file."""
        for seg in self._segments:
            os.close(seg.fd)
        self._segments = []

    # -- in-memory state ------------------------------------------------------------------------------------

    def _apply(self, reset: tuple[int, int] | None, compact: tuple[int, int] | None, hs: HardState | None) -> None:
        if reset is not None:
            self._unknown_hi = 0
            self._base_index, self._base_term = reset
            self._terms = array("Q", [reset[1]])
            for table in self._tables():
                del table[:]
            self._cache = []
            self._cache_first = reset[0] + 1
        if compact is not None and compact[0] > self._base_index:
            index, term = compact
            if index >= self._unknown_hi:
                self._unknown_hi = 0
            del self._terms[: index - self._base_index]
            self._terms[0] = term
            self._base_index, self._base_term = index, term
            # Drop the rows whose entries all lie at or below the new base.
            keep = bisect_right(self._rec_lo, index + 1) - 1 if index < self.last_index() else len(self._rec_lo)
            if keep > 0:
                for table in self._tables():
                    del table[:keep]
            if self._cache_first <= index:
                del self._cache[: index + 1 - self._cache_first]
                self._cache_first = index + 1
        if hs is not None:
            self._hard_state = hs

    def _tables(self) -> tuple[array[int], ...]:
        return self._rec_lo, self._rec_first, self._rec_seg, self._rec_off, self._rec_len

    def _append_columns(self, first: int, terms: array[int], seq: int, offset: int, body_len: int) -> bool:
        """Apply the entries of one record; returns False if they would leave a gap."""
        base = self._base_index
        lo = first
        if first <= base:
            skip = base + 1 - first
            if skip >= len(terms):
                return True
            terms = terms[skip:]
            lo = base + 1
        if lo > self.last_index() + 1:
            return False
        if lo <= self._unknown_hi:
            self._unknown_hi = lo - 1
        del self._terms[lo - base :]
        self._terms.extend(terms)
        cut = bisect_right(self._rec_lo, lo - 1)  # rows starting at or after lo are overwritten
        if cut < len(self._rec_lo):
            for table in self._tables():
                del table[cut:]
        self._rec_lo.append(lo)
        self._rec_first.append(first)
        self._rec_seg.append(seq)
        self._rec_off.append(offset)
        self._rec_len.append(body_len)
        return True

    def _cache_append(self, entries: Sequence[Entry]) -> None:
        cap = self._cache_cap
        lo = entries[0].index
        if lo < self._cache_first:
            self._cache = []
            self._cache_first = lo
        else:
            del self._cache[lo - self._cache_first :]
            if not self._cache:
                self._cache_first = lo
        self._cache.extend(entries)
        excess = len(self._cache) - cap
        if excess > cap // 4 or (cap == 0 and self._cache):
            del self._cache[:excess]
            self._cache_first += excess

    # -- segments -------------------------------------------------------------------------------------------

    def _create_segment(self, seq: int) -> _Segment:
        last = self.last_index()
        header = SegmentHeader(
            seq=seq,
            base_index=last,
            base_term=self._terms[-1],
            compact_index=self._base_index,
            compact_term=self._base_term,
            hard_state=self._hard_state,
        )
        path = self.directory / f"{seq:016x}.wal"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        record = encode_segment_header(header)
        write_all(fd, record, 0)
        if self._sync:
            os.fdatasync(fd)
            fsync_dir(self.directory)
        seg = _Segment(seq, path, fd, last, len(record))
        self._segments.append(seg)
        self._synced = seg.size
        return seg

    def _roll(self) -> _Segment:
        old = self._segments[-1]
        if old.allocated > old.size:  # only the newest segment may end in zeros (see the module)
            os.ftruncate(old.fd, old.size)
            old.allocated = old.size
        if self._sync:
            os.fdatasync(old.fd)
        return self._create_segment(old.seq + 1)

    def _extend(self, seg: _Segment, needed: int) -> None:
        """Zero-fill the segment's file from its allocated end to at least ``needed`` (a chunk, within reason)."""
        target = max(needed, min(seg.allocated + self._preallocate, self._segment_bytes))
        at = seg.allocated
        while at < target:  # from one small buffer: a chunk-sized one would stay in the heap (RSS) once freed
            n = min(len(_ZEROS), target - at)
            write_all(seg.fd, _ZEROS if n == len(_ZEROS) else _ZEROS[:n], at)
            at += n
        seg.allocated = target

    # -- recovery -------------------------------------------------------------------------------------------

    def _recover(self) -> None:
        found: list[tuple[int, Path]] = []
        for path in self.directory.iterdir():
            m = _NAME.match(path.name)
            if m:
                found.append((int(m.group(1), 16), path))
        found.sort()
        next_seq = found[-1][0] + 1 if found else 1
        for (a, pa), (b, _) in pairwise(found):
            if b != a + 1:
                raise CorruptLogError(f"{pa}: the segment after it (number {a + 1}) is missing. {_ADVICE}")
        while found:
            seq, path = found[0]
            is_last = len(found) == 1
            found.pop(0)
            if not self._replay_segment(seq, path, is_last, first=not self._segments):
                break
        if self._unknown_hi > self._base_index:
            raise CorruptLogError(
                f"{self.directory}: entries up to {self._unknown_hi} lie in segments that no longer exist and the "
                f"log was never compacted past them (a segment file was deleted). {_ADVICE}"
            )
        if not self._segments:
            self._create_segment(next_seq)
        else:  # what a crashed process wrote may sit in the page cache only: make it durable before use
            newest = self._segments[-1]
            if self._sync:
                os.fdatasync(newest.fd)
            self._synced = newest.size
        self._cache = []
        self._cache_first = self.last_index() + 1

    def _replay_segment(self, seq: int, path: Path, is_last: bool, *, first: bool) -> bool:
        """Replay one segment; returns False if it was an empty torn segment that got deleted."""
        fd = os.open(path, os.O_RDWR)
        try:
            kept = self._replay_file(fd, seq, path, is_last, first=first)
        except BaseException:
            os.close(fd)
            raise
        if not kept:
            os.close(fd)
            path.unlink()
            if self._sync:
                fsync_dir(self.directory)
        return kept

    def _replay_file(self, fd: int, seq: int, path: Path, is_last: bool, *, first: bool) -> bool:
        size = os.fstat(fd).st_size
        buf = os.pread(fd, size, 0) if size else b""
        pos = 0
        header: SegmentHeader | None = None
        end = len(buf)
        view = memoryview(buf)
        terms, rec_lo, rec_first, rec_seg, rec_off, rec_len = self._terms, *self._tables()
        crc32, unpack_header, unpack_fast = zlib.crc32, HEADER.unpack_from, _FAST.unpack_from
        while pos < end:
            # Fast path for the commonest record: one entry appended at the end (plus maybe a hard state).
            if pos and not _BIG_ENDIAN and end - pos >= HEADER_SIZE:
                length, crc = unpack_header(buf, pos)
                start = pos + HEADER_SIZE
                stop = start + length
                if length >= _FAST.size and stop <= end and crc32(view[start:stop]) == crc:
                    kind, off, _, flags = unpack_fast(buf, start)
                    if kind == KIND_BATCH and off == pos and flags in (FLAG_ENTRIES, FLAG_ENTRIES | FLAG_HARD_STATE):
                        at = start + _FAST.size
                        hs = None
                        if flags & FLAG_HARD_STATE:
                            hs = HardState(*_HS.unpack_from(buf, at))
                            at += _HS.size
                        if at + _ONE.size <= stop:
                            first_index, n, term, entry_kind, data_len = _ONE.unpack_from(buf, at)
                            base = self._base_index
                            if (
                                n == 1
                                and first_index == base + len(terms)
                                and first_index > base
                                and entry_kind < len(EntryKind)
                                and at + _ONE.size + data_len == stop
                            ):
                                if hs is not None:
                                    self._hard_state = hs
                                terms.append(term)
                                rec_lo.append(first_index)
                                rec_first.append(first_index)
                                rec_seg.append(seq)
                                rec_off.append(pos)
                                rec_len.append(length)
                                pos = stop
                                continue
            checked = check_record(buf, pos)
            if isinstance(checked, str):
                if pos and buf.count(0, pos) == end - pos:
                    break  # preallocated space: the records end here (the zeros stay for the next ones)
                self._bad_record(fd, path, buf, pos, checked, is_last)
                end = pos
                break
            start, stop = checked
            try:
                rec = decode_body(buf[start:stop])
            except RecordError as exc:
                raise CorruptLogError(f"{path}: undecodable record at byte offset {pos} ({exc}). {_ADVICE}") from exc
            if pos == 0:
                if not isinstance(rec, SegmentHeader) or rec.seq != seq:
                    raise CorruptLogError(f"{path}: byte offset 0 does not hold this segment's header. {_ADVICE}")
                header = rec
                self._start_segment(rec, first=first)
            elif isinstance(rec, SegmentHeader):
                raise CorruptLogError(f"{path}: unexpected segment header at byte offset {pos}. {_ADVICE}")
            else:
                self._apply(rec.reset, rec.compact, rec.hard_state)
                cols = rec.entries
                if cols is not None and not self._append_columns(cols.first_index, cols.terms, seq, pos, stop - start):
                    raise CorruptLogError(
                        f"{path}: record at byte offset {pos} appends at {cols.first_index}, after last index "
                        f"{self.last_index()} (a gap: a segment or record is missing). {_ADVICE}"
                    )
            terms = self._terms  # the general path may have replaced it
            pos = stop
        del view
        if header is None:
            if not is_last:
                raise CorruptLogError(f"{path}: empty segment that is not the newest. {_ADVICE}")
            return False  # the newest segment, torn while it was being created: nothing in it was written
        self._segments.append(_Segment(seq, path, fd, header.base_index, pos, end))
        return True

    def _start_segment(self, header: SegmentHeader, *, first: bool) -> None:
        if first:
            # The oldest segment. Older segments were deleted only once the log was compacted past this one's
            # base (see ``compact``), so the entries between the compaction point it records and its base are
            # unknown here, and a later record must compact (or overwrite) them all.
            self._base_index, self._base_term = header.compact_index, header.compact_term
            self._terms = array("Q", [header.compact_term])
            unknown = header.base_index - header.compact_index
            if unknown > 0:
                self._terms.extend(array("Q", [_UNKNOWN_TERM]) * unknown)
                self._unknown_hi = header.base_index
            self._hard_state = header.hard_state
            return
        if header.base_index != self.last_index() or header.hard_state != self._hard_state:
            raise CorruptLogError(
                f"segment {header.seq} starts at index {header.base_index} but the log before it ends at "
                f"{self.last_index()} (or its hard state differs). {_ADVICE}"
            )

    def _bad_record(self, fd: int, path: Path, buf: bytes, pos: int, reason: str, is_last: bool) -> None:
        """Truncate a torn tail at ``pos``, or raise if the bad record lies inside the acknowledged prefix."""
        dropped = 0
        later = next_valid_record(buf, pos + 1)
        while later is not None:
            if not is_last or synced_of(buf, later + HEADER_SIZE) > pos:
                raise CorruptLogError(
                    f"{path}: corrupt record at byte offset {pos} ({reason}), inside the acknowledged log: a valid "
                    f"record at byte offset {later} was written after it was synced. {_ADVICE}"
                )
            dropped += 1
            checked = check_record(buf, later)
            assert not isinstance(checked, str)
            nxt = checked[1]
            later = nxt if not isinstance(check_record(buf, nxt), str) else next_valid_record(buf, nxt + 1)
        if not is_last:
            raise CorruptLogError(
                f"{path}: corrupt record at byte offset {pos} ({reason}) in a segment that is not the newest "
                f"(it was synced before the next segment was created). {_ADVICE}"
            )
        log.warning(
            "%s: dropping a torn write at byte offset %d (%s; %d bytes, %d later unsynced records): "
            "it was never acknowledged",
            path,
            pos,
            reason,
            len(buf) - pos,
            dropped,
        )
        os.ftruncate(fd, pos)
        if self._sync:
            os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (files created, renamed or deleted in it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of ``data`` to ``fd``: at ``offset`` with ``pwrite``, or at the file position if None."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n
