"""``KvStateMachine``: the replicated key-value store, its command encoding and its snapshot format.

Invariants this module owns: ``apply`` is deterministic (it reads only the command's bytes, never a clock or
a random source), so every node holds the same dict and revision after the same commands; the revision
counts the writes that changed the store; results are small JSON values (the session table keeps them for
retries), so a successful compare-and-set does not echo its value back.

Commands are compact binary (``encode_put`` / ``encode_delete`` / ``encode_cas``): one op byte, then the
key length (u16) and key, then op-specific fields; the value runs to the end of the command. A snapshot is
the revision (u64), the number of keys (u32) and per key, in sorted order, a u16 key length, a u32 value
length, the key and the value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from raft_core.runtime import Command

MAX_KEY_BYTES = 1024
"""Longest key accepted (keys must also be non-empty)."""
MAX_VALUE_BYTES = 1 << 20
"""Largest value accepted."""

_PUT, _DELETE, _CAS = b"P", b"D", b"C"
_CAS_EXPECT_ABSENT, _CAS_EXPECT_VALUE = 0, 1
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HEAD = struct.Struct("<QI")  # snapshot: revision, number of keys
_ITEM = struct.Struct("<HI")  # snapshot: key length, value length


class KvCommandError(ValueError):
    """A command is malformed or out of bounds (the message says which field and the limit)."""


def check_key(key: bytes) -> None:
    """Raise ``KvCommandError`` unless ``key`` is 1 to ``MAX_KEY_BYTES`` bytes."""
    if not key:
        raise KvCommandError("key must not be empty")
    if len(key) > MAX_KEY_BYTES:
        raise KvCommandError(f"key is {len(key)} bytes; the limit is {MAX_KEY_BYTES}")


def check_value(value: bytes, field: str = "value") -> None:
    """Raise ``KvCommandError`` if ``value`` is over ``MAX_VALUE_BYTES``."""
    if len(value) > MAX_VALUE_BYTES:
        raise KvCommandError(f"{field} is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}")


def encode_put(key: bytes, value: bytes) -> bytes:
    """The command that sets ``key`` to ``value``."""
    check_key(key)
    check_value(value)
    return b"".join((_PUT, _U16.pack(len(key)), key, value))


def encode_delete(key: bytes) -> bytes:
    """The command that removes ``key``."""
    check_key(key)
    return b"".join((_DELETE, _U16.pack(len(key)), key))


def encode_cas(key: bytes, expected: bytes | None, new_value: bytes) -> bytes:
    """The command that sets ``key`` to ``new_value`` if it holds ``expected`` (None: if it is absent)."""
    check_key(key)
    check_value(new_value, "new_value")
    if expected is None:
        condition = bytes((_CAS_EXPECT_ABSENT,))
    else:
        check_value(expected, "expected_value")
        condition = bytes((_CAS_EXPECT_VALUE,)) + _U32.pack(len(expected)) + expected
    return b"".join((_CAS, _U16.pack(len(key)), key, condition, new_value))


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded command: its op (``put``, ``delete``, ``cas``) and fields."""

    op: str
    key: bytes
    value: bytes = b""
    expected: bytes | None = None


def decode(data: bytes) -> Decoded:
    """Parse a command made by one of the ``encode_*`` functions; ``KvCommandError`` if malformed."""
    try:
        op = data[:1]
        (klen,) = _U16.unpack_from(data, 1)
        key, rest = data[3 : 3 + klen], data[3 + klen :]
        if len(key) != klen:
            raise KvCommandError("truncated key")
        check_key(key)
        if op == _PUT:
            check_value(rest)
            return Decoded("put", key, rest)
        if op == _DELETE:
            if rest:
                raise KvCommandError("trailing bytes after a delete")
            return Decoded("delete", key)
        if op == _CAS:
            return _decode_cas(key, rest)
    except struct.error as exc:
        raise KvCommandError(f"truncated command: {exc}") from None
    raise KvCommandError(f"unknown op {op!r}")


def _decode_cas(key: bytes, rest: bytes) -> Decoded:
    mode = rest[:1]
    if mode == bytes((_CAS_EXPECT_ABSENT,)):
        expected, new = None, rest[1:]
    elif mode == bytes((_CAS_EXPECT_VALUE,)):
        (elen,) = _U32.unpack_from(rest, 1)
        expected, new = rest[5 : 5 + elen], rest[5 + elen :]
        if len(expected) != elen:
            raise KvCommandError("truncated expected value")
    else:
        raise KvCommandError("bad compare-and-set condition")
    check_value(new, "new_value")
    return Decoded("cas", key, new, expected)


class KvStateMachine:
    """A dict of bytes to bytes with a revision counter, replicated by a raft-core ``Node``.

    Results of ``apply`` (what ``Node.propose`` returns): ``{"rev": n}`` for a put; ``{"existed": bool,
    "rev": n}`` for a delete; ``{"ok": bool, "value": bytes | None, "rev": n}`` for a compare-and-set,
    where ``value`` is the current value after a failed one and None after a successful one (the new value).
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.revision = 0

    def get(self, key: bytes) -> tuple[bytes | None, int]:
        """The value of ``key`` (None if absent) and the current revision."""
        return self.data.get(key), self.revision

    def apply(self, command: Command) -> object:
        """Apply one committed command (see the class for the results)."""
        cmd = decode(command.data)
        if cmd.op == "put":
            self.data[cmd.key] = cmd.value
            self.revision += 1
            return {"rev": self.revision}
        if cmd.op == "delete":
            existed = self.data.pop(cmd.key, None) is not None
            self.revision += existed
            return {"existed": existed, "rev": self.revision}
        current = self.data.get(cmd.key)
        if current != cmd.expected:
            return {"ok": False, "value": current, "rev": self.revision}
        self.data[cmd.key] = cmd.value
        self.revision += 1
        return {"ok": True, "value": None, "rev": self.revision}

    def snapshot(self) -> bytes:
        """The whole store: revision, key count, then every key and value in key order."""
        parts = [_HEAD.pack(self.revision, len(self.data))]
        for key in sorted(self.data):
            value = self.data[key]
            parts += (_ITEM.pack(len(key), len(value)), key, value)
        return b"".join(parts)

    def restore(self, data: bytes) -> None:
        """Replace the store with one ``snapshot`` produced."""
        revision, count = _HEAD.unpack_from(data)
        offset = _HEAD.size
        items: dict[bytes, bytes] = {}
        view = memoryview(data)
        for _ in range(count):
            klen, vlen = _ITEM.unpack_from(data, offset)
            offset += _ITEM.size
            key = bytes(view[offset : offset + klen])
            offset += klen
            items[key] = bytes(view[offset : offset + vlen])
            offset += vlen
        if offset != len(data):
            raise ValueError(f"snapshot has {len(data) - offset} trailing bytes")
        self.data, self.revision = items, revision
