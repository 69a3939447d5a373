"""ChatStateMachine: every command applied to SQLite, refusals, exactly-once, durability, snapshots, determinism."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import T0, TOKEN, Store, token

from chat_server import commands as c
from chat_server.store import (
    AlreadyExists,
    ChatStateMachine,
    ConversationKind,
    ConversationRow,
    EventKind,
    EventRow,
    EventsAppended,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PresenceNotice,
    SessionRow,
    SnapshotError,
    StoreFailed,
    TypingNotice,
    UserRow,
)
from chat_server.store.applied import PRUNE_BATCH, RETENTION_MS
from chat_server.store.state_machine import RESTORE_SUFFIX
from raft_core.runtime import Command, DurableStateMachine


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "chat.db")
    yield store
    store.close()


@pytest.fixture
def people(s: Store) -> Store:
    s.register("alice", "bob", "carol", "dave")
    return s


def kinds(s: Store, cid: str) -> list[tuple[int, str, str, str]]:
    page, _ = s.q.events(cid, limit=1000)
    return [(e.seq, e.kind.name, e.sender, e.member) for e in page]


# -- basics -------------------------------------------------------------------------------------------------------


def test_is_a_durable_state_machine(s: Store) -> None:
    assert isinstance(s.sm, DurableStateMachine)
    assert s.sm.durable_position() == (0, 0)


def test_new_database_has_schema_and_wal(s: Store) -> None:
    conn = s.sm.connection
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)


def test_opening_a_foreign_database_fails(tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE x (y)")
    other.commit()
    other.close()
    with pytest.raises(RuntimeError, match="schema version 0"):
        ChatStateMachine(tmp_path / "other.db")


# -- accounts -----------------------------------------------------------------------------------------------------


def test_register(s: Store) -> None:
    user = s.apply(c.Register(request_id="r1", username="alice", password_hash="secret-hash"))
    assert user == UserRow("alice", "alice", s.time, 0, 0)
    bob = s.apply(c.Register(request_id="r2", username="bob", password_hash="h", display_name="Bob B"))
    assert isinstance(bob, UserRow) and bob.display_name == "Bob B"
    assert s.q.password_hash("alice") == "secret-hash"


def test_register_taken_username(s: Store) -> None:
    s.register("bob")
    message = s.refuse(c.Register(request_id="other", username="bob", password_hash="secret-hash"), AlreadyExists)
    assert message == "username 'bob' is taken; choose another one"
    assert "secret-hash" not in message


def test_register_retry_returns_first_result(s: Store) -> None:
    cmd = c.Register(request_id="r1", username="alice", password_hash="h")
    first = s.apply(cmd)
    assert s.apply(cmd) == first
    assert s.sm.connection.execute("SELECT count(*) FROM users").fetchone() == (1,)


def test_login_and_logout(people: Store) -> None:
    s = people
    session = s.apply(
        c.Login(request_id="l1", username="alice", token_hash=TOKEN, device="phone", expires_at_ms=T0 * 2)
    )
    assert session == SessionRow(TOKEN, "alice", "phone", s.time, T0 * 2)
    assert s.q.session_by_token_hash(TOKEN) == session
    assert s.apply(c.Logout(request_id="o1", token_hash=TOKEN)) == {"existed": True}
    assert s.q.session_by_token_hash(TOKEN) is None
    assert s.apply(c.Logout(request_id="o2", token_hash=TOKEN)) == {"existed": False}


def test_login_unknown_user(s: Store) -> None:
    message = s.refuse(c.Login(request_id="l", username="zed", token_hash=TOKEN, expires_at_ms=1), NotFound)
    assert "zed" in message and TOKEN not in message


def test_login_reusing_a_token_hash(people: Store) -> None:
    people.apply(c.Login(request_id="l1", username="alice", token_hash=TOKEN, expires_at_ms=T0 * 2))
    message = people.refuse(
        c.Login(request_id="l2", username="bob", token_hash=TOKEN, expires_at_ms=T0 * 2), AlreadyExists
    )
    assert TOKEN not in message


def test_login_prunes_expired_sessions_in_bounded_batches(people: Store) -> None:
    s = people
    expiry = s.time + 1000
    for n in range(150):
        s.apply(c.Login(request_id=f"l{n}", username="bob", token_hash=token(n), expires_at_ms=expiry))
    s.apply(c.Login(request_id="keep", username="bob", token_hash=token(999), expires_at_ms=T0 * 3))

    def count() -> int:
        return int(s.sm.connection.execute("SELECT count(*) FROM sessions").fetchone()[0])

    assert count() == 151
    s.apply(c.Login(request_id="x1", username="alice", token_hash=token(1000), expires_at_ms=T0 * 3), at=expiry + 1)
    assert count() == 152 - 100
    s.apply(c.Login(request_id="x2", username="alice", token_hash=token(1001), expires_at_ms=T0 * 3))
    assert count() == 3
    assert s.q.session_by_token_hash(token(999)) is not None


def test_set_display_name(people: Store) -> None:
    user = people.apply(c.SetDisplayName(request_id="d", actor="alice", display_name="Alice Liddell"))
    assert isinstance(user, UserRow) and user.display_name == "Alice Liddell"
    assert people.q.user("alice") == user
    people.refuse(c.SetDisplayName(request_id="d2", actor="zed", display_name="Z"), NotFound)


def test_presence_lease(people: Store) -> None:
    s = people
    lease = s.time + 30_000
    user = s.apply(c.Presence(actor="alice", online=True, expires_at_ms=lease))
    assert isinstance(user, UserRow)
    assert (user.last_seen_ms, user.presence_expires_ms) == (s.time, lease)
    assert user.online(s.time) and not user.online(lease)
    assert s.notices[-1] == PresenceNotice("alice", True, s.time, lease)
    user = s.apply(c.Presence(actor="alice", online=False, expires_at_ms=s.time + 30_000))
    assert isinstance(user, UserRow) and user.presence_expires_ms == 0 and user.last_seen_ms == s.time
    assert s.notices[-1] == PresenceNotice("alice", False, s.time, 0)
    s.refuse(c.Presence(actor="zed", online=True, expires_at_ms=1), NotFound)


# -- conversations ------------------------------------------------------------------------------------------------


def test_open_direct_creates_once(people: Store) -> None:
    s = people
    cid = c.direct_id("bob", "alice")
    conv = s.apply(c.OpenDirect(request_id="o1", actor="bob", peer="alice", conversation_id=cid))
    assert isinstance(conv, ConversationRow)
    assert (conv.id, conv.kind, conv.name, conv.member_count, conv.last_seq) == (
        cid,
        ConversationKind.DIRECT,
        "alice",
        2,
        3,
    )
    assert (conv.joined_seq, conv.read_seq, conv.unread_count) == (2, 2, 0)
    assert kinds(s, cid) == [(1, "CREATED", "bob", ""), (2, "JOINED", "bob", "bob"), (3, "JOINED", "bob", "alice")]
    assert s.notices[-1] == EventsAppended(cid, tuple(s.q.events(cid)[0]))
    notices = len(s.notices)
    again = s.apply(c.OpenDirect(request_id="o2", actor="alice", peer="bob", conversation_id=cid))
    assert isinstance(again, ConversationRow) and again.name == "bob" and again.last_seq == 3
    assert len(s.notices) == notices


def test_open_direct_refusals(people: Store) -> None:
    s = people
    assert "'zed'" in s.refuse(
        c.OpenDirect(request_id="o", actor="alice", peer="zed", conversation_id="dm:alice:zed"), NotFound
    )
    # A hand-made command that skips validation (actor == peer) is refused when decoded.
    bad = b'{"op":"open_direct","request_id":"o","actor":"alice","peer":"alice","conversation_id":"dm:alice:alice"}'
    before = s.dump(meta=False)
    with pytest.raises(InvalidArgument, match="malformed"):
        s.raw(bad)
    assert s.dump(meta=False) == before
    assert s.sm.durable_position() == (s.index, s.time)


def test_create_room(people: Store) -> None:
    s = people
    conv = s.apply(
        c.CreateRoom(
            request_id="c1",
            actor="alice",
            conversation_id="r:ops",
            name="Ops",
            topic="on call",
            public=True,
            members=["bob", "alice", "carol", "bob"],
        )
    )
    assert isinstance(conv, ConversationRow)
    assert (conv.name, conv.topic, conv.public, conv.member_count, conv.last_seq) == ("Ops", "on call", True, 3, 4)
    assert conv.created_by == "alice" and conv.created_at_ms == s.time and conv.joined_seq == 2
    assert kinds(s, "r:ops") == [
        (1, "CREATED", "alice", ""),
        (2, "JOINED", "alice", "alice"),
        (3, "JOINED", "alice", "bob"),
        (4, "JOINED", "alice", "carol"),
    ]
    created = s.q.events("r:ops")[0][0]
    assert created.body == "Ops" and created.request_id == "c1" and created.time_ms == s.time
    notice = s.notices[-1]
    assert isinstance(notice, EventsAppended) and [e.seq for e in notice.events] == [1, 2, 3, 4]


def test_create_room_refusals_apply_nothing(people: Store) -> None:
    s = people
    message = s.refuse(
        c.CreateRoom(request_id="c", actor="alice", conversation_id="r:x", name="X", members=["bob", "zed", "yan"]),
        NotFound,
    )
    assert "'zed', 'yan'" in message
    assert s.q.conversation("r:x") is None
    s.room("alice", "Taken")
    cid = s.q.conversations_for("alice")[0].id
    s.refuse(c.CreateRoom(request_id="c2", actor="bob", conversation_id=cid, name="Again"), AlreadyExists)


def test_invite(people: Store) -> None:
    s = people
    cid = s.room("alice", "Team", ("bob",))
    conv = s.apply(c.Invite(request_id="i1", actor="bob", conversation_id=cid, usernames=["carol", "alice", "carol"]))
    assert isinstance(conv, ConversationRow) and conv.member_count == 3 and conv.last_seq == 4
    assert kinds(s, cid)[-1] == (4, "JOINED", "bob", "carol")
    assert s.q.membership(cid, "carol") == 4
    notices = len(s.notices)
    conv = s.apply(c.Invite(request_id="i2", actor="bob", conversation_id=cid, usernames=["carol"]))
    assert isinstance(conv, ConversationRow) and conv.last_seq == 4  # nobody new: no event, no notice
    assert len(s.notices) == notices


def test_invite_refusals(people: Store) -> None:
    s = people
    cid = s.room("alice", "Team", ("bob",))
    dm = s.direct("alice", "bob")
    s.refuse(c.Invite(request_id="i", actor="alice", conversation_id="r:none", usernames=["carol"]), NotFound)
    s.refuse(c.Invite(request_id="i", actor="carol", conversation_id=cid, usernames=["dave"]), PermissionDenied)
    s.refuse(c.Invite(request_id="i", actor="alice", conversation_id=dm, usernames=["carol"]), FailedPrecondition)
    message = s.refuse(
        c.Invite(request_id="i", actor="alice", conversation_id=cid, usernames=["carol", "zed"]), NotFound
    )
    assert "'zed'" in message and "nothing was changed" in message
    assert not s.q.is_member(cid, "carol")


def test_join(people: Store) -> None:
    s = people
    public = s.room("alice", "Lobby", public=True)
    conv = s.join("bob", public)
    assert isinstance(conv, ConversationRow) and conv.member_count == 2 and conv.joined_seq == 3
    assert kinds(s, public)[-1] == (3, "JOINED", "bob", "bob")
    again = s.join("bob", public)
    assert isinstance(again, ConversationRow) and again.last_seq == 3 and again.member_count == 2


def test_join_refusals(people: Store) -> None:
    s = people
    private = s.room("alice", "Secret", ("bob",))
    dm = s.direct("alice", "bob")
    assert "invite" in s.refuse(c.Join(request_id="j", actor="carol", conversation_id=private), PermissionDenied)
    s.refuse(c.Join(request_id="j", actor="carol", conversation_id=dm), PermissionDenied)
    s.refuse(c.Join(request_id="j", actor="carol", conversation_id="r:nope"), NotFound)
    assert isinstance(s.join("bob", private), ConversationRow)  # a member "joining" is a no-op, even if private


def test_leave_and_rejoin(people: Store) -> None:
    s = people
    cid = s.room("alice", "Lobby", ("bob",), public=True)
    s.send("bob", cid, "bye")
    result = s.leave("bob", cid)
    assert isinstance(result, ConversationRow)
    assert (result.last_seq, result.member_count, result.joined_seq, result.read_seq) == (5, 1, 0, 0)
    left = result.last_event
    assert isinstance(left, EventRow) and (left.seq, left.kind, left.member) == (5, EventKind.LEFT, "bob")
    assert s.notices[-1] == EventsAppended(cid, (left,))
    assert not s.q.is_member(cid, "bob")
    conv = s.q.conversation(cid)
    assert conv is not None and conv.member_count == 1
    s.refuse(c.Send(request_id="x", actor="bob", conversation_id=cid, body="hi"), PermissionDenied)
    s.refuse(c.Leave(request_id="x2", actor="bob", conversation_id=cid), PermissionDenied)
    again = s.join("bob", cid)
    assert isinstance(again, ConversationRow) and again.joined_seq == 6 and again.unread_count == 0


def test_leave_refusals(people: Store) -> None:
    s = people
    dm = s.direct("alice", "bob")
    assert "cannot be left" in s.refuse(c.Leave(request_id="l", actor="alice", conversation_id=dm), FailedPrecondition)
    s.refuse(c.Leave(request_id="l", actor="alice", conversation_id="r:none"), NotFound)


# -- messages -----------------------------------------------------------------------------------------------------


def test_send_assigns_dense_seqs(people: Store) -> None:
    s = people
    a = s.direct("alice", "bob")
    b = s.room("carol", "Other", ("alice",))
    seqs_a = [s.send("alice", a, f"m{i}") for i in range(5)]
    seqs_b = [s.send("alice", b, f"m{i}") for i in range(3)]
    assert seqs_a == [4, 5, 6, 7, 8]
    assert seqs_b == [4, 5, 6]
    page, _ = s.q.events(a, limit=100)
    assert [e.seq for e in page] == list(range(1, 9))


def test_send_result_and_notice(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    result = s.apply(c.Send(request_id="m1", actor="alice", conversation_id=cid, body="hi bob"))
    expected = EventRow(cid, 4, EventKind.MESSAGE, "alice", "hi bob", 0, "", s.time, 0, False, "m1")
    assert result == {"event": expected, "duplicate": False}
    assert s.notices[-1] == EventsAppended(cid, (expected,))


def test_send_retry_is_a_duplicate(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    cmd = c.Send(request_id="m1", actor="alice", conversation_id=cid, body="hi")
    first = s.apply(cmd)
    assert isinstance(first, dict)
    notices = len(s.notices)
    s.send("bob", cid, "in between")
    second = s.apply(cmd)
    assert second == {"event": first["event"], "duplicate": True}
    assert len(s.notices) == notices + 1  # only bob's message
    assert s.q.last_seq(cid) == 5
    # the same request id from another user is another request
    other = s.apply(c.Send(request_id="m1", actor="bob", conversation_id=cid, body="hi"))
    assert isinstance(other, dict) and other["duplicate"] is False and other["event"].seq == 6


def test_a_send_retry_after_an_edit_gets_the_message_as_it_is_now_and_keeps_no_second_copy(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    cmd = c.Send(request_id="m1", actor="alice", conversation_id=cid, body="frist")
    first = s.apply(cmd)
    assert isinstance(first, dict)
    (stored,) = s.sm.connection.execute("SELECT result FROM applied_requests WHERE request_id = 'm1'").fetchone()
    assert "frist" not in stored  # a reference to the events row, not a copy of the body
    s.apply(c.Edit(request_id="e1", actor="alice", conversation_id=cid, seq=first["event"].seq, body="first"))
    again = s.apply(cmd)
    assert isinstance(again, dict) and again["duplicate"] is True
    event = again["event"]
    assert (event.seq, event.time_ms, event.sender, event.request_id) == (4, first["event"].time_ms, "alice", "m1")
    assert (event.body, event.edited_at_ms > 0) == ("first", True)
    assert s.q.last_seq(cid) == 5  # the send appended once (seq 4), the edit once (seq 5)


def test_request_id_reused_for_another_op(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    s.apply(c.Send(request_id="same", actor="alice", conversation_id=cid, body="hi"))
    message = s.refuse(c.Leave(request_id="same", actor="alice", conversation_id=cid), InvalidArgument)
    assert "new request_id" in message


def test_a_send_reusing_another_requests_id_is_refused_and_changes_nothing(people: Store) -> None:
    s = people
    room = s.apply(c.CreateRoom(request_id="same", actor="alice", conversation_id="r:x", name="Room"))
    assert isinstance(room, ConversationRow)
    message = s.refuse(c.Send(request_id="same", actor="alice", conversation_id="r:x", body="hi"), InvalidArgument)
    assert "new request_id" in message and "create_room" in message


def test_a_send_retried_after_a_restart_finds_its_event(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    s.send("bob", cid, "first")
    cmd = c.Send(request_id="m1", actor="alice", conversation_id=cid, body="kept")
    first = s.apply(cmd)
    assert isinstance(first, dict)
    s.reopen()  # the next event id is read from the table again
    s.send("bob", cid, "after the restart")
    assert s.apply(cmd) == {"event": first["event"], "duplicate": True}
    ids = [r[0] for r in s.sm.connection.execute("SELECT id FROM events ORDER BY id")]
    assert ids == list(range(1, len(ids) + 1))  # one more than the largest, every time


def test_send_refusals(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    s.refuse(c.Send(request_id="m", actor="carol", conversation_id=cid, body="hi"), PermissionDenied)
    s.refuse(c.Send(request_id="m", actor="alice", conversation_id="r:none", body="hi"), NotFound)
    # a refused request id is not remembered: it works once the request makes sense
    room = s.room("alice", "Room")
    s.refuse(c.Send(request_id="later", actor="bob", conversation_id=room, body="hi"), PermissionDenied)
    s.apply(c.Invite(request_id="inv", actor="alice", conversation_id=room, usernames=["bob"]))
    result = s.apply(c.Send(request_id="later", actor="bob", conversation_id=room, body="hi"))
    assert isinstance(result, dict) and result["duplicate"] is False


def test_edit(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    seq = s.send("alice", cid, "teh cat")
    result = s.edit("alice", cid, seq, "the cat")
    assert isinstance(result, dict)
    edited, message = result["event"], result["message"]
    assert (edited.kind, edited.seq, edited.target_seq, edited.body) == (EventKind.EDITED, seq + 1, seq, "the cat")
    assert (message.seq, message.body, message.edited_at_ms) == (seq, "the cat", s.time)
    assert s.q.event(cid, seq) == message
    assert s.notices[-1] == EventsAppended(cid, (edited,))
    assert s.q.search_messages("bob", "the") == [message]
    assert s.q.search_messages("bob", "teh") == []


def test_edit_refusals(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    seq = s.send("alice", cid, "mine")

    def edit(actor: str, target: int, conversation: str = cid) -> c.Edit:
        return c.Edit(request_id="e", actor=actor, conversation_id=conversation, seq=target, body="x")

    assert "your own" in s.refuse(edit("bob", seq), PermissionDenied)
    assert "not a message" in s.refuse(edit("alice", 1), InvalidArgument)
    assert "no message at seq 99" in s.refuse(edit("alice", 99), NotFound)
    s.refuse(edit("carol", seq), PermissionDenied)
    s.refuse(edit("alice", seq, "r:none"), NotFound)
    s.delete("alice", cid, seq)
    assert "deleted" in s.refuse(edit("alice", seq), FailedPrecondition)


def test_delete(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    seq = s.send("alice", cid, "secret plans")
    s.edit("alice", cid, seq, "secret plans v2")
    result = s.delete("alice", cid, seq)
    assert isinstance(result, dict)
    deleted, message = result["event"], result["message"]
    assert (deleted.kind, deleted.target_seq, deleted.body) == (EventKind.DELETED, seq, "")
    assert (message.body, message.deleted) == ("", True)
    assert s.q.event(cid, seq) == message
    page, _ = s.q.events(cid)
    assert all("secret" not in e.body for e in page)  # the EDITED event's text is gone too
    assert s.q.search_messages("alice", "secret") == []
    assert s.q.search_messages("alice", "plans") == []
    s.refuse(c.Delete(request_id="d2", actor="alice", conversation_id=cid, seq=seq), FailedPrecondition)
    s.refuse(c.Delete(request_id="d3", actor="alice", conversation_id=cid, seq=deleted.seq), InvalidArgument)
    other = s.send("bob", cid, "bob's")
    s.refuse(c.Delete(request_id="d4", actor="alice", conversation_id=cid, seq=other), PermissionDenied)


def test_edit_and_delete_retries(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    seq = s.send("alice", cid, "one")
    edit = c.Edit(request_id="e1", actor="alice", conversation_id=cid, seq=seq, body="two")
    first = s.apply(edit)
    again = s.apply(edit)
    assert isinstance(first, dict) and isinstance(again, dict)
    assert again == {**first, "duplicate": True}
    delete = c.Delete(request_id="d1", actor="alice", conversation_id=cid, seq=seq)
    first = s.apply(delete)
    assert isinstance(first, dict)
    assert s.apply(delete) == {**first, "duplicate": True}  # not refused as "already deleted"
    assert s.q.last_seq(cid) == seq + 2


def test_mark_read(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    for i in range(3):
        s.send("alice", cid, f"m{i}")  # seqs 4, 5, 6
    s.send("bob", cid, "mine")  # 7: bob's own, never unread for bob
    assert s.mark_read("bob", cid, 4) == {"read_seq": 4, "unread_count": 2}
    assert s.mark_read("bob", cid, 2) == {"read_seq": 4, "unread_count": 2}  # never back
    assert s.mark_read("bob", cid, 100) == {"read_seq": 7, "unread_count": 0}  # clamped to last_seq
    before = s.dump(meta=False)
    assert s.mark_read("bob", cid, 7) == {"read_seq": 7, "unread_count": 0}
    assert s.dump(meta=False) == before
    s.refuse(c.MarkRead(actor="carol", conversation_id=cid, seq=1), PermissionDenied)
    s.refuse(c.MarkRead(actor="bob", conversation_id="r:none", seq=1), NotFound)


def test_typing_changes_no_table(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    before = s.dump(meta=False)
    assert s.apply(c.Typing(actor="alice", conversation_id=cid, typing=True, expires_at_ms=s.time + 5000)) is None
    assert s.dump(meta=False) == before
    assert s.sm.durable_position() == (s.index, s.time)
    assert s.notices[-1] == TypingNotice(cid, "alice", True, s.time - 1 + 5000)
    s.apply(c.Typing(actor="alice", conversation_id=cid, typing=False, expires_at_ms=s.time + 5000))
    assert s.notices[-1] == TypingNotice(cid, "alice", False, 0)
    s.refuse(c.Typing(actor="carol", conversation_id=cid, typing=True), PermissionDenied)
    s.refuse(c.Typing(actor="carol", conversation_id="r:none", typing=True), NotFound)


# -- admin key-value ----------------------------------------------------------------------------------------------


def test_kv(s: Store) -> None:
    assert s.apply(c.KvPut(request_id="p1", key=b"k", value=b"v1")) == {}
    assert s.q.kv_get(b"k") == b"v1"
    assert s.apply(c.KvPut(request_id="p2", key=b"k", value=b"v2")) == {}
    assert s.q.kv_get(b"k") == b"v2"
    assert s.apply(c.KvCas(request_id="c1", key=b"k", expected_value=b"nope", new_value=b"v3")) == {
        "succeeded": False,
        "found": True,
        "current_value": b"v2",
    }
    assert s.apply(c.KvCas(request_id="c2", key=b"k", expected_value=b"v2", new_value=b"v3")) == {
        "succeeded": True,
        "found": True,
        "current_value": b"",
    }
    assert s.q.kv_get(b"k") == b"v3"
    assert s.apply(c.KvCas(request_id="c3", key=b"k", expect_absent=True, new_value=b"v4"))["succeeded"] is False  # type: ignore[index]
    assert s.apply(c.KvDelete(request_id="d1", key=b"k")) == {"existed": True}
    assert s.apply(c.KvDelete(request_id="d2", key=b"k")) == {"existed": False}
    assert s.apply(c.KvCas(request_id="c4", key=b"k", expected_value=b"v3", new_value=b"x")) == {
        "succeeded": False,
        "found": False,
        "current_value": b"",
    }
    assert s.apply(c.KvCas(request_id="c5", key=b"k", expect_absent=True, new_value=b"\x00")) == {
        "succeeded": True,
        "found": True,
        "current_value": b"",
    }
    assert s.q.kv_get(b"k") == b"\x00"
    assert s.q.kv_get(b"missing") is None


def test_kv_retries_return_the_first_answer(s: Store) -> None:
    s.apply(c.KvPut(request_id="p1", key=b"k", value=b"v1"))
    cas = c.KvCas(request_id="c1", key=b"k", expected_value=b"v1", new_value=b"v2")
    first = s.apply(cas)
    s.apply(c.KvPut(request_id="p2", key=b"k", value=b"v1"))
    assert s.apply(cas) == first  # not applied again although it would succeed now
    assert s.q.kv_get(b"k") == b"v1"
    s.apply(c.KvPut(request_id="p1", key=b"k", value=b"other"))  # retry of p1: ignored
    assert s.q.kv_get(b"k") == b"v1"


# -- exactly-once retention ---------------------------------------------------------------------------------------


def test_request_ids_are_forgotten_after_a_day_in_bounded_batches(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    old = c.Send(request_id="old", actor="alice", conversation_id=cid, body="x")
    s.apply(old)
    for n in range(150):
        s.apply(c.KvPut(request_id=f"k{n}", key=b"k", value=b"v"))

    def remembered() -> int:
        return int(s.sm.connection.execute("SELECT count(*) FROM applied_requests").fetchone()[0])

    total = remembered()
    assert s.apply(old) == {"event": s.q.event(cid, 4), "duplicate": True}  # within a day
    s.apply(c.Typing(actor="alice", conversation_id=cid, typing=True), at=s.time + RETENTION_MS + 1000)
    assert remembered() == total - PRUNE_BATCH
    result = s.apply(old)
    assert isinstance(result, dict) and result["duplicate"] is False and result["event"].seq == 5
    assert remembered() == 1  # the rest went (all older than a day), the new one stays


# -- durability ---------------------------------------------------------------------------------------------------


def test_refusals_and_garbage_still_advance_the_applied_index(people: Store) -> None:
    s = people
    s.refuse(c.Join(request_id="j", actor="alice", conversation_id="r:none"), NotFound)
    assert s.sm.durable_position() == (s.index, s.time)
    with pytest.raises(InvalidArgument, match="malformed"):
        s.raw(b"\x00 not json")
    assert s.sm.durable_position() == (s.index, s.time)
    s.reopen()
    assert s.sm.durable_position() == (s.index, s.time)


def test_restart_keeps_position_and_state(people: Store) -> None:
    s = people
    cid = s.room("alice", "Room", ("bob",), public=True)
    for i in range(5):
        s.send("bob", cid, f"message {i}")
    before = s.dump()
    position = s.sm.durable_position()
    assert position == (s.index, s.time)
    s.reopen()
    assert s.sm.durable_position() == position
    assert s.dump() == before
    assert s.send("alice", cid, "after restart") == 9


def test_already_applied_entries_are_skipped(people: Store, caplog: pytest.LogCaptureFixture) -> None:
    s = people
    cid = s.direct("alice", "bob")
    before = s.dump()
    data = c.encode(c.Send(request_id="late", actor="alice", conversation_id=cid, body="x"))
    with caplog.at_level(logging.WARNING):
        assert s.sm.apply(Command(s.index, 1, data, s.time)) is None
    assert s.dump() == before
    assert "applied already" in caplog.text


def test_listener_errors_do_not_break_apply(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def boom(notice: object) -> None:
        raise RuntimeError("listener bug")

    sm = ChatStateMachine(tmp_path / "chat.db", on_notice=boom)
    with sm:
        sm.apply(Command(1, 1, c.encode(c.Register(request_id="r", username="alice", password_hash="h")), T0))
        sm.apply(Command(2, 1, c.encode(c.Presence(actor="alice", online=True, expires_at_ms=T0 + 9)), T0 + 1))
        assert sm.durable_position() == (2, T0 + 1)
        assert sm.queries.user("alice") == UserRow("alice", "alice", T0, T0 + 1, T0 + 9)
    assert "listener bug" in caplog.text


def test_a_deterministic_failure_is_recorded_and_reraised(people: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s = people
    before = s.dump(meta=False)

    def bug(*args: object) -> object:
        s.sm.connection.execute("UPDATE users SET display_name = 'half done'")
        raise KeyError("bug")

    monkeypatch.setattr(s.sm._writer, "_run", bug)
    with pytest.raises(KeyError):
        s.apply(c.SetDisplayName(request_id="d", actor="alice", display_name="x"))
    assert s.dump(meta=False) == before
    assert s.sm.durable_position() == (s.index, s.time)


def test_a_database_failure_stops_the_state_machine(people: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    s = people
    position = s.sm.durable_position()

    def disk_error(*args: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(s.sm._writer, "_run", disk_error)
    with pytest.raises(StoreFailed, match="restart the node"):
        s.apply(c.SetDisplayName(request_id="d", actor="alice", display_name="x"))
    monkeypatch.undo()
    with pytest.raises(StoreFailed):
        s.apply(c.SetDisplayName(request_id="d2", actor="alice", display_name="y"))
    assert s.sm.durable_position() == position  # a restarted node re-applies from here
    s.reopen()
    assert s.sm.durable_position() == position


# -- snapshots ----------------------------------------------------------------------------------------------------


def test_snapshot_restore_round_trip(people: Store, tmp_path: Path) -> None:
    s = people
    cid = s.room("alice", "Room", ("bob", "carol"))
    for i in range(20):
        s.send("bob", cid, f"searchable words {i}")
    s.apply(c.KvPut(request_id="k", key=b"\x00", value=b"\xff" * 100))
    image = s.sm.snapshot()
    expected = s.dump()

    (tmp_path / "other").mkdir()
    other = Store(tmp_path / "other" / "chat.db")
    other.register("zed")  # state that the restore replaces
    queries = other.q
    other.sm.restore(image)
    assert other.dump() == expected
    assert other.sm.durable_position() == s.sm.durable_position()
    assert queries.last_seq(cid) == 24  # queries follow the reopened database
    assert len(queries.search_messages("bob", "searchable")) == 20
    assert queries.user("zed") is None
    assert not (tmp_path / "other" / ("chat.db" + RESTORE_SUFFIX)).exists()
    other.reopen()
    assert other.dump() == expected
    other.close()


def test_restore_onto_itself_and_continue(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    s.send("alice", cid)
    image = s.sm.snapshot()
    s.send("alice", cid, "after the snapshot")
    s.sm.restore(image)
    assert s.q.last_seq(cid) == 4
    s.index, s.time = s.sm.durable_position()
    assert s.send("bob", cid) == 5


def test_restore_rejects_garbage_and_keeps_the_live_database(people: Store, tmp_path: Path) -> None:
    s = people
    before = s.dump()
    for bad in (b"", b"garbage" * 100, s.sm.snapshot()[:5000]):
        with pytest.raises(SnapshotError):
            s.sm.restore(bad)
        assert s.dump() == before
    plain = sqlite3.connect(":memory:")
    plain.execute("CREATE TABLE t (x)")
    with pytest.raises(SnapshotError, match="schema version"):
        s.sm.restore(plain.serialize())
    assert s.dump() == before


def test_a_half_written_restore_file_does_not_damage_the_live_database(people: Store) -> None:
    s = people
    cid = s.direct("alice", "bob")
    s.send("alice", cid, "keep me")
    before = s.dump()
    position = s.sm.durable_position()
    image = s.sm.snapshot()
    s.sm.close()
    leftover = s.path.with_name(s.path.name + RESTORE_SUFFIX)
    leftover.write_bytes(image[: len(image) // 2])  # a crash in the middle of writing it
    s.sm = ChatStateMachine(s.path)
    s.q = s.sm.queries
    assert not leftover.exists()
    assert s.dump() == before
    assert s.sm.durable_position() == position


# -- determinism --------------------------------------------------------------------------------------------------

USERS = ["alice", "bob", "carol", "dave"]
ROOMS = ["r:one", "r:two"]
CONVERSATIONS = [*ROOMS, c.direct_id("alice", "bob"), c.direct_id("carol", "dave")]

user = st.sampled_from(USERS)
conversation = st.sampled_from(CONVERSATIONS)
rid = st.sampled_from([f"q{i}" for i in range(40)])  # few: retries and reuse across ops happen
seq = st.integers(min_value=1, max_value=12)
body = st.sampled_from(["hello", "hello world", "bye", "Ünïcode wörds", "x" * 50])


@st.composite
def direct_cmd(draw: st.DrawFn) -> c.ChatCommand:
    a, b = draw(st.lists(user, min_size=2, max_size=2, unique=True))
    return c.OpenDirect(request_id=draw(rid), actor=a, peer=b, conversation_id=c.direct_id(a, b))


pair = st.sampled_from(["alice", "bob"])  # members of r:one and of the alice-bob direct conversation
shared = st.sampled_from(["r:one", c.direct_id("alice", "bob")])
recent = st.integers(min_value=3, max_value=14)
commands = st.one_of(
    st.builds(c.Send, request_id=rid, actor=pair, conversation_id=shared, body=body),
    st.builds(c.Send, request_id=rid, actor=pair, conversation_id=shared, body=body),
    st.builds(c.Send, request_id=rid, actor=pair, conversation_id=shared, body=body),
    st.builds(c.Edit, request_id=rid, actor=pair, conversation_id=shared, seq=recent, body=body),
    st.builds(c.Delete, request_id=rid, actor=pair, conversation_id=shared, seq=recent),
    st.builds(c.MarkRead, actor=pair, conversation_id=shared, seq=st.integers(0, 15)),
    st.builds(c.Register, request_id=rid, username=user, password_hash=st.just("h")),
    st.builds(
        c.Login,
        request_id=rid,
        username=user,
        token_hash=st.sampled_from([token(1), token(2)]),
        expires_at_ms=st.integers(T0, T0 + 50),
    ),
    st.builds(c.Logout, request_id=rid, token_hash=st.sampled_from([token(1), token(2)])),
    st.builds(c.SetDisplayName, request_id=rid, actor=user, display_name=st.sampled_from(["A", "B"])),
    st.builds(c.Presence, actor=user, online=st.booleans(), expires_at_ms=st.integers(T0, T0 + 100)),
    direct_cmd(),
    st.builds(
        c.CreateRoom,
        request_id=rid,
        actor=user,
        conversation_id=st.sampled_from(ROOMS),
        name=st.just("Room"),
        public=st.booleans(),
        members=st.lists(user, max_size=3),
    ),
    st.builds(
        c.Invite,
        request_id=rid,
        actor=user,
        conversation_id=conversation,
        usernames=st.lists(user, min_size=1, max_size=2),
    ),
    st.builds(c.Join, request_id=rid, actor=user, conversation_id=conversation),
    st.builds(c.Leave, request_id=rid, actor=user, conversation_id=conversation),
    st.builds(c.Send, request_id=rid, actor=user, conversation_id=conversation, body=body),
    st.builds(c.Send, request_id=rid, actor=user, conversation_id=conversation, body=body),
    st.builds(c.Edit, request_id=rid, actor=user, conversation_id=conversation, seq=seq, body=body),
    st.builds(c.Delete, request_id=rid, actor=user, conversation_id=conversation, seq=seq),
    st.builds(c.MarkRead, actor=user, conversation_id=conversation, seq=st.integers(0, 15)),
    st.builds(c.Typing, actor=user, conversation_id=conversation, typing=st.booleans()),
    st.builds(c.KvPut, request_id=rid, key=st.sampled_from([b"a", b"b"]), value=st.binary(max_size=4)),
    st.builds(
        c.KvCas,
        request_id=rid,
        key=st.sampled_from([b"a", b"b"]),
        expected_value=st.binary(max_size=1),
        expect_absent=st.booleans(),
        new_value=st.binary(max_size=2),
    ),
    st.builds(c.KvDelete, request_id=rid, key=st.sampled_from([b"a", b"b"])),
)
steps = st.lists(st.tuples(commands, st.integers(0, 2 * RETENTION_MS // 3)), min_size=1, max_size=40)


SETUP: list[tuple[c.ChatCommand, int]] = [
    *[(c.Register(request_id="setup", username=u, password_hash="h"), 1) for u in USERS],
    (c.CreateRoom(request_id="s1", actor="alice", conversation_id="r:one", name="One", members=["bob"]), 1),
    (c.CreateRoom(request_id="s2", actor="carol", conversation_id="r:two", name="Two", public=True), 1),
    (c.OpenDirect(request_id="s3", actor="alice", peer="bob", conversation_id=c.direct_id("alice", "bob")), 1),
]


def _run(sm: ChatStateMachine, program: list[tuple[c.ChatCommand, int]]) -> list[object]:
    outcomes: list[object] = []
    time = T0
    for index, (cmd, gap) in enumerate(SETUP + program, start=1):
        time += gap
        try:
            outcomes.append(sm.apply(Command(index, 1, c.encode(cmd), time)))
        except Exception as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    return outcomes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=steps)
def test_same_commands_give_the_same_database(program: list[tuple[c.ChatCommand, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one, two = ChatStateMachine(root / "one.db"), ChatStateMachine(root / "two.db")
        with one, two:
            first, second = _run(one, program), _run(two, program)
            assert first == second
            assert not any(isinstance(o, tuple) and o[0] not in _REFUSALS for o in first), first
            dump = list(one.connection.iterdump())
            assert dump == list(two.connection.iterdump())
            assert (
                one.durable_position()
                == two.durable_position()
                == (len(SETUP + program), T0 + sum(g for _, g in SETUP + program))
            )
            three = ChatStateMachine(root / "three.db")
            with three:
                three.restore(one.snapshot())
                assert list(three.connection.iterdump()) == dump
            # every conversation's seqs are dense, and last_seq matches
            for cid, last in one.connection.execute("SELECT id, last_seq FROM conversations"):
                seqs = [
                    r[0]
                    for r in one.connection.execute(
                        "SELECT seq FROM events WHERE conversation_id = ? ORDER BY seq", (cid,)
                    )
                ]
                assert seqs == list(range(1, last + 1))
            assert one.connection.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


_REFUSALS = {"InvalidArgument", "NotFound", "PermissionDenied", "AlreadyExists", "FailedPrecondition"}
