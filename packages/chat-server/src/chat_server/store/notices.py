"""The notices ``ChatStateMachine`` gives its listener after each commit: new events, typing and presence.

They are made only for commands that changed something (never for refusals or duplicate retries) and only
after the command's transaction has committed, so a listener never sees a change that could roll back.
"""

from __future__ import annotations

from dataclasses import dataclass

from chat_server.store.rows import EventRow


@dataclass(frozen=True, slots=True)
class EventsAppended:
    """Events appended to one conversation by one command, in seq order (JOINED / LEFT included)."""

    conversation_id: str
    events: tuple[EventRow, ...]


@dataclass(frozen=True, slots=True)
class TypingNotice:
    """``username`` started (or stopped) typing in ``conversation_id``; treat as stopped after ``expires_at_ms``."""

    conversation_id: str
    username: str
    typing: bool
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class PresenceNotice:
    """``username`` renewed (``online``) or dropped a presence lease at ``last_seen_ms`` (the log time).

    ``expires_at_ms`` is when the lease runs out (0 when going offline).
    """

    username: str
    online: bool
    last_seen_ms: int
    expires_at_ms: int


Notice = EventsAppended | TypingNotice | PresenceNotice
"""Anything the state machine tells its listener."""
