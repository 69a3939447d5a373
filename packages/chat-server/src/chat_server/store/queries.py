"""``ChatQueries``: the read side of the chat store (users, sessions, conversations, history, search, kv).

Queries run on the state machine's own connection, between two applies (on the event loop), so they see
exactly the applied state: committed, never half of a command. Given a ``ChatStateMachine`` they follow it
across ``restore`` (which reopens the database). Results are the row dataclasses of ``store.rows``.

Limits: a ``limit`` of 0 or less means the method's default; larger ones are capped at ``MAX_LIMIT`` (the
service applies the API's own, smaller, caps).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final, Protocol

from chat_server.store.errors import InvalidArgument
from chat_server.store.rows import (
    ConversationKind,
    ConversationRow,
    EventKind,
    EventRow,
    MembershipRow,
    SessionRow,
    UserRow,
)

MAX_LIMIT: Final = 1000
MAX_SEARCH_CHARS: Final = 1024

EVENT_COLUMNS: Final = (
    "e.conversation_id, e.seq, e.kind, e.sender, e.body, e.target_seq, e.member, e.time_ms, e.edited_at_ms, "
    "e.deleted, e.request_id"
)
"""The columns ``event_row`` reads, on the ``events`` table aliased ``e``."""
_N_EVENT = 11
USER_COLUMNS: Final = "u.username, u.display_name, u.created_at_ms, u.last_seen_ms, u.presence_expires_ms"
"""The columns ``UserRow`` is made of, on the ``users`` table aliased ``u``."""
_CONVERSATION_COLUMNS = (
    "c.id, c.kind, c.name, c.topic, c.public, c.created_by, c.created_at_ms, c.last_seq, c.member_count"
)
_N_CONVERSATION = 9
_UNREAD = (
    "SELECT count(*) FROM events AS u WHERE u.conversation_id = ? AND u.seq > ? AND u.kind = 2 AND u.deleted = 0 "
    "AND u.sender != ?"
)


class ConnectionSource(Protocol):
    """Anything holding the chat database's current connection (``ChatStateMachine``)."""

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection."""
        ...


def event_row(r: Sequence[Any], at: int = 0) -> EventRow:
    """The ``EventRow`` of the ``EVENT_COLUMNS`` starting at position ``at`` of a result row."""
    return EventRow(
        r[at],
        r[at + 1],
        EventKind(r[at + 2]),
        r[at + 3],
        r[at + 4],
        r[at + 5],
        r[at + 6],
        r[at + 7],
        r[at + 8],
        bool(r[at + 9]),
        r[at + 10],
    )


def _user_row(r: Sequence[Any]) -> UserRow:
    return UserRow(*r)


def _peer(conversation_id: str, username: str) -> str:
    """The other member of a direct conversation ``dm:<a>:<b>`` (usernames hold no ':')."""
    _, a, b = conversation_id.split(":", 2)
    return b if a == username else a


def _pattern(query: str) -> str:
    """A LIKE pattern matching ``query`` anywhere (backslash escapes)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _limit(limit: int, default: int) -> int:
    return default if limit <= 0 else min(limit, MAX_LIMIT)


