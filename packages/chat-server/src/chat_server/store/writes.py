"""``ChatWriter``: what each chat command does to the database, inside the state machine's transaction.

Every method reads only the command, the log time and the database, so every node makes the same rows: seqs
are the conversation's ``last_seq`` + 1, event ids one more than the largest (the writer picks them, so a send
can name its event before inserting it), times the log time. A refusal raises a
``ChatRefusal`` before or after writing; the caller rolls the transaction back either way. Notices for the
listener are appended to the list passed in and delivered by the caller after the commit.

Changes to the full-text index (``messages_fts``) are queued in ``search_updates`` rather than written at once:
an FTS5 table writes a new index segment each time a savepoint is released, so writing once per batch (the
caller's ``flush_search_index`` before it commits) is much cheaper than once per command. The caller drops the
updates a refused command queued (``rolled_back``); nothing reads the index inside a batch.

Results (what ``ChatStateMachine.apply`` returns):

- register, set_display_name, presence: ``UserRow``
- login: ``SessionRow``; logout: ``{"existed": bool}``
- open_direct, create_room, invite, join, leave: ``ConversationRow`` as the actor sees it (after a leave:
  ``last_seq`` and ``last_event`` are the LEFT event, the per-user fields 0)
- send: ``{"event": EventRow, "duplicate": bool}`` (the MESSAGE event)
- edit / delete: ``{"event": EventRow, "message": EventRow, "duplicate": bool}`` (the EDITED / DELETED event
  and the message as it now reads)
- mark_read: ``{"read_seq": int, "unread_count": int}``; typing: None
- kv_put: ``{}``; kv_delete: ``{"existed": bool}``; kv_cas: ``{"succeeded": bool, "found": bool,
  "current_value": bytes}`` (after a success ``current_value`` is b"": the key holds the command's new value)

A retry (same ``dedup_key``) returns the first result; where the result has a ``duplicate`` key it is True.
"""

from __future__ import annotations

import itertools
import operator
import sqlite3
from dataclasses import replace
from typing import Final

from chat_server.commands import (
    ChatCommand,
    CreateRoom,
    Delete,
    Edit,
    Invite,
    Join,
    KvCas,
    KvDelete,
    KvPut,
    Leave,
    Login,
    Logout,
    MarkRead,
    OpenDirect,
    Presence,
    Register,
    Send,
    SetDisplayName,
    Typing,
    dedup_key,
)
from chat_server.store.applied import AppliedRequests
from chat_server.store.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from chat_server.store.notices import EventsAppended, Notice, PresenceNotice, TypingNotice
from chat_server.store.queries import EVENT_COLUMNS, ChatQueries, event_row
from chat_server.store.rows import ConversationKind, ConversationRow, EventKind, EventRow, SessionRow, UserRow

SESSION_PRUNE_BATCH: Final = 100
"""At most this many expired sessions are removed per login."""

_INSERT_EVENT = (
    "INSERT INTO events (id, conversation_id, seq, kind, sender, body, target_seq, member, time_ms, edited_at_ms, "
    "deleted, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)"
)
_NEXT_EVENT_ID = "SELECT coalesce(max(id), 0) + 1 FROM events"
_INFINITIVE: Final = {"edited": "edit", "deleted": "delete"}
SELF_UNDOING: Final = frozenset({Send})
"""Commands whose failure undoes its own writes: the caller needs no savepoint around them (``_send``)."""
_FTS_INSERT = "INSERT INTO messages_fts (rowid, body) VALUES (?, ?)"
_FTS_DELETE = "INSERT INTO messages_fts (messages_fts, rowid, body) VALUES ('delete', ?, ?)"
_BUMP = "UPDATE conversations SET last_seq = ?, last_event_id = ? WHERE id = ?"
_CONVERSATION = "SELECT kind, public, last_seq FROM conversations WHERE id = ?"
_MEMBER = "SELECT joined_seq, read_seq FROM members WHERE conversation_id = ? AND username = ?"
_SEND_CHECK = (  # a send's two checks in one statement: (last_seq, the sender's joined_seq or NULL), no row: no room
    "SELECT c.last_seq, m.joined_seq FROM conversations AS c "
    "LEFT JOIN members AS m ON m.conversation_id = c.id AND m.username = ? WHERE c.id = ?"
)
_ADD_MEMBER = "INSERT INTO members (conversation_id, username, joined_seq, read_seq) VALUES (?, ?, ?, ?)"
_USER_EXISTS = "SELECT 1 FROM users WHERE username = ?"


