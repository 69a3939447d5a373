"""What the chat store's queries and commands return: frozen, slotted row dataclasses and the kinds they use.

Rows carry plain values only (str, int, bool, the ``IntEnum`` kinds below and nested rows), so they convert
directly to the chat.v1 protobuf messages: ``EventKind`` and ``ConversationKind`` have the numbers of the
proto enums of the same name (``api.EventKind(int(row.kind))``), which is also what the database stores.
No row ever carries a password hash; ``SessionRow`` carries only the token's hash, never the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EventKind(IntEnum):
    """The kind of a conversation event (numbered as ``chat.v1.EventKind``: ``EVENT_KIND_<name>``)."""

    CREATED = 1
    MESSAGE = 2
    EDITED = 3
    DELETED = 4
    JOINED = 5
    LEFT = 6
    RENAMED = 7


class ConversationKind(IntEnum):
    """Direct (two users, cannot be left) or room (numbered as ``chat.v1.ConversationKind``)."""

    DIRECT = 1
    ROOM = 2


@dataclass(frozen=True, slots=True)
class UserRow:
    """An account and its presence lease (``presence_expires_ms`` 0: offline)."""

    username: str
    display_name: str
    created_at_ms: int
    last_seen_ms: int = 0
    presence_expires_ms: int = 0

    def online(self, now_ms: int) -> bool:
        """Whether the user holds a presence lease at ``now_ms`` (ms since the epoch)."""
        return self.presence_expires_ms > now_ms


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A login session, keyed by the SHA-256 (hex) of its token."""

    token_hash: str
    username: str
    device: str
    created_at_ms: int
    expires_at_ms: int

    def expired(self, now_ms: int) -> bool:
        """Whether the session no longer authenticates at ``now_ms``."""
        return self.expires_at_ms <= now_ms


@dataclass(frozen=True, slots=True)
class EventRow:
    """One entry of a conversation's sequence (a MESSAGE read back shows its current body, edit time, deletion).

    ``target_seq`` is set for EDITED / DELETED, ``member`` for JOINED / LEFT; ``request_id`` is the one of the
    command that made the event ("" if none). ``time_ms`` is the log time of that command.
    """

    conversation_id: str
    seq: int
    kind: EventKind
    sender: str
    body: str
    target_seq: int
    member: str
    time_ms: int
    edited_at_ms: int
    deleted: bool
    request_id: str


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A conversation; the fields after ``member_count`` describe it for one user when asked for one.

    For a direct conversation ``name`` is the other user's username when read for a member, "" otherwise.
    ``read_seq`` / ``unread_count`` / ``joined_seq`` are 0 when read without a user (or for a non-member);
    ``last_event`` is its newest event (None only for a conversation without events, which cannot happen).
    """

    id: str
    kind: ConversationKind
    name: str
    topic: str
    public: bool
    created_by: str
    created_at_ms: int
    last_seq: int
    member_count: int
    read_seq: int = 0
    unread_count: int = 0
    joined_seq: int = 0
    last_event: EventRow | None = None


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """One conversation a user belongs to: since which seq, how far they have read, and its newest seq."""

    conversation_id: str
    joined_seq: int
    read_seq: int
    last_seq: int
