"""Codec tests: every WireMessage kind round-trips; untrusted bytes are validated; batches frame correctly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft_core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    TransferLeader,
)
from raft_core.runtime.codec import WIRE_TYPES
from raft_core.runtime.wire import ProposalRefused, SnapshotChunk, SnapshotChunkAck
from raft_core.types import Entry, EntryKind, Membership, Snapshot, SnapshotMeta
from raft_grpc import DecodeError, EncodeError, codec
from raft_grpc._gen.raft.v1 import raft_pb2 as pb

U64 = st.integers(0, 2**64 - 1)
SMALL = st.integers(0, 2**40)
IDS = st.integers(1, 2**64 - 1)
DATA = st.binary(max_size=64)


TERMS = st.integers(1, 2**64 - 1)


def header(term=TERMS):
    return {"src": IDS, "dst": IDS, "term": term}


@st.composite
def memberships(draw):
    nodes = draw(st.lists(IDS, unique=True, max_size=6))
    cut = draw(st.integers(0, len(nodes)))
    return Membership(voters=frozenset(nodes[:cut]), learners=frozenset(nodes[cut:]))


@st.composite
def metas(draw):
    return SnapshotMeta(index=draw(st.integers(1, 2**64 - 1)), term=draw(U64), membership=draw(memberships()))


@st.composite
def append_entries(draw):
    prev = draw(st.integers(0, 2**63))
    n = draw(st.integers(0, 8))
    kinds = st.sampled_from(list(EntryKind))
    entries = tuple(Entry(draw(U64), prev + 1 + i, draw(kinds), draw(DATA)) for i in range(n))
    return AppendEntries(
        src=draw(IDS),
        dst=draw(IDS),
        term=draw(TERMS),
        prev_index=prev,
        prev_term=draw(U64),
        entries=entries,
        commit=draw(U64),
        commit_only=not entries and draw(st.booleans()),  # the leader marks only empty appends
    )


@st.composite
def snapshot_chunks(draw):
    data = draw(DATA)
    offset = draw(SMALL)
    size = offset + len(data) + draw(SMALL)
    return SnapshotChunk(
        **{k: draw(v) for k, v in header().items()},
        meta=draw(metas()),
        size=size,
        checksum=draw(st.integers(0, 2**32 - 1)),
        offset=offset,
        data=data,
        done=draw(st.booleans()),
    )


STRATEGIES = {
    RequestVote: st.builds(RequestVote, **header(), last_index=U64, last_term=U64, transfer=st.booleans()),
    RequestVoteResponse: st.builds(RequestVoteResponse, **header(), reject=st.booleans()),
    RequestPreVote: st.builds(RequestPreVote, **header(), last_index=U64, last_term=U64),
    RequestPreVoteResponse: st.builds(RequestPreVoteResponse, **header(U64), reject=st.booleans()),
    AppendEntries: append_entries(),
    AppendEntriesResponse: st.builds(
        AppendEntriesResponse, **header(), index=U64, reject=st.booleans(), reject_hint=U64, log_term=U64
    ),
    Heartbeat: st.builds(Heartbeat, **header(), commit=U64, read_round=U64),
    HeartbeatResponse: st.builds(HeartbeatResponse, **header(), read_round=U64),
    InstallSnapshot: st.builds(InstallSnapshot, **header(), snapshot=st.builds(Snapshot, meta=metas(), data=DATA)),
    TimeoutNow: st.builds(TimeoutNow, **header()),
    Propose: st.builds(Propose, **header(U64), data=st.lists(DATA, max_size=5).map(tuple)),
    ReadIndex: st.builds(ReadIndex, **header(U64), context=DATA),
    ReadIndexResponse: st.builds(ReadIndexResponse, **header(), index=U64, context=DATA),
    TransferLeader: st.builds(TransferLeader, **header(U64), target=U64),
    SnapshotChunk: snapshot_chunks(),
    SnapshotChunkAck: st.builds(SnapshotChunkAck, **header(U64), index=U64, received=U64, ok=st.booleans()),
    ProposalRefused: st.builds(
        ProposalRefused,
        **header(U64),
        requests=st.lists(U64, max_size=5).map(tuple),
        reason=st.text(max_size=40),
        overloaded=st.booleans(),
    ),
}
ANY_MESSAGE = st.one_of(*STRATEGIES.values())


def test_every_wire_kind_has_a_strategy_and_a_oneof_field():
    assert set(STRATEGIES) == set(WIRE_TYPES)
    assert len(pb.Message.DESCRIPTOR.oneofs_by_name["kind"].fields) == len(WIRE_TYPES)


@pytest.mark.parametrize("kind", list(STRATEGIES), ids=lambda k: k.__name__)
def test_round_trip(kind):
    @settings(max_examples=60, deadline=None)
    @given(STRATEGIES[kind])
    def check(message):
        assert codec.from_proto(codec.to_proto(message)) == message
        assert codec.decode_message(codec.encode_message(message)) == message

    check()


@settings(max_examples=100, deadline=None)
@given(st.lists(ANY_MESSAGE, max_size=6))
def test_batch_round_trip_and_framing_matches_protobuf(messages):
    framed = codec.encode_batch(messages)
    assert codec.decode_batch(framed) == messages
    assert pb.Batch.FromString(framed) == codec.batch_message(messages)
    assert codec.decode_batch(codec.batch_message(messages).SerializeToString()) == messages


def test_framing_of_a_message_over_127_bytes_uses_a_multi_byte_length():
    big = Propose(src=1, dst=2, data=(b"x" * 70_000,))
    framed = codec.encode_batch([big, big])
    assert codec.decode_batch(framed) == [big, big]
    assert len(framed) == 2 * codec.framed_size(len(codec.encode_message(big)))


# -- untrusted input ------------------------------------------------------------------------------------------


def _message(**fields) -> bytes:
    return pb.Message(**fields).SerializeToString()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xff\xff\xff\xff", "not a raft.v1.Message"),
        (_message(src=1, dst=2, term=3), "no kind"),
        (_message(src=0, dst=2, heartbeat=pb.Heartbeat()), "positive"),
        (_message(src=1, dst=0, heartbeat=pb.Heartbeat()), "positive"),
        (_message(src=1, dst=2, term=0, heartbeat=pb.Heartbeat()), "term"),
        (_message(src=1, dst=2, term=0, append_entries_response=pb.AppendEntriesResponse(index=9)), "term"),
        (
            _message(
                src=1,
                dst=2,
                term=1,
                append_entries=pb.AppendEntries(entry_terms=[1], entry_kinds=[9], entry_data=[b""]),
            ),
            "kind 9",
        ),
        (
            _message(src=1, dst=2, term=1, append_entries=pb.AppendEntries(entry_terms=[1, 1], entry_data=[b""])),
            "columns",
        ),
        (_message(src=1, dst=2, term=1, snapshot_chunk=pb.SnapshotChunk(size=4)), "meta"),
        (
            _message(
                src=1,
                dst=2,
                term=1,
                snapshot_chunk=pb.SnapshotChunk(meta=pb.SnapshotMeta(index=5), size=4, offset=3, data=b"ab"),
            ),
            "outside",
        ),
        (
            _message(
                src=1,
                dst=2,
                term=1,
                install_snapshot=pb.InstallSnapshot(
                    meta=pb.SnapshotMeta(index=5, membership=pb.Membership(voters=[1, 2], learners=[2]))
                ),
            ),
            "membership",
        ),
        (
            _message(
                src=1,
                dst=2,
                term=1,
                install_snapshot=pb.InstallSnapshot(
                    meta=pb.SnapshotMeta(index=5, membership=pb.Membership(voters=[0]))
                ),
            ),
            "membership",
        ),
    ],
)
def test_invalid_messages_raise_decode_error(data, needle):
    with pytest.raises(DecodeError, match=needle):
        codec.decode_message(data)
    with pytest.raises(ValueError):  # DecodeError is a ValueError
        codec.decode_message(data)


def test_a_reason_that_is_not_utf8_is_refused():
    refused = bytes([0xD2, 0x01, 3, 0x12, 1, 0xFF])  # field 26 (proposal_refused) { field 2 (reason): b"\xff" }
    with pytest.raises(DecodeError):
        codec.decode_message(_message(src=1, dst=2) + refused)


def test_a_message_kind_from_a_newer_version_is_refused():
    unknown_field_99 = bytes([(99 << 3 | 2) & 0x7F | 0x80, (99 << 3 | 2) >> 7, 0])
    with pytest.raises(DecodeError, match="kind"):
        codec.decode_message(_message(src=1, dst=2) + unknown_field_99)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    try:
        messages = codec.decode_batch(data)
    except DecodeError:
        return
    assert all(type(m) in STRATEGIES for m in messages)


def test_one_bad_message_spoils_the_whole_batch():
    good = codec.encode_message(Heartbeat(src=1, dst=2, term=1))
    bad = _message(src=0, dst=2, heartbeat=pb.Heartbeat())
    with pytest.raises(DecodeError):
        codec.decode_batch(codec.frame_batch([good, bad]))


@pytest.mark.parametrize(
    "message",
    [
        Heartbeat(src=1, dst=2, term=-1),
        Heartbeat(src=1, dst=2, term=2**64),
        AppendEntries(src=1, dst=2, term=1, prev_index=5, prev_term=1, entries=(Entry(1, 9),)),
        SnapshotChunkAck(src=1, dst=2, term=1, index=-3, received=0),
    ],
)
def test_unencodable_messages_raise_encode_error(message):
    with pytest.raises(EncodeError):
        codec.encode_message(message)


def test_encode_refuses_what_is_not_a_wire_message():
    with pytest.raises(EncodeError, match="not a WireMessage"):
        codec.to_proto(Entry(1, 1))  # type: ignore[arg-type]


def test_commit_only_is_kept_on_empty_appends_and_dropped_from_appends_with_entries():
    empty = AppendEntries(src=1, dst=2, term=3, prev_index=7, prev_term=3, commit=7, commit_only=True)
    assert codec.decode_message(codec.encode_message(empty)) == empty
    # A peer that set the flag on an append with entries still gets the entries answered.
    body = pb.AppendEntries(
        prev_index=7, prev_term=3, commit=7, entry_terms=[3], entry_kinds=[0], entry_data=[b"x"], commit_only=True
    )
    decoded = codec.decode_message(_message(src=1, dst=2, term=3, append_entries=body))
    assert isinstance(decoded, AppendEntries) and decoded.entries and not decoded.commit_only
