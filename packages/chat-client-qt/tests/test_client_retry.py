"""Retries: the same request_id on every attempt and node, NOT_LEADER redirects, dead and hung nodes, deadlines."""

from __future__ import annotations

import random
import time

import grpc
import pytest
from chat_fakes import TOKEN, Failure, FakeCluster, FakeNode, FakeState, free_port, run

from chat_client_qt.client import ChatClient, Connection, OutcomeUnknown, Unavailable, api


def test_write_retried_on_the_next_node_with_the_same_request_id(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            a, b = cluster.nodes
            a.fail("CreateRoom", Failure(grpc.StatusCode.UNAVAILABLE, "no quorum"))
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                room = await client.create_room("general")
            assert cluster.state.nodes_called("CreateRoom") == [a.address, b.address]
            rids = cluster.state.request_ids("CreateRoom")
            assert rids[0] and rids[0] == rids[1]
            assert list(cluster.state.conversations) == [room.id]

    run(main())


def test_lost_answer_then_retry_elsewhere_applies_the_message_once(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            cluster.state.room("r1", "alice")
            a, b = cluster.nodes
            # The first node applies the message, then the answer is lost (DEADLINE_EXCEEDED).
            a.fail("SendMessage", Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", apply_first=True))
            async with ChatClient(cluster.endpoints, data_dir=tmp_path, use_outbox=False) as client:
                await client.use_session("alice", TOKEN)
                response = await client.send("r1", "hello")
            assert response.duplicate and response.message is not None and response.message.seq == 2
            assert cluster.state.bodies("r1") == ["hello"]
            assert cluster.state.nodes_called("SendMessage") == [a.address, b.address]
            rids = cluster.state.request_ids("SendMessage")
            assert len(set(rids)) == 1 and rids[0]

    run(main())


def test_dead_endpoint_is_skipped(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster:
            dead = f"127.0.0.1:{free_port()}"
            async with ChatClient([dead, *cluster.endpoints], data_dir=tmp_path, timeout=5.0) as client:
                await client.use_session("alice", TOKEN)
                assert (await client.me()).username == "alice"
                assert client.connection.current == cluster.nodes[0].address
                # The working node stays current: the next call goes straight there.
                await client.me()
            assert cluster.state.nodes_called("GetMe") == [cluster.nodes[0].address] * 2

    run(main())


def test_hung_node_costs_one_attempt_timeout(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            a, b = cluster.nodes
            a.fail("GetMe", Failure(grpc.StatusCode.UNAVAILABLE, "late", delay=5.0))
            async with ChatClient(cluster.endpoints, data_dir=tmp_path, timeout=3.0, attempt_timeout=0.3) as client:
                await client.use_session("alice", TOKEN)
                started = time.monotonic()
                await client.me()
                assert time.monotonic() - started < 1.5
            assert cluster.state.nodes_called("GetMe") == [a.address, b.address]

    run(main())


def test_not_leader_redirect_then_writes_go_to_the_leader(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            a, b = cluster.nodes
            a.leader = b.address  # a is a follower: writes get UNAVAILABLE + ErrorInfo NOT_LEADER(leader=b)
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                first = await client.create_room("one")
                assert client.connection.leader == b.address
                second = await client.create_room("two")
                # Reads still go to the current node.
                await client.conversations()
            assert cluster.state.nodes_called("CreateRoom") == [a.address, b.address, b.address]
            rids = cluster.state.request_ids("CreateRoom")
            assert rids[0] == rids[1] != rids[2]
            assert {first.id, second.id} == set(cluster.state.conversations)
            assert cluster.state.nodes_called("ListConversations") == [a.address]

    run(main())


def test_leader_learnt_from_node_status(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            a, b = cluster.nodes
            a.leader = b.address
            async with ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
                status = await client.node_status(a.address)
                assert status.leader_address == b.address and status.role == "follower"
                assert client.connection.leader == b.address
                await client.use_session("alice", TOKEN)
                await client.create_room("x")
            assert cluster.state.nodes_called("CreateRoom") == [b.address]

    run(main())


def test_all_nodes_down_fails_within_the_deadline(tmp_path):
    async def main() -> None:
        endpoints = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
        async with ChatClient(endpoints, data_dir=tmp_path, timeout=0.8, use_outbox=False) as client:
            await client.use_session("alice", TOKEN)
            started = time.monotonic()
            with pytest.raises(Unavailable) as info:
                await client.create_room("x")
            elapsed = time.monotonic() - started
            assert 0.7 < elapsed < 2.0
            assert info.value.request_id is not None and info.value.retryable

    run(main())


def test_outcome_unknown_then_user_retry_with_the_same_request_id_applies_once(tmp_path):
    async def main() -> None:
        state = FakeState()
        node = await FakeNode(state, 1).start()
        try:
            node.fail("CreateRoom", Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "timed out", apply_first=True))
            node.fail("CreateRoom", *[Failure(grpc.StatusCode.DEADLINE_EXCEEDED, "timed out")] * 50)
            async with ChatClient([node.address], data_dir=tmp_path, timeout=0.3) as client:
                await client.use_session("alice", TOKEN)
                with pytest.raises(OutcomeUnknown) as info:
                    await client.create_room("x")
                rid = info.value.request_id
                assert rid is not None
                node.failures.clear()
                room = await client.create_room("x", request_id=rid)
            assert list(state.conversations) == [room.id]
            assert set(state.request_ids("CreateRoom")) == {rid}
        finally:
            await node.stop()

    run(main())


def test_backoff_is_jittered_exponential_and_capped():
    conn = Connection(["a:1"], backoff_initial=0.1, backoff_max=1.0, rng=random.Random(7))
    delays = [conn.backoff(i) for i in range(8)]
    for i, delay in enumerate(delays):
        base = min(1.0, 0.1 * 2**i)
        assert base / 2 <= delay <= base
    assert max(delays) <= 1.0


def test_endpoints_from_a_comma_separated_string_and_rotation():
    conn = Connection("a:1, b:2,,a:1")
    assert conn.endpoints == ["a:1", "b:2"]
    assert conn.pick() == "a:1"
    conn.report_failure("a:1")
    assert conn.pick() == "b:2"
    conn.report_failure("a:1")  # a stale failure report does not move the current node again
    assert conn.pick() == "b:2"
    conn.report_failure("b:2", leader_hint="c:3")
    assert conn.leader == "c:3" and conn.pick(write=True) == "c:3" and conn.pick() == "b:2"
    assert conn.endpoints == ["a:1", "b:2", "c:3"]
    conn.report_failure("c:3")
    assert conn.leader is None
    with pytest.raises(ValueError):
        Connection([])


def test_leader_learnt_from_cluster_status():
    conn = Connection(["a:1", "b:2"])
    status = api.ClusterStatus(
        leader_id=2,
        nodes=[
            api.NodeStatus(node_id=1, client_address="a:1", reachable=True, leader_id=2),
            api.NodeStatus(node_id=2, client_address="b:2", reachable=True, role="leader"),
        ],
    )
    conn.learn(status)
    assert conn.leader == "b:2"
    conn.learn(api.NodeStatus(node_id=1, leader_address="c:3"))
    assert conn.leader == "c:3" and "c:3" in conn.endpoints
    conn.learn(api.NodeStatus(node_id=1))  # no leader known there: keep what we know
    assert conn.leader == "c:3"
