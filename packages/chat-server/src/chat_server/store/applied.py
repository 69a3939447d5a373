"""Exactly-once: the ``applied_requests`` table of (actor, request_id) -> first result, and its JSON form.

A command with a request id is applied at most once: its result is stored, with the command's op and log
time, in the same transaction as its effects, and a retry gets the stored result back. Entries are pruned
when they are older than ``RETENTION_MS`` of log time, at most ``PRUNE_BATCH`` per command so that no apply
does unbounded work; which entries go depends only on the table and the log time, so every node prunes the
same ones. Refusals are never stored (they change nothing; a retry is refused again, or succeeds if the state
has changed since).

Results are stored as JSON: row dataclasses as objects tagged ``"$": <class name>``, bytes as
``{"$b": <base64>}``, the ``IntEnum`` kinds as their numbers; ``decode_result`` rebuilds the same values. A
send's result, ``{"event": <the event it appended>, "duplicate": False}``, is stored as a reference to that
``events`` row instead (``claim_event``, before the event is inserted: no second copy of the body, no JSON
work and no lookup on the hottest command); a retry gets the message as it is now (same seq, id and time;
edited or deleted since if it was).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
import typing
from enum import IntEnum
from typing import Final

from chat_server.store.queries import EVENT_COLUMNS, event_row
from chat_server.store.rows import ConversationRow, EventRow, SessionRow, UserRow

RETENTION_MS: Final = 24 * 3600 * 1000
"""How long (in log time) a request id is remembered."""
PRUNE_BATCH: Final = 100
"""At most this many expired entries are removed per command."""
EVENT_REF: Final = "#event:"
"""Prefix of a result stored as a reference to an ``events`` row (``record_event``); JSON never starts so."""
_EVENT_BY_ID = f"SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.id = ?"
_CLAIM = (
    "INSERT INTO applied_requests (actor, request_id, op, time_ms, result) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (actor, request_id) DO NOTHING"
)

_ROWS: dict[str, type] = {cls.__name__: cls for cls in (UserRow, SessionRow, EventRow, ConversationRow)}
_ENUM_FIELDS: dict[type, dict[str, type[IntEnum]]] = {
    cls: {
        name: hint
        for name, hint in typing.get_type_hints(cls).items()
        if isinstance(hint, type) and issubclass(hint, IntEnum)
    }
    for cls in _ROWS.values()
}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(field.name for field in dataclasses.fields(cls)) for cls in _ROWS.values()
}
_PLAIN: frozenset[type] = frozenset((str, int, float, bool, type(None)))


def to_json_value(value: object) -> object:
    """``value`` (rows, dicts with str keys, lists, tuples, bytes, scalars) as a JSON value."""
    kind = type(value)
    if kind in _PLAIN:  # the common case first: every result holds many of these
        return value
    names = _FIELD_NAMES.get(kind)
    if names is not None:
        out: dict[str, object] = {"$": kind.__name__}
        for name in names:
            out[name] = to_json_value(getattr(value, name))
        return out
    if isinstance(value, bool | int | float | str):
        return int(value) if isinstance(value, IntEnum) else value
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    raise TypeError(f"cannot keep a result of type {type(value).__name__}")


def from_json_value(value: object) -> object:
    """The value ``to_json_value`` made ``value`` of (tuples come back as lists)."""
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$b" in value:
        return base64.b64decode(value["$b"])
    if "$" in value:
        cls = _ROWS[value["$"]]
        enums = _ENUM_FIELDS[cls]
        kwargs = {}
        for name, raw in value.items():
            if name != "$":
                kwargs[name] = enums[name](raw) if name in enums else from_json_value(raw)
        return cls(**kwargs)
    return {k: from_json_value(v) for k, v in value.items()}


def encode_result(value: object) -> str:
    """``value`` as compact JSON text."""
    return json.dumps(to_json_value(value), separators=(",", ":"), ensure_ascii=False)


def decode_result(text: str) -> object:
    """The value ``encode_result`` turned into ``text``."""
    return from_json_value(json.loads(text))


class AppliedRequests:
    """The exactly-once table on one connection (used inside the state machine's transactions)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._oldest: int | None = None  # a lower bound of the oldest entry's time_ms (None: unknown)

    def forget_cache(self) -> None:
        """Forget what is cached about the table (after a rollback, which may have undone a prune)."""
        self._oldest = None

    def lookup(self, actor: str, request_id: str) -> tuple[str, object] | None:
        """``(op, result)`` of the command already applied under ``(actor, request_id)``, or None."""
        row = self._conn.execute(
            "SELECT op, result FROM applied_requests WHERE actor = ? AND request_id = ?", (actor, request_id)
        ).fetchone()
        if row is None:
            return None
        op, text = row
        if text.startswith(EVENT_REF):
            event = self._conn.execute(_EVENT_BY_ID, (int(text[len(EVENT_REF) :]),)).fetchone()
            return op, {"event": event_row(event), "duplicate": False}
        return op, decode_result(text)

    def record(self, actor: str, request_id: str, op: str, time_ms: int, result: object) -> None:
        """Remember that ``op`` was applied under ``(actor, request_id)`` at log time ``time_ms`` with ``result``."""
        self._insert(actor, request_id, op, time_ms, encode_result(result))

    def claim_event(self, actor: str, request_id: str, op: str, time_ms: int, event_id: int) -> bool:
        """Record ``{"event": <events row event_id>, "duplicate": False}`` by reference, if the key is free.

        Returns whether ``(actor, request_id)`` was free; if not, nothing is written and ``lookup`` has the first
        result. The caller inserts that event in the same transaction (or takes the claim back: ``unclaim``).
        """
        cur = self._conn.execute(_CLAIM, (actor, request_id, op, time_ms, f"{EVENT_REF}{event_id}"))
        if cur.rowcount == 0:
            return False
        self._inserted(time_ms)
        return True

    def unclaim(self, actor: str, request_id: str) -> None:
        """Undo a ``claim_event`` of this transaction (its command failed)."""
        self._conn.execute("DELETE FROM applied_requests WHERE actor = ? AND request_id = ?", (actor, request_id))

    def _insert(self, actor: str, request_id: str, op: str, time_ms: int, text: str) -> None:
        self._conn.execute(
            "INSERT INTO applied_requests (actor, request_id, op, time_ms, result) VALUES (?, ?, ?, ?, ?)",
            (actor, request_id, op, time_ms, text),
        )
        self._inserted(time_ms)

    def _inserted(self, time_ms: int) -> None:
        if self._oldest is not None and time_ms < self._oldest:
            self._oldest = time_ms

    def prune(self, now_ms: int) -> int:
        """Forget up to ``PRUNE_BATCH`` of the oldest entries older than ``RETENTION_MS``; how many went.

        The oldest entry's time is cached (a lower bound), so that the common case, nothing to prune, costs no
        statement; the outcome is the same as always asking the table.
        """
        cutoff = now_ms - RETENTION_MS
        if self._oldest is not None and self._oldest >= cutoff:
            return 0
        cur = self._conn.execute(
            "DELETE FROM applied_requests WHERE (actor, request_id) IN ("
            " SELECT actor, request_id FROM applied_requests WHERE time_ms < ?"
            " ORDER BY time_ms, actor, request_id LIMIT ?)",
            (cutoff, PRUNE_BATCH),
        )
        (oldest,) = self._conn.execute("SELECT min(time_ms) FROM applied_requests").fetchone()
        self._oldest = oldest  # None for an empty table: asked again next time
        return cur.rowcount
