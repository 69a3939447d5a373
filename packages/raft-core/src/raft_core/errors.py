"""The typed errors raft-core raises: one small hierarchy under ``RaftError``."""

from __future__ import annotations

from raft_core.types import NONE, NodeId


class RaftError(Exception):
    """Base class of every error raft-core raises on purpose."""


class ConfigError(RaftError, ValueError):
    """A configuration value is invalid; the message names the field and the rule."""


class ProposalDropped(RaftError):
    """A proposal (or read, or transfer request) was not accepted; nothing was appended to the log."""


class NotLeader(ProposalDropped):
    """This node is not the leader and does not forward; ``leader`` is the leader it knows (0 if none).

    ``address`` is where that leader can be reached, when the runtime's transport knows it.
    """

    def __init__(self, leader: NodeId = NONE, message: str | None = None, *, address: str | None = None) -> None:
        """Build the error, naming the known leader (and its address, if known) or saying none is known."""
        self.leader = leader
        self.address = address
        if message is None:
            where = f" at {address}" if address else ""
            message = (
                f"this node is not the leader; the leader is node {leader}{where}"
                if leader != NONE
                else "this node is not the leader and no leader is known yet"
            )
        super().__init__(message)


class TransferInProgress(ProposalDropped):
    """The leader is handing leadership to ``target`` and accepts no proposals until that ends."""

    def __init__(self, target: NodeId) -> None:
        """Build the error naming the transfer target."""
        self.target = target
        super().__init__(f"leadership is being transferred to node {target}; retry on the new leader")


class Overloaded(ProposalDropped):
    """Too much is uncommitted already; the proposal was refused at once rather than queued."""


class SessionError(ProposalDropped):
    """A command's client session cannot be honoured; nothing was applied.

    Either the session expired, or the sequence number is older than the last one answered (whose result
    alone is kept). Start a new session.
    """


class SessionsUnavailable(RaftError):
    """Client sessions are off on this node: its state machine is durable and deduplicates commands itself.

    A ``DurableStateMachine`` resumes from its own applied index without replaying the log, so the runtime's
    session table (rebuilt by replaying) would miss commands; such state machines keep request ids instead.
    """


class CommitUnknown(RaftError):
    """No outcome within the deadline: the command may or may not be applied.

    Retry it with the same client session and sequence number to get its result exactly once.
    """


class ReadTimeout(RaftError):
    """A linearizable read could not be confirmed by a leader within the deadline."""


class TransferFailed(RaftError):
    """Leadership did not move to the requested node within the deadline."""


class CommandFailed(RaftError):
    """The state machine raised while applying the command (the same way on every node).

    ``kind`` is the exception's class name and ``detail`` its message; the log entry stays applied.
    """

    def __init__(self, kind: str, detail: str) -> None:
        """Build the error from the failing exception's class name and message."""
        self.kind = kind
        self.detail = detail
        super().__init__(f"the state machine refused the command: {kind}: {detail}")


class ResultNotKept(RaftError):
    """The command WAS applied, but its result is not a JSON value, so it could not be kept for retries.

    Its result is given to nobody (retries get this error too). Make ``apply`` return JSON values.
    """


class NodeStopped(RaftError):
    """The node is stopped (or stopped itself after a storage failure); nothing more is accepted."""


class StorageError(RaftError):
    """A storage read could not be answered."""


class LogCompacted(StorageError):
    """The requested index lies below the first index the storage still holds (it is in a snapshot)."""


class EntryUnavailable(StorageError):
    """The requested index lies beyond the last index the storage holds."""


class SnapshotOutOfDate(StorageError):
    """A snapshot older than the one already held was offered."""


class InvariantViolation(RaftError):
    """The core detected state that Raft forbids (a bug, or storage that lost acknowledged data)."""


class ReadyNotAdvanced(RaftError):
    """``ready()`` or ``step()`` was called while an earlier ``Ready`` was not yet acknowledged by ``advance()``."""


class CorruptLogError(StorageError):
    """The durable log (or a snapshot) is damaged inside what was acknowledged; the node must not start.

    The message names the file and byte offset and says how to recover. Storage raises this rather than serve,
    vote or acknowledge with wrong data, and it never drops acknowledged entries silently.
    """
