"""ChatStateMachine batches: one transaction per batch gives the same state as one per command, and refusals,
crashes, the deferred full-text index, the pruning shortcut and the background checkpoints keep it so."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest
from store_helpers import T0, Store

from chat_server import commands as c
from chat_server.store import ChatRefusal, ChatStateMachine, NotFound, PermissionDenied, StoreFailed
from chat_server.store.applied import RETENTION_MS
from chat_server.store.notices import Notice
from raft_core.runtime import BatchingStateMachine


def script() -> list[tuple[c.ChatCommand, int]]:
    """A mixed history (commands and log times): accounts, rooms, sends, edits, deletes, refusals, retries."""
    out: list[tuple[c.ChatCommand, int]] = []
    t = T0

    def add(cmd: c.ChatCommand, step: int = 1) -> None:
        nonlocal t
        t += step
        out.append((cmd, t))

    for name in ("alice", "bob", "carol"):
        add(c.Register(request_id=f"reg-{name}", username=name, password_hash=f"hash-of-{name}"))
    add(c.CreateRoom(request_id="room", actor="alice", conversation_id="r:one", name="One", members=["bob"]))
    for i in range(12):
        sender = "alice" if i % 2 else "bob"
        add(c.Send(request_id=f"s{i}", actor=sender, conversation_id="r:one", body=f"word{i} zeta"))
    # s<i> is at seq 4 + i; alice sent the odd ones.
    add(c.Send(request_id="s3", actor="alice", conversation_id="r:one", body="a retry"))  # duplicate of s3
    add(c.Send(request_id="x1", actor="carol", conversation_id="r:one", body="not a member"))  # refused
    add(c.Edit(request_id="e1", actor="alice", conversation_id="r:one", seq=7, body="edited omega"))
    add(c.Edit(request_id="e2", actor="alice", conversation_id="r:one", seq=7, body="edited again"))
    add(c.Edit(request_id="e3", actor="bob", conversation_id="r:one", seq=7, body="not his"))  # refused
    add(c.Delete(request_id="d1", actor="bob", conversation_id="r:one", seq=8))
    add(c.MarkRead(actor="bob", conversation_id="r:one", seq=8))
    add(c.Send(request_id="late", actor="bob", conversation_id="r:one", body="after a day"), step=RETENTION_MS + 5)
    add(c.Invite(request_id="inv", actor="alice", conversation_id="r:one", usernames=["carol", "nobody"]))  # refused
    add(c.Send(request_id="s-last", actor="alice", conversation_id="r:one", body="zeta again"))
    return out


def run(path: Path, batches: list[int]) -> tuple[Store, list[object]]:
    """Apply ``script()`` to a new store at ``path`` in batches of the given sizes; the results (or refusals)."""
    s = Store(path)
    results: list[object] = []
    commands = script()
    i = 0
    for size in batches:
        s.sm.begin_batch()
        for cmd, at in commands[i : i + size]:
            try:
                results.append(s.apply(cmd, at=at))
            except ChatRefusal as exc:
                results.append((type(exc).__name__, str(exc)))
        s.sm.end_batch()
        i += size
    assert i == len(commands)
    return s, results


def logical(s: Store) -> list[str]:
    """The dump of every table but the full-text index's own storage."""
    return [line for line in s.dump() if not line.startswith('INSERT INTO "messages_fts_')]


def splits(total: int, rng: random.Random) -> list[int]:
    sizes = []
    while total:
        size = min(total, rng.randint(1, 9))
        sizes.append(size)
        total -= size
    return sizes


def test_the_chat_state_machine_batches() -> None:
    assert isinstance(ChatStateMachine.__new__(ChatStateMachine), BatchingStateMachine)


