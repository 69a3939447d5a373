"""GrpcTransport on loopback with real grpc.aio servers: a cluster, restarts, authentication, bad input, limits."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack

import grpc
import pytest
from grpc_helpers import SECRET, Counter, Recorder, eventually, member_metadata, raw_stream, run

from raft_core import Membership, MemoryStorage
from raft_core.messages import AppendEntries, Heartbeat, Propose, RequestVote
from raft_core.runtime import Node, NodeOptions
from raft_core.types import Entry
from raft_grpc import GrpcTransport, TransportOptions, codec
from raft_grpc.servicer import SEND_METHOD

FAST = TransportOptions(initial_backoff=0.01, max_backoff=0.1, connect_timeout=1.0)
NODE_OPTIONS = NodeOptions(tick_interval=0.01, election_ticks=20)


async def bound_servers(ids, options=FAST):
    """grpc.aio servers bound to 127.0.0.1:0 (not started) and the address map they make."""
    servers = {i: grpc.aio.server(options=options.server_options()) for i in ids}
    addresses = {i: f"127.0.0.1:{s.add_insecure_port('127.0.0.1:0')}" for i, s in servers.items()}
    return servers, addresses


async def start_transport(node_id, addresses, receiver, stack, options=FAST, secret=SECRET):
    """A started GrpcTransport on a shared server bound to its address (all closed by ``stack``).

    Returns the transport and the address it serves (``addresses[node_id]`` may use port 0).
    """
    server = grpc.aio.server(options=options.server_options())
    host = addresses[node_id].rsplit(":", 1)[0]
    port = server.add_insecure_port(addresses[node_id])
    addresses = {**addresses, node_id: f"{host}:{port}"}
    transport = GrpcTransport(node_id, addresses, secret=secret, options=options, server=server)
    await server.start()
    await transport.start(receiver)
    stack.push_async_callback(server.stop, 0)
    stack.push_async_callback(transport.close)
    return transport, addresses[node_id]


# -- a cluster of runtime nodes -------------------------------------------------------------------------------


def test_three_nodes_elect_a_leader_and_replicate():
    async def main():
        servers, addresses = await bound_servers((1, 2, 3))
        membership = Membership.of(1, 2, 3)
        nodes = []
        for i in (1, 2, 3):
            transport = GrpcTransport(i, addresses, secret=SECRET, options=FAST, server=servers[i])
            await servers[i].start()
            nodes.append(Node(i, Counter(), MemoryStorage(membership), transport, NODE_OPTIONS))
        try:
            for node in nodes:
                await node.start()
            leader = await nodes[0].wait_for_leader(timeout=10)
            results = await asyncio.gather(*(nodes[i % 3].propose(b"1", timeout=10) for i in range(200)))
            assert sorted(results) == list(range(1, 201))
            assert await nodes[2].read(lambda sm: sm.value, timeout=10) == 200
            await eventually(lambda: all(n.state_machine.value == 200 for n in nodes), what="every node applies")
            stats = nodes[leader - 1]._transport.stats()
            assert all(lane.dropped == 0 for lanes in stats.values() for lane in lanes.values())
            assert all(0 < lanes["bulk"].batches <= lanes["bulk"].sent for lanes in stats.values())
        finally:
            for node in nodes:
                await node.stop()
            for server in servers.values():
                await server.stop(0)

    run(main())


def test_the_leader_keeps_its_leadership_under_full_client_load():
    """64 clients propose 16 kB commands for a second: bulk lanes are busy, the term never changes."""

    async def main():
        servers, addresses = await bound_servers((1, 2, 3))
        options = NodeOptions(tick_interval=0.02, election_ticks=50, heartbeat_ticks=2)
        nodes = []
        for i in (1, 2, 3):
            transport = GrpcTransport(i, addresses, secret=SECRET, options=FAST, server=servers[i])
            await servers[i].start()
            nodes.append(Node(i, Counter(), MemoryStorage(Membership.of(1, 2, 3)), transport, options))
        try:
            for node in nodes:
                await node.start()
            leader = nodes[await nodes[0].wait_for_leader(timeout=10) - 1]
            term, stop, done = leader.status().term, time.monotonic() + 1.0, []

            async def client():
                while time.monotonic() < stop:
                    done.append(await leader.propose(b"1" + b" " * 16_000, timeout=10))

            await asyncio.gather(*(client() for _ in range(64)))
            assert len(done) > 1000
            assert leader.is_leader and all(n.status().term == term for n in nodes)
            stats = leader._transport.stats()
            assert all(lane.dropped == 0 for lanes in stats.values() for lane in lanes.values())
        finally:
            for node in nodes:
                await node.stop()
            for server in servers.values():
                await server.stop(0)

    run(main())


def test_a_stopped_node_restarts_on_its_own_server_and_catches_up():
    async def main():
        servers, addresses = await bound_servers((1, 2, 3))
        membership = Membership.of(1, 2, 3)
        storages = {i: MemoryStorage(membership) for i in (1, 2, 3)}
        nodes = {}
        for i in (1, 2, 3):
            transport = GrpcTransport(i, addresses, secret=SECRET, options=FAST, server=servers[i])
            await servers[i].start()
            nodes[i] = Node(i, Counter(), storages[i], transport, NODE_OPTIONS)
            await nodes[i].start()
        try:
            leader = await nodes[1].wait_for_leader(timeout=10)
            victim = next(i for i in (1, 2, 3) if i != leader)
            await nodes[victim].stop()
            await servers[victim].stop(0)
            for _ in range(50):
                await nodes[leader].propose(b"2", timeout=10)  # a majority is still up
            # Restart on the same address, this time with the transport's own server.
            transport = GrpcTransport(victim, addresses, secret=SECRET, options=FAST)
            nodes[victim] = Node(victim, Counter(), storages[victim], transport, NODE_OPTIONS)
            await nodes[victim].start()
            assert transport.port == int(addresses[victim].rsplit(":", 1)[1])
            await eventually(lambda: nodes[victim].state_machine.value == 100, what="the restarted node catches up")
            await nodes[leader].propose(b"1", timeout=10)
            await eventually(lambda: nodes[victim].state_machine.value == 101, what="new entries reach it")
        finally:
            for node in nodes.values():
                await node.stop()
            for server in servers.values():
                await server.stop(0)

    run(main())


# -- authentication and bad input -----------------------------------------------------------------------------


def _heartbeat_batch(src=2, dst=1):
    return codec.encode_batch([Heartbeat(src=src, dst=dst, term=1)])


@pytest.fixture
def node1():
    """A function running ``check(address, recorder)`` against a started transport for node 1 of 3."""

    def with_node(check, options=FAST):
        async def main():
            async with AsyncExitStack() as stack:
                addresses = {1: "127.0.0.1:0", 2: "127.0.0.1:9", 3: "127.0.0.1:9"}  # node 1 sends nothing
                recorder = Recorder()
                transport, address = await start_transport(1, addresses, recorder, stack, options=options)
                await check(address, recorder, transport)

        run(main())

    return with_node


def test_a_member_with_the_right_secret_is_delivered_to(node1):
    async def check(address, recorder, transport):
        code, _ = await raw_stream(address, [_heartbeat_batch()] * 3, member_metadata(2, 1))
        assert code == grpc.StatusCode.OK
        assert recorder.received == [Heartbeat(src=2, dst=1, term=1)] * 3

    node1(check)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(member_metadata(2, 1, secret=b"some-other-cluster-secret"), id="wrong-secret"),
        pytest.param(member_metadata(7, 1), id="not-a-member"),
        pytest.param(member_metadata(2, 3), id="addressed-to-another-node"),
        pytest.param(member_metadata(1, 1), id="claims-to-be-this-node"),
        pytest.param((("raft-src", "2"), ("raft-dst", "1")), id="no-token"),
        pytest.param((("raft-src", "two"), ("raft-dst", "1"), ("raft-auth", "00")), id="garbage-ids"),
        pytest.param((), id="no-metadata"),
    ],
)
def test_strangers_get_unauthenticated_and_deliver_nothing(node1, metadata, caplog):
    async def check(address, recorder, transport):
        with caplog.at_level(logging.DEBUG):
            code, _ = await raw_stream(address, [_heartbeat_batch()], metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert recorder.received == []
        assert transport.servicer.refused == 1
        logged = caplog.text
        assert SECRET.decode() not in logged and member_metadata(2, 1)[-1][1] not in logged

    node1(check)


def test_a_transport_with_the_wrong_secret_delivers_nothing(node1):
    async def check(address, recorder, transport):
        async with AsyncExitStack() as stack:
            stranger = Recorder()
            other, _ = await start_transport(2, {1: address, 2: "127.0.0.1:0"}, stranger, stack, secret=b"x" * 32)
            other.send([Heartbeat(src=2, dst=1, term=5)] * 3)
            await eventually(lambda: transport.servicer.refused >= 1, what="the stream is refused")
            await eventually(lambda: 1 in stranger.unreachable_calls, what="the sender is told")
            assert recorder.received == []

    node1(check)


@pytest.mark.parametrize(
    ("batch", "code"),
    [
        pytest.param(b"\xff\xff\xff\xff garbage", grpc.StatusCode.INVALID_ARGUMENT, id="garbage"),
        pytest.param(codec.frame_batch([b"\x08"]), grpc.StatusCode.INVALID_ARGUMENT, id="truncated-message"),
        pytest.param(
            codec.frame_batch([codec.encode_message(Heartbeat(src=2, dst=1, term=1)), b""]),
            grpc.StatusCode.INVALID_ARGUMENT,
            id="second-message-has-no-kind",
        ),
        pytest.param(_heartbeat_batch(src=3), grpc.StatusCode.PERMISSION_DENIED, id="src-is-not-the-sender"),
        pytest.param(_heartbeat_batch(dst=3), grpc.StatusCode.INVALID_ARGUMENT, id="dst-is-not-this-node"),
        pytest.param(b"\x00" * (100 << 10), grpc.StatusCode.INVALID_ARGUMENT, id="oversized"),
        pytest.param(b"\x00" * (200 << 10), grpc.StatusCode.RESOURCE_EXHAUSTED, id="far-oversized"),
    ],
)
def test_bad_batches_are_refused_and_change_nothing(node1, batch, code):
    async def check(address, recorder, transport):
        good = _heartbeat_batch()
        status, details = await raw_stream(address, [good, batch, good], member_metadata(2, 1))
        assert status == code, details
        assert recorder.received == [Heartbeat(src=2, dst=1, term=1)]  # the first batch only
        code2, _ = await raw_stream(address, [good], member_metadata(2, 1))  # the node is still fine
        assert code2 == grpc.StatusCode.OK

    node1(check, options=TransportOptions(initial_backoff=0.01, max_backoff=0.1, max_message_bytes=64 << 10))


# -- queues, limits and lanes ---------------------------------------------------------------------------------


def _append(src, dst, size, index=1):
    return AppendEntries(
        src=src, dst=dst, term=1, prev_index=index - 1, prev_term=1, entries=(Entry(1, index, data=bytes(size)),)
    )


def test_a_dead_peer_fills_a_bounded_queue_then_drops_and_reports():
    options = TransportOptions(bulk_queue_messages=4, initial_backoff=0.2, max_backoff=0.5)

    async def main():
        async with AsyncExitStack() as stack:
            addresses = {1: "127.0.0.1:0", 2: "127.0.0.1:9"}  # nothing listens on port 9 (discard)
            recorder = Recorder()
            transport = GrpcTransport(1, addresses, secret=SECRET, options=options)
            await transport.start(recorder)
            stack.push_async_callback(transport.close)
            for i in range(100):
                transport.send([_append(1, 2, 1000, i + 1)])
                stats = transport.stats()[2]["bulk"]
                assert stats.queued <= 4 and stats.queued_bytes <= 4 * 1100
            assert recorder.unreachable_calls.count(2) >= 95
            await eventually(lambda: transport.stats()[2]["bulk"].queued == 0, what="the failed stream drops its queue")
            assert transport.stats()[2]["bulk"].dropped == 100

    run(main())


def test_messages_to_unknown_nodes_or_over_the_size_limit_are_dropped_and_reported():
    options = TransportOptions(max_message_bytes=64 << 10)

    async def main():
        async with AsyncExitStack() as stack:
            recorder = Recorder()
            transport, _ = await start_transport(1, {1: "127.0.0.1:0", 2: "127.0.0.1:9"}, recorder, stack, options)
            transport.send(
                [
                    Propose(src=1, dst=2, data=(bytes(70 << 10),)),
                    RequestVote(src=1, dst=5, term=1, last_index=0, last_term=0),
                ]
            )
            assert sorted(recorder.unreachable_calls) == [2, 5]
            assert transport.stats()[2]["bulk"].queued == 0

    run(main())


def test_the_control_lane_flows_while_the_bulk_lane_is_stuck():
    """A peer stops reading its bulk stream: heartbeats still arrive promptly; stalls end and drops are reported."""
    options = TransportOptions(
        bulk_queue_messages=8, bulk_queue_bytes=4 << 20, max_message_bytes=1 << 20, stall_timeout=0.3
    )

    async def main():
        heartbeats: list[float] = []
        bulk_started = asyncio.Event()

        async def handler(requests, context):
            lane = dict(context.invocation_metadata())["raft-lane"]
            if lane == "bulk":
                bulk_started.set()
                await asyncio.Event().wait()  # never read
            async for raw in requests:
                heartbeats.extend(time.monotonic() for m in codec.decode_batch(raw) if isinstance(m, Heartbeat))
            return b""

        peer = grpc.aio.server(options=[("grpc.http2.bdp_probe", 0)])
        method = grpc.stream_unary_rpc_method_handler(handler, request_deserializer=None, response_serializer=None)
        peer.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("raft.v1.NodeCommunication", {"Send": method}),)
        )
        port = peer.add_insecure_port("127.0.0.1:0")
        await peer.start()
        async with AsyncExitStack() as stack:
            stack.push_async_callback(peer.stop, 0)
            recorder = Recorder()
            addresses = {1: "127.0.0.1:0", 2: f"127.0.0.1:{port}"}
            transport, _ = await start_transport(1, addresses, recorder, stack, options)
            sent_at = []
            for i in range(60):
                transport.send([_append(1, 2, 256 << 10, i + 1), Heartbeat(src=1, dst=2, term=1)])
                sent_at.append(time.monotonic())
                await asyncio.sleep(0.02)
                bulk = transport.stats()[2]["bulk"]
                assert bulk.queued <= 8 and bulk.queued_bytes <= 4 << 20
            await eventually(lambda: len(heartbeats) == 60, timeout=5, what="every heartbeat")
            assert bulk_started.is_set()
            bulk = transport.stats()[2]["bulk"]
            assert 2 in recorder.unreachable_calls and bulk.dropped > 0
            assert bulk.streams >= 2  # a write stalled past stall_timeout ended the stream; the lane reconnected
            assert transport.stats()[2]["control"].streams == 1
            delays = sorted(arrived - sent for arrived, sent in zip(heartbeats, sent_at, strict=True))
            assert delays[len(delays) // 2] < 0.1, delays  # median heartbeat latency stays small

    run(main(), timeout=40)


def test_send_route_is_the_generated_services_route():
    from raft_grpc._gen.raft.v1 import raft_pb2_grpc

    assert SEND_METHOD == "/raft.v1.NodeCommunication/Send"
    assert hasattr(raft_pb2_grpc, "NodeCommunicationStub")
