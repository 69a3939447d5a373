"""Chat operations through crashes, as real processes: the seed's fault table (5 nodes work with 4 and 3, fail
fast with 2, resume when restarted), sessions used across nodes and across a node's death, and a node that
was down while the others snapshotted and compacted their logs catching up by snapshot.

Every scenario ends with every node's database compared row by row (``wait_databases_converged``) and with
what the clients saw checked against it: acknowledged messages present once at their seq, streams gap-free.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from harness.aio import eventually, run
from harness.chat_cluster import (
    ChatCluster,
    ChatUser,
    chat_cluster_factory,
    check_sends,
    check_streams,
    close_all,
    messages_in,
    wait_delivered,
)

from chat_client_qt.client import Unauthenticated, api, rpc

SLACK_S = 1.0
"""How much later than its deadline a failing call may return (scheduling on a shared 2-core machine)."""


@pytest.fixture
def make_chat_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ChatCluster]]:
    yield from chat_cluster_factory(request, tmp_path)


async def raw_call(
    cluster: ChatCluster, n: int, method: rpc.Method, request: object, token: str, deadline: float
) -> tuple[grpc.StatusCode, float]:
    """One attempt of ``method`` on node ``n`` only (no client retry): its status code and how long it took."""
    channel = grpc.aio.insecure_channel(cluster.endpoint(n))
    start = time.monotonic()
    try:
        async with asyncio.timeout(deadline + 5.0):
            await rpc.unary(channel, method, request, timeout=deadline, metadata=[("authorization", f"Bearer {token}")])
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
    finally:
        await channel.close(None)
    return code, time.monotonic() - start


# -- the seed's fault table -----------------------------------------------------------------------------------


def test_chat_fault_table(make_chat_cluster):
    """5 nodes: send, history and subscribe work with 5, 4 (leader killed) and 3 alive; with 2 a send and a
    linearizable read fail within their deadline, nothing uncommitted is delivered and follower reads still
    answer; restarted, the cluster resumes, the retried send is applied once and every database matches."""
    cluster = make_chat_cluster(5)

    async def main() -> None:
        async with cluster:
            alice = ChatUser("alice", cluster.endpoints())
            bob = ChatUser("bob", cluster.endpoints_from(3))
            carol = ChatUser("carol", cluster.endpoints_from(5))
            users = [alice, bob, carol]
            try:
                for user in users:
                    await user.sign_up()
                room = (await alice.call(alice.client.create_room("table", members=["bob", "carol"]), "create")).id
                bob.subscribe({room: 0})
                leader = await cluster.leader()
                dead: list[int] = []
                for alive in (5, 4, 3):
                    if alive < 5:
                        # The leader first, then a follower; the leader of the moment survives from then on.
                        victim = leader if alive == 4 else next(n for n in cluster.live() if n != leader)
                        await cluster.kill(victim)
                        dead.append(victim)
                        live = [n for n in cluster.ids if n not in dead]
                        leader = await cluster.leader(timeout=20, among=live)
                    sent = await alice.send(room, f"with {alive} nodes")
                    assert sent.acked, f"a send failed with {alive} nodes alive: {sent.error}"
                    page = await bob.call(bob.client.history(room, limit=10), "history")
                    assert page.events[-1].body == sent.body and page.events[-1].seq == sent.seq
                    await eventually(lambda: bob.delivered_up_to(room) >= alice.last_seq(), 10, "bob's stream")
                    print(f"{alive} nodes: send acked in {sent.end - sent.start:.2f}s at #{sent.seq}")
                # A subscription opened with 3 nodes alive gets everything from seq 1.
                carol.subscribe({room: 0})
                await eventually(lambda: carol.delivered_up_to(room) >= alice.last_seq(), 10, "carol's stream")

                # Two alive (the leader and one follower): nothing commits, and nothing hangs.
                victim = next(n for n in cluster.live() if n != leader)
                await cluster.kill(victim)
                dead.append(victim)
                live = [n for n in cluster.ids if n not in dead]
                before = bob.delivered_up_to(room)
                failed = await alice.send(room, "with 2 nodes", timeout=3.0)
                took = failed.end - failed.start
                print(f"2 nodes: the send failed in {took:.2f}s ({failed.error})")
                assert not failed.acked, "a send was acknowledged by 2 nodes of 5"
                assert failed.error.startswith(("Unavailable", "OutcomeUnknown")), failed.error
                assert took <= 3.0 + SLACK_S, f"the send took {took:.2f}s with a 3 s deadline"
                for n in live:  # each node alone, one attempt each, with a 2 s deadline
                    request = api.SendMessageRequest(
                        conversation_id=room, body="with 2 nodes", request_id=failed.request_id
                    )
                    code, took = await raw_call(cluster, n, rpc.SEND_MESSAGE, request, alice.token, 2.0)
                    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), (n, code)
                    assert took <= 2.0 + SLACK_S, f"SendMessage on node {n} took {took:.2f}s (deadline 2 s)"
                    read = api.GetHistoryRequest(conversation_id=room)
                    code, took = await raw_call(cluster, n, rpc.GET_HISTORY, read, bob.token, 2.0)
                    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), (n, code)
                    assert took <= 2.0 + SLACK_S, f"a linearizable GetHistory on node {n} took {took:.2f}s"
                    # A follower read is served from the node's own state (bob's token is known everywhere).
                    stale = ChatUser("bob", [cluster.endpoint(n)], timeout=3.0)
                    try:
                        await stale.client.use_session("bob", bob.token)

                        async def follower_read(stale: ChatUser = stale) -> bool:
                            page = await stale.call(
                                stale.client.history(room, consistency=api.ReadConsistency.FOLLOWER), "follower read"
                            )
                            bodies = [e.body for e in page.events]
                            assert "with 2 nodes" not in bodies, "an uncommitted message was applied"
                            return bodies[-1] == "with 3 nodes"

                        await eventually(follower_read, 5.0, f"a follower read on node {n}", every=0.1)
                    finally:
                        await stale.close()
                assert bob.delivered_up_to(room) == before, "an uncommitted message was delivered"

                # Everyone back: the cluster resumes, the failed send (same request_id) is applied once.
                await asyncio.gather(*(cluster.restart(n) for n in dead))
                await cluster.leader(timeout=20)
                again = await alice.send(room, "with 2 nodes", request_id=failed.request_id)
                assert again.acked, again.error
                assert (await alice.send(room, "all back")).acked
                await wait_delivered([bob, carol], {room: alice.last_seq()}, timeout=30)
                await close_all(users)
                db = await cluster.wait_databases_converged(timeout=60)
                check_sends(db, users, [room])
                check_streams(db, users, [room])
                assert messages_in(db, room) == ["with 5 nodes", "with 4 nodes", "with 3 nodes", "with 2 nodes",
                                                 "all back"]  # fmt: skip
                await cluster.monitor.sample()
                cluster.monitor.check_election_safety()
            finally:
                await close_all(users)

    run(main(), timeout=150)


# -- sessions -------------------------------------------------------------------------------------------------


def test_chat_session_made_on_one_node_works_on_every_other_at_once(make_chat_cluster):
    """Log in through node a, then at once (no wait) use the token on node b only: GetMe, a write and a
    linearizable read work, for every ordered pair (a, b); a logout through one node ends the session on all."""
    cluster = make_chat_cluster(3)

    async def main() -> None:
        async with cluster:
            users: list[ChatUser] = []
            try:
                for a in cluster.ids:
                    for b in cluster.ids:
                        if a == b:
                            continue
                        here = ChatUser(f"user-{a}-{b}", [cluster.endpoint(a)])
                        there = ChatUser(here.name, [cluster.endpoint(b)])
                        users += [here, there]
                        await here.sign_up()
                        await there.client.use_session(here.name, here.token)
                        me = await there.call(there.client.me(), "me")
                        assert me.username == here.name
                        room = (await there.call(there.client.create_room(f"r{a}{b}"), "create_room")).id
                        sent = await there.send(room, f"hello from {a} via {b}")
                        assert sent.acked, sent.error
                        page = await here.call(here.client.history(room), "history")
                        assert page.events[-1].body == sent.body
                # Logout through node 1 ends the session on every node (each answers UNAUTHENTICATED).
                victim = users[0]
                token = victim.token
                await victim.call(victim.client.logout(), "logout")
                for n in cluster.ids:
                    probe = ChatUser(victim.name, [cluster.endpoint(n)], timeout=2.0)
                    try:
                        await probe.client.use_session(victim.name, token)

                        async def rejected(probe: ChatUser = probe) -> bool:
                            try:
                                await probe.call(probe.client.me(), "me")
                            except Unauthenticated:
                                return True
                            return False

                        took = await eventually(rejected, 5.0, f"node {n} to reject a logged-out token", every=0.05)
                        print(f"node {n} rejected the logged-out token after {took:.3f}s")
                    finally:
                        await probe.close()
                await close_all(users)
                db = await cluster.wait_databases_converged(timeout=60)
                check_sends(db, users, [s.room for u in users for s in u.sent])
                assert len(db.tables["sessions"]) == len(users) // 2 - 1, "one session per user, less the logout"
            finally:
                await close_all(users)

    run(main(), timeout=120)


def test_chat_client_keeps_working_after_its_node_dies(make_chat_cluster):
    """A client on a follower, then on whatever node it moved to, loses that node (SIGKILL) and then the
    leader: its token works on the others, sends and reads go on, its stream resumes with no gap."""
    cluster = make_chat_cluster(3)

    async def main() -> None:
        async with cluster:
            leader = await cluster.leader()
            follower = next(n for n in cluster.ids if n != leader)
            dora = ChatUser("dora", cluster.endpoints_from(follower))
            eve = ChatUser("eve", cluster.endpoints_from(leader))
            users = [dora, eve]
            try:
                for user in users:
                    await user.sign_up()
                room = (await dora.call(dora.client.create_room("alive", members=["eve"]), "create")).id
                dora.subscribe({room: 0})
                for k in range(3):
                    assert (await dora.send(room, f"dora-a{k}")).acked
                for round_ in ("the node it uses", "the leader"):
                    if round_ == "the node it uses":
                        victim = next(n for n in cluster.ids if cluster.endpoint(n) == dora.client.connection.current)
                    else:
                        victim = await cluster.leader()
                    await cluster.kill(victim)
                    for k in range(3):
                        sent = await dora.send(room, f"dora-{victim}-{k}")
                        assert sent.acked, f"dora's send after node {victim} ({round_}) died: {sent.error}"
                        assert (await eve.send(room, f"eve-{victim}-{k}")).acked
                    me = await dora.call(dora.client.me(), "me")
                    assert me.username == "dora"
                    page = await dora.call(dora.client.history(room, limit=3), "history")
                    assert page.events[-1].body == f"eve-{victim}-2"
                    await wait_delivered([dora], {room: eve.last_seq()}, timeout=20)
                    print(f"killed {round_} (node {victim}): dora's stream reconnected {dora.reconnects} times")
                    await cluster.restart(victim)
                    await cluster.leader(timeout=20)
                assert dora.reconnects >= 1, "dora's stream never had to move"
                await close_all(users)
                db = await cluster.wait_databases_converged(timeout=60)
                check_sends(db, users, [room])
                check_streams(db, users, [room])
                assert [int(e.seq) for e in dora.received[room]] == list(range(1, len(db.events(room)) + 1))
            finally:
                await close_all(users)

    run(main(), timeout=120)


# -- snapshots ------------------------------------------------------------------------------------------------


def snapshot_catch_up(cluster: ChatCluster, messages: int, during_restart: int) -> None:
    async def main() -> None:
        async with cluster:
            leader = await cluster.leader()
            lagging = next(n for n in cluster.ids if n != leader)
            others = [n for n in cluster.ids if n != lagging]
            users = [ChatUser(f"snap{i}", cluster.endpoints_from(others[i % len(others)], others)) for i in range(4)]
            try:
                for user in users:
                    await user.sign_up()
                owner = users[0]
                invited = [u.name for u in users[1:]]
                room = (await owner.call(owner.client.create_room("snap", members=invited), "create")).id
                users[1].subscribe({room: 0})
                await cluster.kill(lagging)
                print(f"node {lagging} killed at index {(await cluster.status(leader)).applied}")  # type: ignore[union-attr]

                async def load(user: ChatUser, count: int, tag: str) -> None:
                    for k in range(count):
                        sent = await user.send(room, f"{user.name}-{tag}{k}")
                        assert sent.acked, sent.error

                await asyncio.gather(*(load(u, messages // len(users), "a") for u in users))
                snapshots = [n for n in others if "took a snapshot" in cluster.log_since_start(n)]
                assert snapshots, "no node took a snapshot while the lagging node was down"
                # Restart the lagging node while more messages arrive.
                await asyncio.gather(
                    cluster.restart(lagging), *(load(u, during_restart // len(users), "b") for u in users)
                )
                installed = re.compile(rf"snapshot \d+ \(\d+ bytes\) installed on node {lagging}\b")
                await eventually(
                    lambda: any(installed.search(cluster.log_since_start(n)) for n in others), 30, "a snapshot sent"
                )
                await eventually(
                    lambda: f"node {lagging} restored a snapshot" in cluster.log_since_start(lagging),
                    30,
                    f"node {lagging} to restore the leader's snapshot",
                )
                # The restored node serves: a stream from seq 0 and a follower read on it alone.
                last = users[0].sent[-1].seq
                assert last is not None
                reader = ChatUser(users[2].name, [cluster.endpoint(lagging)])
                users.append(reader)
                await reader.client.use_session(users[2].name, users[2].token)
                reader.subscribe({room: 0})
                await wait_delivered([users[1], reader], {room: max(s.seq or 0 for u in users for s in u.sent)}, 30)
                page = await reader.call(
                    reader.client.history(room, after_seq=last - 5, consistency=api.ReadConsistency.FOLLOWER), "read"
                )
                assert page.events and page.events[0].seq == last - 4
                await close_all(users)
                db = await cluster.wait_databases_converged(timeout=60)
                counts = check_sends(db, users, [room])
                check_streams(db, users, [room])
                print(f"snapshot catch-up: {counts}, {len(db.events(room))} events, applied {db.applied_index}")
            finally:
                await close_all(users)

    run(main(), timeout=150)


def test_chat_node_down_during_compaction_catches_up_by_snapshot(make_chat_cluster):
    """Snapshot every 40 entries keeping 10: a follower misses 200 messages, the others snapshot and compact;
    restarted under load, it gets the leader's snapshot, serves a gap-free stream and its database matches."""
    cluster = make_chat_cluster(3, settings={"snapshot_entries": 40, "compact_keep_entries": 10})
    snapshot_catch_up(cluster, messages=200, during_restart=40)


@pytest.mark.long
def test_chat_node_down_during_compaction_catches_up_by_snapshot_5_nodes_large(make_chat_cluster):
    cluster = make_chat_cluster(5, settings={"snapshot_entries": 1000, "compact_keep_entries": 100})
    snapshot_catch_up(cluster, messages=3000, during_restart=200)
