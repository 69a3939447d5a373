"""Conversion between raft-core's ``WireMessage``s and the ``raft.v1`` protobuf messages.

This is the only module that knows both raft-core types and protobuf types. Encoding trusts raft-core values
(they come from this node's core) but still refuses numbers that do not fit their fields. Decoding treats its
input as untrusted: node ids must be positive, terms positive where raft-core relies on them (it skips its term checks
for term 0, which only client requests may carry), entry kinds known, entry columns of equal length,
memberships well formed and snapshot chunks inside their snapshot; anything else raises ``DecodeError`` (a
``ValueError``) naming the problem, and nothing half-built escapes. Protobuf's ``uint64`` already rules out
negative terms, indexes and ids.

Speed: messages are upb (C) objects, filled and read field by field with no generic Python machinery in
between. ``AppendEntries`` carries its entries as columns (terms, kinds, payloads; indexes implied), so an
append batch is encoded and parsed in C and the only per-entry Python work is building raft-core's
``Entry``. A ``Batch`` is framed from already-serialized messages (``frame_batch``) without copying them into
protobuf objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

from google.protobuf.message import DecodeError as ProtobufDecodeError

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
from raft_core.runtime.wire import ProposalRefused, SnapshotChunk, SnapshotChunkAck, WireMessage
from raft_core.types import Entry, EntryKind, Membership, Snapshot, SnapshotMeta
from raft_grpc._gen.raft.v1 import raft_pb2 as pb
from raft_grpc.errors import DecodeError, EncodeError

__all__ = [
    "batch_message",
    "decode_batch",
    "decode_message",
    "encode_batch",
    "encode_message",
    "frame_batch",
    "from_proto",
    "to_proto",
]

_KINDS: tuple[EntryKind, ...] = tuple(sorted(EntryKind))
_TERM, _KIND, _DATA = attrgetter("term"), attrgetter("kind"), attrgetter("data")
_TAG_MESSAGES = bytes([(1 << 3) | 2])  # Batch.messages: field 1, wire type 2 (length-delimited)

# -- encoding -------------------------------------------------------------------------------------------------


def _meta_to(out: pb.SnapshotMeta, meta: SnapshotMeta) -> None:
    out.index = meta.index
    out.term = meta.term
    out.membership.voters.extend(sorted(meta.membership.voters))
    out.membership.learners.extend(sorted(meta.membership.learners))


def _request_vote_to(out: pb.Message, m: RequestVote) -> None:
    body = out.request_vote
    body.last_index = m.last_index
    body.last_term = m.last_term
    body.transfer = m.transfer
    body.SetInParent()


def _request_pre_vote_to(out: pb.Message, m: RequestPreVote) -> None:
    body = out.request_pre_vote
    body.last_index = m.last_index
    body.last_term = m.last_term
    body.SetInParent()


def _append_entries_to(out: pb.Message, m: AppendEntries) -> None:
    body = out.append_entries
    body.prev_index = m.prev_index
    body.prev_term = m.prev_term
    body.commit = m.commit
    if m.commit_only:
        body.commit_only = True
    entries = m.entries
    if entries:
        body.entry_terms.extend(map(_TERM, entries))
        body.entry_kinds.extend(map(_KIND, entries))
        body.entry_data.extend(map(_DATA, entries))
        if entries[0].index != m.prev_index + 1 or entries[-1].index != m.prev_index + len(entries):
            raise ValueError(f"entries do not follow prev_index {m.prev_index} contiguously")
    body.SetInParent()


def _append_entries_response_to(out: pb.Message, m: AppendEntriesResponse) -> None:
    body = out.append_entries_response
    body.index = m.index
    body.reject = m.reject
    body.reject_hint = m.reject_hint
    body.log_term = m.log_term
    body.SetInParent()


def _heartbeat_to(out: pb.Message, m: Heartbeat) -> None:
    body = out.heartbeat
    body.commit = m.commit
    body.read_round = m.read_round
    body.SetInParent()


def _install_snapshot_to(out: pb.Message, m: InstallSnapshot) -> None:
    body = out.install_snapshot
    _meta_to(body.meta, m.snapshot.meta)
    body.data = m.snapshot.data


def _propose_to(out: pb.Message, m: Propose) -> None:
    body = out.propose
    body.data.extend(m.data)
    body.SetInParent()


def _read_index_response_to(out: pb.Message, m: ReadIndexResponse) -> None:
    body = out.read_index_response
    body.index = m.index
    body.context = m.context
    body.SetInParent()


def _snapshot_chunk_to(out: pb.Message, m: SnapshotChunk) -> None:
    body = out.snapshot_chunk
    _meta_to(body.meta, m.meta)
    body.size = m.size
    body.checksum = m.checksum
    body.offset = m.offset
    body.data = m.data
    body.done = m.done


def _snapshot_chunk_ack_to(out: pb.Message, m: SnapshotChunkAck) -> None:
    body = out.snapshot_chunk_ack
    body.index = m.index
    body.received = m.received
    body.ok = m.ok
    body.SetInParent()


def _proposal_refused_to(out: pb.Message, m: ProposalRefused) -> None:
    body = out.proposal_refused
    body.requests.extend(m.requests)
    body.reason = m.reason
    body.overloaded = m.overloaded
    body.SetInParent()


def _one(field: str, name: str) -> Callable[[pb.Message, Any], None]:
    """An encoder for a kind whose body has the single field ``name`` (``field`` is the oneof member)."""

    def encode(out: pb.Message, m: Any) -> None:
        body = getattr(out, field)
        setattr(body, name, getattr(m, name))
        body.SetInParent()

    return encode


_ENCODERS: dict[type[Any], Callable[[pb.Message, Any], None]] = {
    RequestVote: _request_vote_to,
    RequestVoteResponse: _one("request_vote_response", "reject"),
    RequestPreVote: _request_pre_vote_to,
    RequestPreVoteResponse: _one("request_pre_vote_response", "reject"),
    AppendEntries: _append_entries_to,
    AppendEntriesResponse: _append_entries_response_to,
    Heartbeat: _heartbeat_to,
    HeartbeatResponse: _one("heartbeat_response", "read_round"),
    InstallSnapshot: _install_snapshot_to,
    TimeoutNow: lambda out, m: out.timeout_now.SetInParent(),
    Propose: _propose_to,
    ReadIndex: _one("read_index", "context"),
    ReadIndexResponse: _read_index_response_to,
    TransferLeader: _one("transfer_leader", "target"),
    SnapshotChunk: _snapshot_chunk_to,
    SnapshotChunkAck: _snapshot_chunk_ack_to,
    ProposalRefused: _proposal_refused_to,
}


def to_proto(message: WireMessage) -> pb.Message:
    """The ``raft.v1.Message`` of ``message``.

    Args:
        message: Any raft-core ``WireMessage``.

    Returns:
        A new protobuf message.

    Raises:
        EncodeError: A number does not fit its field (negative or too large), entries are not contiguous
            after ``prev_index``, or ``message`` is not a ``WireMessage``.
    """
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise EncodeError(f"not a WireMessage: {type(message).__name__}")
    try:
        out = pb.Message(src=message.src, dst=message.dst, term=message.term)
        encoder(out, message)
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"cannot encode {type(message).__name__}: {exc}") from None
    return out


def encode_message(message: WireMessage) -> bytes:
    """The serialized ``raft.v1.Message`` of ``message`` (raises ``EncodeError`` as ``to_proto`` does)."""
    return to_proto(message).SerializeToString()


def frame_batch(encoded: Iterable[bytes]) -> bytes:
    """A serialized ``raft.v1.Batch`` of already-serialized ``raft.v1.Message``s, in order.

    ``Batch.messages`` is field 1 (length-delimited), so each message is its tag byte, its length as a
    varint, then its bytes: the batch is built without parsing or copying the messages.
    """
    parts: list[bytes] = []
    for data in encoded:
        parts.append(_TAG_MESSAGES + _varint(len(data)))
        parts.append(data)
    return b"".join(parts)


def framed_size(encoded_size: int) -> int:
    """The bytes one serialized message of ``encoded_size`` bytes takes inside a framed ``Batch``."""
    return 1 + len(_varint(encoded_size)) + encoded_size


def encode_batch(messages: Iterable[WireMessage]) -> bytes:
    """A serialized ``raft.v1.Batch`` of ``messages`` (raises ``EncodeError`` as ``to_proto`` does)."""
    return frame_batch(map(encode_message, messages))


def batch_message(messages: Sequence[WireMessage]) -> pb.Batch:
    """A ``raft.v1.Batch`` object of ``messages`` (for tests and tools; the transport frames bytes instead)."""
    return pb.Batch(messages=[to_proto(m) for m in messages])


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# -- decoding -------------------------------------------------------------------------------------------------

_Header = tuple[int, int, int]  # src, dst, term


def _meta_from(body: pb.SnapshotMeta) -> SnapshotMeta:
    members = body.membership
    try:
        membership = Membership(voters=frozenset(members.voters), learners=frozenset(members.learners))
    except ValueError as exc:
        raise DecodeError(f"invalid membership: {exc}") from None
    return SnapshotMeta(index=body.index, term=body.term, membership=membership)


def _append_entries(h: _Header, body: pb.AppendEntries) -> AppendEntries:
    # Columns become lists first: map() over lists is much faster than over upb containers.
    terms, kinds, data = list(body.entry_terms), list(body.entry_kinds), list(body.entry_data)
    n = len(terms)
    if len(kinds) != n or len(data) != n:
        raise DecodeError(f"entry columns differ in length ({n} terms, {len(kinds)} kinds, {len(data)} payloads)")
    entries: tuple[Entry, ...] = ()
    if n:
        if not any(kinds):
            entry_kinds: Iterable[EntryKind] = repeat(EntryKind.NORMAL)  # the common case: commands only
        elif max(kinds) < len(_KINDS):
            entry_kinds = map(_KINDS.__getitem__, kinds)
        else:
            raise DecodeError(f"unknown entry kind {max(kinds)}")
        first = body.prev_index + 1
        entries = tuple(map(Entry, terms, range(first, first + n), entry_kinds, data))
    return AppendEntries(
        src=h[0],
        dst=h[1],
        term=h[2],
        prev_index=body.prev_index,
        prev_term=body.prev_term,
        entries=entries,
        commit=body.commit,
        commit_only=body.commit_only and not n,  # only an empty append may skip its answer
    )


def _install_snapshot(h: _Header, body: pb.InstallSnapshot) -> InstallSnapshot:
    if not body.HasField("meta") or body.meta.index == 0:
        raise DecodeError("InstallSnapshot has no snapshot meta")
    snapshot = Snapshot(meta=_meta_from(body.meta), data=body.data)
    return InstallSnapshot(src=h[0], dst=h[1], term=h[2], snapshot=snapshot)


def _snapshot_chunk(h: _Header, body: pb.SnapshotChunk) -> SnapshotChunk:
    if not body.HasField("meta") or body.meta.index == 0:
        raise DecodeError("SnapshotChunk has no snapshot meta")
    if body.offset + len(body.data) > body.size:
        raise DecodeError(f"chunk [{body.offset}, +{len(body.data)}) lies outside a {body.size}-byte snapshot")
    return SnapshotChunk(
        src=h[0],
        dst=h[1],
        term=h[2],
        meta=_meta_from(body.meta),
        size=body.size,
        checksum=body.checksum,
        offset=body.offset,
        data=body.data,
        done=body.done,
    )


def _request_vote(h: _Header, b: pb.RequestVote) -> RequestVote:
    return RequestVote(
        src=h[0], dst=h[1], term=h[2], last_index=b.last_index, last_term=b.last_term, transfer=b.transfer
    )


def _request_pre_vote(h: _Header, b: pb.RequestPreVote) -> RequestPreVote:
    return RequestPreVote(src=h[0], dst=h[1], term=h[2], last_index=b.last_index, last_term=b.last_term)


def _append_entries_response(h: _Header, b: pb.AppendEntriesResponse) -> AppendEntriesResponse:
    return AppendEntriesResponse(
        src=h[0], dst=h[1], term=h[2], index=b.index, reject=b.reject, reject_hint=b.reject_hint, log_term=b.log_term
    )


def _heartbeat(h: _Header, b: pb.Heartbeat) -> Heartbeat:
    return Heartbeat(src=h[0], dst=h[1], term=h[2], commit=b.commit, read_round=b.read_round)


def _read_index_response(h: _Header, b: pb.ReadIndexResponse) -> ReadIndexResponse:
    return ReadIndexResponse(src=h[0], dst=h[1], term=h[2], index=b.index, context=b.context)


def _snapshot_chunk_ack(h: _Header, b: pb.SnapshotChunkAck) -> SnapshotChunkAck:
    return SnapshotChunkAck(src=h[0], dst=h[1], term=h[2], index=b.index, received=b.received, ok=b.ok)


def _proposal_refused(h: _Header, b: pb.ProposalRefused) -> ProposalRefused:
    return ProposalRefused(
        src=h[0], dst=h[1], term=h[2], requests=tuple(b.requests), reason=b.reason, overloaded=b.overloaded
    )


_DECODERS: dict[str, Callable[[_Header, Any], WireMessage]] = {
    "request_vote": _request_vote,
    "request_vote_response": lambda h, b: RequestVoteResponse(src=h[0], dst=h[1], term=h[2], reject=b.reject),
    "request_pre_vote": _request_pre_vote,
    "request_pre_vote_response": lambda h, b: RequestPreVoteResponse(src=h[0], dst=h[1], term=h[2], reject=b.reject),
    "append_entries": _append_entries,
    "append_entries_response": _append_entries_response,
    "heartbeat": _heartbeat,
    "heartbeat_response": lambda h, b: HeartbeatResponse(src=h[0], dst=h[1], term=h[2], read_round=b.read_round),
    "install_snapshot": _install_snapshot,
    "timeout_now": lambda h, b: TimeoutNow(src=h[0], dst=h[1], term=h[2]),
    "propose": lambda h, b: Propose(src=h[0], dst=h[1], term=h[2], data=tuple(b.data)),
    "read_index": lambda h, b: ReadIndex(src=h[0], dst=h[1], term=h[2], context=b.context),
    "read_index_response": _read_index_response,
    "transfer_leader": lambda h, b: TransferLeader(src=h[0], dst=h[1], term=h[2], target=b.target),
    "snapshot_chunk": _snapshot_chunk,
    "snapshot_chunk_ack": _snapshot_chunk_ack,
    "proposal_refused": _proposal_refused,
}


_IN_A_TERM = frozenset(
    {
        "request_vote",
        "request_vote_response",
        "request_pre_vote",
        "append_entries",
        "append_entries_response",
        "heartbeat",
        "heartbeat_response",
        "install_snapshot",
        "timeout_now",
        "read_index_response",
        "snapshot_chunk",
    }
)
"""Kinds a node only ever sends from within a term (>= 1). raft-core skips its term checks for term 0, which
only client kinds (``Propose``, ``ReadIndex``, ``TransferLeader``) may carry; pre-vote rejections and chunk
acknowledgements may legitimately come from a node still at term 0."""


def from_proto(message: pb.Message) -> WireMessage:
    """Validate a ``raft.v1.Message`` and build the raft-core ``WireMessage`` it carries.

    Args:
        message: A parsed protobuf message from an untrusted peer.

    Returns:
        A new raft-core message.

    Raises:
        DecodeError: The message has no kind (or one this node does not know), a node id is 0, a kind sent
            only within a term has term 0, or a field is invalid.
    """
    kind = message.WhichOneof("kind")
    if kind is None:
        raise DecodeError("message has no kind (or a kind this node does not know)")
    src, dst, term = message.src, message.dst, message.term
    if src == 0 or dst == 0:
        raise DecodeError(f"node ids must be positive (src {src}, dst {dst})")
    if term == 0 and kind in _IN_A_TERM:
        raise DecodeError(f"a {kind} must carry its sender's term (at least 1)")
    return _DECODERS[kind]((src, dst, term), getattr(message, kind))


def decode_message(data: bytes) -> WireMessage:
    """Parse and validate one serialized ``raft.v1.Message``; raises ``DecodeError`` on bad bytes."""
    return from_proto(_parse(pb.Message, data))


def decode_batch(data: bytes) -> list[WireMessage]:
    """Parse and validate a serialized ``raft.v1.Batch``: all of its messages, or ``DecodeError``.

    Args:
        data: The bytes of one stream message from a peer.

    Returns:
        The batch's messages, in order.

    Raises:
        DecodeError: The bytes are not a ``Batch``, or any message in it is invalid (then none is returned).
    """
    return list(map(from_proto, _parse(pb.Batch, data).messages))


def _parse(kind: type[Any], data: bytes) -> Any:
    try:
        return kind.FromString(data)
    except (ProtobufDecodeError, ValueError, TypeError) as exc:
        raise DecodeError(f"not a raft.v1.{kind.__name__}: {exc}") from None