@pytest.mark.parametrize("seed", range(6))
def test_any_batching_gives_the_state_of_one_command_at_a_time(tmp_path: Path, seed: int) -> None:
    n = len(script())
    (tmp_path / "one").mkdir()
    (tmp_path / "batched").mkdir()
    one, one_results = run(tmp_path / "one" / "chat.db", [1] * n)
    batched, batched_results = run(tmp_path / "batched" / "chat.db", splits(n, random.Random(seed)))
    assert batched_results == one_results
    # Every row is the same. Only the full-text index's internal layout (its segments, one per transaction)
    # depends on where the batches end; what it holds is the same, as the searches below show.
    assert logical(batched) == logical(one)
    batched.sm.connection.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
    assert batched.notices == one.notices
    for query in ("zeta", "omega", "edited", "word3", "word4", "again"):
        assert [e.seq for e in batched.q.search_messages("bob", query)] == [
            e.seq for e in one.q.search_messages("bob", query)
        ]
    assert [e.seq for e in batched.q.search_messages("bob", "zeta")] == [20, 15, 14, 13, 12, 11, 10, 9, 6, 5, 4]
    assert batched.q.search_messages("bob", "word3") == []  # edited away
    assert batched.q.search_messages("bob", "word4") == []  # deleted


def test_notices_and_the_position_wait_for_the_end_of_the_batch(tmp_path: Path) -> None:
    s = Store(tmp_path / "chat.db")
    s.register("alice", "bob")
    cid = s.room("alice", "Room", ("bob",))
    position, notices = s.sm.durable_position(), len(s.notices)
    s.sm.begin_batch()
    s.send("alice", cid, "one")
    s.send("bob", cid, "two")
    assert len(s.notices) == notices
    assert s.sm.durable_position() == position
    s.sm.end_batch()
    assert len(s.notices) == notices + 2
    assert s.sm.durable_position() == (s.index, s.time)