class ChatQueries:
    """Reads of the chat database; cheap to make (holds only the connection source)."""

    def __init__(self, source: sqlite3.Connection | ConnectionSource) -> None:
        """Read through ``source``: a connection, or a ``ChatStateMachine`` (followed across restores)."""
        self._source = source

    @property
    def _conn(self) -> sqlite3.Connection:
        source = self._source
        return source if isinstance(source, sqlite3.Connection) else source.connection

    # -- state ------------------------------------------------------------------------------------------------

    def applied_position(self) -> tuple[int, int]:
        """``(index, log time)`` of the last applied command; ``(0, 0)`` for a new database."""
        index, time_ms = self._conn.execute("SELECT applied_index, applied_time_ms FROM meta WHERE id = 1").fetchone()
        return int(index), int(time_ms)

    # -- accounts ---------------------------------------------------------------------------------------------

    def session_by_token_hash(self, token_hash: str, now_ms: int | None = None) -> SessionRow | None:
        """The session whose token hashes to ``token_hash``; None if unknown, or expired at ``now_ms`` if given."""
        r = self._conn.execute(
            "SELECT token_hash, username, device, created_at_ms, expires_at_ms FROM sessions WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if r is None:
            return None
        session = SessionRow(*r)
        if now_ms is not None and session.expired(now_ms):
            return None
        return session

    def user(self, username: str) -> UserRow | None:
        """The account ``username`` with its presence fields, or None."""
        r = self._conn.execute(f"SELECT {USER_COLUMNS} FROM users AS u WHERE u.username = ?", (username,)).fetchone()
        return None if r is None else _user_row(r)

    def password_hash(self, username: str) -> str | None:
        """The stored password hash of ``username`` (for checking a login), or None if there is no such user."""
        r = self._conn.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()
        return None if r is None else str(r[0])

    def search_users(self, query: str, limit: int = 20) -> list[UserRow]:
        """Users whose username or display name contains ``query`` (ASCII case-insensitive), by username."""
        pattern = _pattern(query)
        rows = self._conn.execute(
            f"SELECT {USER_COLUMNS} FROM users AS u WHERE u.username LIKE ? ESCAPE '\\' "
            "OR u.display_name LIKE ? ESCAPE '\\' ORDER BY u.username LIMIT ?",
            (pattern, pattern, _limit(limit, 20)),
        ).fetchall()
        return [_user_row(r) for r in rows]

    # -- conversations ----------------------------------------------------------------------------------------

    def _conversation_row(
        self, r: Sequence[Any], username: str | None, joined_seq: int, read_seq: int, unread: int, at: int
    ) -> ConversationRow:
        cid = str(r[0])
        kind = ConversationKind(r[1])
        name = str(r[2])
        if kind is ConversationKind.DIRECT:
            name = _peer(cid, username) if username is not None and joined_seq else ""
        last_event = event_row(r, at) if r[at] is not None else None
        return ConversationRow(
            id=cid,
            kind=kind,
            name=name,
            topic=str(r[3]),
            public=bool(r[4]),
            created_by=str(r[5]),
            created_at_ms=int(r[6]),
            last_seq=int(r[7]),
            member_count=int(r[8]),
            read_seq=read_seq,
            unread_count=unread,
            joined_seq=joined_seq,
            last_event=last_event,
        )

    def conversation(self, conversation_id: str, username: str | None = None) -> ConversationRow | None:
        """The conversation, or None; with ``username``, as that user sees it (read cursor, unread, joined)."""
        conn = self._conn
        r = conn.execute(
            f"SELECT {_CONVERSATION_COLUMNS}, {EVENT_COLUMNS} FROM conversations AS c "
            "LEFT JOIN events AS e ON e.id = c.last_event_id WHERE c.id = ?",
            (conversation_id,),
        ).fetchone()
        if r is None:
            return None
        joined = read = unread = 0
        if username is not None:
            m = conn.execute(
                "SELECT joined_seq, read_seq FROM members WHERE conversation_id = ? AND username = ?",
                (conversation_id, username),
            ).fetchone()
            if m is not None:
                joined, read = m
                unread = conn.execute(_UNREAD, (conversation_id, read, username)).fetchone()[0]
        return self._conversation_row(r, username, joined, read, unread, _N_CONVERSATION)

    def is_member(self, conversation_id: str, username: str) -> bool:
        """Whether ``username`` belongs to the conversation now."""
        return self.membership(conversation_id, username) is not None

    def membership(self, conversation_id: str, username: str) -> int | None:
        """The seq of the JOINED event by which ``username`` (last) joined; None if not a member."""
        r = self._conn.execute(
            "SELECT joined_seq FROM members WHERE conversation_id = ? AND username = ?", (conversation_id, username)
        ).fetchone()
        return None if r is None else int(r[0])

    def memberships(self, username: str) -> list[MembershipRow]:
        """Every conversation ``username`` belongs to (by id): joined seq, read cursor and newest seq."""
        rows = self._conn.execute(
            "SELECT m.conversation_id, m.joined_seq, m.read_seq, c.last_seq FROM members AS m "
            "JOIN conversations AS c ON c.id = m.conversation_id WHERE m.username = ? ORDER BY m.conversation_id",
            (username,),
        ).fetchall()
        return [MembershipRow(*r) for r in rows]

    def co_members(self, username: str) -> list[str]:
        """Everyone who shares at least one conversation with ``username`` (sorted, without ``username``)."""
        rows = self._conn.execute(
            "SELECT DISTINCT other.username FROM members AS mine JOIN members AS other "
            "ON other.conversation_id = mine.conversation_id WHERE mine.username = ? AND other.username != ? "
            "ORDER BY other.username",
            (username, username),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def unread_count(self, conversation_id: str, username: str) -> int:
        """MESSAGE events from others after ``username``'s read cursor, deleted ones excluded (0 if not a member)."""
        conn = self._conn
        m = conn.execute(
            "SELECT read_seq FROM members WHERE conversation_id = ? AND username = ?", (conversation_id, username)
        ).fetchone()
        if m is None:
            return 0
        return int(conn.execute(_UNREAD, (conversation_id, m[0], username)).fetchone()[0])

    def conversations_for(self, username: str) -> list[ConversationRow]:
        """``username``'s conversations as they see them, most recently active first."""
        rows = self._conn.execute(
            f"SELECT {_CONVERSATION_COLUMNS}, m.joined_seq, m.read_seq, "
            "(SELECT count(*) FROM events AS u WHERE u.conversation_id = c.id AND u.seq > m.read_seq AND u.kind = 2 "
            f"AND u.deleted = 0 AND u.sender != m.username), {EVENT_COLUMNS} "
            "FROM members AS m JOIN conversations AS c ON c.id = m.conversation_id "
            "LEFT JOIN events AS e ON e.id = c.last_event_id WHERE m.username = ? ORDER BY c.last_event_id DESC",
            (username,),
        ).fetchall()
        n = _N_CONVERSATION
        return [self._conversation_row(r, username, r[n], r[n + 1], r[n + 2], n + 3) for r in rows]

    def public_rooms(self, query: str = "", limit: int = 50) -> list[ConversationRow]:
        """Public rooms whose name contains ``query`` (ASCII case-insensitive), most recently active first."""
        rows = self._conn.execute(
            f"SELECT {_CONVERSATION_COLUMNS}, {EVENT_COLUMNS} FROM conversations AS c "
            "LEFT JOIN events AS e ON e.id = c.last_event_id "
            "WHERE c.public = 1 AND c.name LIKE ? ESCAPE '\\' ORDER BY c.last_event_id DESC LIMIT ?",
            (_pattern(query), _limit(limit, 50)),
        ).fetchall()
        return [self._conversation_row(r, None, 0, 0, 0, _N_CONVERSATION) for r in rows]

    def members(self, conversation_id: str) -> list[UserRow]:
        """The current members of a conversation (by username), with presence."""
        rows = self._conn.execute(
            f"SELECT {USER_COLUMNS} FROM members AS m JOIN users AS u ON u.username = m.username "
            "WHERE m.conversation_id = ? ORDER BY m.username",
            (conversation_id,),
        ).fetchall()
        return [_user_row(r) for r in rows]

    # -- events -----------------------------------------------------------------------------------------------

    def last_seq(self, conversation_id: str) -> int:
        """The seq of the conversation's newest event (0 for an unknown conversation)."""
        r = self._conn.execute("SELECT last_seq FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return 0 if r is None else int(r[0])

    def event(self, conversation_id: str, seq: int) -> EventRow | None:
        """The event at ``seq``, or None."""
        r = self._conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.conversation_id = ? AND e.seq = ?",
            (conversation_id, seq),
        ).fetchone()
        return None if r is None else event_row(r)

    def events_after(self, conversation_id: str, after_seq: int, limit: int = 50) -> tuple[list[EventRow], bool]:
        """The oldest ``limit`` events with seq > ``after_seq`` (0: from the first), and whether newer ones exist."""
        n = _limit(limit, 50)
        rows = self._conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.conversation_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
            (conversation_id, after_seq, n + 1),
        ).fetchall()
        return [event_row(r) for r in rows[:n]], len(rows) > n

    def events(
        self, conversation_id: str, before_seq: int = 0, after_seq: int = 0, limit: int = 50
    ) -> tuple[list[EventRow], bool]:
        """A page of events, oldest first, and whether more exist in the direction asked.

        ``before_seq``: the newest ``limit`` events with seq < before_seq (``has_more``: older ones exist).
        ``after_seq``: the oldest ``limit`` with seq > after_seq (``has_more``: newer ones exist). Neither: the
        newest page (``has_more``: older ones exist). Both: ``InvalidArgument``.
        """
        if before_seq and after_seq:
            raise InvalidArgument("give at most one of before_seq and after_seq")
        n = _limit(limit, 50)
        select = f"SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.conversation_id = ? "
        if after_seq:
            return self.events_after(conversation_id, after_seq, n)
        if before_seq:
            rows = self._conn.execute(
                select + "AND e.seq < ? ORDER BY e.seq DESC LIMIT ?", (conversation_id, before_seq, n + 1)
            ).fetchall()
        else:
            rows = self._conn.execute(select + "ORDER BY e.seq DESC LIMIT ?", (conversation_id, n + 1)).fetchall()
        page = [event_row(r) for r in rows[:n]]
        page.reverse()
        return page, len(rows) > n

    def search_messages(
        self, username: str, query: str, conversation_id: str | None = None, limit: int = 20
    ) -> list[EventRow]:
        """Live messages matching the FTS5 ``query`` in conversations ``username`` belongs to now, newest first.

        With ``conversation_id``, only in that one (nothing if the user is not a member). A query that is not
        valid FTS5 syntax raises ``InvalidArgument`` saying how to write one.
        """
        if not query.strip():
            raise InvalidArgument("search query: type at least one word to search for")
        if len(query) > MAX_SEARCH_CHARS:
            raise InvalidArgument(f"search query: at most {MAX_SEARCH_CHARS} characters (got {len(query)})")
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM messages_fts AS f JOIN events AS e ON e.id = f.rowid "
            "WHERE messages_fts MATCH ? "
            "AND e.conversation_id IN (SELECT conversation_id FROM members WHERE username = ?)"
        )
        params: tuple[object, ...] = (query, username)
        if conversation_id is not None:
            sql += " AND e.conversation_id = ?"
            params += (conversation_id,)
        try:
            rows = self._conn.execute(sql + " ORDER BY f.rowid DESC LIMIT ?", (*params, _limit(limit, 20))).fetchall()
        except sqlite3.OperationalError as exc:
            raise InvalidArgument(
                f"search query {query[:80]!r} is not valid ({exc}): search for plain words, and put phrases or words "
                'with punctuation in double quotes, e.g. "don\'t panic"'
            ) from None
        return [event_row(r) for r in rows]

    # -- admin key-value --------------------------------------------------------------------------------------

    def kv_get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        r = self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if r is None else bytes(r[0])
