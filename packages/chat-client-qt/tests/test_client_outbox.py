"""The on-disk outbox: messages written while the cluster is down are delivered exactly once, in order, later."""

from __future__ import annotations

import asyncio
import sqlite3

import grpc
import pytest
from chat_fakes import TOKEN, Failure, FakeNode, FakeState, eventually, free_port, run

from chat_client_qt.client import (
    ChatClient,
    InvalidInput,
    MessageQueued,
    Outbox,
    OutboxItem,
    OutboxState,
    PermissionDenied,
    Unauthenticated,
    default_data_dir,
)
from chat_client_qt.client.outbox import account_dir


def test_outbox_rows_states_and_order(tmp_path):
    box = Outbox(tmp_path / "a" / "outbox.sqlite3")
    first = box.add("r1", "one")
    second = box.add("r2", "two", request_id="rid-2")
    third = box.add("r1", "three")
    assert box.add("r2", "ignored", request_id="rid-2") == second  # same request_id: kept as it was
    assert first.state is OutboxState.PENDING and first.attempts == 0 and first.seq is None
    assert [i.body for i in box.pending()] == ["one", "two", "three"]
    assert [i.body for i in box.pending("r1")] == ["one", "three"]
    assert box.pending_conversations() == ["r1", "r2"]
    box.record_attempt(first.request_id, "unavailable")
    box.mark_sent(first.request_id, 17)
    box.mark_failed(second.request_id, "permission denied")
    box.mark_failed(first.request_id, "too late")  # a sent message stays sent
    assert box.next_pending("r1") == box.get(third.request_id)
    sent = box.get(first.request_id)
    assert sent is not None and sent.state is OutboxState.SENT and sent.seq == 17 and sent.attempts == 2
    assert [i.request_id for i in box.failed()] == ["rid-2"]
    assert box.requeue("rid-2").state is OutboxState.PENDING
    with pytest.raises(ValueError):
        box.requeue(first.request_id)
    with pytest.raises(KeyError):
        box.requeue("nope")
    assert not box.discard(third.request_id)  # pending: may be in flight
    assert box.discard(first.request_id)
    box.close()
    # Persisted: a new process sees the same rows.
    again = Outbox(tmp_path / "a" / "outbox.sqlite3")
    assert [(i.body, i.state) for i in again.items()] == [("two", "pending"), ("three", "pending")]
    assert again.prune_sent(0.0) == 0
    again.close()
    with sqlite3.connect(tmp_path / "a" / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_data_dir_and_account_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "chat-client-qt"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "chat-client-qt"
    assert account_dir(tmp_path, "alice") == tmp_path / "alice"
    odd = account_dir(tmp_path, "../../etc")
    assert odd.parent == tmp_path and odd.name.startswith("u-")


def test_messages_written_while_every_node_is_down_are_delivered_once_when_a_node_comes_up(tmp_path):
    async def main() -> None:
        state = FakeState()
        state.room("r1", "alice", "bob")
        state.room("r2", "alice")
        ports = [free_port(), free_port()]
        endpoints = [f"127.0.0.1:{p}" for p in ports]
        changes: list[OutboxItem] = []
        async with ChatClient(endpoints, data_dir=tmp_path, timeout=0.5) as client:
            client.add_outbox_listener(changes.append)
            await client.use_session("alice", TOKEN)
            with pytest.raises(MessageQueued) as info:
                await client.send("r1", "first")
            assert info.value.request_id is not None
            queued = await client.enqueue("r1", "second")
            await client.enqueue("r2", "other room")
            await client.enqueue("r1", "third")
            assert [i.body for i in client.pending()] == ["first", "second", "other room", "third"]
            await eventually(lambda: (client.outbox.get(info.value.request_id).attempts or 0) >= 1, what="attempt")
            node = await FakeNode(state, 2, port=ports[1]).start()  # the second node comes up
            try:
                assert await client.flush(timeout=10.0) == 0
                assert state.bodies("r1") == ["first", "second", "third"]
                assert state.bodies("r2") == ["other room"]
                applied = [e.request_id for e in state.conversations["r1"].events if e.request_id]
                assert len(applied) == len(set(applied)) == 3
                item = client.outbox.get(queued.request_id)
                assert item.state is OutboxState.SENT and item.seq == 3 and item.attempts >= 1
                assert {i.state for i in client.outbox.items()} == {OutboxState.SENT}
                # Every attempt of one message carried its one request_id.
                sent_ids = {rid for rid in state.request_ids("SendMessage")}
                assert sent_ids == {i.request_id for i in client.outbox.items()}
                assert any(c.request_id == queued.request_id and c.state is OutboxState.SENT for c in changes)
            finally:
                await node.stop()

    run(main(), timeout=40)


def test_pending_messages_survive_closing_and_reopening_the_client(tmp_path):
    async def main() -> None:
        state = FakeState()
        state.room("r1", "alice")
        port = free_port()
        endpoints = [f"127.0.0.1:{port}"]
        async with ChatClient(endpoints, data_dir=tmp_path, timeout=0.3) as client:
            await client.use_session("alice", TOKEN)
            ids = [(await client.enqueue("r1", f"m{i}")).request_id for i in range(3)]
        # The client is gone; its outbox is on disk.
        box = Outbox.for_account(tmp_path, "alice")
        assert [i.request_id for i in box.pending()] == ids
        box.close()
        node = await FakeNode(state, 1, port=port).start()
        try:
            async with ChatClient(endpoints, data_dir=tmp_path, timeout=2.0) as client:
                await client.use_session("alice", TOKEN)  # the flusher picks up what was left
                await eventually(lambda: not client.pending(), what="delivery")
                assert [(i.request_id, i.seq) for i in client.outbox.items()] == list(zip(ids, [2, 3, 4], strict=True))
            assert state.bodies("r1") == ["m0", "m1", "m2"]
        finally:
            await node.stop()

    run(main())


def test_a_lost_answer_is_retried_with_the_same_request_id_and_applied_once(tmp_path):
    async def main() -> None:
        state = FakeState()
        state.room("r1", "alice")
        node = await FakeNode(state, 1).start()
        try:
            node.fail("SendMessage", Failure(grpc.StatusCode.UNAVAILABLE, "lost", apply_first=True))
            node.fail("SendMessage", Failure(grpc.StatusCode.UNAVAILABLE, "no quorum"))
            async with ChatClient([node.address], data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                response = await client.send("r1", "hello")
                assert response.duplicate and response.message.seq == 2
            rids = state.request_ids("SendMessage")
            assert len(rids) == 3 and len(set(rids)) == 1
            assert state.bodies("r1") == ["hello"]
        finally:
            await node.stop()

    run(main())


def test_permission_denied_marks_the_message_failed_and_retry_sends_it_again(tmp_path):
    async def main() -> None:
        state = FakeState()
        room = state.room("r1", "bob")
        node = await FakeNode(state, 1).start()
        try:
            async with ChatClient([node.address], data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                with pytest.raises(PermissionDenied) as info:
                    await client.send("r1", "let me in")
                rid = info.value.request_id
                failed = client.failed()
                assert [(i.request_id, i.state) for i in failed] == [(rid, OutboxState.FAILED)]
                assert "not a member" in (failed[0].last_error or "")
                assert client.pending() == []
                # The UI retries it once the user belongs to the room: same request_id, now sent.
                room.members.add("alice")
                item = await client.retry(rid)
                assert item.state is OutboxState.PENDING
                await eventually(lambda: client.outbox.get(rid).state is OutboxState.SENT, what="sent")
                assert client.discard(rid)
            assert state.bodies("r1") == ["let me in"]
            assert set(state.request_ids("SendMessage")) == {rid}
        finally:
            await node.stop()

    run(main())


def test_a_failed_message_does_not_block_the_next_ones(tmp_path):
    async def main() -> None:
        state = FakeState()
        state.room("r1", "alice")
        node = await FakeNode(state, 1).start()
        try:
            node.fail("SendMessage", Failure(grpc.StatusCode.INVALID_ARGUMENT, "body: not allowed"))
            async with ChatClient([node.address], data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                bad = await client.enqueue("r1", "bad")
                good = await client.enqueue("r1", "good")
                assert await client.flush(5.0) == 0
                assert client.outbox.get(bad.request_id).state is OutboxState.FAILED
                assert client.outbox.get(good.request_id).state is OutboxState.SENT
            assert state.bodies("r1") == ["good"]
        finally:
            await node.stop()

    run(main())


def test_an_expired_session_pauses_delivery_until_the_next_login(tmp_path):
    async def main() -> None:
        state = FakeState()
        state.room("r1", "alice")
        node = await FakeNode(state, 1).start()
        try:
            async with ChatClient([node.address], data_dir=tmp_path) as client:
                await client.use_session("alice", "expired-token")
                with pytest.raises(MessageQueued) as info:
                    await client.send("r1", "hello", timeout=0.5)
                assert isinstance(info.value.cause, Unauthenticated)
                item = client.outbox.get(info.value.request_id)
                assert item.state is OutboxState.PENDING and "token" in (item.last_error or "")
                await client.login("alice", "password-a")
                assert await client.flush(5.0) == 0
            assert state.bodies("r1") == ["hello"]
        finally:
            await node.stop()

    run(main())


def test_local_checks_and_logout(tmp_path):
    async def main() -> None:
        async with ChatClient(["127.0.0.1:1"], data_dir=tmp_path) as client:
            with pytest.raises(Unauthenticated):
                await client.send("r1", "hello")
            await client.use_session("alice", TOKEN)
            with pytest.raises(InvalidInput):
                await client.send("r1", "")
            with pytest.raises(InvalidInput):
                await client.enqueue("r1", "x" * 4097)
            assert client.outbox is not None and client.outbox.path == tmp_path / "alice" / "outbox.sqlite3"
            assert "TOKEN" not in repr(client.session) and TOKEN not in repr(client.session)

    run(main())


def test_concurrent_sends_keep_their_order(tmp_path):
    async def main() -> None:
        state = FakeState()
        state.room("r1", "alice")
        node = await FakeNode(state, 1).start()
        try:
            async with ChatClient([node.address], data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                responses = await asyncio.gather(*(client.send("r1", f"m{i}") for i in range(20)))
                assert [r.message.seq for r in responses] == list(range(2, 22))
            assert state.bodies("r1") == [f"m{i}" for i in range(20)]
        finally:
            await node.stop()

    run(main())
