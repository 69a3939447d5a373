"""Validation at the boundaries: pydantic checks raft-core values that arrive as untrusted data.

The core builds its values (entries, states, messages) as plain slotted dataclasses on the hot path and
trusts them. Values that come from outside (a file, a socket, a test script) pass through here first:
types and bounds are checked (terms, indexes and ids are non-negative integers, payloads are bytes) and a
``pydantic.ValidationError`` names every field that is wrong. JSON forms carry bytes as base64.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from pydantic import ConfigDict, TypeAdapter

from raft_core.messages import MESSAGE_TYPES, Message
from raft_core.types import Entry, HardState, Membership, Snapshot, SnapshotMeta

T = TypeVar("T")

BOUNDARY_CONFIG = ConfigDict(
    strict=False, revalidate_instances="always", ser_json_bytes="base64", val_json_bytes="base64"
)
"""The pydantic config of every boundary type (bytes as base64 in JSON); drivers reuse it for their own types."""

VALUE_TYPES: tuple[type[Any], ...] = (Entry, HardState, Membership, SnapshotMeta, Snapshot, *MESSAGE_TYPES)
"""Every raft-core value type that may cross a boundary."""

_BY_NAME: dict[str, type[Any]] = {kind.__name__: kind for kind in VALUE_TYPES}

for _kind in VALUE_TYPES:
    # pydantic reads a stdlib dataclass's config from this class attribute (bytes as base64 in JSON).
    _kind.__pydantic_config__ = BOUNDARY_CONFIG

_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def adapter(kind: type[T]) -> TypeAdapter[T]:
    """The (cached) pydantic adapter for one raft-core value type."""
    found = _ADAPTERS.get(kind)
    if found is None:
        if kind not in VALUE_TYPES:
            raise TypeError(f"{kind!r} is not a raft-core value type")
        found = _ADAPTERS[kind] = TypeAdapter(kind)
    return cast("TypeAdapter[T]", found)


def validate(kind: type[T], data: object) -> T:
    """Build a ``kind`` from untrusted Python data (a dict, or an instance to re-check)."""
    return adapter(kind).validate_python(data)


def validate_json(kind: type[T], data: str | bytes) -> T:
    """Build a ``kind`` from untrusted JSON."""
    return adapter(kind).validate_json(data)


def to_json(value: Any) -> bytes:
    """The JSON form of a raft-core value (bytes fields as base64)."""
    return adapter(type(value)).dump_json(value)


def message_to_json(message: Message) -> bytes:
    """A message as JSON tagged with its kind: ``{"kind": "AppendEntries", "body": {...}}``."""
    body = adapter(type(message)).dump_json(message)
    return b'{"kind":"' + type(message).__name__.encode() + b'","body":' + body + b"}"


def message_from_json(data: str | bytes) -> Message:
    """Parse and validate a message written by ``message_to_json``; unknown kinds are rejected."""
    import json

    raw = json.loads(data)
    if not isinstance(raw, dict) or set(raw) != {"kind", "body"}:
        raise ValueError('a message must be a JSON object {"kind": ..., "body": {...}}')
    kind = _BY_NAME.get(raw["kind"]) if isinstance(raw["kind"], str) else None
    if kind is None or kind not in MESSAGE_TYPES:
        raise ValueError(f"unknown message kind {raw['kind']!r}")
    message: Message = adapter(kind).validate_json(json.dumps(raw["body"]))
    return message
