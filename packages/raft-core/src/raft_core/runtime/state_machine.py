"""``StateMachine`` and its refinements ``DurableStateMachine`` and ``BatchingStateMachine``; ``Command``.

These are the plug point for what a cluster replicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(slots=True, frozen=True)
class Command:
    """One committed command, as the state machine applies it.

    ``time`` is the log time in milliseconds since the epoch: the proposing node's clock, written into the
    entry before it was proposed. Use it (never the local clock) for anything time-dependent in ``apply``,
    so that every node computes the same state.
    """

    index: int
    term: int
    data: bytes
    time: int


class StateMachine(Protocol):
    """What the runtime applies committed commands to. Everything here runs on the node's event loop.

    ``apply`` must be deterministic: the same commands in the same order give the same state and results on
    every node. Draw ids, timestamps and random tokens before proposing, never inside ``apply``.
    """

    def apply(self, command: Command) -> object:
        """Apply one committed command; the return value is the result ``Node.propose`` returns.

        An exception is a (deterministic) refusal: ``propose`` raises ``CommandFailed`` with its message.
        Results of commands sent with a client session must be JSON values (None, bool, int, float, str,
        bytes, lists, and dicts with str keys): they are kept for retries in snapshots.
        """
        ...

    def snapshot(self) -> bytes:
        """The whole state, serialized (called between two applies)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with one that ``snapshot`` produced."""
        ...


@runtime_checkable
class DurableStateMachine(StateMachine, Protocol):
    """A state machine that keeps its own state on disk and records, atomically with each change, how far it got.

    A node over one starts applying right after ``durable_position()`` instead of restoring the latest snapshot
    and replaying the log from there (a snapshot is restored only when the state machine is behind it, e.g. a
    new or wiped node). Entries the state machine did not see as commands (no-ops, membership) may be offered
    again after a restart; re-applying anything after the recorded index must therefore be safe, which it is
    when the index is written in the same transaction as the change. Such a node offers no client sessions
    (``SessionsUnavailable``): deduplicate with request ids kept in the state machine itself.
    """

    def durable_position(self) -> tuple[int, int]:
        """``(index, time)`` of the last command whose effects are durable; ``(0, 0)`` for an empty state."""
        ...


@runtime_checkable
class BatchingStateMachine(StateMachine, Protocol):
    """A state machine that groups the commands the runtime applies in one go, e.g. into one database transaction.

    The runtime applies committed entries in runs (all those one Ready delivers): it calls ``begin_batch``,
    then ``apply`` for each command of the run, then ``end_batch``, all without yielding to the event loop, so
    nothing else (no query, no snapshot) runs in between, and no caller hears its command's result before
    ``end_batch`` returned. A durable state machine can make the whole run durable in ``end_batch`` (its
    ``durable_position`` then covers it) instead of after each command; a crash before that only loses work
    the log still holds. If ``end_batch`` raises, the node stops (a state machine that cannot store what it
    applied must not keep serving); the batch's commands are committed in the log all the same, so their
    callers get their results, which the state machine computes again when it re-applies them after a restart.
    """

    def begin_batch(self) -> None:
        """A run of ``apply`` calls starts."""
        ...

    def end_batch(self) -> None:
        """The run of ``apply`` calls that ``begin_batch`` started is over."""
        ...
