"""Every MessageService RPC has a ChatClient method that sends the right request, with a request_id for writes."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from typing import Any

import grpc
import pytest
from chat_fakes import TOKEN, FakeNode, FakeState, run

from chat_client_qt.client import ChatClient, Unavailable, api, rpc, send_stream


class EchoHandler(grpc.GenericRpcHandler):
    """Answers every chat.v1 route with an empty response of its type, recording (route, request, metadata)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, dict[str, str]]] = []
        self.unimplemented: set[str] = set()  # routes answered UNIMPLEMENTED, as an older server would
        self.batched_sends = 0  # SendMessage calls that came inside SendMessageBatches (recorded as SendMessage)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = rpc.BY_ROUTE.get(handler_call_details.method)
        if method is None or method.route in self.unimplemented:
            return None
        metadata = {k: v for k, v in handler_call_details.invocation_metadata if isinstance(v, str)}

        if method.kind is rpc.Kind.BIDI_STREAM:

            async def batches(requests: Any, context: Any) -> Any:
                await context.send_initial_metadata(((send_stream.HEADER, "1"),))
                async for batch in requests:
                    results = []
                    for item in batch.items:
                        self.batched_sends += 1
                        auth = {"authorization": f"Bearer {item.token}"} if item.token else {}
                        self.seen.append((rpc.SEND_MESSAGE.route, item.request, auth))
                        results.append(api.SendMessageResult(id=item.id, response=api.SendMessageResponse()))
                    yield api.SendMessageResultBatch(results=results)

            return grpc.stream_stream_rpc_method_handler(
                batches, request_deserializer=method.request.FromString, response_serializer=bytes
            )

        if method.kind is rpc.Kind.SERVER_STREAM:

            async def stream(request: Any, context: Any) -> Any:
                self.seen.append((method.route, request, metadata))
                heartbeat = api.ServerEvent(heartbeat=api.Heartbeat(node_id=1))
                yield api.ServerEventBatch(events=[heartbeat]) if method is rpc.SUBSCRIBE_BATCHES else heartbeat

            return grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=method.request.FromString, response_serializer=bytes
            )

        async def unary(request: Any, context: Any) -> Any:
            self.seen.append((method.route, request, metadata))
            if method is rpc.LOGIN:
                return api.LoginResponse(token="secret-token", user=api.User(username=request.username))
            return method.response()

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=method.request.FromString, response_serializer=bytes
        )


