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
    """This node is not the leader and does not forward; ``leader`` is the leader it knows (0 if none)."""

    def __init__(self, leader: NodeId = NONE, message: str | None = None) -> None:
        """Build the error, naming the known leader (or saying none is known)."""
        self.leader = leader
        if message is None:
            message = (
                f"this node is not the leader; the leader is node {leader}"
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
