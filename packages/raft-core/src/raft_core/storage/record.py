"""The write-ahead log's record framing and codec: one checksummed record per persisted batch.

A record is an 8-byte header followed by a body::

    header: length u32 (of the body), crc u32 (zlib.crc32 of the body)          -- little-endian
    body:   kind u8, offset u64 (the record's own byte offset in its segment), synced u64, then the payload

Embedding the offset in the checksummed body means a record-shaped byte string found at any other place
(inside an entry's payload, or in stale bytes after a torn write) never passes as a record there. ``synced``
is how far the segment was known durable (an ``fdatasync`` had returned) when the record was written: a
damaged record followed by a valid record whose ``synced`` lies beyond it was acknowledged, so it is
corruption, not a torn write.

Kinds:

- ``SEGMENT``: the first record of every segment file: the segment's sequence number, the log's base (the
  last index and its term when the segment was created), the compaction point then, and the hard state then.
  Replaying from any segment therefore needs nothing from the segments before it.
- ``BATCH``: one persisted ``Ready`` (or a marker): a flags byte, then optionally the hard state, a reset
  (an installed snapshot: every entry is dropped), a compaction point (entries up to it are dropped), and
  the entries. Entries are stored column-wise (first index and count, then every term, every kind, every
  payload length, then the payloads back to back), so that encoding and decoding are a handful of C calls
  per batch rather than Python work per entry.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from operator import attrgetter
from struct import Struct

from raft_core.types import Entry, EntryKind, HardState

HEADER = Struct("<II")
"""Record header: body length and CRC32 of the body."""
HEADER_SIZE = HEADER.size
PREFIX = Struct("<BQQ")
"""Start of every body: the record kind, the record's own offset in its segment, and the synced offset."""
PREFIX_SIZE = PREFIX.size
_OFFSET = Struct("<Q")
MIN_BODY = PREFIX_SIZE
MAX_BODY = 1 << 31
"""Bodies are never larger than this; a header claiming more is not a record."""

KIND_SEGMENT = 1
KIND_BATCH = 2

SEGMENT = Struct("<QQQQQQQQQ")
"""Segment header payload: seq, base index, base term, compact index, compact term, hs term, vote, commit, 0."""

FLAG_HARD_STATE = 1
FLAG_RESET = 2
FLAG_COMPACT = 4
FLAG_ENTRIES = 8
_FLAGS = Struct("<B")
_HARD_STATE = Struct("<QQQ")
_POINT = Struct("<QQ")
_ENTRIES = Struct("<QI")

_BIG_ENDIAN = sys.byteorder == "big"
assert array("Q").itemsize == 8 and array("I").itemsize == 4  # holds on every supported platform

_TERM = attrgetter("term")
_INDEX = attrgetter("index")
_KIND = attrgetter("kind")
_DATA = attrgetter("data")
_KINDS = tuple(EntryKind)


class RecordError(ValueError):
    """Bytes that do not decode as a record (used by recovery; callers turn it into ``CorruptLogError``)."""


@dataclass(slots=True, frozen=True)
class SegmentHeader:
    """The first record of a segment: where the log stood when the segment was created."""

    seq: int
    base_index: int
    base_term: int
    compact_index: int
    compact_term: int
    hard_state: HardState


@dataclass(slots=True)
class Batch:
    """A decoded ``BATCH`` record; entries stay column-wise (see ``EntryColumns``) until they are read."""

    hard_state: HardState | None
    reset: tuple[int, int] | None
    compact: tuple[int, int] | None
    entries: EntryColumns | None


@dataclass(slots=True)
class EntryColumns:
    """The entries of one batch, column-wise, over the record's body (no ``Entry`` objects built yet)."""

    first_index: int
    terms: array[int]
    kinds: bytes
    lengths: array[int]
    data_start: int
    body: bytes

    def __len__(self) -> int:
        return len(self.terms)

    def to_entries(self, lo: int = 0, hi: int | None = None) -> list[Entry]:
        """Build ``Entry`` objects for positions ``[lo, hi)`` of the batch."""
        n = len(self.terms)
        hi = n if hi is None else min(hi, n)
        if lo >= hi:
            return []
        ends = list(accumulate(self.lengths, initial=self.data_start))
        body = self.body
        datas = [body[ends[i] : ends[i + 1]] for i in range(lo, hi)]
        first = self.first_index
        return list(
            map(
                Entry,
                self.terms[lo:hi],
                range(first + lo, first + hi),
                map(_KINDS.__getitem__, self.kinds[lo:hi]),
                datas,
            )
        )


def _le(values: array[int]) -> bytes:
    if _BIG_ENDIAN:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _from_le(typecode: str, raw: bytes | memoryview) -> array[int]:
    values = array(typecode)
    values.frombytes(raw)
    if _BIG_ENDIAN:
        values.byteswap()
    return values


def frame(body_without_prefix: bytes, kind: int, offset: int, synced: int = 0) -> bytes:
    """Frame a payload as a record of ``kind`` to be written at byte ``offset`` (``synced``: durable prefix)."""
    body = PREFIX.pack(kind, offset, synced) + body_without_prefix
    return HEADER.pack(len(body), zlib.crc32(body)) + body


def encode_segment_header(header: SegmentHeader) -> bytes:
    """The ``SEGMENT`` record that starts a segment (always at offset 0)."""
    hs = header.hard_state
    payload = SEGMENT.pack(
        header.seq,
        header.base_index,
        header.base_term,
        header.compact_index,
        header.compact_term,
        hs.term,
        hs.vote,
        hs.commit,
        0,
    )
    return frame(payload, KIND_SEGMENT, 0)


