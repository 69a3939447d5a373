"""The method table covers every rpc of proto/chat/v1 and agrees with the .proto text and the generated stubs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import betterproto2
import pytest

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import rpc

PROTO_DIR = Path(__file__).resolve().parents[3] / "proto" / "chat" / "v1"
_SERVICE = re.compile(r"service\s+(\w+)\s*\{(.*?)\n\}", re.DOTALL)
_RPC = re.compile(r"rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)")


def proto_rpcs() -> dict[str, tuple[str, str, Any]]:
    """route -> (request message, response message, its ``rpc.Kind``), parsed from the .proto files."""
    found: dict[str, tuple[str, str, Any]] = {}
    for path in sorted(PROTO_DIR.glob("*.proto")):
        text = re.sub(r"//[^\n]*", "", path.read_text())
        package = re.search(r"package\s+([\w.]+)\s*;", text)
        assert package is not None, path
        for service, body in _SERVICE.findall(text):
            for name, client_stream, request, server_stream, response in _RPC.findall(body):
                assert not client_stream or server_stream, f"{name}: client streaming alone is not supported"
                kind = (
                    rpc.Kind.BIDI_STREAM
                    if client_stream
                    else rpc.Kind.SERVER_STREAM
                    if server_stream
                    else rpc.Kind.UNARY
                )
                found[f"/{package.group(1)}.{service}/{name}"] = (request, response, kind)
    return found


class RecordingChannel:
    """Stands in for a grpc channel: records what a generated sync stub asks for."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, Any, Any]] = {}

    def unary_unary(self, route: str, serializer: Any, deserializer: Any) -> Any:
        self.seen[route] = ("unary", serializer, deserializer)
        return lambda message: None

    def unary_stream(self, route: str, serializer: Any, deserializer: Any) -> Any:
        self.seen[route] = ("stream", serializer, deserializer)
        return lambda message: iter(())

    def stream_stream(self, route: str, serializer: Any, deserializer: Any) -> Any:
        self.seen[route] = ("bidi", serializer, deserializer)
        return lambda messages: iter(())


def stub_rpcs() -> dict[str, tuple[str, Any, Any]]:
    channel = RecordingChannel()
    for stub_class in (api.MessageServiceStub, api.MonitoringServiceStub, api.DataServiceStub):
        stub = stub_class(channel)  # type: ignore[arg-type]
        for name in dir(stub):
            if name.startswith("_"):
                continue
            fn = getattr(stub, name)
            streams_requests = "messages" in inspect.signature(fn).parameters  # a client-streaming method
            result = fn([] if streams_requests else None)
            if result is not None and hasattr(result, "__next__"):
                list(result)
    return channel.seen


def test_proto_files_are_found_and_parsed():
    rpcs = proto_rpcs()
    assert len(rpcs) >= 28
    assert rpcs["/chat.v1.MessageService/Subscribe"] == ("SubscribeRequest", "ServerEvent", rpc.Kind.SERVER_STREAM)
    batches = rpcs["/chat.v1.MessageService/SendMessageBatches"]
    assert batches == ("SendMessageBatch", "SendMessageResultBatch", rpc.Kind.BIDI_STREAM)


def test_table_covers_every_rpc_of_the_proto_files():
    rpcs = proto_rpcs()
    assert set(rpc.BY_ROUTE) == set(rpcs)
    assert len(rpc.METHODS) == len(rpc.BY_ROUTE), "duplicate routes in METHODS"
    for route, (request, response, kind) in rpcs.items():
        method = rpc.BY_ROUTE[route]
        assert method.request.__name__ == request, route
        assert method.response.__name__ == response, route
        assert method.kind is kind, route


def test_table_agrees_with_the_generated_stubs():
    seen = stub_rpcs()
    assert set(seen) == set(rpc.BY_ROUTE)
    for route, (kind, _serializer, deserializer) in seen.items():
        method = rpc.BY_ROUTE[route]
        expected = {"unary": rpc.Kind.UNARY, "stream": rpc.Kind.SERVER_STREAM, "bidi": rpc.Kind.BIDI_STREAM}[kind]
        assert method.kind is expected, route
        assert deserializer.__self__ is method.response, route


def test_writes_are_the_methods_with_a_request_id_or_a_replicated_effect():
    for method in rpc.METHODS:
        if "request_id" in method.request.__dataclass_fields__:
            assert method.write, f"{method.route} carries a request_id but is not marked as a write"
    assert rpc.SET_TYPING.write and not rpc.GET_HISTORY.write and not rpc.SUBSCRIBE.write


def test_auth_flags():
    no_auth = {m.name for m in rpc.METHODS if not m.auth}
    assert no_auth == {"Register", "Login", "GetNodeStatus", "GetClusterStatus"}


def test_round_trip_through_the_serializers_the_helpers_use():
    request = api.SendMessageRequest(conversation_id="c", body="héllo", request_id="r-1")
    assert rpc.SEND_MESSAGE.request.FromString(bytes(request)) == request
    event = api.ServerEvent(event=api.Event(conversation_id="c", seq=7))
    assert betterproto2.which_one_of(rpc.SUBSCRIBE.response.FromString(bytes(event)), "payload")[0] == "event"


def test_helpers_refuse_the_wrong_kind():
    channel: Any = object()
    with pytest.raises(TypeError):
        rpc.unary_callable(channel, rpc.SUBSCRIBE)
    with pytest.raises(TypeError):
        rpc.stream_callable(channel, rpc.SEND_MESSAGE)
