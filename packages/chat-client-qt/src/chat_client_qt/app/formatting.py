"""Texts shown to people: times and day labels, conversation previews, system lines, typing and error messages.

No Qt here, so that every wording is testable on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import (
    AlreadyExists,
    ChatError,
    ClientClosed,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    TransientError,
    Unauthenticated,
)

PREVIEW_CHARS = 80


def local_datetime(time_ms: int) -> datetime:
    """A time in ms since the epoch as a local, timezone-aware datetime."""
    return datetime.fromtimestamp(time_ms / 1000.0).astimezone()


def time_label(time_ms: int) -> str:
    """The local time of day, ``HH:MM``."""
    return local_datetime(time_ms).strftime("%H:%M")


def day_label(day: date, today: date) -> str:
    """A day separator's text: "Today", "Yesterday", or e.g. "Monday, 3 June 2024"."""
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    return f"{day.strftime('%A')}, {day.day} {day.strftime('%B %Y')}"


def short_time_label(time_ms: int, now: datetime | None = None) -> str:
    """A conversation list's time: ``HH:MM`` today, the weekday within a week, else the date."""
    if time_ms <= 0:
        return ""
    when = local_datetime(time_ms)
    now = now or datetime.now().astimezone()
    if when.date() == now.date():
        return when.strftime("%H:%M")
    if timedelta(0) < now - when < timedelta(days=6):
        return when.strftime("%a")
    return when.strftime("%Y-%m-%d")


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def who(username: str, me: str) -> str:
    """A username as a sentence's subject: "You" for oneself."""
    return "You" if username == me else username


def system_text(event: api.Event, me: str) -> str:
    """The line shown for a non-message event (creation, joins, leaves, renames)."""
    sender = who(event.sender, me)
    if event.kind is api.EventKind.CREATED:
        return f"{sender} created the conversation"
    if event.kind is api.EventKind.JOINED:
        member = who(event.member, me)
        if not event.sender or event.sender == event.member:
            return f"{member} joined"
        return f"{sender} added {member}"
    if event.kind is api.EventKind.LEFT:
        return f"{who(event.member or event.sender, me)} left"
    if event.kind is api.EventKind.RENAMED:
        return f"{sender} renamed the room to “{event.body}”"
    if event.kind is api.EventKind.EDITED:
        return f"{sender} edited a message"
    if event.kind is api.EventKind.DELETED:
        return f"{sender} deleted a message"
    return ""


def event_preview(event: api.Event | None, me: str) -> str:
    """The last-message preview of a conversation list row."""
    if event is None:
        return ""
    if event.kind is api.EventKind.MESSAGE:
        if event.deleted:
            return f"{who(event.sender, me)}: message deleted"
        return f"{who(event.sender, me)}: {one_line(event.body)}"
    return system_text(event, me)


def typing_text(names: Sequence[str]) -> str:
    """The typing indicator's text for the people typing now ("" for nobody)."""
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} is typing…"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} are typing…"
    return f"{names[0]}, {names[1]} and {len(names) - 2} more are typing…"


def describe_error(error: BaseException, *, action: str = "") -> str:
    """A sentence about a failed call, fit for a dialog or the sign-in screen.

    Args:
        error: what the call raised.
        action: what was attempted ("sign in", "create the account", ...), for the unreachable case.
    """
    if isinstance(error, RateLimited):
        wait = f" in {error.retry_after:.0f} s" if error.retry_after else " in a moment"
        return f"Too many requests: try again{wait}."
    if isinstance(error, TransientError):
        doing = f" to {action}" if action else ""
        return (
            f"Cannot reach the cluster{doing}: no server answered in time. "
            "Check the server addresses and that the cluster is running."
        )
    if isinstance(error, Unauthenticated):
        return "Your session has expired: please sign in again."
    if isinstance(error, AlreadyExists | InvalidInput | NotFound | PermissionDenied):
        return _sentence(error.message)
    if isinstance(error, ClientClosed):
        return "The connection was closed."
    if isinstance(error, ChatError):
        return _sentence(f"The server reported an error: {error.message}")
    return _sentence(f"Unexpected error: {error}")


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
