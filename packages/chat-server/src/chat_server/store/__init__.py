"""chat_server.store: the chat state machine on SQLite, its reads, rows, notices and refusals (re-exported)."""

from chat_server.store.errors import (
    AlreadyExists,
    ChatRefusal,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from chat_server.store.notices import EventsAppended, Notice, PresenceNotice, TypingNotice
from chat_server.store.queries import ChatQueries
from chat_server.store.rows import (
    ConversationKind,
    ConversationRow,
    EventKind,
    EventRow,
    MembershipRow,
    SessionRow,
    UserRow,
)
from chat_server.store.state_machine import ChatStateMachine, SnapshotError, StoreFailed

__all__ = [
    "AlreadyExists",
    "ChatQueries",
    "ChatRefusal",
    "ChatStateMachine",
    "ConversationKind",
    "ConversationRow",
    "EventKind",
    "EventRow",
    "EventsAppended",
    "FailedPrecondition",
    "InvalidArgument",
    "MembershipRow",
    "NotFound",
    "Notice",
    "PermissionDenied",
    "PresenceNotice",
    "SessionRow",
    "SnapshotError",
    "StoreFailed",
    "TypingNotice",
    "UserRow",
]
