"""``ChatError``, a failure a client is told about, and the mapping from raft-core's errors and refusals to it.

A ``ChatError`` is a gRPC status with a message a person can act on.

Invariant owned here: every exception a handler lets escape becomes exactly one ``ChatError``; anything
unexpected becomes INTERNAL with a generic message (the details go to the server log, never to the client).
"""

from __future__ import annotations

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2

from raft_core.errors import (
    CommandFailed,
    CommitUnknown,
    NodeStopped,
    NotLeader,
    Overloaded,
    ProposalDropped,
    ReadTimeout,
)
from raft_core.types import NONE

NOT_LEADER_REASON = "NOT_LEADER"
"""``google.rpc.ErrorInfo.reason`` of an UNAVAILABLE that names the leader (metadata key ``leader``)."""
ERROR_DOMAIN = "chat.v1"

# The state machine's refusal classes (chat_server.store.errors), by class name as raft-core reports them.
_REFUSALS: dict[str, grpc.StatusCode] = {
    "InvalidArgument": grpc.StatusCode.INVALID_ARGUMENT,
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "PermissionDenied": grpc.StatusCode.PERMISSION_DENIED,
    "AlreadyExists": grpc.StatusCode.ALREADY_EXISTS,
    "FailedPrecondition": grpc.StatusCode.FAILED_PRECONDITION,
}


class ChatError(Exception):
    """A status for the client: ``code``, a human ``message``, and for NOT_LEADER the leader's client address."""

    def __init__(self, code: grpc.StatusCode, message: str, *, leader: str | None = None) -> None:
        self.code = code
        self.message = message
        self.leader = leader
        super().__init__(message)

    def rich_status(self) -> status_pb2.Status | None:
        """The ``google.rpc.Status`` with rich details a client gets beside the status (None: no details).

        NOT_LEADER is the one with details: an ``ErrorInfo`` whose metadata ``leader`` is the leader's address.
        """
        if self.leader is None:
            return None
        info = error_details_pb2.ErrorInfo(
            reason=NOT_LEADER_REASON, domain=ERROR_DOMAIN, metadata={"leader": self.leader}
        )
        detail = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=self.message)
        detail.details.add().Pack(info)
        return detail

    @classmethod
    def invalid(cls, field: str, why: str) -> ChatError:
        """INVALID_ARGUMENT naming the field at fault."""
        return cls(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {why}")

    @classmethod
    def unauthenticated(cls, why: str = "sign in first: no valid session token was sent") -> ChatError:
        """UNAUTHENTICATED."""
        return cls(grpc.StatusCode.UNAUTHENTICATED, why)


def chat_error_for(exc: BaseException, leader_address: str | None = None) -> ChatError:
    """The ``ChatError`` a client gets for ``exc``; ``leader_address`` is the leader's client address if known."""
    if isinstance(exc, ChatError):
        return exc
    code = grpc.StatusCode
    if isinstance(exc, CommandFailed):
        status = _REFUSALS.get(exc.kind)
        if status is not None:
            return ChatError(status, exc.detail)
        return ChatError(code.INTERNAL, "the server could not apply the request (details are in the server log)")
    if isinstance(exc, Overloaded):
        return ChatError(code.RESOURCE_EXHAUSTED, "the cluster is overloaded; retry in a moment")
    if isinstance(exc, NotLeader):
        if exc.leader != NONE and leader_address:
            return ChatError(
                code.UNAVAILABLE, f"this node is not the leader; send to {leader_address}", leader=leader_address
            )
        return ChatError(code.UNAVAILABLE, "no leader is known yet; retry shortly (same request_id)")
    if isinstance(exc, ProposalDropped):
        return ChatError(code.UNAVAILABLE, "not applied because the leader changed; retry (same request_id)")
    if isinstance(exc, CommitUnknown):
        return ChatError(
            code.DEADLINE_EXCEEDED,
            "no majority answered in time: the request may or may not have been applied; retry with the same "
            "request_id",
        )
    if isinstance(exc, ReadTimeout):
        return ChatError(code.UNAVAILABLE, "the leader could not confirm the read in time (no majority?); retry")
    if isinstance(exc, NodeStopped):
        return ChatError(code.UNAVAILABLE, "this node is shutting down; use another node")
    return ChatError(code.INTERNAL, "internal error (details are in the server log)")
