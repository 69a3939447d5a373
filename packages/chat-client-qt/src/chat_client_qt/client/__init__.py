"""The Qt-free client library of the chat service: ``ChatClient`` and its parts (no Qt import here).

Modules: ``client`` (``ChatClient``), ``connection`` (channels, node choice, retries), ``rpc`` (the method table
and typed grpc.aio helpers), ``errors`` (the ``ChatError`` hierarchy), ``outbox`` (the on-disk outbox and its
flusher), ``subscription`` (live events across reconnects).
"""

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client.client import ChatClient, Session, new_request_id
from chat_client_qt.client.connection import Connection
from chat_client_qt.client.errors import (
    AlreadyExists,
    ChatError,
    ClientClosed,
    FailedPrecondition,
    InvalidInput,
    MessageQueued,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransientError,
    Unauthenticated,
    Unavailable,
)
from chat_client_qt.client.outbox import Outbox, OutboxItem, OutboxState, default_data_dir
from chat_client_qt.client.subscription import CursorStore, StreamItem, StreamStatus, Subscription

__all__ = [
    "AlreadyExists",
    "ChatClient",
    "ChatError",
    "ClientClosed",
    "Connection",
    "CursorStore",
    "FailedPrecondition",
    "InvalidInput",
    "MessageQueued",
    "NotFound",
    "Outbox",
    "OutboxItem",
    "OutboxState",
    "OutcomeUnknown",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "Session",
    "StreamItem",
    "StreamStatus",
    "Subscription",
    "TransientError",
    "Unauthenticated",
    "Unavailable",
    "api",
    "default_data_dir",
    "new_request_id",
]
