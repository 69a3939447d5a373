"""The streaming write path (``DataService.Write``, ``KvClient(streaming=True)``) on an in-process 3-node cluster."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_helpers import eventually, run
from kv_helpers import Cluster, cluster_configs

from raft_grpc.kv import KvClient, KvInvalidArgument
from raft_grpc.kv._gen.kv.v1 import kv_pb2 as pb
from raft_grpc.kv._gen.kv.v1 import kv_pb2_grpc as pb_grpc

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def count_unary_writes(kv: KvClient) -> list[str]:
    """Record the methods ``kv`` sends through its unary path (the fallback of a streamed write)."""
    methods: list[str] = []
    unary = kv._call

    async def recording(method, request, deadline):
        methods.append(method)
        return await unary(method, request, deadline)

    kv._call = recording  # type: ignore[method-assign]
    return methods


def writes(methods: list[str]) -> list[str]:
    return [m for m in methods if m in ("Put", "Delete", "CompareAndSet")]


def test_streamed_put_cas_delete(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster:
            await cluster.leader()
            for endpoint in cluster.endpoints:  # each node alone: followers forward
                async with KvClient([endpoint], streaming=True) as kv:
                    unary = count_unary_writes(kv)
                    key = f"key-{endpoint}".encode()
                    assert await kv.get(key) is None
                    assert await kv.put(key, b"v") >= 1
                    assert await kv.get(key) == b"v"
                    assert (await kv.compare_and_set(key, b"wrong", b"x")).succeeded is False
                    cas = await kv.compare_and_set(key, b"v", b"w")
                    assert cas.succeeded and cas.value == b"w"
                    assert (await kv.compare_and_set(key + b"/absent", None, b"a")).succeeded
                    assert (await kv.compare_and_set(key + b"/absent", None, b"b")).value == b"a"
                    assert await kv.delete(key) is True
                    assert await kv.delete(key) is False
                    assert await kv.get(key) is None
                    assert writes(unary) == [], "every write went over the stream"
            await eventually(
                lambda: len({s.node.state_machine.snapshot() for s in cluster.running()}) == 1,
                what="every node holds the same store",
            )

    run(main())


def test_fifty_concurrent_streamed_writes(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster, KvClient(cluster.endpoints, streaming=True) as kv:
            await cluster.leader()
            unary = count_unary_writes(kv)
            assert await kv.put(b"first", b"v") == 1  # opens the stream
            (stream,) = kv._streams.values()
            sizes: list[int] = []
            write = stream._call.write

            async def recording(message: pb.WriteRequestBatch) -> None:
                sizes.append(len(message.requests))
                await write(message)

            stream._call.write = recording
            revisions = await asyncio.gather(*(kv.put(b"k%d" % i, b"v%d" % i) for i in range(50)))
            assert sorted(revisions) == list(range(2, 52))
            assert writes(unary) == []
            assert len(kv._streams) == 1
            assert sum(sizes) == 50 and max(sizes) > 1, sizes  # writes waiting together share a message
            for i in (0, 17, 49):
                assert await kv.get(b"k%d" % i) == b"v%d" % i

    run(main())


@pytest.mark.parametrize("rpc", ["Write", "WriteBatches"])
def test_a_bad_request_fails_alone_on_its_stream(tmp_path, rpc):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster:
            leader = await cluster.leader()
            async with grpc.aio.insecure_channel(cluster.endpoints[leader - 1]) as channel:
                stub = pb_grpc.DataServiceStub(channel)
                client = (await stub.OpenSession(pb.OpenSessionRequest(), timeout=5)).client_id

                def header(seq: int) -> pb.WriteHeader:
                    return pb.WriteHeader(client_id=client, seq=seq, floor=1)

                requests = [
                    pb.WriteRequest(id=10, put=pb.PutRequest(header=header(1), key=b"a", value=b"1")),
                    pb.WriteRequest(id=11, put=pb.PutRequest(header=header(2), key=b"", value=b"1")),  # empty key
                    pb.WriteRequest(id=12, compare_and_set=pb.CompareAndSetRequest(header=header(3), key=b"b")),
                    pb.WriteRequest(id=13),  # no operation
                    pb.WriteRequest(id=14, put=pb.PutRequest(header=pb.WriteHeader(seq=4), key=b"c")),  # no client
                    pb.WriteRequest(id=15, delete=pb.DeleteRequest(header=header(5), key=b"a")),
                    pb.WriteRequest(id=16, put=pb.PutRequest(header=header(6), key=b"b", value=b"2")),
                ]
                replies: dict[int, pb.WriteReply] = {}
                if rpc == "Write":
                    call = stub.Write(iter(requests), timeout=10)
                    replies = {reply.id: reply async for reply in call}
                else:  # two stream messages of requests; replies come in batches, none empty
                    batches = [pb.WriteRequestBatch(requests=requests[:3]), pb.WriteRequestBatch(requests=requests[3:])]
                    call = stub.WriteBatches(iter(batches), timeout=10)
                    async for batch in call:
                        assert batch.replies
                        replies.update((reply.id, reply) for reply in batch.replies)
                assert await call.code() is grpc.StatusCode.OK
            assert sorted(replies) == [10, 11, 12, 13, 14, 15, 16]
            for bad in (11, 12, 13, 14):
                assert replies[bad].WhichOneof("result") == "error"
                assert replies[bad].error.code == INVALID_ARGUMENT, replies[bad]
                assert replies[bad].error.message
            assert replies[10].put.revision >= 1
            assert replies[15].delete.existed is True
            assert replies[16].put.revision >= 1
            store = cluster.servers[leader - 1].node.state_machine
            assert store.get(b"a")[0] is None and store.get(b"b")[0] == b"2"

        # The same through the client: the bad write raises, the others on its stream succeed.
        async with (
            Cluster(cluster_configs(tmp_path / "again")) as cluster,
            KvClient(cluster.endpoints, streaming=True) as kv,
        ):
            await cluster.leader()
            unary = count_unary_writes(kv)
            results = await asyncio.gather(
                *(kv.put(b"ok%d" % i, b"v") for i in range(5)), kv.put(b"", b"v"), return_exceptions=True
            )
            assert isinstance(results[-1], KvInvalidArgument)
            assert sorted(results[:-1]) == [1, 2, 3, 4, 5]
            with pytest.raises(KvInvalidArgument):
                await kv.compare_and_set(b"x" * 5000, None, b"v")  # key too long
            assert await kv.put(b"after", b"v") == 6
            assert writes(unary) == []

    run(main())


def test_streamed_writes_survive_the_leader_stopping_exactly_once(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster, KvClient(cluster.endpoints, streaming=True) as kv:
            leader = await cluster.leader()
            for i in range(10):
                await kv.put(b"before%d" % i, b"v")
            assert len(kv._streams) == 1
            in_flight = [asyncio.ensure_future(kv.put(b"during%d" % i, b"v")) for i in range(30)]
            await asyncio.sleep(0)
            await cluster.stop(leader)
            revisions = await asyncio.gather(*in_flight)
            revisions += [await kv.put(b"after%d" % i, b"v") for i in range(10)]
            # Every put changed the store once: revisions 11..50 with none repeated or lost.
            assert sorted(revisions) == list(range(11, 51))
            assert await cluster.leader() != leader
            stores = [s.node.state_machine for s in cluster.running()]
            await eventually(lambda: all(sm.revision == 50 for sm in stores), what="revision 50 on both survivors")
            assert all(len(sm.data) == 50 for sm in stores)
            assert await kv.get(b"during29") == b"v"

    run(main())


def test_against_a_server_without_write_batches_the_client_uses_write(tmp_path, monkeypatch):
    generic = grpc.method_handlers_generic_handler

    def an_older_server(service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> grpc.GenericRpcHandler:
        handlers.pop("WriteBatches", None)  # the same dict is registered twice: both lose it
        return generic(service, handlers)

    monkeypatch.setattr(grpc, "method_handlers_generic_handler", an_older_server)

    async def main():
        async with Cluster(cluster_configs(tmp_path)) as cluster, KvClient(cluster.endpoints, streaming=True) as kv:
            await cluster.leader()
            unary = count_unary_writes(kv)
            revisions = await asyncio.gather(*(kv.put(b"k%d" % i, b"v") for i in range(10)))
            assert sorted(revisions) == list(range(1, 11))  # each applied once
            assert writes(unary) == []
            assert kv._write_batches is False
            assert all(not stream._batched for stream in kv._streams.values())

    run(main())