async def serve(handler: grpc.GenericRpcHandler) -> tuple[grpc.aio.Server, int]:
    """A started server on a free loopback port answering with ``handler``; (server, port)."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_every_message_service_rpc_has_a_client_method(tmp_path):
    async def main() -> None:
        echo = EchoHandler()
        server, port = await serve(echo)
        try:
            async with ChatClient([f"127.0.0.1:{port}"], data_dir=tmp_path) as client:
                await client.register("alice", "long-password", "Alice")
                login = await client.login("alice", "long-password", device="tests")
                assert client.session is not None and client.session.token == login.token == "secret-token"
                assert "secret-token" not in repr(client.session)
                await client.me()
                await client.set_display_name("Al")
                await client.search_users("al", limit=5)
                await client.open_direct("bob")
                await client.create_room("general", topic="t", public=True, members=["bob"])
                await client.invite("c1", ["carol"])
                await client.join("c1")
                await client.leave("c1")
                await client.conversations()
                await client.public_rooms("gen", limit=3)
                await client.members("c1")
                await client.history("c1", before_seq=10, limit=5, consistency=api.ReadConsistency.FOLLOWER)
                await client.mark_read("c1", 9)
                await client.set_typing("c1", True)
                await client.search_messages("hello", conversation_id="c1", limit=2)
                await client.send("c1", "hi")
                await client.edit("c1", 3, "hi!")
                await client.delete("c1", 3)
                async with client.subscribe(baseline=False) as events:
                    async for item in events:
                        assert isinstance(item, api.Heartbeat) and item.node_id == 1
                        break
                assert echo.seen[-1][0] == rpc.SUBSCRIBE_BATCHES.route
                echo.unimplemented.add(rpc.SUBSCRIBE_BATCHES.route)  # an older server: the plain stream is used
                async with client.subscribe(baseline=False) as events:
                    async for item in events:
                        assert isinstance(item, api.Heartbeat) and item.node_id == 1
                        break
                assert echo.seen[-1][0] == rpc.SUBSCRIBE.route
                await client.node_status()
                await client.cluster_status(timeout_ms=200)
                await client.logout()
                assert client.session is None and client.outbox is None
        finally:
            await server.stop(0)
        routes = [route for route, _, _ in echo.seen]
        message_service = {m.route for m in rpc.METHODS if m.service == "MessageService"}
        assert message_service - {rpc.SEND_MESSAGE_BATCHES.route} <= set(routes)
        assert echo.batched_sends == 1, "the send went over SendMessageBatches"
        for route, request, metadata in echo.seen:
            method = rpc.BY_ROUTE[route]
            assert ("authorization" in metadata) == (method.auth and method.service == "MessageService"), route
            if method.auth and method.service == "MessageService":
                assert metadata["authorization"] == "Bearer secret-token"
            if "request_id" in method.request.__dataclass_fields__:
                assert len(request.request_id) == 36, f"{route} sent no uuid4 request_id"
        by_route = {route: request for route, request, _ in echo.seen}
        history = by_route[rpc.GET_HISTORY.route]
        assert (history.conversation_id, history.before_seq, history.limit) == ("c1", 10, 5)
        assert history.consistency is api.ReadConsistency.FOLLOWER
        room = by_route[rpc.CREATE_ROOM.route]
        assert (room.name, room.topic, room.public, room.members) == ("general", "t", True, ["bob"])
        assert by_route[rpc.LOGIN.route].device == "tests"

    run(main())


def test_sends_share_one_stream_and_fall_back_to_unary_calls_on_a_server_without_it(tmp_path):
    async def main() -> None:
        echo = EchoHandler()
        server, port = await serve(echo)
        try:
            async with ChatClient([f"127.0.0.1:{port}"], data_dir=tmp_path / "a", use_outbox=False) as client:
                await client.login("alice", "long-password")
                sent = await asyncio.gather(*(client.send("c1", f"m{n}") for n in range(20)))
                assert all(isinstance(r, api.SendMessageResponse) for r in sent)
            assert echo.batched_sends == 20
            unary = [r for r, _, _ in echo.seen if r == rpc.SEND_MESSAGE.route]
            assert len(unary) == 20  # each recorded once, as the call it stands for
            echo.unimplemented.add(rpc.SEND_MESSAGE_BATCHES.route)  # an older server
            async with ChatClient([f"127.0.0.1:{port}"], data_dir=tmp_path / "b", use_outbox=False) as client:
                await client.login("alice", "long-password")
                await asyncio.gather(*(client.send("c1", f"n{n}") for n in range(5)))
                assert not client.connection.batch_sends
            assert echo.batched_sends == 20
            assert len([r for r, _, _ in echo.seen if r == rpc.SEND_MESSAGE.route]) == 25
        finally:
            await server.stop(0)

    run(main())


def make_certificates(directory):
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "30", "-subj", "/CN=chat-test-ca", "-keyout", "ca.key", "-out", "ca.pem")
    (directory / "node.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("req", *ec, "-subj", "/CN=node", "-keyout", "node.key", "-out", "node.csr")
    openssl(
        "x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "30", "-extfile", "node.ext", "-out", "node.pem",
    )  # fmt: skip
    return directory / "ca.pem", (directory / "node.pem").read_bytes(), (directory / "node.key").read_bytes()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_ca_file(tmp_path):
    ca, cert, key = make_certificates(tmp_path)

    async def main() -> None:
        state = FakeState()
        node = await FakeNode(state, 1).start(tls=(cert, key))
        try:
            async with ChatClient([node.address], data_dir=tmp_path, tls_ca=ca) as client:
                await client.use_session("alice", TOKEN)
                assert (await client.me()).username == "alice"
            async with ChatClient([node.address], data_dir=tmp_path, timeout=0.5) as plain:
                await plain.use_session("alice", TOKEN)
                with pytest.raises(Unavailable):
                    await plain.me()
        finally:
            await node.stop()

    run(main())


def test_the_client_library_imports_no_qt():
    code = "import sys, chat_client_qt, chat_client_qt.client; print(sorted(m for m in sys.modules if 'Qt' in m))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
