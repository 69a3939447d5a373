"""Subscribe survives dropped streams and node restarts: cursors resume it, duplicates are dropped, gaps filled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from chat_fakes import TOKEN, FakeCluster, FakeNode, FakeState, eventually, run

from chat_client_qt.client import ChatClient, StreamStatus, Subscription, Unauthenticated, api


class Collector:
    """Reads a subscription in a background task."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.items: list[Any] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for item in self.subscription:
            self.items.append(item)

    def events(self, conversation_id: str | None = None) -> list[api.Event]:
        return [
            i
            for i in self.items
            if isinstance(i, api.Event) and (conversation_id is None or i.conversation_id == conversation_id)
        ]

    def seqs(self, conversation_id: str) -> list[int]:
        return [e.seq for e in self.events(conversation_id)]

    async def wait_seq(self, conversation_id: str, seq: int) -> None:
        await eventually(lambda: seq in self.seqs(conversation_id) or self.task.done(), what=f"{conversation_id}/{seq}")
        if self.task.done():
            self.task.result()  # re-raise the subscription's error

    async def close(self) -> None:
        await self.subscription.aclose()
        await asyncio.wait_for(self.task, 5.0)


def test_live_events_and_cursors(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster:
            state = cluster.state
            state.room("r1", "alice", "bob")
            state.post("r1", "bob", "before the subscription")  # seq 2: not delivered (baseline starts after it)
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                events = Collector(client.subscribe())
                await eventually(lambda: cluster.nodes[0].open_streams == 1, what="stream open")
                for i in range(3):
                    state.post("r1", "bob", f"m{i}")
                await events.wait_seq("r1", 5)
                assert events.seqs("r1") == [3, 4, 5]
                assert [e.body for e in events.events("r1")] == ["m0", "m1", "m2"]
                assert isinstance(events.items[0], api.Heartbeat)
                assert client.cursors == {"r1": 5} == events.subscription.cursors
                assert events.subscription.connected and events.subscription.endpoint == cluster.nodes[0].address
                await events.close()
            assert cluster.nodes[0].subscribes[0].cursors == [api.Cursor(conversation_id="r1", after_seq=2)]

    run(main())


@pytest.mark.parametrize("mode", ["plain", "duplicates", "gap"])
def test_resume_after_a_dropped_stream_has_no_duplicate_and_no_gap(tmp_path, mode):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            state = cluster.state
            a, b = cluster.nodes
            if mode == "duplicates":
                b.resume_replay = 3  # b resends the last 3 events before each cursor
            if mode == "gap":
                b.resume_skip = 2  # b starts 2 events late: the client must read them with GetHistory
            state.room("r1", "alice", "bob")
            state.room("r2", "alice")
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                events = Collector(client.subscribe())
                await eventually(lambda: a.open_streams == 1, what="stream on a")
                for i in range(4):
                    state.post("r1", "bob", f"r1-{i}")
                state.post("r2", "alice", "r2-0")
                await events.wait_seq("r1", 5)
                await events.wait_seq("r2", 2)
                a.drop_streams()
                for i in range(4, 7):  # while the client reconnects
                    state.post("r1", "bob", f"r1-{i}")
                await eventually(lambda: b.open_streams == 1, what="stream on b")
                for i in range(7, 9):
                    state.post("r1", "bob", f"r1-{i}")
                state.post("r2", "alice", "r2-1")
                await events.wait_seq("r1", 10)
                await events.wait_seq("r2", 3)
                assert events.seqs("r1") == list(range(2, 11))
                assert [e.body for e in events.events("r1")] == [f"r1-{i}" for i in range(9)]
                assert events.seqs("r2") == [2, 3]
                assert events.subscription.reconnects == 1
                assert client.cursors == {"r1": 10, "r2": 3}
                await events.close()
            resumed = {c.conversation_id: c.after_seq for c in b.subscribes[0].cursors}
            assert resumed["r1"] == 5 and resumed["r2"] == 2
            history = [n for n in state.nodes_called("GetHistory")]
            assert bool(history) == (mode == "gap")

    run(main())


def test_a_gap_history_cannot_fill_is_never_yielded_the_stream_is_resumed_instead(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            state = cluster.state
            a, b = cluster.nodes
            state.room("r1", "alice", "bob")
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                events = Collector(client.subscribe())
                await eventually(lambda: a.open_streams == 1, what="stream on a")
                state.post("r1", "bob", "m0")
                await events.wait_seq("r1", 2)
                b.resume_skip = 2
                for node in (a, b):
                    node.history_hidden = {("r1", 3)}  # history cannot fill the gap (3, 4) that b leaves
                a.drop_streams()
                for i in range(1, 5):
                    state.post("r1", "bob", f"m{i}")  # seqs 3..6
                # b skips 3 and 4; the fill fails; the client resumes elsewhere (a, which starts right).
                await eventually(lambda: len(b.subscribes) >= 1 and len(a.subscribes) >= 2, what="moved on")
                for node in (a, b):
                    node.history_hidden = set()
                await events.wait_seq("r1", 6)
                assert events.seqs("r1") == [2, 3, 4, 5, 6]
                await events.close()

    run(main())


def test_resume_across_a_node_restart_and_a_conversation_joined_meanwhile(tmp_path):
    async def main() -> None:
        state = FakeState()
        node = await FakeNode(state, 1).start()
        port = node.port
        state.room("r1", "alice", "bob")
        try:
            async with ChatClient([node.address], data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                events = Collector(client.subscribe(include_status=True))
                await eventually(lambda: node.open_streams == 1, what="stream open")
                state.post("r1", "bob", "m0")
                await events.wait_seq("r1", 2)
                await node.stop()
                await eventually(
                    lambda: any(isinstance(i, StreamStatus) and not i.connected for i in events.items),
                    what="disconnect status",
                )
                state.post("r1", "bob", "m1")  # seq 3, while the only node is down
                state.room("r2", "bob", "alice")  # joined while away: from its first event
                state.post("r2", "bob", "welcome")
                node = await FakeNode(state, 1, port=port).start()
                await events.wait_seq("r1", 3)
                await events.wait_seq("r2", 2)
                assert events.seqs("r1") == [2, 3]
                assert events.seqs("r2") == [1, 2]
                statuses = [i for i in events.items if isinstance(i, StreamStatus)]
                assert statuses[0].connected and not statuses[1].connected and statuses[-1].connected
                assert statuses[1].error is not None
                await events.close()
        finally:
            await node.stop()

    run(main())


def test_cursors_seeded_from_a_cache(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster:
            state = cluster.state
            state.room("r1", "alice", "bob")
            for i in range(4):
                state.post("r1", "bob", f"m{i}")  # seqs 2..5
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                client.seed_cursors({"r1": 3})
                client.seed_cursors({"r1": 1})  # never backwards
                seen: list[tuple[str, int]] = []
                client.add_cursor_listener(lambda c, s: seen.append((c, s)))
                events = Collector(client.subscribe())
                await events.wait_seq("r1", 5)
                assert events.seqs("r1") == [4, 5]
                assert client.cursors == {"r1": 5}
                assert seen == [("r1", 4), ("r1", 5)]
                await events.close()

    run(main())


def test_subscribe_with_a_bad_token_raises_unauthenticated(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster, ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
            await client.use_session("alice", "forged")
            for baseline in (True, False):
                with pytest.raises(Unauthenticated):
                    async for _ in client.subscribe(baseline=baseline):
                        pass

    run(main())


def test_aclose_ends_a_waiting_iteration(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster:
            cluster.state.room("r1", "alice")
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                events = Collector(client.subscribe())
                await eventually(lambda: len(events.items) == 1, what="heartbeat")
                await events.close()  # the reader task ends without error
                assert events.task.done() and events.task.exception() is None
                # Closing the client closes its subscriptions too.
                events = Collector(client.subscribe())
                await eventually(lambda: len(events.items) == 1, what="heartbeat")
            await asyncio.wait_for(events.task, 5.0)

    run(main())


def test_a_silent_stream_is_left_after_idle_timeout_but_a_slow_reader_keeps_its_stream(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            state = cluster.state
            state.room("r1", "alice", "bob")
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                sub = client.subscribe(idle_timeout=0.5, include_status=True)
                items: list[Any] = []
                async with asyncio.timeout(20):
                    async for item in sub:
                        items.append(item)
                        if isinstance(item, StreamStatus) and not item.connected:
                            break  # nothing came for 0.5 s after the opening heartbeat
                lost = items[-1]
                assert "no message from" in lost.error.message
                assert sum(1 for i in items if isinstance(i, api.Heartbeat)) == 1
                # A reader slower than the timeout loses nothing while messages keep coming.
                for i in range(6):
                    state.post("r1", "bob", f"m{i}")
                seen: list[int] = []
                async with asyncio.timeout(20):
                    async for item in sub:
                        if isinstance(item, api.Event):
                            seen.append(item.seq)
                            await asyncio.sleep(0.2)  # 6 x 0.2 s: longer than idle_timeout in all
                            if len(seen) == 6:
                                break
                        elif isinstance(item, StreamStatus) and not item.connected:
                            raise AssertionError(f"the stream was dropped under a slow reader: {item}")
                assert seen == [2, 3, 4, 5, 6, 7]
                await sub.aclose()

    run(main())
