"""``Applier``: applies committed entries to the user's state machine through envelopes and client sessions.

It owns the replicated state the runtime adds around the user's: the session table and the log time. Its
snapshots hold both (``snapshot_data``: a u32 length, the session table as JSON, then the state machine's
own bytes). Everything here is deterministic: it reads only the entries it is given.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from raft_core.errors import CommandFailed, RaftError, ResultNotKept, SessionError
from raft_core.runtime.envelope import EnvelopeError, decode
from raft_core.runtime.sessions import SessionTable, Verdict, decode_result, encode_result
from raft_core.runtime.state_machine import BatchingStateMachine, Command, StateMachine
from raft_core.types import Entry, EntryKind

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")


@dataclass(slots=True, frozen=True)
class Outcome:
    """What applying one command gave: its result or error, for the ``request`` of node ``origin``."""

    origin: int
    request: int
    value: object = None
    error: RaftError | None = None


class Applier:
    """The state machine plus the runtime's replicated additions (sessions and log time)."""

    def __init__(self, state_machine: StateMachine, sessions: SessionTable) -> None:
        """Apply to ``state_machine``, deduplicating through ``sessions``."""
        self.state_machine = state_machine
        self.sessions = sessions
        self.bytes_since_snapshot = 0
        self._batching = state_machine if isinstance(state_machine, BatchingStateMachine) else None

    def begin_batch(self) -> None:
        """A run of ``apply`` calls starts (passed on to a ``BatchingStateMachine``)."""
        if self._batching is not None:
            self._batching.begin_batch()

    def end_batch(self) -> None:
        """The run of ``apply`` calls is over (passed on to a ``BatchingStateMachine``; its errors propagate)."""
        if self._batching is not None:
            self._batching.end_batch()

    def apply(self, entry: Entry) -> Outcome | None:
        """Apply one committed entry; None for entries the core made itself (no-ops)."""
        if entry.kind is not EntryKind.NORMAL:
            return None
        self.bytes_since_snapshot += len(entry.data)
        try:
            env = decode(entry.data)
        except EnvelopeError as exc:
            # Deterministic on every node: the same bytes fail the same way. Nobody waits for it.
            log.error("entry %d is not a runtime command and is skipped: %s", entry.index, exc)
            return None
        sessions = self.sessions
        sessions.advance(env.time)
        if env.register:
            client = str(entry.index)  # an id the log never hands out twice
            sessions.register(client, ttl_ms=env.ttl_ms, max_sessions=env.max_sessions)
            return Outcome(env.origin, env.request, client)
        command = Command(entry.index, entry.term, env.command, sessions.log_time)
        if not env.client:
            value, error = self._run(command)
            return Outcome(env.origin, env.request, value, error)
        verdict, recorded = sessions.check(env.client, env.seq)
        if verdict is Verdict.APPLY:
            recorded = _to_record(*self._run(command))
            sessions.record(env.client, env.seq, env.floor, recorded)
        elif verdict is Verdict.DUPLICATE:
            sessions.touch(env.client)
        else:
            return Outcome(env.origin, env.request, error=_session_error(verdict, env.client, env.seq))
        # The first answer and every retry's are the same: both come from the recorded form.
        value, error = _from_record(recorded)
        return Outcome(env.origin, env.request, value, error)

    def _run(self, command: Command) -> tuple[object, RaftError | None]:
        try:
            return self.state_machine.apply(command), None
        except Exception as exc:  # the state machine refused the command: its answer, not our failure
            return None, CommandFailed(type(exc).__name__, str(exc))

    # -- snapshots ------------------------------------------------------------------------------------------

    def snapshot_data(self) -> bytes:
        """The runtime's snapshot: the session table and the state machine's own snapshot."""
        table = self.sessions.to_json()
        self.bytes_since_snapshot = 0
        return b"".join((_LEN.pack(len(table)), table, self.state_machine.snapshot()))

    def restore_runtime(self, data: bytes) -> None:
        """Restore only the runtime's part of a snapshot (for a state machine that keeps its own state)."""
        (n,) = _LEN.unpack_from(data)
        self.sessions.restore(data[_LEN.size : _LEN.size + n])
        self.bytes_since_snapshot = 0

    def restore(self, data: bytes) -> None:
        """Replace sessions and state machine with what ``snapshot_data`` produced."""
        (n,) = _LEN.unpack_from(data)
        self.sessions.restore(data[_LEN.size : _LEN.size + n])
        self.state_machine.restore(data[_LEN.size + n :])
        self.bytes_since_snapshot = 0


def _to_record(value: object, error: RaftError | None) -> object:
    if isinstance(error, CommandFailed):
        return {"error": [error.kind, error.detail]}
    try:
        return {"ok": encode_result(value)}
    except TypeError as exc:
        return {"unkept": str(exc)}


def _from_record(record: object) -> tuple[object, RaftError | None]:
    assert isinstance(record, dict)
    if "unkept" in record:
        return None, ResultNotKept(f"the command was applied, but its result was not kept: {record['unkept']}")
    if "error" in record:
        kind, detail = record["error"]
        return None, CommandFailed(str(kind), str(detail))
    return decode_result(record["ok"]), None


def _session_error(verdict: Verdict, client: str, seq: int) -> SessionError:
    if verdict is Verdict.STALE:
        return SessionError(
            f"command {seq} of client {client!r} lies below the client's floor (its answer was already "
            "delivered and dropped); it was not applied again"
        )
    return SessionError(
        f"client {client!r} has no open session (never opened, or it expired); command {seq} was not "
        "applied: open a new session"
    )
