"""An in-process 3-node key-value cluster (3 Nodes + 3 grpc.aio servers, DiskStorage) driven by KvClient."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_helpers import eventually, run
from kv_helpers import Cluster, cluster_configs

from raft_grpc.kv import KvClient, KvUnavailable
from raft_grpc.kv._gen.kv.v1 import kv_pb2 as pb
from raft_grpc.kv._gen.kv.v1 import kv_pb2_grpc as pb_grpc
from raft_grpc.kv.service import LEADER_ID_KEY, LEADER_KEY


def test_put_get_cas_delete_from_every_node(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster:
            await cluster.leader()
            for i, endpoint in enumerate(cluster.endpoints, 1):
                async with KvClient([endpoint]) as kv:  # each node alone: followers forward
                    key = b"key-%d" % i
                    assert await kv.get(key) is None
                    await kv.put(key, b"v%d" % i)
                    for other in cluster.endpoints:
                        async with KvClient([other]) as reader:
                            assert await reader.get(key) == b"v%d" % i  # linearizable from any node
                    assert (await kv.compare_and_set(key, b"wrong", b"x")).succeeded is False
                    cas = await kv.compare_and_set(key, b"v%d" % i, b"w")
                    assert cas.succeeded and cas.value == b"w"
                    assert (await kv.compare_and_set(b"absent-%d" % i, None, b"a")).succeeded
                    assert (await kv.compare_and_set(b"absent-%d" % i, None, b"b")).value == b"a"
                    assert await kv.delete(key) is True
                    assert await kv.delete(key) is False
                    assert await kv.get(key) is None
            async with KvClient(cluster.endpoints) as kv:
                status = await kv.status(cluster.endpoints[await cluster.leader() - 1])
                assert status.role == "leader" and len(status.peers) == 2
                await eventually(
                    lambda: len({s.node.state_machine.snapshot() for s in cluster.running()}) == 1,
                    what="every node holds the same store",
                )

    run(main())


def test_a_retried_write_is_applied_once_on_any_node(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster:
            await cluster.leader()
            channels = [grpc.aio.insecure_channel(e) for e in cluster.endpoints]
            stubs = [pb_grpc.DataServiceStub(c) for c in channels]
            try:
                client = (await stubs[0].OpenSession(pb.OpenSessionRequest(), timeout=5)).client_id
                await stubs[0].Put(
                    pb.PutRequest(header=pb.WriteHeader(client_id=client, seq=1), key=b"k", value=b"v"), timeout=5
                )
                delete = pb.DeleteRequest(header=pb.WriteHeader(client_id=client, seq=2), key=b"k")
                replies = [await stub.Delete(delete, timeout=5) for stub in (stubs[1], stubs[2], stubs[0])]
                # The first delete removed the key; the retries got its answer and applied nothing.
                assert [r.existed for r in replies] == [True, True, True]
                assert len({r.revision for r in replies}) == 1
                stores = [s.node.state_machine for s in cluster.running()]
                await eventually(lambda: all(sm.revision == 2 for sm in stores), what="revision 2 everywhere")
                assert all(b"k" not in sm.data for sm in stores)
            finally:
                for c in channels:
                    await c.close(None)

    run(main())


def test_concurrent_writes_on_one_client(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster, KvClient(cluster.endpoints) as kv:
            await cluster.leader()
            revisions = await asyncio.gather(*(kv.put(b"k%d" % i, b"v") for i in range(50)))
            assert sorted(revisions) == list(range(1, 51))
            assert await kv.get(b"k49") == b"v"

    run(main())


def test_the_client_keeps_working_when_the_leader_stops(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster, KvClient(cluster.endpoints) as kv:
            leader = await cluster.leader()
            await kv.put(b"before", b"1")
            await cluster.stop(leader)
            started = time.monotonic()
            await kv.put(b"after", b"2")
            assert time.monotonic() - started < 3.0
            assert await kv.get(b"before") == b"1"
            assert await kv.get(b"after") == b"2"
            assert await cluster.leader() != leader
            await cluster.start(leader)  # it rejoins and catches up
            server = cluster.servers[leader - 1]
            await eventually(lambda: server.node.state_machine.get(b"after")[0] == b"2", what="catch-up")

    run(main())


def test_two_of_three_down_fails_unavailable_within_the_deadline(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster, KvClient(cluster.endpoints, timeout=1.5) as kv:
            await cluster.leader()
            await kv.put(b"k", b"v")
            survivor = 1
            await cluster.stop(2)
            await cluster.stop(3)
            for call in (kv.put(b"k", b"w"), kv.get(b"k")):
                started = time.monotonic()
                with pytest.raises(KvUnavailable) as info:
                    await call
                assert time.monotonic() - started < 1.5 + 0.3
                assert info.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
            await cluster.start(2)  # a majority again: writes work
            await kv.put(b"k", b"x", timeout=5)
            node = cluster.servers[survivor - 1].node
            assert node.state_machine.get(b"k")[0] in (b"w", b"x")  # the timed-out write may have been applied
            assert await kv.get(b"k") == b"x"

    run(main())


def test_without_forwarding_a_follower_names_the_leader(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path, forward=False)) as cluster:
            leader = await cluster.leader()
            follower = leader % 3 + 1
            async with grpc.aio.insecure_channel(cluster.endpoints[follower - 1]) as channel:
                stub = pb_grpc.DataServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Put(
                        pb.PutRequest(header=pb.WriteHeader(client_id="c", seq=1), key=b"k", value=b"v"), timeout=5
                    )
                assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
                metadata = dict(info.value.trailing_metadata())
                assert metadata[LEADER_KEY] == cluster.endpoints[leader - 1]
                assert metadata[LEADER_ID_KEY] == str(leader)
            async with KvClient([cluster.endpoints[follower - 1]]) as kv:  # follows the hint
                await kv.put(b"k", b"v")
                assert await kv.get(b"k") == b"v"

    run(main())


def test_a_follower_proposes_again_when_the_leader_it_forwarded_to_dies(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster:
            leader = await cluster.leader()
            follower = leader % 3 + 1
            # Pinned to one follower, with one attempt allowed the whole budget: only the server side can help.
            async with KvClient([cluster.endpoints[follower - 1]], timeout=8.0, attempt_timeout=8.0) as kv:
                await kv.put(b"k", b"1")
                await cluster.stop(leader)
                started = time.monotonic()
                assert await kv.put(b"k", b"2") == 2
                assert time.monotonic() - started < 3.0  # an election, not the 8 s deadline
                assert await kv.get(b"k") == b"2"

    run(main())
