"""End to end through gRPC: a 3-node in-process cluster serving the chat API (accounts, rooms, messages, live
delivery, errors), its health and reflection services, and a follower serving what the leader committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_helpers import ADMIN_TOKEN, PASSWORD, InProcessCluster, rid, sign_up, take

from chat_server import api


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_a_conversation_from_sign_up_to_live_delivery_on_another_node(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            follower = next(n for n in cluster.servers if n != leader)
            alice = await sign_up(cluster.caller(follower), "alice")
            bob = await sign_up(cluster.caller(leader), "bob")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="general", members=["bob"], request_id=rid()))
            assert room.kind == api.ConversationKind.ROOM and room.member_count == 2
            stream = bob.stream("Subscribe", api.SubscribeRequest())
            first = await take(stream, 1, kinds=("heartbeat",))
            assert first[0].node_id == leader
            sent = await alice(
                "SendMessage", api.SendMessageRequest(conversation_id=room.id, body="hi bob", request_id="k1")
            )
            assert sent.message.body == "hi bob" and not sent.duplicate
            again = await alice(
                "SendMessage", api.SendMessageRequest(conversation_id=room.id, body="hi bob", request_id="k1")
            )
            assert again.duplicate and again.message.seq == sent.message.seq
            got = await take(stream, 1)
            assert (got[0].seq, got[0].body, got[0].sender) == (sent.message.seq, "hi bob", "alice")
            stream.cancel()
            history = await bob("GetHistory", api.GetHistoryRequest(conversation_id=room.id))
            kinds = [e.kind for e in history.events]
            assert kinds == [api.EventKind.CREATED, api.EventKind.JOINED, api.EventKind.JOINED, api.EventKind.MESSAGE]
            assert [e.seq for e in history.events] == [1, 2, 3, 4]
            convs = await bob("ListConversations", api.ListConversationsRequest())
            assert convs.conversations[0].unread_count == 1
            read = await bob("MarkRead", api.MarkReadRequest(conversation_id=room.id, seq=4))
            assert (read.read_seq, read.unread_count) == (4, 0)

    run(main())


@pytest.mark.parametrize("rpc", ["Subscribe", "SubscribeBatches"])
def test_resume_from_a_cursor_on_another_node_gives_every_later_event_once(tmp_path: Path, rpc: str) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            nodes = sorted(cluster.servers)
            alice = await sign_up(cluster.caller(nodes[0]), "alice")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            for i in range(5):
                await alice(
                    "SendMessage", api.SendMessageRequest(conversation_id=room.id, body=f"m{i}", request_id=rid())
                )
            other = alice.with_token(alice.token)
            other = type(alice)(cluster.address(nodes[2]), alice.token)
            cluster.callers.append(other)
            call = other.stream(rpc, api.SubscribeRequest(cursors=[api.Cursor(conversation_id=room.id, after_seq=3)]))
            stream = unbatched(call) if rpc == "SubscribeBatches" else call
            got = await take(stream, 4)  # seqs 4..7: m1..m4 (seq 1 created, 2 joined, 3 m0)
            assert [e.seq for e in got] == [4, 5, 6, 7]
            await alice("SendMessage", api.SendMessageRequest(conversation_id=room.id, body="live", request_id=rid()))
            live = await take(stream, 1)
            assert (live[0].seq, live[0].body) == (8, "live")
            call.cancel()

    run(main())


async def unbatched(stream: Any) -> AsyncIterator[Any]:
    """The ServerEvents of a SubscribeBatches stream, checking every batch holds some."""
    async for batch in stream:
        assert isinstance(batch, api.ServerEventBatch) and batch.events
        for item in batch.events:
            yield item


def test_bad_input_gets_a_clear_status_and_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path, size=1) as cluster:
            anon = cluster.caller(1)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anon("Register", api.RegisterRequest(username="Bad Name", password=PASSWORD, request_id=rid()))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "username" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anon("Register", api.RegisterRequest(username="carol", password="short", request_id=rid()))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "password" in (err.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anon("ListConversations", api.ListConversationsRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            alice = await sign_up(anon, "alice")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anon("Register", api.RegisterRequest(username="alice", password=PASSWORD, request_id=rid()))
            assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anon("Login", api.LoginRequest(username="alice", password="wrong password", request_id=rid()))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await alice(
                    "SendMessage", api.SendMessageRequest(conversation_id=room.id, body="x" * 4097, request_id=rid())
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await alice("SendMessage", api.SendMessageRequest(conversation_id=room.id, body="no id"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in (err.value.details() or "")
            bob = await sign_up(anon, "bob")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await bob("GetHistory", api.GetHistoryRequest(conversation_id=room.id))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await bob("SendMessage", api.SendMessageRequest(conversation_id=room.id, body="hi", request_id=rid()))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await alice("GetHistory", api.GetHistoryRequest(conversation_id="r:nope"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            history = await alice("GetHistory", api.GetHistoryRequest(conversation_id=room.id))
            assert [e.kind for e in history.events] == [api.EventKind.CREATED, api.EventKind.JOINED]
            raw = anon._channel.unary_unary("/chat.v1.MessageService/SendMessage")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw(b"\x0a\x02\xff\xfe", timeout=5)  # a string field that is not UTF-8
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    run(main())


def test_admin_data_service_needs_the_admin_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path, size=1) as cluster:
            anon = cluster.caller(1)
            alice = await sign_up(anon, "alice")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anon("Put", api.KvPutRequest(key=b"k", value=b"v", request_id=rid()))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await alice("Put", api.KvPutRequest(key=b"k", value=b"v", request_id=rid()))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            admin = anon.with_token(ADMIN_TOKEN)
            await admin("Put", api.KvPutRequest(key=b"k", value=b"v1", request_id=rid()))
            assert (await admin("Get", api.KvGetRequest(key=b"k"))).value == b"v1"
            cas = await admin(
                "CompareAndSet", api.KvCompareAndSetRequest(key=b"k", expected_value=b"v0", new_value=b"x")
            )
            assert not cas.succeeded and cas.current_value == b"v1"
            cas = await admin(
                "CompareAndSet", api.KvCompareAndSetRequest(key=b"k", expected_value=b"v1", new_value=b"x")
            )
            assert cas.succeeded
            assert (await admin("Delete", api.KvDeleteRequest(key=b"k"))).existed

    run(main())


def test_health_reflection_and_monitoring(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            caller = cluster.caller(leader)
            health = health_pb2_grpc.HealthStub(caller._channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service="chat.v1.MessageService"), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            status = await caller("GetNodeStatus", api.GetNodeStatusRequest())
            assert status.role == "leader" and status.leader_id == leader and len(status.peers) == 2
            cluster_status = await caller("GetClusterStatus", api.GetClusterStatusRequest())
            assert cluster_status.nodes_up == 3 and cluster_status.leader_id == leader
            from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

            stub = reflection_pb2_grpc.ServerReflectionStub(caller._channel)

            async def one() -> object:
                async for answer in stub.ServerReflectionInfo(
                    iter([reflection_pb2.ServerReflectionRequest(list_services="")])
                ):
                    return answer
                return None

            listed = await one()
            names = {s.name for s in listed.list_services_response.service}  # type: ignore[attr-defined]
            assert {"chat.v1.MessageService", "chat.v1.DataService", "chat.v1.MonitoringService"} <= names

    run(main())


def test_a_logged_out_token_is_refused_at_once_where_it_was_used_and_soon_everywhere(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            other = next(n for n in cluster.servers if n != leader)
            alice = await sign_up(cluster.caller(leader), "alice")
            elsewhere = cluster.caller(other, alice.token)
            for caller in (alice, elsewhere, alice, elsewhere):  # the second round is served from the cache
                await caller("ListConversations", api.ListConversationsRequest())
            await alice("Logout", api.LogoutRequest(request_id=rid()))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await alice("ListConversations", api.ListConversationsRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            async with asyncio.timeout(10):
                while True:  # the follower refuses it once it has applied the logout
                    try:
                        await elsewhere("ListConversations", api.ListConversationsRequest())
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                        break
                    await asyncio.sleep(0.02)

    run(main())
