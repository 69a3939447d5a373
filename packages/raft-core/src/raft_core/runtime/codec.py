"""A self-describing byte form of ``WireMessage``s for stream transports: ``kind`` name, newline, JSON body.

Decoding treats the bytes as untrusted: the kind must be known and pydantic validates every field (types
and bounds), so a malformed frame raises ``ValueError`` and never reaches the core. Bytes travel as base64.
This is the codec of the TCP transport; raft-grpc has its own protobuf codec.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from raft_core.messages import MESSAGE_TYPES
from raft_core.runtime.wire import ProposalRefused, SnapshotChunk, SnapshotChunkAck, WireMessage
from raft_core.validation import BOUNDARY_CONFIG, adapter

_RUNTIME_TYPES: tuple[type[Any], ...] = (SnapshotChunk, SnapshotChunkAck, ProposalRefused)
WIRE_TYPES: tuple[type[Any], ...] = (*MESSAGE_TYPES, *_RUNTIME_TYPES)
_BY_NAME = {kind.__name__.encode(): kind for kind in WIRE_TYPES}

_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {kind: adapter(kind) for kind in MESSAGE_TYPES}
for _kind in _RUNTIME_TYPES:
    # pydantic reads a stdlib dataclass's config from this attribute (bytes as base64 in JSON).
    _kind.__pydantic_config__ = BOUNDARY_CONFIG
    _ADAPTERS[_kind] = TypeAdapter(_kind)


def encode(message: WireMessage) -> bytes:
    """The bytes of ``message``."""
    kind = type(message)
    return kind.__name__.encode() + b"\n" + _ADAPTERS[kind].dump_json(message)


def decode(data: bytes) -> WireMessage:
    """Validate and build a message from ``encode``'s bytes; raises ``ValueError`` naming what is wrong."""
    name, sep, body = data.partition(b"\n")
    kind = _BY_NAME.get(name)
    if not sep or kind is None:
        raise ValueError(f"unknown message kind {name[:40]!r}")
    try:
        message: WireMessage = _ADAPTERS[kind].validate_json(body)
    except ValidationError as exc:
        raise ValueError(
            f"invalid {kind.__name__}: {exc.error_count()} field error(s): {exc.errors()[0]['msg']}"
        ) from None
    return message
