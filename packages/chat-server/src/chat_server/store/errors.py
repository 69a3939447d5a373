"""The refusals of the chat state machine: ``ChatRefusal`` and one subclass per gRPC status it maps to.

A refusal is deterministic (every node refuses the same command the same way) and changes nothing. raft-core
reports it as ``CommandFailed(kind=<class name>, detail=<message>)`` and the service maps the class name to a
gRPC status, so the class names are part of the contract. Messages are shown to end users: they say what was
wrong and what to do, and never contain a password hash or a token (hash).
"""

from __future__ import annotations


class ChatRefusal(Exception):
    """A command the state machine refuses; the message is for the end user."""


class InvalidArgument(ChatRefusal):
    """The request is malformed or makes no sense (INVALID_ARGUMENT)."""


class NotFound(ChatRefusal):
    """A user, conversation or message named by the request does not exist (NOT_FOUND)."""


class PermissionDenied(ChatRefusal):
    """The caller may not do this: not a member, not the author, a private room (PERMISSION_DENIED)."""


class AlreadyExists(ChatRefusal):
    """What the request would create exists already, e.g. a taken username (ALREADY_EXISTS)."""


class FailedPrecondition(ChatRefusal):
    """The request is valid but the state does not allow it, e.g. leaving a direct conversation."""