def test_a_crash_inside_a_batch_loses_only_that_batch(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    s = Store(path)
    s.register("alice", "bob")
    cid = s.room("alice", "Room", ("bob",))
    s.send("alice", cid, "kept")
    committed, before = s.sm.durable_position(), s.dump()
    s.sm.begin_batch()
    s.send("alice", cid, "lost")
    s.send("bob", cid, "lost too")
    s.sm._checkpointer.close()
    s.sm.connection.close()  # the process dies: the open transaction never commits
    after = ChatStateMachine(path)
    try:
        assert after.durable_position() == committed  # the runtime re-applies the batch from its log
        assert list(after.connection.iterdump()) == before
    finally:
        after.close()


def twins(tmp_path: Path) -> tuple[Store, Store]:
    """Two stores with the same accounts (alice, bob, carol): one to be compared with, one to be tampered with."""
    stores = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        store = Store(tmp_path / name / "chat.db")
        store.register("alice", "bob", "carol")
        stores.append(store)
    return stores[0], stores[1]


def test_a_refusal_inside_a_batch_drops_its_own_changes_and_search_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, s = twins(tmp_path)
    for store in (plain, s):
        store.room("alice", "Room", ("bob",))
    cid = plain.room("alice", "Second", ("bob",))
    assert s.room("alice", "Second", ("bob",)) == cid
    seq = plain.send("alice", cid, "before")
    with pytest.raises(PermissionDenied):  # a command refused before writing anything, in its place
        plain.edit("carol", cid, seq, "refusedword")
    plain.send("alice", cid, "after")

    writer = s.sm._writer
    original = writer._edit

    def half_done(cmd: c.Edit, t: int, notices: list[Notice]) -> object:
        original(cmd, t, notices)  # the new body, the EDITED event, its notice and the index changes are made
        raise NotFound("refused after writing")

    s.sm.begin_batch()
    assert s.send("alice", cid, "before") == seq
    monkeypatch.setattr(writer, "_edit", half_done)
    with pytest.raises(NotFound):
        s.edit("alice", cid, seq, "refusedword")
    monkeypatch.undo()
    s.send("alice", cid, "after")
    s.sm.end_batch()
    assert logical(s) == logical(plain)
    assert s.notices == plain.notices
    assert s.q.search_messages("alice", "refusedword") == []
    assert [e.body for e in s.q.search_messages("alice", "before")] == ["before"]
    assert [e.body for e in s.q.search_messages("alice", "after")] == ["after"]


class _FailingBump:
    """A connection whose conversation bump fails (a bug's constraint error), after a send inserted its event."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        if sql.startswith("UPDATE conversations SET last_seq"):
            raise sqlite3.IntegrityError("injected: the bump failed")
        return self._conn.execute(sql, params)


def test_a_send_that_fails_after_writing_deletes_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plain, s = twins(tmp_path)
    cid = plain.room("alice", "Room", ("bob",))
    assert s.room("alice", "Room", ("bob",)) == cid
    plain.send("alice", cid, "before")
    with pytest.raises(PermissionDenied):  # what the failed send must amount to: nothing but its index
        plain.send("carol", cid, "lostword")
    plain.send("alice", cid, "after")

    s.sm.begin_batch()
    s.send("alice", cid, "before")
    monkeypatch.setattr(s.sm._writer, "_conn", _FailingBump(s.sm.connection))
    with pytest.raises(sqlite3.IntegrityError):  # sends have no savepoint: the send undoes its claim and event
        s.send("bob", cid, "lostword")
    monkeypatch.undo()
    assert "could not be applied; it is skipped" in caplog.text
    s.send("alice", cid, "after")  # gets the id the failed send had taken
    s.sm.end_batch()
    assert logical(s) == logical(plain)
    assert s.notices == plain.notices
    assert s.q.search_messages("alice", "lostword") == []
    assert [e.body for e in s.q.search_messages("alice", "after")] == ["after"]


def test_a_database_failure_drops_the_batch_and_end_batch_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Store(tmp_path / "chat.db")
    s.register("alice", "bob")
    cid = s.room("alice", "Room", ("bob",))
    position, before, notices = s.sm.durable_position(), s.dump(), len(s.notices)
    s.sm.begin_batch()
    s.send("alice", cid, "applied, then lost with its batch")

    def disk_error(*args: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(s.sm._writer, "_send", disk_error)
    with pytest.raises(StoreFailed):
        s.send("bob", cid, "fails")
    with pytest.raises(StoreFailed, match="restart the node"):
        s.sm.end_batch()  # the runtime stops the node here
    assert len(s.notices) == notices
    monkeypatch.undo()
    s.reopen()
    assert s.sm.durable_position() == position
    assert s.dump() == before


def test_pruning_with_the_cached_oldest_time_removes_what_asking_each_time_removes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cached = Store(tmp_path / "a" / "chat.db")
    uncached = Store(tmp_path / "b" / "chat.db")
    for store in (cached, uncached):
        store.register("alice", "bob")
    cid = cached.room("alice", "Room", ("bob",))
    assert uncached.room("alice", "Room", ("bob",)) == cid
    t = T0
    for i in range(30):
        t += RETENTION_MS // 3 if i % 5 == 0 else 1
        for store in (cached, uncached):
            store.sm.begin_batch()
            store.apply(c.Send(request_id=f"m{i}", actor="alice", conversation_id=cid, body="x"), at=t)
            if i % 3 == 0:  # a refusal rolls back after its prune ran
                with pytest.raises(PermissionDenied):
                    store.apply(c.Send(request_id=f"n{i}", actor="carol", conversation_id=cid, body="y"), at=t)
            store.sm.end_batch()
        uncached.sm._writer._applied.forget_cache()
        assert cached.dump() == uncached.dump()
    (left,) = cached.sm.connection.execute("SELECT count(*) FROM applied_requests").fetchone()
    assert 0 < left < 30  # some were pruned, some are kept


def test_under_continuous_writes_the_wal_stays_small_and_the_thread_checkpoints(tmp_path: Path) -> None:
    s = Store(tmp_path / "chat.db")
    s.register("alice", "bob")
    cid = s.room("alice", "Room", ("bob",))
    assert s.sm.connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)
    wal = tmp_path / "chat.db-wal"
    largest = 0
    for round_ in range(150):  # about 24 MB of pages written, with no pause for the checkpointer
        s.sm.begin_batch()
        for i in range(20):
            s.send("alice", cid, f"round {round_} message {i} " + "x" * 2000)
        s.sm.end_batch()
        largest = max(largest, wal.stat().st_size)
    assert largest < 12 * 1024 * 1024, f"the WAL grew to {largest} bytes"
    deadline = time.monotonic() + 10
    while s.sm._checkpointer.checkpoints == 0:
        assert time.monotonic() < deadline, "the checkpointer thread never ran"
        time.sleep(0.01)
    s.close()
    assert not s.sm._checkpointer._thread.is_alive()


class Timers:
    """A fake ``call_later``: records the callbacks; ``fire()`` runs the ones still pending."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, object, list[bool]]] = []

    def __call__(self, delay: float, callback: object) -> object:
        cancelled = [False]
        self.pending.append((delay, callback, cancelled))

        class Handle:
            def cancel(self) -> None:
                cancelled[0] = True

        return Handle()

    def fire(self) -> int:
        due, self.pending = self.pending, []
        fired = 0
        for _, callback, cancelled in due:
            if not cancelled[0]:
                callback()  # type: ignore[operator]
                fired += 1
        return fired


def _messages_seen_by_another_connection(path: Path) -> int:
    other = sqlite3.connect(path)
    try:
        (count,) = other.execute("SELECT count(*) FROM events WHERE kind = 2").fetchone()
        return int(count)
    finally:
        other.close()


def test_with_a_commit_delay_batches_share_a_commit_and_every_read_sees_them_at_once(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    timers = Timers()
    s = Store(path, commit_delay=0.02, call_later=timers)
    s.register("alice", "bob")
    cid = s.room("alice", "Room", ("bob",))
    timers.fire()
    committed = s.sm.durable_position()
    assert committed == (s.index, s.time)
    notices = len(s.notices)
    for n in range(5):  # five batches of one
        s.send("alice", cid, f"zeta {n}")
    assert len(timers.pending) == 1, "one deferred commit for the five batches"
    assert len(s.notices) == notices + 5, "notices go out at the end of each batch"
    events, _ = s.q.events_after(cid, 0)
    assert [e.body for e in events if e.kind == 2] == [f"zeta {n}" for n in range(5)]
    assert len(s.q.search_messages("bob", "zeta")) == 5, "the full-text index is written per batch"
    assert s.sm.durable_position() == committed and _messages_seen_by_another_connection(path) == 0
    assert timers.fire() == 1
    assert s.sm.durable_position() == (s.index, s.time)
    assert _messages_seen_by_another_connection(path) == 5
    s.sm.close()


def test_a_commit_delay_still_commits_at_max_uncommitted_at_a_snapshot_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    timers = Timers()
    s = Store(path, commit_delay=0.02, call_later=timers, max_uncommitted=3)
    s.register("alice")
    cid = s.room("alice", "Room", ())
    timers.fire()
    for n in range(3):
        s.send("alice", cid, f"m{n}")
    assert s.sm.durable_position() == (s.index, s.time), "the third command reached max_uncommitted"
    s.send("alice", cid, "before the snapshot")
    assert s.sm.durable_position() != (s.index, s.time)
    image = s.sm.snapshot()
    assert s.sm.durable_position() == (s.index, s.time), "a snapshot never lies ahead of the durable position"
    assert b"before the snapshot" in image
    s.send("alice", cid, "before close")
    s.sm.close()
    assert timers.fire() == 0, "close cancelled the pending commit after committing"
    reopened = ChatStateMachine(path)
    try:
        assert reopened.durable_position() == (s.index, s.time)
    finally:
        reopened.close()


def test_a_crash_with_a_commit_pending_resumes_from_the_last_commit(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    timers = Timers()
    s = Store(path, commit_delay=0.02, call_later=timers)
    s.register("alice")
    cid = s.room("alice", "Room", ())
    s.send("alice", cid, "kept")
    timers.fire()
    committed, before = s.sm.durable_position(), s.dump()
    s.send("alice", cid, "applied, not committed")
    s.sm._checkpointer.close()
    s.sm.connection.close()  # the process dies before the deferred commit
    after = ChatStateMachine(path)
    try:
        assert after.durable_position() == committed  # the runtime re-applies the rest from its log
        assert list(after.connection.iterdump()) == before
    finally:
        after.close()


def test_restoring_a_snapshot_with_a_commit_pending_replaces_what_was_not_committed(tmp_path: Path) -> None:
    timers = Timers()
    source = Store(tmp_path / "source.db")
    source.register("alice")
    cid = source.room("alice", "Room", ())
    source.send("alice", cid, "from the snapshot")
    image = source.sm.snapshot()
    s = Store(tmp_path / "chat.db", commit_delay=0.02, call_later=timers)
    s.register("alice")
    s.sm.begin_batch()
    s.room("alice", "Other", ())
    s.sm.end_batch()
    assert s.sm.connection.in_transaction, "a commit is pending"
    s.sm.restore(image)
    assert timers.fire() == 0
    assert s.sm.durable_position() == source.sm.durable_position()
    assert [e.body for e in s.q.events_after(cid, 0)[0] if e.kind == 2] == ["from the snapshot"]
    s.sm.close()
    source.sm.close()
