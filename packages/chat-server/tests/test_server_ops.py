"""Operations of a node end to end: the NOT_LEADER hint with the leader's address, graceful shutdown handing
over leadership, TLS for clients, the subscription cap, and a restart that resumes from the database."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from server_helpers import Caller, InProcessCluster, rid, sign_up, take

from chat_server import api


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_a_follower_without_forwarding_names_the_leader_in_rich_error_details(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path, forward_writes=False) as cluster:
            leader = await cluster.leader()
            follower = next(n for n in cluster.servers if n != leader)
            alice = await sign_up(cluster.caller(leader), "alice")
            on_follower = Caller(cluster.address(follower), alice.token)
            cluster.callers.append(on_follower)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await on_follower("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert cluster.address(leader) in (err.value.details() or "")
            raw = dict(err.value.trailing_metadata() or ()).get("grpc-status-details-bin")
            assert raw is not None
            status = status_pb2.Status.FromString(raw)
            info = error_details_pb2.ErrorInfo()
            assert status.details[0].Unpack(info)
            assert (info.reason, info.metadata["leader"]) == ("NOT_LEADER", cluster.address(leader))
            # Reads still work on the follower (ReadIndex through the leader).
            assert (await on_follower("ListConversations", api.ListConversationsRequest())).conversations == []

    run(main())


def test_stopping_the_leader_hands_leadership_over_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            other = next(n for n in cluster.servers if n != leader)
            alice = await sign_up(cluster.caller(other), "alice")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            sent = [
                await alice(
                    "SendMessage", api.SendMessageRequest(conversation_id=room.id, body=f"m{i}", request_id=rid())
                )
                for i in range(5)
            ]
            await cluster.stop(leader)  # graceful: transfers leadership before closing
            successor = cluster.servers[other].node
            assert successor is not None
            new = await successor.wait_for_leader(lambda n: n != leader, timeout=5)
            assert new != leader
            history = await alice("GetHistory", api.GetHistoryRequest(conversation_id=room.id))
            assert [e.body for e in history.events if e.kind == api.EventKind.MESSAGE] == [s.message.body for s in sent]

    run(main())


def test_a_restarted_node_resumes_from_its_database_without_replaying(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            follower = next(n for n in cluster.servers if n != leader)
            alice = await sign_up(cluster.caller(leader), "alice")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            for i in range(5):
                await alice(
                    "SendMessage", api.SendMessageRequest(conversation_id=room.id, body=f"m{i}", request_id=rid())
                )
            server = cluster.servers[follower]
            assert server.node is not None
            await server.node.wait_applied(cluster.servers[leader].node.applied_index, timeout=5)  # type: ignore[union-attr]
            sm, node = server.state_machine, server.node
            assert sm is not None and node is not None
            applied = node.applied_index
            await cluster.stop(follower)
            position = sm.durable_position()
            assert position[0] >= applied, "a graceful stop commits everything applied (even within the commit delay)"
            restarted = await cluster.start(follower)
            assert restarted.state_machine is not None and restarted.node is not None
            assert restarted.state_machine.durable_position() == position
            assert restarted.node.applied_index >= position[0]
            bob = Caller(cluster.address(follower), alice.token)
            cluster.callers.append(bob)
            history = await bob("GetHistory", api.GetHistoryRequest(conversation_id=room.id))
            assert [e.body for e in history.events if e.kind == api.EventKind.MESSAGE] == [f"m{i}" for i in range(5)]

    run(main())


def test_the_subscription_cap_answers_resource_exhausted(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path, size=1, max_subscribers=1) as cluster:
            alice = await sign_up(cluster.caller(1), "alice")
            first = alice.stream("Subscribe", api.SubscribeRequest())
            await take(first, 1, kinds=("heartbeat",))
            second = alice.stream("Subscribe", api.SubscribeRequest())
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await take(second, 1, kinds=("heartbeat",))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            first.cancel()

    run(main())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_clients_can_connect_over_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip

    async def main() -> None:
        async with InProcessCluster(tmp_path / "c", size=1, tls_cert_file=cert, tls_key_file=key) as cluster:
            address = cluster.address(1)
            creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
            async with grpc.aio.secure_channel(address, creds) as channel:
                register = channel.unary_unary(
                    "/chat.v1.MessageService/Register",
                    request_serializer=bytes,
                    response_deserializer=api.RegisterResponse.FromString,
                )
                answer = await register(
                    api.RegisterRequest(username="alice", password="correct horse", request_id=rid()), timeout=10
                )
                assert answer.user.username == "alice"
            plain = Caller(address)
            cluster.callers.append(plain)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await plain("GetMe", api.GetMeRequest(), timeout=3)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # a plaintext client cannot talk to it

    run(main())
