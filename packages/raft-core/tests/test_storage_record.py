"""The WAL record codec: round trips, framing checks."""

from __future__ import annotations

import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from raft_core.storage.record import (
    HEADER,
    HEADER_SIZE,
    Batch,
    SegmentHeader,
    check_record,
    decode_body,
    encode_batch,
    encode_segment_header,
    synced_of,
)
from raft_core.types import Entry, EntryKind, HardState

u64 = st.integers(min_value=0, max_value=2**64 - 1)
hard_states = st.builds(HardState, term=u64, vote=u64, commit=u64)
points = st.tuples(u64, u64)


@st.composite
def entry_runs(draw: st.DrawFn) -> list[Entry]:
    first = draw(st.integers(min_value=1, max_value=2**40))
    n = draw(st.integers(min_value=0, max_value=20))
    return [
        Entry(
            term=draw(u64),
            index=first + i,
            kind=draw(st.sampled_from(EntryKind)),
            data=draw(st.binary(max_size=64)),
        )
        for i in range(n)
    ]


def decode_at(record: bytes, offset: int = 0) -> Batch | SegmentHeader:
    buf = b"\0" * offset + record
    checked = check_record(buf, offset)
    assert not isinstance(checked, str), checked
    return decode_body(buf[checked[0] : checked[1]])


@settings(max_examples=300, deadline=None)
@given(
    entries=entry_runs(),
    hs=st.none() | hard_states,
    reset=st.none() | points,
    compact=st.none() | points,
    offset=st.integers(min_value=0, max_value=5000),
    synced=st.integers(min_value=0, max_value=5000),
)
def test_batch_round_trip(entries, hs, reset, compact, offset, synced):
    record = encode_batch(offset, synced, hard_state=hs, reset=reset, compact=compact, entries=entries)
    batch = decode_at(record, offset)
    assert isinstance(batch, Batch)
    assert batch.hard_state == hs
    assert batch.reset == reset
    assert batch.compact == compact
    if entries:
        assert batch.entries is not None
        assert batch.entries.to_entries() == entries
        assert list(batch.entries.terms) == [e.term for e in entries]
        assert batch.entries.to_entries(1, 3) == entries[1:3]
    else:
        assert batch.entries is None
    assert synced_of(b"\0" * offset + record, offset + HEADER_SIZE) == synced


@given(seq=u64, bi=u64, bt=u64, ci=u64, ct=u64, hs=hard_states)
def test_segment_header_round_trip(seq, bi, bt, ci, ct, hs):
    header = SegmentHeader(seq, bi, bt, ci, ct, hs)
    assert decode_at(encode_segment_header(header)) == header


@given(entries=entry_runs(), data=st.data())
def test_any_single_byte_change_is_detected(entries, data):
    record = encode_batch(0, hard_state=HardState(1, 2, 3), entries=entries)
    at = data.draw(st.integers(min_value=0, max_value=len(record) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    damaged = bytearray(record)
    damaged[at] ^= flip
    assert isinstance(check_record(bytes(damaged), 0), str)


def test_every_truncation_is_detected():
    record = encode_batch(0, entries=[Entry(1, 1, data=b"abc"), Entry(2, 2)])
    reasons = {check_record(record[:cut], 0) for cut in range(len(record))}
    assert reasons == {"short header", "short body"}


def test_zeros_are_not_a_record():
    assert check_record(b"\0" * 64, 0) == "bad length"


def test_a_record_copied_elsewhere_is_misplaced():
    record = encode_batch(0, entries=[Entry(1, 1, data=b"abc")])
    assert check_record(b"\0" * 16 + record, 16) == "misplaced"


def test_header_layout():
    record = encode_batch(8, hard_state=HardState(1, 1, 1))
    length, crc = HEADER.unpack_from(record)
    assert length == len(record) - HEADER_SIZE
    assert crc == zlib.crc32(record[HEADER_SIZE:])
