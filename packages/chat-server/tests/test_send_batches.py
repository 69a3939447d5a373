"""SendMessageBatches: many SendMessage calls over one stream, each answered exactly as its unary call would be."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from server_helpers import InProcessCluster, rid, sign_up

from chat_server import api, convert
from chat_server._gen.pb.chat.v1 import chat_pb2 as pb
from chat_server.errors import ERROR_DOMAIN, NOT_LEADER_REASON, ChatError

ROUTE = "/chat.v1.MessageService/SendMessageBatches"
C = grpc.StatusCode


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def _stream(address_channel: grpc.aio.Channel) -> Any:
    return address_channel.stream_stream(
        ROUTE,
        request_serializer=pb.SendMessageBatch.SerializeToString,
        response_deserializer=pb.SendMessageResultBatch.FromString,
    )(timeout=20)


def item(n: int, token: str, conversation_id: str, body: str, request_id: str | None = None) -> pb.SendMessageItem:
    request_id = rid() if request_id is None else request_id
    request = pb.SendMessageRequest(conversation_id=conversation_id, body=body, request_id=request_id)
    return pb.SendMessageItem(id=n, token=token, request=request, timeout_ms=5000)


async def results_of(call: Any, count: int) -> tuple[dict[int, pb.SendMessageResult], int]:
    """The next ``count`` results by item id, and how many stream messages carried them."""
    out: dict[int, pb.SendMessageResult] = {}
    messages = 0
    async with asyncio.timeout(15):
        while len(out) < count:
            batch = await call.read()
            assert batch is not grpc.aio.EOF, f"the stream ended after {len(out)} of {count} results"
            assert batch.results, "a result batch is never empty"
            messages += 1
            for result in batch.results:
                assert result.id not in out, f"item {result.id} answered twice"
                out[result.id] = result
    return out, messages


def test_each_item_gets_the_answer_its_unary_call_would_have_and_refusals_change_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            alice = await sign_up(cluster.caller(leader), "alice")
            bob = await sign_up(cluster.caller(leader), "bob")
            carol = await sign_up(cluster.caller(leader), "carol")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", members=["bob"], request_id=rid()))
            assert alice.token and bob.token and carol.token
            call = _stream(alice._channel)
            await call.wait_for_connection()
            good = [item(n, alice.token if n % 2 else bob.token, room.id, f"hello {n}") for n in range(1, 21)]
            bad = [
                item(101, "not-a-token", room.id, "who am I"),
                item(102, carol.token, room.id, "not a member"),
                item(103, alice.token, room.id, "x" * 4097),
                item(104, alice.token, room.id, "no id", request_id=""),
                item(105, alice.token, "r:nope", "nowhere"),
                item(106, "", room.id, "no token"),
            ]
            await call.write(pb.SendMessageBatch(items=good[:10] + bad))
            await call.write(pb.SendMessageBatch(items=good[10:]))
            results, messages = await results_of(call, 26)
            assert messages < 26, "results ready together share a message"
            for it in good:
                r = results[it.id]
                assert r.WhichOneof("outcome") == "response", r
                assert r.response.message.body == it.request.body and not r.response.duplicate
            codes = {n: C(_code(results[n].error.code)) for n in range(101, 107)}
            assert codes == {
                101: C.UNAUTHENTICATED,
                102: C.PERMISSION_DENIED,
                103: C.INVALID_ARGUMENT,
                104: C.INVALID_ARGUMENT,
                105: C.NOT_FOUND,
                106: C.UNAUTHENTICATED,
            }
            assert "request_id" in results[104].error.message
            # A retry of an item (same request_id) on the same stream gives the original message back.
            first = good[0]
            retry = item(500, first.token, room.id, "changed?", first.request.request_id)
            await call.write(pb.SendMessageBatch(items=[retry]))
            again, _ = await results_of(call, 1)
            assert again[500].response.duplicate and again[500].response.message.body == first.request.body
            assert again[500].response.message.seq == results[first.id].response.message.seq
            counted = _rpc_counts(cluster.servers[leader].metrics.render().decode())
            assert counted.get(("SendMessage", "OK"), 0) >= 21, "each batched send is counted as a SendMessage"
            assert counted.get(("SendMessage", "UNAUTHENTICATED")) == 2
            await call.done_writing()
            assert await call.read() is grpc.aio.EOF
            assert await call.code() == C.OK
            history = await alice("GetHistory", api.GetHistoryRequest(conversation_id=room.id, limit=100))
            bodies = [e.body for e in history.events if e.kind == api.EventKind.MESSAGE]
            assert sorted(bodies) == sorted(it.request.body for it in good)
            seqs = [results[it.id].response.message.seq for it in good]
            assert len(set(seqs)) == len(seqs)

    run(main())


def _rpc_counts(text: str) -> dict[tuple[str, str], float]:
    """``chat_rpc_total`` by (method, code) from the Prometheus text."""
    out: dict[tuple[str, str], float] = {}
    for m in re.finditer(r'^chat_rpc_total\{code="(\w+)",method="(\w+)"\} (\S+)$', text, re.MULTILINE):
        out[(m.group(2), m.group(1))] = float(m.group(3))
    return out


def _code(value: int) -> tuple[int, str]:
    return next(c.value for c in grpc.StatusCode if c.value[0] == value)


def test_a_follower_serves_the_stream_by_forwarding_each_send(tmp_path: Path) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path) as cluster:
            leader = await cluster.leader()
            follower = next(n for n in cluster.servers if n != leader)
            alice = await sign_up(cluster.caller(follower), "alice")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            assert alice.token
            call = _stream(alice._channel)
            await call.write(pb.SendMessageBatch(items=[item(n, alice.token, room.id, f"m{n}") for n in range(8)]))
            results, _ = await results_of(call, 8)
            assert all(r.WhichOneof("outcome") == "response" for r in results.values())
            assert sorted(r.response.message.seq for r in results.values()) == list(range(3, 11))
            call.cancel()

    run(main())


@pytest.mark.parametrize("bad", ["malformed", "oversized"])
def test_a_bad_stream_message_ends_the_stream_with_invalid_argument_after_the_earlier_answers(
    tmp_path: Path, bad: str
) -> None:
    async def main() -> None:
        async with InProcessCluster(tmp_path, size=1) as cluster:
            alice = await sign_up(cluster.caller(1), "alice")
            room = await alice("CreateRoom", api.CreateRoomRequest(name="r", request_id=rid()))
            assert alice.token
            raw = alice._channel.stream_stream(ROUTE, response_deserializer=pb.SendMessageResultBatch.FromString)
            call = raw(timeout=20)
            await call.write(pb.SendMessageBatch(items=[item(1, alice.token, room.id, "fine")]).SerializeToString())
            if bad == "malformed":
                await call.write(b"\x0a\x04\x12\x02\xff\xfe")  # an item whose token is not UTF-8
            else:
                many = [item(n, alice.token, room.id, "x") for n in range(2, 259)]
                await call.write(pb.SendMessageBatch(items=many).SerializeToString())
            results, _ = await results_of(call, 1)
            assert results[1].response.message.body == "fine"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async with asyncio.timeout(15):
                    while await call.read() is not grpc.aio.EOF:
                        pass
                    await call.code()
                    raise AssertionError("the stream ended without an error")
            assert err.value.code() == C.INVALID_ARGUMENT
            history = await alice("GetHistory", api.GetHistoryRequest(conversation_id=room.id, limit=500))
            assert [e.body for e in history.events if e.kind == api.EventKind.MESSAGE] == ["fine"]

    run(main())


def test_a_not_leader_result_carries_the_leaders_address_as_a_unary_call_would() -> None:
    error = ChatError(C.UNAVAILABLE, "this node is not the leader; send to 127.0.0.1:7002", leader="127.0.0.1:7002")
    result = convert.send_result_error(7, error)
    assert result.id == 7 and result.error.code == C.UNAVAILABLE.value[0]
    status = status_pb2.Status.FromString(result.error.status_details)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, info.metadata["leader"]) == (NOT_LEADER_REASON, ERROR_DOMAIN, "127.0.0.1:7002")
    plain = convert.send_result_error(8, ChatError.invalid("body", "too long"))
    assert plain.error.status_details == b"" and plain.error.message == "body: too long"
