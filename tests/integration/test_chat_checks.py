"""The chat scenarios' checkers on hand-made data (no server): each accepts a sound run and rejects a lost,
misplaced, duplicated or invented message, a stream with a gap, a duplicate or a wrong event, and databases
that conflict; ``read_database`` reads a database made by the server's own schema code, even mid-write."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from harness.chat_cluster import (
    CREATED,
    MESSAGE,
    REPLICATED_TABLES,
    ChatDatabase,
    ChatUser,
    EventRow,
    Sent,
    check_no_conflicts,
    check_sends,
    check_streams,
    first_difference,
    read_database,
)

from chat_client_qt.client import api

ROOM = "r:1"


def database(events: list[tuple[int, int, str, str, str]], node: int = 1, applied: int = 10) -> ChatDatabase:
    """A database of ``(seq, kind, sender, body, request_id)`` events of ``ROOM``."""
    tables: dict[str, list[tuple[Any, ...]]] = {table: [] for table in REPLICATED_TABLES}
    tables["meta"] = [(1, applied, 0)]
    tables["events"] = [
        (i + 1, ROOM, seq, kind, sender, body, 0, "", 1000 + seq, 0, 0, rid)
        for i, (seq, kind, sender, body, rid) in enumerate(events)
    ]
    return ChatDatabase(node, tables)


def user(name: str, sent: list[tuple[str, str, int | None]]) -> ChatUser:
    """A user (no connection is made) who sent ``(body, request_id, acked seq or None)`` to ``ROOM``."""
    u = ChatUser(name, ["127.0.0.1:9"])
    u.sent = [Sent(ROOM, body, rid, 0.0, 1.0, seq=seq) for body, rid, seq in sent]
    return u


def delivered(u: ChatUser, db: ChatDatabase, seqs: list[int]) -> ChatUser:
    """``u``'s stream delivered ``ROOM``'s events at ``seqs`` (as the database has them)."""
    rows = {e.seq: e for e in db.events(ROOM)}
    u.received[ROOM] = [
        api.Event(
            conversation_id=ROOM,
            seq=s,
            kind=api.EventKind(rows[s].kind),
            sender=rows[s].sender,
            body=rows[s].body,
            request_id=rows[s].request_id,
            time_ms=rows[s].time_ms,
        )
        for s in seqs
    ]
    return u


GOOD = [(1, CREATED, "a", "", "c1"), (2, MESSAGE, "a", "a-0", "q1"), (3, MESSAGE, "b", "b-0", "q2")]


def test_check_sends_accepts_a_sound_run_and_counts_unknown_outcomes():
    db = database([*GOOD, (4, MESSAGE, "b", "b-1", "q3")])
    a = user("a", [("a-0", "q1", 2)])
    b = user("b", [("b-0", "q2", 3), ("b-1", "q3", None), ("b-2", "q4", None), ("b-1", "q3", 4)])
    assert check_sends(db, [a, b], [ROOM]) == {"acked": 3, "unknown": 1}


@pytest.mark.parametrize(
    ("events", "sent", "error"),
    [
        (GOOD[:2], [("b-0", "q2", 3)], "lost"),  # acknowledged, not in the database
        (GOOD, [("b-0", "q2", 2)], "but the database has"),  # acknowledged at another seq
        (GOOD, [("b-0", "q9", 3)], "but the database has"),  # another request put it there
        ([*GOOD, (4, MESSAGE, "b", "b-0", "q2")], [("b-0", "q2", 3)], "more than once"),  # applied twice
        ([*GOOD, (4, MESSAGE, "b", "b-9", "q9")], [("b-0", "q2", 3)], "nobody sent"),  # invented
        (GOOD, [("b-0", "q2", 3), ("b-0", "q2", 4)], "acknowledged at seqs"),  # one request, two seqs
    ],
)
def test_check_sends_rejects(events, sent, error):
    with pytest.raises(AssertionError, match=error):
        check_sends(database(events), [user("a", [("a-0", "q1", 2)]), user("b", sent)], [ROOM])


def test_check_streams_accepts_a_run_from_any_start():
    db = database(GOOD)
    assert check_streams(db, [delivered(user("a", []), db, [1, 2, 3]), delivered(user("b", []), db, [2, 3])], [ROOM])


@pytest.mark.parametrize(("seqs", "error"), [([1, 3], "gap"), ([1, 2, 2, 3], "duplicate"), ([2, 1], "gap")])
def test_check_streams_rejects_gaps_duplicates_and_reordering(seqs, error):
    db = database(GOOD)
    with pytest.raises(AssertionError, match=error):
        check_streams(db, [delivered(user("a", []), db, seqs)], [ROOM])


def test_check_streams_rejects_an_event_the_database_does_not_have():
    db = database(GOOD)
    u = delivered(user("a", []), db, [1, 2, 3])
    u.received[ROOM][1].body = "a-other"
    with pytest.raises(AssertionError, match="the database"):
        check_streams(db, [u], [ROOM])
    longer = database([*GOOD, (4, MESSAGE, "a", "a-1", "q5")])
    with pytest.raises(AssertionError, match="ends at 3"):
        check_streams(db, [delivered(user("a", []), longer, [1, 2, 3, 4])], [ROOM])


def test_conflicts_and_differences_between_nodes():
    one, lagging = database(GOOD, 1), database(GOOD[:2], 2)
    check_no_conflicts({1: one, 2: lagging})  # a node behind holds a prefix: fine at any time
    assert "events: node 1 has 3 rows, node 2 2" in first_difference(one, lagging)
    assert first_difference(one, database(GOOD, 3)) == ""
    other = database([*GOOD[:2], (3, MESSAGE, "b", "b-X", "q2")], 3)
    with pytest.raises(AssertionError, match="conflicting committed events at r:1#3"):
        check_no_conflicts({1: one, 3: other})
    assert "events row 2" in first_difference(one, other)
    with pytest.raises(AssertionError, match="not numbered"):
        check_no_conflicts({4: database([GOOD[0], GOOD[2]], 4)})


def test_read_database_reads_a_chat_database_consistently_while_it_is_written(tmp_path: Path):
    from chat_server.store import schema

    path = tmp_path / "chat.db"
    writer = schema.open_database(path)  # WAL, as a node has it
    try:
        writer.execute("BEGIN")
        writer.execute(
            "INSERT INTO users (username, password_hash, display_name, created_at_ms) VALUES ('a','h','A',1)"
        )
        writer.execute(
            "INSERT INTO conversations VALUES (?, 2, 'room', '', 0, 'a', 1, 1, 1, 1)",
            (ROOM,),
        )
        writer.execute("INSERT INTO events VALUES (1, ?, 1, 1, 'a', '', 0, '', 1, 0, 0, 'c1')", (ROOM,))
        writer.execute("UPDATE meta SET applied_index = 5")
        writer.execute("COMMIT")
        writer.execute("BEGIN")  # a transaction in progress is not seen
        writer.execute("INSERT INTO events VALUES (2, ?, 2, 2, 'a', 'x', 0, '', 2, 0, 0, 'q1')", (ROOM,))
        db = read_database(path, 7)
        assert db.node == 7 and db.applied_index == 5
        assert db.events(ROOM) == [EventRow(1, ROOM, 1, CREATED, "a", "", 0, "", 1, 0, 0, "c1")]
        assert [row[0] for row in db.tables["users"]] == ["a"]
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert [e.body for e in read_database(path).events(ROOM)] == ["", "x"]
    with pytest.raises(sqlite3.OperationalError):  # read-only: the harness never writes a node's file
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("DELETE FROM events")
