"""The envelope the runtime wraps around each command before proposing it, and its binary codec.

An envelope carries what applying needs to be deterministic and what the proposer needs to find its answer:
the proposing node and its request number (to resolve the waiting ``propose`` call), the log time (the
proposer's clock in ms, read before proposing), and optionally a client session for exactly-once retries.

Layout (little-endian): version u8, flags u8, origin u32, request u64, time i64; then, if a flag is set,
with ``SESSION`` client id length u8, client id (UTF-8), sequence u64 and floor u64 (the lowest sequence
number whose answer the client still waits for); then the command. ``REGISTER`` opens a session whose id
will be the entry's log index; it carries the session's time to live (ms, u64) and the most sessions the
cluster keeps (u32), so that every node expires and evicts sessions by values the log holds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from raft_core.errors import RaftError

VERSION = 1
SESSION = 1
REGISTER = 2
_HEAD = struct.Struct("<BBIQq")
_SEQ = struct.Struct("<QQ")
_REGISTER = struct.Struct("<QI")
MAX_CLIENT_ID_BYTES = 255


class EnvelopeError(RaftError):
    """An entry's data is not an envelope this runtime understands."""


@dataclass(slots=True, frozen=True)
class Envelope:
    """A decoded envelope. ``client`` is empty and ``seq`` 0 for a command sent without a session."""

    origin: int
    request: int
    time: int
    command: bytes
    client: str = ""
    seq: int = 0
    floor: int = 0
    register: bool = False
    ttl_ms: int = 0
    max_sessions: int = 0


def encode(
    origin: int, request: int, time: int, command: bytes, client: str = "", seq: int = 0, floor: int = 0
) -> bytes:
    """The entry data for ``command``; ``client``, ``seq`` (>= 1) and ``floor`` (<= ``seq``) name a session."""
    if not client:
        return _HEAD.pack(VERSION, 0, origin, request, time) + command
    if not 1 <= floor <= seq:
        raise ValueError(f"need 1 <= floor <= seq (sequence numbers start at 1), got seq={seq}, floor={floor}")
    head = _HEAD.pack(VERSION, SESSION, origin, request, time)
    return b"".join((head, _client(client), _SEQ.pack(seq, floor), command))


def encode_register(origin: int, request: int, time: int, ttl_ms: int, max_sessions: int) -> bytes:
    """The entry data that opens a session living ``ttl_ms`` of log time, in a table of ``max_sessions``."""
    return _HEAD.pack(VERSION, REGISTER, origin, request, time) + _REGISTER.pack(ttl_ms, max_sessions)


def _client(client: str) -> bytes:
    raw = client.encode()
    if not raw or len(raw) > MAX_CLIENT_ID_BYTES:
        raise ValueError(f"a client id is 1 to {MAX_CLIENT_ID_BYTES} bytes of UTF-8, got {len(raw)}")
    return bytes((len(raw),)) + raw


def decode(data: bytes) -> Envelope:
    """Read an envelope; raises ``EnvelopeError`` for data that is not one."""
    if len(data) < _HEAD.size:
        raise EnvelopeError(f"entry data of {len(data)} bytes is shorter than an envelope header")
    version, flags, origin, request, time = _HEAD.unpack_from(data)
    if version != VERSION:
        raise EnvelopeError(f"envelope version {version} is not supported (this runtime reads {VERSION})")
    at = _HEAD.size
    if not flags:
        return Envelope(origin, request, time, data[at:])
    try:
        if flags == REGISTER:
            ttl_ms, max_sessions = _REGISTER.unpack_from(data, at)
            return Envelope(origin, request, time, b"", register=True, ttl_ms=ttl_ms, max_sessions=max_sessions)
        if flags != SESSION:
            raise EnvelopeError(f"unknown envelope flags {flags:#x}")
        n = data[at]
        if len(data) < at + 1 + n:
            raise EnvelopeError(f"entry data of {len(data)} bytes ends inside the client id")
        client = data[at + 1 : at + 1 + n].decode()
        at += 1 + n
        seq, floor = _SEQ.unpack_from(data, at)
        if not 1 <= floor <= seq:
            raise EnvelopeError(f"a session command needs 1 <= floor <= seq, got seq={seq}, floor={floor}")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"the session part of the envelope is truncated or invalid: {exc}") from None
    return Envelope(origin, request, time, data[at + _SEQ.size :], client, seq, floor)
