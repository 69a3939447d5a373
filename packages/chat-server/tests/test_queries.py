"""ChatQueries: the read side over the state machine's database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import T0, TOKEN, Store

from chat_server import commands as c
from chat_server.store import (
    ChatQueries,
    ConversationKind,
    EventKind,
    InvalidArgument,
    MembershipRow,
    SessionRow,
    UserRow,
)


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "chat.db")
    store.register("alice", "bob", "carol", "dave")
    yield store
    store.close()


def test_over_a_plain_connection(s: Store) -> None:
    queries = ChatQueries(s.sm.connection)
    assert queries.user("alice") == s.q.user("alice")
    assert queries.applied_position() == s.sm.durable_position()


def test_sessions(s: Store) -> None:
    s.apply(c.Login(request_id="l", username="bob", token_hash=TOKEN, device="cli", expires_at_ms=T0 + 1000))
    session = SessionRow(TOKEN, "bob", "cli", s.time, T0 + 1000)
    assert s.q.session_by_token_hash(TOKEN) == session
    assert s.q.session_by_token_hash(TOKEN, now_ms=T0 + 999) == session
    assert s.q.session_by_token_hash(TOKEN, now_ms=T0 + 1000) is None
    assert s.q.session_by_token_hash("f" * 64) is None
    assert session.expired(T0 + 1000) and not session.expired(T0)


def test_users(s: Store) -> None:
    alice = s.q.user("alice")
    assert isinstance(alice, UserRow) and alice.username == "alice" and alice.created_at_ms == T0 + 1
    assert s.q.user("zed") is None
    assert s.q.password_hash("bob") == "hash-of-bob"
    assert s.q.password_hash("zed") is None


def test_search_users(s: Store) -> None:
    s.register("al_x", "alpha")
    s.apply(c.SetDisplayName(request_id="n", actor="dave", display_name="Dave ALbright 100%"))
    names = [u.username for u in s.q.search_users("al")]
    assert names == ["al_x", "alice", "alpha", "dave"]
    assert [u.username for u in s.q.search_users("AL", limit=2)] == ["al_x", "alice"]
    assert [u.username for u in s.q.search_users("_")] == ["al_x"]  # LIKE wildcards are literal
    assert [u.username for u in s.q.search_users("0%")] == ["dave"]
    assert len(s.q.search_users("")) == 6
    assert s.q.search_users("nobody") == []


def test_conversation_as_seen_by_each_member(s: Store) -> None:
    cid = s.direct("alice", "bob")
    s.send("alice", cid, "one")
    s.send("alice", cid, "two")
    plain = s.q.conversation(cid)
    assert plain is not None
    assert (plain.kind, plain.name, plain.read_seq, plain.unread_count, plain.joined_seq) == (
        ConversationKind.DIRECT,
        "",
        0,
        0,
        0,
    )
    assert plain.last_event is not None and plain.last_event.body == "two"
    for_bob = s.q.conversation(cid, "bob")
    assert for_bob is not None
    assert (for_bob.name, for_bob.joined_seq, for_bob.read_seq, for_bob.unread_count) == ("alice", 3, 3, 2)
    for_alice = s.q.conversation(cid, "alice")
    assert for_alice is not None and (for_alice.name, for_alice.unread_count) == ("bob", 0)
    stranger = s.q.conversation(cid, "carol")
    assert stranger is not None and (stranger.name, stranger.joined_seq) == ("", 0)
    assert s.q.conversation("r:none") is None


def test_conversations_for(s: Store) -> None:
    dm = s.direct("alice", "bob")
    room = s.room("carol", "Room", ("alice", "bob"))
    quiet = s.room("alice", "Quiet")
    s.send("bob", dm, "hi alice")
    s.send("carol", room, "hello all")
    convs = s.q.conversations_for("alice")
    assert [conv.id for conv in convs] == [room, dm, quiet]  # most recently active first
    by_id = {conv.id: conv for conv in convs}
    assert by_id[room].unread_count == 1 and by_id[room].member_count == 3 and by_id[room].name == "Room"
    assert by_id[dm].unread_count == 1 and by_id[dm].name == "bob"
    assert by_id[quiet].unread_count == 0 and by_id[quiet].member_count == 1
    last = by_id[room].last_event
    assert last is not None and last.body == "hello all"
    s.send("alice", quiet, "talking to myself")
    assert s.q.conversations_for("alice")[0].id == quiet
    assert s.q.conversations_for("dave") == []


def test_unread_counts_skip_own_deleted_and_non_messages(s: Store) -> None:
    room = s.room("alice", "Room", ("bob",))
    first = s.send("alice", room, "a")
    s.send("bob", room, "mine")
    gone = s.send("alice", room, "oops")
    s.send("alice", room, "b")
    s.apply(c.Invite(request_id="i", actor="alice", conversation_id=room, usernames=["carol"]))
    assert s.q.unread_count(room, "bob") == 3
    s.delete("alice", room, gone)
    s.edit("alice", room, first, "a2")
    assert s.q.unread_count(room, "bob") == 2
    s.mark_read("bob", room, first)
    assert s.q.unread_count(room, "bob") == 1
    assert s.q.unread_count(room, "carol") == 0  # joined after them
    assert s.q.unread_count(room, "dave") == 0  # not a member


def test_public_rooms(s: Store) -> None:
    a = s.room("alice", "Python Lovers", public=True)
    s.room("alice", "Secret Python", public=False)
    b = s.room("bob", "Rustaceans", public=True)
    c_ = s.room("carol", "python-dev", public=True)
    s.send("alice", a, "bump")
    assert [r.id for r in s.q.public_rooms("python")] == [a, c_]
    assert [r.id for r in s.q.public_rooms("")] == [a, c_, b]
    assert [r.id for r in s.q.public_rooms("", limit=1)] == [a]
    assert all(r.public and r.kind is ConversationKind.ROOM for r in s.q.public_rooms())


def test_members_and_memberships(s: Store) -> None:
    room = s.room("carol", "Room", ("alice", "bob"))
    dm = s.direct("alice", "dave")
    assert [u.username for u in s.q.members(room)] == ["alice", "bob", "carol"]
    assert s.q.is_member(room, "bob") and not s.q.is_member(room, "dave")
    assert s.q.membership(room, "carol") == 2 and s.q.membership(room, "bob") == 4
    assert s.q.membership(room, "dave") is None
    assert s.q.memberships("alice") == sorted(
        [MembershipRow(room, 3, 3, 4), MembershipRow(dm, 2, 2, 3)], key=lambda m: m.conversation_id
    )
    assert s.q.co_members("alice") == ["bob", "carol", "dave"]
    s.leave("bob", room)
    assert s.q.memberships("bob") == []
    assert s.q.co_members("bob") == []
    assert "bob" not in [u.username for u in s.q.members(room)]
    assert s.q.members("r:none") == []


def test_members_carry_presence(s: Store) -> None:
    room = s.room("alice", "Room", ("bob",))
    s.apply(c.Presence(actor="bob", online=True, expires_at_ms=T0 + 10**6))
    bob = {u.username: u for u in s.q.members(room)}["bob"]
    assert bob.online(s.time) and bob.last_seen_ms == s.time


def test_event_pages(s: Store) -> None:
    cid = s.direct("alice", "bob")  # seqs 1..3
    for i in range(7):
        s.send("alice", cid, f"m{i}")  # seqs 4..10
    assert s.q.last_seq(cid) == 10
    assert s.q.last_seq("r:none") == 0

    def seqs(**kw: int) -> tuple[list[int], bool]:
        page, more = s.q.events(cid, **kw)
        return [e.seq for e in page], more

    assert seqs() == (list(range(1, 11)), False)
    assert seqs(limit=3) == ([8, 9, 10], True)
    assert seqs(before_seq=8, limit=3) == ([5, 6, 7], True)
    assert seqs(before_seq=4, limit=3) == ([1, 2, 3], False)
    assert seqs(before_seq=3, limit=5) == ([1, 2], False)
    assert seqs(after_seq=2, limit=3) == ([3, 4, 5], True)
    assert seqs(after_seq=7, limit=3) == ([8, 9, 10], False)
    assert seqs(after_seq=10) == ([], False)
    assert seqs(limit=0) == (list(range(1, 11)), False)  # default 50
    with pytest.raises(InvalidArgument, match="at most one"):
        s.q.events(cid, before_seq=5, after_seq=2)
    assert s.q.events("r:none") == ([], False)


def test_messages_read_back_with_current_state(s: Store) -> None:
    cid = s.direct("alice", "bob")
    edited = s.send("alice", cid, "draft")
    deleted = s.send("alice", cid, "regret")
    s.edit("alice", cid, edited, "final")
    s.delete("alice", cid, deleted)
    by_seq = {e.seq: e for e in s.q.events(cid)[0]}
    assert (by_seq[edited].body, by_seq[edited].edited_at_ms > 0, by_seq[edited].deleted) == ("final", True, False)
    assert (by_seq[deleted].body, by_seq[deleted].deleted) == ("", True)
    assert by_seq[deleted + 1].kind is EventKind.EDITED and by_seq[deleted + 1].target_seq == edited
    assert by_seq[deleted + 2].kind is EventKind.DELETED and by_seq[deleted + 2].target_seq == deleted
    assert s.q.event(cid, 99) is None


def test_search_visibility(s: Store) -> None:
    dm = s.direct("alice", "bob")
    room = s.room("carol", "Room", ("alice",), public=True)
    s.send("alice", dm, "the launch code is banana")
    s.send("carol", room, "banana bread recipe")
    s.send("alice", room, "more banana")
    hits = s.q.search_messages("alice", "banana")
    assert [(e.conversation_id, e.body) for e in hits] == [
        (room, "more banana"),
        (room, "banana bread recipe"),
        (dm, "the launch code is banana"),
    ]  # newest first
    assert [e.body for e in s.q.search_messages("bob", "banana")] == ["the launch code is banana"]
    assert s.q.search_messages("dave", "banana") == []  # never a non-member's
    assert [e.body for e in s.q.search_messages("alice", "banana", conversation_id=dm)] == ["the launch code is banana"]
    assert s.q.search_messages("dave", "banana", conversation_id=room) == []
    assert [e.body for e in s.q.search_messages("alice", "banana", limit=1)] == ["more banana"]
    s.leave("alice", room)
    assert [e.conversation_id for e in s.q.search_messages("alice", "banana")] == [dm]
    s.join("dave", room)
    assert len(s.q.search_messages("dave", "banana")) == 2  # members see the room's history


def test_search_syntax(s: Store) -> None:
    cid = s.direct("alice", "bob")
    s.send("alice", cid, "Crème brûlée, don't panic!")
    s.send("alice", cid, "panic at the disco")
    assert [e.seq for e in s.q.search_messages("bob", "creme")] == [4]  # diacritics and case folded
    assert [e.seq for e in s.q.search_messages("bob", '"don\'t panic"')] == [4]
    assert [e.seq for e in s.q.search_messages("bob", "panic")] == [5, 4]
    assert [e.seq for e in s.q.search_messages("bob", "pan*")] == [5, 4]
    assert [e.seq for e in s.q.search_messages("bob", "panic NOT disco")] == [4]
    for bad in ['"unterminated', "don't", "AND", "sender:x", "x OR"]:
        with pytest.raises(InvalidArgument, match="double quotes") as info:
            s.q.search_messages("bob", bad)
        assert "is not valid" in str(info.value)
    with pytest.raises(InvalidArgument, match="at least one word"):
        s.q.search_messages("bob", "   ")
    with pytest.raises(InvalidArgument, match="at most"):
        s.q.search_messages("bob", "x" * 2000)


def test_kv_get(s: Store) -> None:
    s.apply(c.KvPut(request_id="k", key=b"\x00bin", value=b"\x01\x02"))
    assert s.q.kv_get(b"\x00bin") == b"\x01\x02"
    assert s.q.kv_get(b"bin") is None


def test_applied_position(s: Store) -> None:
    assert s.q.applied_position() == (s.index, s.time) == s.sm.durable_position()