def _names(usernames: list[str]) -> str:
    return ", ".join(repr(u) for u in usernames)


def _unique(usernames: list[str], skip: str) -> list[str]:
    """``usernames`` without repeats and without ``skip``, in first-seen order."""
    seen = {skip}
    out = []
    for name in usernames:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _not_member(conversation_id: str) -> PermissionDenied:
    """The refusal for a caller who is not a member of ``conversation_id``."""
    if conversation_id.startswith("dm:"):
        return PermissionDenied(f"only its two participants can use direct conversation {conversation_id!r}")
    return PermissionDenied(
        f"you are not a member of room {conversation_id!r}; join it if it is public, or ask a member to invite you"
    )


def _as_duplicate(result: object) -> object:
    if isinstance(result, dict) and "duplicate" in result:
        return {**result, "duplicate": True}
    return result


class ChatWriter:
    """Applies decoded chat commands to one connection (the caller owns the transaction)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._queries = ChatQueries(conn)
        self._applied = AppliedRequests(conn)
        self._next_id: int | None = None  # the id the next event gets (None: ask the table)
        self.search_updates: list[tuple[str, tuple[int, str]]] = []
        """Full-text index changes not yet written, in order: (statement, (event id, body))."""

    def flush_search_index(self) -> None:
        """Write the queued full-text index changes (in the caller's transaction)."""
        updates, self.search_updates = self.search_updates, []
        for statement, run in itertools.groupby(updates, key=operator.itemgetter(0)):  # a run: one executemany
            self._conn.executemany(statement, [params for _, params in run])

    def rolled_back(self, keep: int) -> None:
        """The caller rolled back a command: forget what it queued and cached.

        The full-text changes after the first ``keep`` are dropped, and what is cached about rows it may have
        changed.
        """
        del self.search_updates[keep:]
        self._applied.forget_cache()
        self._next_id = None

    def apply(self, command: ChatCommand, time_ms: int, notices: list[Notice]) -> object:
        """Apply ``command`` at log time ``time_ms`` (or return the first result of a retry); see the module."""
        if type(command) is Send:  # the hottest command has a path of its own (fewer statements)
            return self._send(command, time_ms, notices)
        key = dedup_key(command)
        if key is not None:
            prior = self._first_result(command, key)
            if prior is not None:
                return prior
        result = self._run(command, time_ms, notices)
        if key is not None:
            self._applied.record(key[0], key[1], command.op, time_ms, result)
        self._applied.prune(time_ms)
        return result

    def _first_result(self, command: ChatCommand, key: tuple[str, str]) -> object:
        """The result the first command under ``key`` had (marked a duplicate), None if there was none."""
        prior = self._applied.lookup(*key)
        if prior is None:
            return None
        op, result = prior
        if op != command.op:
            raise InvalidArgument(
                f"request_id {key[1]!r} was already used for another request ({op}); use a new request_id "
                "for each action"
            )
        return _as_duplicate(result)

    def _run(self, cmd: ChatCommand, t: int, notices: list[Notice]) -> object:
        match cmd:
            case MarkRead():
                return self._mark_read(cmd)
            case Typing():
                self._typing(cmd, notices)
                return None
            case Presence():
                return self._presence(cmd, t, notices)
            case Edit():
                return self._edit(cmd, t, notices)
            case Delete():
                return self._delete(cmd, t, notices)
            case Register():
                return self._register(cmd, t)
            case Login():
                return self._login(cmd, t)
            case Logout():
                cur = self._conn.execute("DELETE FROM sessions WHERE token_hash = ?", (cmd.token_hash,))
                return {"existed": cur.rowcount > 0}
            case SetDisplayName():
                return self._set_display_name(cmd)
            case OpenDirect():
                return self._open_direct(cmd, t, notices)
            case CreateRoom():
                return self._create_room(cmd, t, notices)
            case Invite():
                return self._invite(cmd, t, notices)
            case Join():
                return self._join(cmd, t, notices)
            case Leave():
                return self._leave(cmd, t, notices)
            case KvPut():
                self._conn.execute(
                    "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (cmd.key, cmd.value),
                )
                return {}
            case KvDelete():
                cur = self._conn.execute("DELETE FROM kv WHERE key = ?", (cmd.key,))
                return {"existed": cur.rowcount > 0}
            case KvCas():
                return self._kv_cas(cmd)
        raise InvalidArgument(f"unknown command {type(cmd).__name__}")  # pragma: no cover (the union is closed)

    # -- shared steps -------------------------------------------------------------------------------------------

    def _user(self, username: str) -> UserRow:
        user = self._queries.user(username)
        if user is None:
            raise NotFound(f"there is no user named {username!r}")
        return user

    def _require_users(self, usernames: list[str]) -> None:
        conn = self._conn
        missing = [u for u in usernames if conn.execute(_USER_EXISTS, (u,)).fetchone() is None]
        if missing:
            noun = "user" if len(missing) == 1 else "users"
            raise NotFound(f"there is no {noun} named {_names(missing)}; check the spelling (nothing was changed)")

    def _conversation(self, conversation_id: str) -> tuple[ConversationKind, bool, int]:
        """``(kind, public, last_seq)`` of the conversation, or ``NotFound``."""
        r = self._conn.execute(_CONVERSATION, (conversation_id,)).fetchone()
        if r is None:
            raise NotFound(f"there is no conversation {conversation_id!r}")
        return ConversationKind(r[0]), bool(r[1]), r[2]

    def _member(self, conversation_id: str, actor: str) -> tuple[int, int]:
        """``(joined_seq, read_seq)`` of ``actor`` in the conversation, or ``PermissionDenied``."""
        r = self._conn.execute(_MEMBER, (conversation_id, actor)).fetchone()
        if r is None:
            raise _not_member(conversation_id)
        return r[0], r[1]

    def _append(
        self,
        conversation_id: str,
        seq: int,
        kind: EventKind,
        sender: str,
        time_ms: int,
        *,
        body: str = "",
        target_seq: int = 0,
        member: str = "",
        request_id: str = "",
    ) -> EventRow:
        """Insert event ``seq`` (the caller's last_seq + 1) and make it the conversation's newest."""
        conn = self._conn
        event_id = self._next_event_id()
        conn.execute(
            _INSERT_EVENT, (event_id, conversation_id, seq, kind, sender, body, target_seq, member, time_ms, request_id)
        )
        self._next_id = event_id + 1
        if kind is EventKind.MESSAGE:
            self.search_updates.append((_FTS_INSERT, (event_id, body)))
        conn.execute(_BUMP, (seq, event_id, conversation_id))
        return EventRow(conversation_id, seq, kind, sender, body, target_seq, member, time_ms, 0, False, request_id)

    def _next_event_id(self) -> int:
        """The id the next event gets: one more than the largest (what SQLite would pick; ours to know first)."""
        if self._next_id is None:
            (self._next_id,) = self._conn.execute(_NEXT_EVENT_ID).fetchone()
        return self._next_id

    def _add_member(self, conversation_id: str, username: str, joined_seq: int) -> None:
        self._conn.execute(_ADD_MEMBER, (conversation_id, username, joined_seq, joined_seq))

    def _count_members(self, conversation_id: str, delta: int) -> None:
        self._conn.execute(
            "UPDATE conversations SET member_count = member_count + ? WHERE id = ?", (delta, conversation_id)
        )

    def _view(self, conversation_id: str, username: str) -> ConversationRow:
        row = self._queries.conversation(conversation_id, username)
        assert row is not None
        return row

    # -- accounts -----------------------------------------------------------------------------------------------

    def _register(self, cmd: Register, t: int) -> UserRow:
        if self._conn.execute(_USER_EXISTS, (cmd.username,)).fetchone() is not None:
            raise AlreadyExists(f"username {cmd.username!r} is taken; choose another one")
        display_name = cmd.display_name or cmd.username
        self._conn.execute(
            "INSERT INTO users (username, password_hash, display_name, created_at_ms) VALUES (?, ?, ?, ?)",
            (cmd.username, cmd.password_hash, display_name, t),
        )
        return UserRow(cmd.username, display_name, t)

    def _login(self, cmd: Login, t: int) -> SessionRow:
        conn = self._conn
        self._user(cmd.username)
        conn.execute(
            "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at_ms < ? "
            "ORDER BY expires_at_ms, token_hash LIMIT ?)",
            (t, SESSION_PRUNE_BATCH),
        )
        if conn.execute("SELECT 1 FROM sessions WHERE token_hash = ?", (cmd.token_hash,)).fetchone() is not None:
            raise AlreadyExists("this session token is in use already; log in again")
        session = SessionRow(cmd.token_hash, cmd.username, cmd.device, t, cmd.expires_at_ms)
        conn.execute(
            "INSERT INTO sessions (token_hash, username, device, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?)",
            (session.token_hash, session.username, session.device, session.created_at_ms, session.expires_at_ms),
        )
        return session

    def _set_display_name(self, cmd: SetDisplayName) -> UserRow:
        self._user(cmd.actor)
        self._conn.execute("UPDATE users SET display_name = ? WHERE username = ?", (cmd.display_name, cmd.actor))
        return self._user(cmd.actor)

    def _presence(self, cmd: Presence, t: int, notices: list[Notice]) -> UserRow:
        self._user(cmd.actor)
        expires = cmd.expires_at_ms if cmd.online else 0
        self._conn.execute(
            "UPDATE users SET last_seen_ms = ?, presence_expires_ms = ? WHERE username = ?", (t, expires, cmd.actor)
        )
        notices.append(PresenceNotice(cmd.actor, cmd.online, t, expires))
        return self._user(cmd.actor)

    # -- conversations ------------------------------------------------------------------------------------------

    def _open_direct(self, cmd: OpenDirect, t: int, notices: list[Notice]) -> ConversationRow:
        cid, actor, peer = cmd.conversation_id, cmd.actor, cmd.peer
        if self._conn.execute(_CONVERSATION, (cid,)).fetchone() is not None:
            return self._view(cid, actor)
        self._require_users([actor, peer])
        self._conn.execute(
            "INSERT INTO conversations (id, kind, name, topic, public, created_by, created_at_ms, last_seq, "
            "last_event_id, member_count) VALUES (?, ?, '', '', 0, ?, ?, 0, 0, 2)",
            (cid, ConversationKind.DIRECT, actor, t),
        )
        rid = cmd.request_id
        events = (
            self._append(cid, 1, EventKind.CREATED, actor, t, request_id=rid),
            self._append(cid, 2, EventKind.JOINED, actor, t, member=actor, request_id=rid),
            self._append(cid, 3, EventKind.JOINED, actor, t, member=peer, request_id=rid),
        )
        self._add_member(cid, actor, 2)
        self._add_member(cid, peer, 3)
        notices.append(EventsAppended(cid, events))
        return self._view(cid, actor)

    def _create_room(self, cmd: CreateRoom, t: int, notices: list[Notice]) -> ConversationRow:
        cid, actor, rid = cmd.conversation_id, cmd.actor, cmd.request_id
        if self._conn.execute(_CONVERSATION, (cid,)).fetchone() is not None:
            raise AlreadyExists(f"conversation {cid!r} exists already; create the room again with a new id")
        invitees = _unique(cmd.members, actor)
        self._require_users([actor, *invitees])
        self._conn.execute(
            "INSERT INTO conversations (id, kind, name, topic, public, created_by, created_at_ms, last_seq, "
            "last_event_id, member_count) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
            (cid, ConversationKind.ROOM, cmd.name, cmd.topic, cmd.public, actor, t, 1 + len(invitees)),
        )
        events = [
            self._append(cid, 1, EventKind.CREATED, actor, t, body=cmd.name, request_id=rid),
            self._append(cid, 2, EventKind.JOINED, actor, t, member=actor, request_id=rid),
        ]
        self._add_member(cid, actor, 2)
        for seq, invitee in enumerate(invitees, start=3):
            events.append(self._append(cid, seq, EventKind.JOINED, actor, t, member=invitee, request_id=rid))
            self._add_member(cid, invitee, seq)
        notices.append(EventsAppended(cid, tuple(events)))
        return self._view(cid, actor)

    def _invite(self, cmd: Invite, t: int, notices: list[Notice]) -> ConversationRow:
        cid, actor = cmd.conversation_id, cmd.actor
        kind, _, last_seq = self._conversation(cid)
        if kind is not ConversationKind.ROOM:
            raise FailedPrecondition(
                "a direct conversation has exactly two members; create a room to talk with more people"
            )
        self._member(cid, actor)
        conn = self._conn
        new = [u for u in _unique(cmd.usernames, actor) if conn.execute(_MEMBER, (cid, u)).fetchone() is None]
        self._require_users(new)
        events = []
        for seq, invitee in enumerate(new, start=last_seq + 1):
            events.append(self._append(cid, seq, EventKind.JOINED, actor, t, member=invitee, request_id=cmd.request_id))
            self._add_member(cid, invitee, seq)
        if events:
            self._count_members(cid, len(events))
            notices.append(EventsAppended(cid, tuple(events)))
        return self._view(cid, actor)

    def _join(self, cmd: Join, t: int, notices: list[Notice]) -> ConversationRow:
        cid, actor = cmd.conversation_id, cmd.actor
        kind, public, last_seq = self._conversation(cid)
        if self._conn.execute(_MEMBER, (cid, actor)).fetchone() is not None:
            return self._view(cid, actor)
        if kind is not ConversationKind.ROOM:
            raise PermissionDenied("a direct conversation cannot be joined")
        if not public:
            raise PermissionDenied(f"room {cid!r} is private: ask one of its members to invite you")
        self._user(actor)
        event = self._append(cid, last_seq + 1, EventKind.JOINED, actor, t, member=actor, request_id=cmd.request_id)
        self._add_member(cid, actor, event.seq)
        self._count_members(cid, 1)
        notices.append(EventsAppended(cid, (event,)))
        return self._view(cid, actor)

    def _leave(self, cmd: Leave, t: int, notices: list[Notice]) -> ConversationRow:
        cid, actor = cmd.conversation_id, cmd.actor
        kind, _, last_seq = self._conversation(cid)
        if kind is not ConversationKind.ROOM:
            raise FailedPrecondition("a direct conversation cannot be left")
        self._member(cid, actor)
        event = self._append(cid, last_seq + 1, EventKind.LEFT, actor, t, member=actor, request_id=cmd.request_id)
        self._conn.execute("DELETE FROM members WHERE conversation_id = ? AND username = ?", (cid, actor))
        self._count_members(cid, -1)
        notices.append(EventsAppended(cid, (event,)))
        return self._view(cid, actor)

    # -- messages -----------------------------------------------------------------------------------------------

    def _send(self, cmd: Send, t: int, notices: list[Notice]) -> object:
        """A message, in four statements: claim the request id, check, insert the event, bump the conversation.

        The exactly-once row is claimed first (an insert that does nothing if the request id was used): the
        common case then needs no lookup, and the row's result already names the event about to be inserted
        (its id is known before the insert). A retry finds the claim taken and gets the first result.

        A send runs without a savepoint (``SELF_UNDOING``; a savepoint and its release cost a fifth of the
        apply): whatever stops it after the claim, a refusal or an unexpected error, deletes what it wrote
        before the exception goes on, so the command still changes nothing unless it succeeds.
        """
        conn, actor, cid, request_id = self._conn, cmd.actor, cmd.conversation_id, cmd.request_id
        event_id = self._next_event_id()
        if not self._applied.claim_event(actor, request_id, cmd.op, t, event_id):
            return self._first_result(cmd, (actor, request_id))
        try:
            r = conn.execute(_SEND_CHECK, (actor, cid)).fetchone()
            if r is None:
                raise NotFound(f"there is no conversation {cid!r}")
            if r[1] is None:
                raise _not_member(cid)
            event = self._append(cid, r[0] + 1, EventKind.MESSAGE, actor, t, body=cmd.body, request_id=request_id)
        except BaseException:  # the caller's rolled_back() drops the queued index update and the cached next id
            conn.execute("DELETE FROM events WHERE id = ?", (event_id,))  # if _append got as far as inserting it
            self._applied.unclaim(actor, request_id)
            raise
        notices.append(EventsAppended(cid, (event,)))
        self._applied.prune(t)
        return {"event": event, "duplicate": False}

    def _own_message(self, cid: str, seq: int, actor: str, verb: str) -> tuple[int, EventRow]:
        """``(event id, row)`` of ``actor``'s live message at ``seq``, or the refusal saying why not."""
        r = self._conn.execute(
            f"SELECT e.id, {EVENT_COLUMNS} FROM events AS e WHERE e.conversation_id = ? AND e.seq = ?", (cid, seq)
        ).fetchone()
        if r is None:
            raise NotFound(f"there is no message at seq {seq} in conversation {cid!r}")
        message = event_row(r, 1)
        if message.kind is not EventKind.MESSAGE:
            raise InvalidArgument(
                f"seq {seq} is a {message.kind.name.lower()} event, not a message; only messages can be {verb}"
            )
        if message.sender != actor:
            raise PermissionDenied(f"message {seq} was sent by someone else; you can only {_INFINITIVE[verb]} your own")
        if message.deleted:
            raise FailedPrecondition(f"message {seq} was deleted and can no longer be {verb}")
        return r[0], message

    def _edit(self, cmd: Edit, t: int, notices: list[Notice]) -> dict[str, object]:
        cid, actor, seq = cmd.conversation_id, cmd.actor, cmd.seq
        _, _, last_seq = self._conversation(cid)
        self._member(cid, actor)
        event_id, message = self._own_message(cid, seq, actor, "edited")
        conn = self._conn
        self.search_updates += [(_FTS_DELETE, (event_id, message.body)), (_FTS_INSERT, (event_id, cmd.body))]
        conn.execute("UPDATE events SET body = ?, edited_at_ms = ? WHERE id = ?", (cmd.body, t, event_id))
        event = self._append(
            cid, last_seq + 1, EventKind.EDITED, actor, t, body=cmd.body, target_seq=seq, request_id=cmd.request_id
        )
        notices.append(EventsAppended(cid, (event,)))
        message = replace(message, body=cmd.body, edited_at_ms=t)
        return {"event": event, "message": message, "duplicate": False}

    def _delete(self, cmd: Delete, t: int, notices: list[Notice]) -> dict[str, object]:
        cid, actor, seq = cmd.conversation_id, cmd.actor, cmd.seq
        _, _, last_seq = self._conversation(cid)
        self._member(cid, actor)
        event_id, message = self._own_message(cid, seq, actor, "deleted")
        conn = self._conn
        self.search_updates.append((_FTS_DELETE, (event_id, message.body)))
        conn.execute("UPDATE events SET body = '', deleted = 1 WHERE id = ?", (event_id,))
        # The text of its edits goes too: a deleted message keeps no body anywhere.
        conn.execute(
            "UPDATE events SET body = '' WHERE conversation_id = ? AND target_seq = ? AND target_seq > 0 AND kind = ?",
            (cid, seq, EventKind.EDITED),
        )
        event = self._append(cid, last_seq + 1, EventKind.DELETED, actor, t, target_seq=seq, request_id=cmd.request_id)
        notices.append(EventsAppended(cid, (event,)))
        message = replace(message, body="", deleted=True)
        return {"event": event, "message": message, "duplicate": False}

    def _mark_read(self, cmd: MarkRead) -> dict[str, object]:
        cid, actor = cmd.conversation_id, cmd.actor
        _, _, last_seq = self._conversation(cid)
        _, read_seq = self._member(cid, actor)
        target = max(read_seq, min(cmd.seq, last_seq))
        if target != read_seq:
            self._conn.execute(
                "UPDATE members SET read_seq = ? WHERE conversation_id = ? AND username = ?", (target, cid, actor)
            )
        return {"read_seq": target, "unread_count": self._queries.unread_count(cid, actor)}

    def _typing(self, cmd: Typing, notices: list[Notice]) -> None:
        self._conversation(cmd.conversation_id)
        self._member(cmd.conversation_id, cmd.actor)
        expires = cmd.expires_at_ms if cmd.typing else 0
        notices.append(TypingNotice(cmd.conversation_id, cmd.actor, cmd.typing, expires))

    # -- admin key-value ----------------------------------------------------------------------------------------

    def _kv_cas(self, cmd: KvCas) -> dict[str, object]:
        r = self._conn.execute("SELECT value FROM kv WHERE key = ?", (cmd.key,)).fetchone()
        current = None if r is None else bytes(r[0])
        matches = current is None if cmd.expect_absent else current == cmd.expected_value
        if not matches:
            return {"succeeded": False, "found": current is not None, "current_value": current or b""}
        self._conn.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (cmd.key, cmd.new_value),
        )
        return {"succeeded": True, "found": True, "current_value": b""}
