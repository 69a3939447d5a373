"""KvService error mapping (bad input gets INVALID_ARGUMENT and changes nothing) and the process config."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_helpers import SECRET, run
from kv_helpers import Cluster, cluster_configs

from raft_core.errors import (
    CommandFailed,
    CommitUnknown,
    NodeStopped,
    NotLeader,
    Overloaded,
    ProposalDropped,
    ReadTimeout,
    SessionError,
)
from raft_grpc.kv import ConfigError, KvClient, KvInvalidArgument, parse_config
from raft_grpc.kv._gen.kv.v1 import kv_pb2 as pb
from raft_grpc.kv._gen.kv.v1 import kv_pb2_grpc as pb_grpc
from raft_grpc.kv.service import status_for

C = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Overloaded("busy"), C.RESOURCE_EXHAUSTED),
        (SessionError("expired"), C.FAILED_PRECONDITION),
        (NotLeader(2, address="h:1"), C.FAILED_PRECONDITION),
        (NotLeader(), C.UNAVAILABLE),
        (ProposalDropped("overwritten"), C.UNAVAILABLE),
        (CommitUnknown("timeout"), C.UNAVAILABLE),
        (ReadTimeout("timeout"), C.UNAVAILABLE),
        (NodeStopped("stopped"), C.UNAVAILABLE),
        (CommandFailed("KvCommandError", "bad"), C.INVALID_ARGUMENT),
        (ValueError("command too large"), C.INVALID_ARGUMENT),
        (KeyError("bug"), C.INTERNAL),
    ],
)
def test_status_for_each_error(error, code):
    got, message = status_for(error)
    assert got is code
    assert message and "Traceback" not in message
    if code is C.INTERNAL:
        assert "bug" not in message  # nothing internal leaks


def test_bad_requests_get_invalid_argument_and_change_nothing(tmp_path):
    async def main():
        async with Cluster(cluster_configs(tmp_path, 1)) as cluster:
            await cluster.leader()
            store = cluster.servers[0].node.state_machine
            async with grpc.aio.insecure_channel(cluster.endpoints[0]) as channel:
                stub = pb_grpc.DataServiceStub(channel)
                client = (await stub.OpenSession(pb.OpenSessionRequest(), timeout=5)).client_id

                def h(seq=1, floor=0, client_id=client):
                    return pb.WriteHeader(client_id=client_id, seq=seq, floor=floor)

                bad = [
                    (stub.Put, pb.PutRequest(header=h(), key=b"", value=b"v"), "key must not be empty"),
                    (stub.Put, pb.PutRequest(header=h(), key=b"k" * 1025, value=b"v"), "limit is 1024"),
                    (stub.Put, pb.PutRequest(header=h(), key=b"k", value=b"v" * ((1 << 20) + 1)), "value is"),
                    (stub.Put, pb.PutRequest(header=h(client_id=""), key=b"k", value=b"v"), "OpenSession"),
                    (stub.Put, pb.PutRequest(header=h(seq=0), key=b"k", value=b"v"), "seq must be 1"),
                    (stub.Put, pb.PutRequest(header=h(seq=2, floor=3), key=b"k", value=b"v"), "floor"),
                    (stub.Delete, pb.DeleteRequest(header=h(), key=b""), "empty"),
                    (stub.CompareAndSet, pb.CompareAndSetRequest(header=h(), key=b"k", new_value=b"v"), "expect"),
                    (stub.Get, pb.GetRequest(key=b""), "empty"),
                ]
                for method, request, hint in bad:
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await method(request, timeout=5)
                    assert info.value.code() is C.INVALID_ARGUMENT, request
                    assert hint in info.value.details()
                assert store.revision == 0 and store.data == {}
                # The session is intact: a good write with seq 1 now works.
                await stub.Put(pb.PutRequest(header=h(), key=b"k", value=b"v"), timeout=5)
                assert store.get(b"k") == (b"v", 1)
                unknown = pb.PutRequest(header=h(client_id="no-such-session"), key=b"k", value=b"w")
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Put(unknown, timeout=5)
                assert info.value.code() is C.FAILED_PRECONDITION
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", "kv.v1.DataService"):
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING
            async with KvClient(cluster.endpoints) as kv:
                with pytest.raises(KvInvalidArgument):
                    await kv.put(b"", b"v")
                assert (await kv.status()).role == "leader"
            assert store.get(b"k") == (b"v", 1)

    run(main())


def test_config_from_flags_file_and_environment(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    toml = tmp_path / "node.toml"
    toml.write_text(
        'id = 2\nlisten = "0.0.0.0:7002"\ndata_dir = "/var/lib/kv"\n'
        '[peers]\n"1" = "10.0.0.1:7001"\n"3" = "10.0.0.3:7001"\n'
    )
    cfg = parse_config(["serve", "--config", str(toml), "--secret-file", str(secret), "--no-forward"])
    assert (cfg.id, cfg.listen, cfg.forward, cfg.secret) == (2, "0.0.0.0:7002", False, SECRET)
    assert cfg.peers == {1: "10.0.0.1:7001", 3: "10.0.0.3:7001"} and cfg.members == [1, 2, 3]
    assert (cfg.tick_interval, cfg.heartbeat_ticks, cfg.election_ticks) == (0.02, 3, 15)
    assert SECRET.decode() not in repr(cfg)
    flags = ["serve", "--id", "1", "--listen", "127.0.0.1:1", "--peer", "2=127.0.0.1:2", "--data-dir", "d"]
    cfg = parse_config([*flags, "--client-address", "2=kv2:9"], {"RAFT_KV_SECRET": SECRET.decode()})
    assert cfg.hint_addresses() == {1: "127.0.0.1:1", 2: "kv2:9"} and cfg.forward
    for argv, env, message in [
        (flags, {}, "no cluster secret"),
        (flags, {"RAFT_KV_SECRET": "short"}, "at least 16"),
        ([*flags, "--peer", "1=127.0.0.1:3"], {"RAFT_KV_SECRET": SECRET.decode()}, "this node itself"),
        ([*flags, "--peer", "x"], {"RAFT_KV_SECRET": SECRET.decode()}, "ID=HOST:PORT"),
        (["serve", "--id", "1"], {"RAFT_KV_SECRET": SECRET.decode()}, "missing --listen"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config(argv, env)