def check_contiguous(entries: Sequence[Entry]) -> None:
    """Raise ``ValueError`` unless the entries' indexes run consecutively."""
    n = len(entries)
    if n > 1:
        first = entries[0].index
        if entries[-1].index != first + n - 1 or array("Q", map(_INDEX, entries)) != array(
            "Q", range(first, first + n)
        ):
            raise ValueError("a batch's entries must have consecutive indexes")


def encode_batch(
    offset: int,
    synced: int = 0,
    *,
    hard_state: HardState | None = None,
    reset: tuple[int, int] | None = None,
    compact: tuple[int, int] | None = None,
    entries: Sequence[Entry] = (),
) -> bytes:
    """The ``BATCH`` record for one persisted batch, to be written at ``offset``; entries must be contiguous."""
    flags = 0
    parts: list[bytes] = [b""]
    if hard_state is not None:
        flags |= FLAG_HARD_STATE
        parts.append(_HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))
    if reset is not None:
        flags |= FLAG_RESET
        parts.append(_POINT.pack(*reset))
    if compact is not None:
        flags |= FLAG_COMPACT
        parts.append(_POINT.pack(*compact))
    if entries:
        flags |= FLAG_ENTRIES
        parts.append(_ENTRIES.pack(entries[0].index, len(entries)))
        parts.append(_le(array("Q", map(_TERM, entries))))
        parts.append(bytes(map(_KIND, entries)))
        datas = list(map(_DATA, entries))
        parts.append(_le(array("I", map(len, datas))))
        parts.extend(datas)
    parts[0] = _FLAGS.pack(flags)
    return frame(b"".join(parts), KIND_BATCH, offset, synced)


def decode_body(body: bytes) -> SegmentHeader | Batch:
    """Decode a record body whose checksum was already verified; raises ``RecordError`` if it is malformed."""
    try:
        kind = body[0]
        pos = PREFIX_SIZE
        if kind == KIND_SEGMENT:
            seq, bi, bt, ci, ct, term, vote, commit, _zero = SEGMENT.unpack_from(body, pos)
            return SegmentHeader(seq, bi, bt, ci, ct, HardState(term, vote, commit))
        if kind != KIND_BATCH:
            raise RecordError(f"unknown record kind {kind}")
        (flags,) = _FLAGS.unpack_from(body, pos)
        pos += 1
        hard_state = reset = compact = None
        columns = None
        if flags & FLAG_HARD_STATE:
            hard_state = HardState(*_HARD_STATE.unpack_from(body, pos))
            pos += _HARD_STATE.size
        if flags & FLAG_RESET:
            reset = _POINT.unpack_from(body, pos)
            pos += _POINT.size
        if flags & FLAG_COMPACT:
            compact = _POINT.unpack_from(body, pos)
            pos += _POINT.size
        if flags & FLAG_ENTRIES:
            first, n = _ENTRIES.unpack_from(body, pos)
            pos += _ENTRIES.size
            view = memoryview(body)
            terms = _from_le("Q", view[pos : pos + 8 * n])
            pos += 8 * n
            kinds = body[pos : pos + n]
            pos += n
            lengths = _from_le("I", view[pos : pos + 4 * n])
            pos += 4 * n
            if len(terms) != n or len(kinds) != n or len(lengths) != n or pos + sum(lengths) != len(body):
                raise RecordError("entry columns do not match the record's length")
            if kinds and max(kinds) >= len(_KINDS):
                raise RecordError(f"unknown entry kind {max(kinds)}")
            columns = EntryColumns(first, terms, kinds, lengths, pos, body)
        elif pos != len(body):
            raise RecordError("trailing bytes after the record's fields")
        return Batch(hard_state, reset, compact, columns)
    except (struct.error, ValueError, OverflowError, IndexError) as exc:
        raise RecordError(str(exc)) from exc


def synced_of(buf: bytes, body_start: int) -> int:
    """The ``synced`` field of the record whose body starts at ``body_start``."""
    return int(PREFIX.unpack_from(buf, body_start)[2])


def check_record(buf: bytes | memoryview, pos: int) -> tuple[int, int] | str:
    """Validate the record starting at ``buf[pos]`` whose own offset should be ``pos``.

    Returns ``(body_start, body_end)`` when the header, checksum and embedded offset are right, else a short
    reason (``"short header"``, ``"short body"``, ``"bad length"``, ``"crc mismatch"``, ``"misplaced"``).
    """
    end = len(buf)
    if end - pos < HEADER_SIZE:
        return "short header"
    length, crc = HEADER.unpack_from(buf, pos)
    if length < MIN_BODY or length > MAX_BODY:
        return "bad length"
    start = pos + HEADER_SIZE
    if start + length > end:
        return "short body"
    if zlib.crc32(buf[start : start + length]) != crc:
        return "crc mismatch"
    if PREFIX.unpack_from(buf, start)[1] != pos:
        return "misplaced"
    return start, start + length


def next_valid_record(buf: bytes, start: int) -> int | None:
    """The offset of the first valid record at or after ``start`` (records carry their own offset)."""
    found: list[int] = []
    for kind in (b"\x01", b"\x02"):  # a record's kind byte sits right after its 8-byte header
        at = buf.find(kind, start + HEADER_SIZE)
        while at != -1:
            pos = at - HEADER_SIZE
            if buf[at + 1 : at + 9] == _OFFSET.pack(pos) and not isinstance(check_record(buf, pos), str):
                found.append(pos)
                break
            at = buf.find(kind, at + 1)
    return min(found, default=None)
