"""Exactly-once client sessions (Raft dissertation §6.3): the replicated table of clients' answers.

A client opens a session (a ``REGISTER`` command; the session's id is that entry's log index, so an id is
never reused), then numbers its commands 1, 2, 3, ... and says with each one the lowest number whose answer
it still waits for (its *floor*). The table keeps, per session, the
results of the numbers at or above the floor, so a retried command (same client, same number) is not applied
again and gets the original result, on any node, after leader changes, snapshots and restarts: the table is
part of the replicated state and of every snapshot. Several commands of one client may be in flight at once.

Invariants this module owns: it changes only while a command is applied, and only from what the log holds
(the log time written by proposers, never a local clock; each session's time to live and the table's size
limit come from the REGISTER entries, never from a node's options), so every node holds the same table. A
session unused for its time to live expires, and at most ``max_sessions`` (as of the latest REGISTER) are
kept, the idlest going first. A command for an unknown session is refused (``EXPIRED``): it may have been
applied before the session expired, and applying it again could apply it twice.
"""

from __future__ import annotations

import base64
import enum
import heapq
import json
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.Enum):
    """What to do with a command that carries a session."""

    APPLY = "apply"
    """A new sequence number: apply the command and record its result."""
    DUPLICATE = "duplicate"
    """Already applied: answer with the recorded result, apply nothing."""
    STALE = "stale"
    """Below the client's floor (it said it had the answer, so it was dropped): refuse, apply nothing."""
    EXPIRED = "expired"
    """No such session (never opened, expired or evicted): refuse, apply nothing."""


@dataclass(slots=True)
class _Session:
    last_active: int
    ttl_ms: int
    floor: int = 1
    results: dict[int, Any] = field(default_factory=dict)


class SessionTable:
    """Per client: the results it may still ask for again, its floor, and when it was last used."""

    def __init__(self, *, max_results: int = 1024) -> None:
        """An empty table.

        ``max_results`` bounds the answers kept per session: past it the lowest numbers are dropped and the
        floor raised, so a retry of one of them gets ``STALE`` rather than a second application.
        """
        self.max_results = max_results
        self.max_sessions = 0
        self.log_time = 0
        # Ordered from least to most recently used: eviction takes from the front.
        self._sessions: dict[str, _Session] = {}
        # (expiry time, client) for every touch; an entry is stale once the session was touched again.
        self._deadlines: list[tuple[int, str]] = []

    def __len__(self) -> int:
        """The number of live sessions."""
        return len(self._sessions)

    def __contains__(self, client: object) -> bool:
        """Whether ``client`` has a live session."""
        return client in self._sessions

    def advance(self, time: int) -> None:
        """Move log time forward to ``time`` (never back) and expire sessions idle for longer than their TTL."""
        if time <= self.log_time:
            return
        self.log_time = time
        deadlines, sessions = self._deadlines, self._sessions
        while deadlines and deadlines[0][0] < time:
            deadline, client = heapq.heappop(deadlines)
            session = sessions.get(client)
            if session is not None and session.last_active + session.ttl_ms == deadline:
                del sessions[client]

    def register(self, client: str, *, ttl_ms: int, max_sessions: int) -> None:
        """Open the session ``client`` (a fresh id) living ``ttl_ms``; keep at most ``max_sessions``."""
        session = self._sessions[client] = _Session(self.log_time, ttl_ms)
        self._schedule(client, session)
        self.max_sessions = max_sessions
        sessions = self._sessions
        while len(sessions) > max_sessions:
            del sessions[next(iter(sessions))]

    def _schedule(self, client: str, session: _Session) -> None:
        deadlines = self._deadlines
        heapq.heappush(deadlines, (session.last_active + session.ttl_ms, client))
        if len(deadlines) > 2 * len(self._sessions) + 64:  # drop the stale entries now and then
            self._deadlines = [(s.last_active + s.ttl_ms, c) for c, s in self._sessions.items()]
            heapq.heapify(self._deadlines)

    def check(self, client: str, seq: int) -> tuple[Verdict, Any]:
        """The verdict for ``client``'s command ``seq``, with the recorded result when it is a duplicate."""
        session = self._sessions.get(client)
        if session is None:
            return Verdict.EXPIRED, None
        if seq in session.results:
            return Verdict.DUPLICATE, session.results[seq]
        if seq < session.floor:
            return Verdict.STALE, None
        return Verdict.APPLY, None

    def touch(self, client: str) -> None:
        """``client`` used its session (a retry answered from the table): it is now the most recently used."""
        session = self._sessions.pop(client)
        session.last_active = self.log_time
        self._sessions[client] = session
        self._schedule(client, session)

    def record(self, client: str, seq: int, floor: int, result: Any) -> None:
        """Remember ``result`` (a JSON value) as the answer to ``client``'s ``seq``; drop answers below ``floor``."""
        self.touch(client)
        session = self._sessions[client]
        results = session.results
        if floor > session.floor:
            session.floor = floor
            for old in [n for n in results if n < floor]:
                del results[old]
        results[seq] = result
        while len(results) > self.max_results:
            lowest = min(results)
            del results[lowest]
            session.floor = max(session.floor, lowest + 1)

    # -- snapshots ------------------------------------------------------------------------------------------

    def to_json(self) -> bytes:
        """The table as JSON, in its order (snapshots carry it)."""
        rows = [
            [client, s.last_active, s.ttl_ms, s.floor, [[n, r] for n, r in s.results.items()]]
            for client, s in self._sessions.items()
        ]
        doc = {"log_time": self.log_time, "max_sessions": self.max_sessions, "sessions": rows}
        return json.dumps(doc, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        """Replace the table with one ``to_json`` produced."""
        doc = json.loads(data)
        self.log_time = int(doc["log_time"])
        self.max_sessions = int(doc["max_sessions"])
        self._sessions = {
            str(client): _Session(int(active), int(ttl), int(floor), {int(n): r for n, r in results})
            for client, active, ttl, floor, results in doc["sessions"]
        }
        self._deadlines = [(s.last_active + s.ttl_ms, c) for c, s in self._sessions.items()]
        heapq.heapify(self._deadlines)


def encode_result(value: object) -> Any:
    """``value`` as a JSON-ready value (bytes become ``{"$bytes": base64}``); raises TypeError otherwise."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, list | tuple):
        return [encode_result(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("session results may only hold dicts with str keys")
        return {k: encode_result(v) for k, v in value.items()}
    raise TypeError(f"a result of type {type(value).__name__} cannot be kept for retries; return a JSON value")


def decode_result(value: Any) -> object:
    """The inverse of ``encode_result`` (tuples come back as lists)."""
    if isinstance(value, list):
        return [decode_result(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {k: decode_result(v) for k, v in value.items()}
    return value
