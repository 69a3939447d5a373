"""``TypingTracker``: who is typing in which conversation, from typing signals that expire by themselves.

No Qt here: the conversation pane asks it for names on a timer and shows ``formatting.typing_text``.
"""

from __future__ import annotations

import time

FALLBACK_TTL_MS = 6000  # when a signal carries no expiry


def now_ms() -> int:
    """The wall clock in ms since the epoch (the servers' typing expiries use it)."""
    return int(time.time() * 1000)


class TypingTracker:
    """Typing states per conversation and user, each until its expiry."""

    def __init__(self) -> None:
        self._until: dict[str, dict[str, int]] = {}

    def update(self, conversation_id: str, username: str, typing: bool, expires_at_ms: int = 0) -> None:
        """Record a typing signal (``typing=False`` or a past expiry clears it)."""
        users = self._until.setdefault(conversation_id, {})
        if typing:
            users[username] = expires_at_ms or now_ms() + FALLBACK_TTL_MS
        else:
            users.pop(username, None)

    def stopped(self, conversation_id: str, username: str) -> None:
        """Forget that ``username`` types in a conversation (e.g. their message arrived)."""
        self._until.get(conversation_id, {}).pop(username, None)

    def names(self, conversation_id: str, at_ms: int | None = None, *, exclude: str = "") -> list[str]:
        """Who types in a conversation now, sorted (expired entries are dropped)."""
        at = now_ms() if at_ms is None else at_ms
        users = self._until.get(conversation_id, {})
        for name in [n for n, until in users.items() if until <= at]:
            del users[name]
        return sorted(n for n in users if n != exclude)
