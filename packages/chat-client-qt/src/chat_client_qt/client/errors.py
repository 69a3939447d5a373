"""The client's typed errors (``ChatError`` and its subclasses), mapped from gRPC status codes and rich details.

Every error keeps the server's message (``message``) for display, the gRPC status code, the node that answered
and, for writes, the ``request_id`` of the user action, so the UI can offer a retry with the same id.

Rich details follow google.rpc: the trailing metadata key ``grpc-status-details-bin`` holds a
``google.rpc.Status`` whose details may include an ``ErrorInfo`` (reason ``NOT_LEADER`` with metadata
``leader`` = the leader's client address) or a ``RetryInfo`` (how long to wait when rate limited).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger(__name__)

DETAILS_KEY = "grpc-status-details-bin"
NOT_LEADER = "NOT_LEADER"

_RETRY_AFTER = re.compile(
    r"(\d+(?:\.\d+)?)\s*(ms|msec|milliseconds?|s|sec|secs|seconds?)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class RichDetails:
    """What the ``google.rpc.Status`` details of an error say (all optional).

    Attributes:
        reason: ``ErrorInfo.reason`` (e.g. ``NOT_LEADER``).
        domain: ``ErrorInfo.domain``.
        metadata: ``ErrorInfo.metadata``.
        retry_after: ``RetryInfo.retry_delay`` in seconds.
    """

    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None

    @property
    def leader(self) -> str | None:
        """The leader's client address from a ``NOT_LEADER`` ErrorInfo (None if absent or empty)."""
        return self.metadata.get("leader") or None


class ChatError(Exception):
    """Base of every error the client raises.

    Attributes:
        message: the server's (or the client's) explanation, fit for display.
        code: the gRPC status code, if the error came from a call.
        endpoint: the node that answered (``host:port``), if any.
        details: the parsed rich status details.
        request_id: the write's request_id (retry with it to stay exactly-once), if the call was a write.
        retryable: whether retrying the same request (with the same request_id) may succeed.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        endpoint: str | None = None,
        details: RichDetails | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.endpoint = endpoint
        self.details = details or RichDetails()
        self.request_id = request_id

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.code.name if self.code is not None else None
        return f"{type(self).__name__}({self.message!r}, code={code}, endpoint={self.endpoint!r})"


class Unauthenticated(ChatError):
    """No valid session token (missing, unknown or expired): log in again."""


class PermissionDenied(ChatError):
    """Not a member of the conversation, or not the author of the message."""


class NotFound(ChatError):
    """Unknown conversation, user or message."""


class AlreadyExists(ChatError):
    """The username is taken."""


class InvalidInput(ChatError):
    """Bad input; the message says which field and why."""


class FailedPrecondition(ChatError):
    """The operation does not apply in the current state (e.g. leaving a direct conversation)."""


class RateLimited(ChatError):
    """Too many requests; retry after ``retry_after`` seconds (None when the server did not say)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(ChatError):
    """An unexpected failure on the server or in the protocol (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)."""


class TransientError(ChatError):
    """The request may succeed if retried with the same request_id (base of ``Unavailable``, ``OutcomeUnknown``)."""

    retryable: ClassVar[bool] = True


class Unavailable(TransientError):
    """No node could serve the request (no leader or quorum, or no node reachable).

    Attributes:
        leader: the leader's client address when the answering node knew it (``NOT_LEADER``).
    """

    @property
    def leader(self) -> str | None:
        """The leader's client address from the ``NOT_LEADER`` details, if any."""
        return self.details.leader if self.details.reason == NOT_LEADER else None


class OutcomeUnknown(TransientError):
    """The request may or may not have been applied (deadline exceeded, connection lost mid-call).

    Retrying with the same request_id, on any node, is safe: the server applies it at most once.
    """


class MessageQueued(TransientError):
    """``send`` gave up waiting, but the message is safe in the outbox and will be delivered later.

    Attributes:
        cause: the last delivery error, if an attempt was made.
    """

    def __init__(self, message: str, *, cause: ChatError | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.cause = cause


class ClientClosed(ChatError):
    """The client was closed (or logged out) while the call was waiting."""


_BY_CODE: dict[grpc.StatusCode, type[ChatError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInput,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: OutcomeUnknown,
    # Not by us (our own cancellations raise asyncio.CancelledError): the server or the transport gave up.
    grpc.StatusCode.CANCELLED: OutcomeUnknown,
}

#: Status codes after which the same request (same request_id) may be retried, on any node.
RETRYABLE_CODES = frozenset(code for code, cls in _BY_CODE.items() if cls.retryable)


def error_class(code: grpc.StatusCode) -> type[ChatError]:
    """The ``ChatError`` subclass for a gRPC status code (``ServerError`` for the unexpected ones)."""
    return _BY_CODE.get(code, ServerError)


def parse_retry_after(text: str) -> float | None:
    """Seconds to wait, read from a message such as ``"retry after 1.5s"`` or ``"try again in 200 ms"``."""
    match = _RETRY_AFTER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value / 1000.0 if match.group(2).lower().startswith("m") else value


def _status_of(exc: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` in the trailing metadata of ``exc`` (None if absent or unreadable)."""
    try:
        status: status_pb2.Status | None = rpc_status.from_call(exc)  # type: ignore[arg-type]
        return status
    except ValueError:
        pass  # code or message differ from the call's: still use the details, leniently
    except Exception:  # a malformed trailer must not hide the error itself
        log.debug("unreadable %s trailer", DETAILS_KEY, exc_info=True)
        return None
    trailers = cast("Iterable[tuple[str, str | bytes]]", exc.trailing_metadata() or ())
    for key, value in trailers:
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:
                log.debug("unreadable %s trailer", DETAILS_KEY, exc_info=True)
    return None


def rich_details(exc: grpc.aio.AioRpcError) -> RichDetails:
    """Parse the ``ErrorInfo`` / ``RetryInfo`` details of a failed call (empty if it has none)."""
    status = _status_of(exc)
    if status is None:
        return RichDetails()
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] = {}
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if reason is None:
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return RichDetails(reason=reason, domain=domain, metadata=metadata, retry_after=retry_after)


def from_rpc_error(
    exc: grpc.aio.AioRpcError, *, endpoint: str | None = None, request_id: str | None = None
) -> ChatError:
    """Map a failed grpc.aio call to the matching ``ChatError`` (keeping the server's message)."""
    code = exc.code()
    message = exc.details() or code.name.replace("_", " ").lower()
    details = rich_details(exc)
    cls = error_class(code)
    kwargs: dict[str, Any] = {"code": code, "endpoint": endpoint, "details": details, "request_id": request_id}
    if cls is RateLimited:
        retry_after = details.retry_after
        if retry_after is None and "retry_after_ms" in details.metadata:
            try:
                retry_after = float(details.metadata["retry_after_ms"]) / 1000.0
            except ValueError:
                retry_after = None
        if retry_after is None:
            retry_after = parse_retry_after(message)
        return RateLimited(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)
