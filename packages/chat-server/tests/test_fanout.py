"""Live delivery (``Fanout``) over a real store: resume from cursors, gap-filling, overflow catch-up,
joining and leaving while subscribed, typing and presence signals, and closing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_helpers import Store

from chat_server import commands as c
from chat_server import fanout as fanout_module
from chat_server.fanout import Fanout
from chat_server.store import EventKind, EventRow, Notice, PresenceNotice, TypingNotice


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "chat.db")
    yield s
    s.close()


def wire(store: Store) -> Fanout:
    fanout = Fanout(store.q)
    notices = store.notices

    def tell(notice: Notice) -> None:
        notices.append(notice)
        fanout.notify(notice)

    store.sm.on_notice = tell
    return fanout


async def events(stream: AsyncIterator[object], count: int) -> list[EventRow]:
    out: list[EventRow] = []
    async with asyncio.timeout(5):
        while len(out) < count:
            item = await anext(stream)
            if isinstance(item, EventRow):
                out.append(item)
    return out


def test_resume_delivers_the_backlog_then_live_events_once_each_in_order(store: Store) -> None:
    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", members=("bob",))
        for i in range(3):
            store.send("alice", room, f"m{i}")  # seqs 4, 5, 6
        sub = fanout.open("bob", {room: 4})
        stream = fanout.stream(sub, heartbeat_s=60)
        assert await anext(stream) is None  # the opening heartbeat
        backlog = await events(stream, 2)
        assert [e.seq for e in backlog] == [5, 6]
        store.send("alice", room, "live")
        live = await events(stream, 1)
        assert (live[0].seq, live[0].body) == (7, "live")
        await stream.aclose()
        assert len(fanout) == 0

    asyncio.run(main())


def test_an_event_past_a_gap_is_preceded_by_the_missing_range(store: Store) -> None:
    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", members=("bob",))
        sub = fanout.open("bob", {})
        stream = fanout.stream(sub, heartbeat_s=60)
        await anext(stream)
        sub.cursors[room] -= 2  # as if two events had been lost on the way
        store.send("alice", room, "x")
        got = await events(stream, 3)
        assert [e.seq for e in got] == [2, 3, 4]
        await stream.aclose()

    asyncio.run(main())


def test_a_stream_that_falls_behind_catches_up_from_the_database(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout_module, "QUEUE_LIMIT", 3)

    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", members=("bob",))
        sub = fanout.open("bob", {})
        stream = fanout.stream(sub, heartbeat_s=60)
        await anext(stream)
        for i in range(10):
            store.send("alice", room, f"m{i}")  # overflows the queue of 3
        assert sub.overflowed
        got = await events(stream, 10)
        assert [e.body for e in got] == [f"m{i}" for i in range(10)]
        assert [e.seq for e in got] == list(range(4, 14))
        await stream.aclose()

    asyncio.run(main())


def test_joining_while_subscribed_starts_at_the_joined_event_and_leaving_ends_after_left(store: Store) -> None:
    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", public=True)
        store.send("alice", room, "before bob")
        sub = fanout.open("bob", {})
        stream = fanout.stream(sub, heartbeat_s=0.2)
        await anext(stream)
        store.join("bob", room)
        store.send("alice", room, "welcome")
        store.leave("bob", room)
        store.send("alice", room, "after bob")
        got = await events(stream, 3)
        assert [(e.kind, e.body) for e in got] == [
            (EventKind.JOINED, ""),
            (EventKind.MESSAGE, "welcome"),
            (EventKind.LEFT, ""),
        ]
        assert room not in sub.cursors
        async with asyncio.timeout(5):
            assert await anext(stream) is None  # "after bob" was dropped: the next item is a heartbeat
        await stream.aclose()

    asyncio.run(main())


def test_typing_goes_to_the_other_members_and_presence_to_everyone_watching(store: Store) -> None:
    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", members=("bob",))
        alice, bob = fanout.open("alice", {}), fanout.open("bob", {})
        store.apply(c.Typing(actor="alice", conversation_id=room, typing=True, expires_at_ms=store.time + 5000))
        assert alice.queue.empty()
        typing = bob.queue.get_nowait()
        assert isinstance(typing, TypingNotice) and typing.username == "alice"
        store.apply(c.Presence(actor="alice", online=True, expires_at_ms=store.time + 45_000))
        assert isinstance(bob.queue.get_nowait(), PresenceNotice)
        assert isinstance(alice.queue.get_nowait(), PresenceNotice)

    asyncio.run(main())


def test_close_all_ends_every_stream(store: Store) -> None:
    async def main() -> None:
        fanout = wire(store)
        store.register("alice")
        subs = [fanout.open("alice", {}) for _ in range(3)]
        streams = [fanout.stream(s, heartbeat_s=60) for s in subs]
        for st in streams:
            await anext(st)
        fanout.close_all()
        for st in streams:
            with pytest.raises(StopAsyncIteration):
                async with asyncio.timeout(5):
                    await anext(st)
        assert len(fanout) == 0

    asyncio.run(main())


def test_a_long_backlog_is_read_a_page_at_a_time_and_delivered_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout_module, "CATCH_UP_PAGE", 7)

    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", members=("bob",))
        for i in range(30):
            store.send("alice", room, f"m{i}")
        sub = fanout.open("bob", {room: 0})
        stream = fanout.stream(sub, heartbeat_s=60)
        await anext(stream)
        first = await events(stream, 10)
        store.send("alice", room, "during the catch-up")  # queued live, and read again by a later page
        rest = await events(stream, 24)
        seqs = [e.seq for e in first + rest]
        assert seqs == list(range(1, 35))
        assert rest[-1].body == "during the catch-up"
        await stream.aclose()

    asyncio.run(main())


def test_batches_hold_what_was_ready_together_and_flatten_to_the_plain_stream(store: Store) -> None:
    async def main() -> None:
        fanout = wire(store)
        store.register("alice", "bob")
        room = store.room("alice", members=("bob",))
        for i in range(5):
            store.send("alice", room, f"old{i}")  # seqs 4..8
        sub = fanout.open("bob", {room: 3})
        batches = fanout.stream_batches(sub, heartbeat_s=60, max_batch=2)
        assert await anext(batches) == [None]
        backlog = [await anext(batches) for _ in range(3)]  # a catch-up page in groups of at most 2
        assert [[e.seq for e in b if isinstance(e, EventRow)] for b in backlog] == [[4, 5], [6, 7], [8]]
        store.sm.begin_batch()  # three commits land while the stream is busy: they go out together (2 + 1)
        for i in range(3):
            store.send("alice", room, f"live{i}")
        store.sm.end_batch()
        fanout.notify(TypingNotice(room, "alice", True, 0))
        live = [await anext(batches), await anext(batches)]
        assert [[getattr(e, "seq", "typing") for e in b] for b in live] == [[9, 10], [11, "typing"]]
        store.send("alice", room, "alone")  # an idle stream sends an item as it comes
        assert [e.seq for e in await anext(batches) if isinstance(e, EventRow)] == [12]
        await batches.aclose()
        assert len(fanout) == 0

    asyncio.run(main())
