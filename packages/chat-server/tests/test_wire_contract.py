"""The two generated forms of chat.v1 agree: betterproto2 messages and grpcio-tools messages give the same bytes,
and each parses the other's output; the adapter's method tables cover every RPC in the descriptors."""

from __future__ import annotations

import betterproto2
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_server import api, convert
from chat_server._gen.pb.chat.v1 import chat_pb2, data_pb2, monitoring_pb2
from chat_server.catalog import SERVICES
from chat_server.rpc import methods_of
from chat_server.store import EventKind, EventRow, PresenceNotice, TypingNotice

SAMPLES: list[betterproto2.Message] = [
    api.RegisterRequest(username="alice", password="correct horse", display_name="Alice", request_id="r1"),
    api.LoginResponse(
        token="t" * 43, user=api.User(username="alice", display_name="Alice", online=True), expires_at_ms=1
    ),
    api.Conversation(
        id="r:0123",
        kind=api.ConversationKind.ROOM,
        name="general",
        topic="ünïcode ✓",
        public=True,
        last_seq=2**40,
        read_seq=7,
        unread_count=3,
        last_event=api.Event(conversation_id="r:0123", seq=9, kind=api.EventKind.MESSAGE, body="hi", time_ms=-5),
        member_count=4,
    ),
    api.ServerEvent(event=api.Event(conversation_id="dm:a:b", seq=1, kind=api.EventKind.CREATED, sender="a")),
    api.ServerEvent(typing=api.TypingSignal(conversation_id="c", username="bob", typing=True, expires_at_ms=10)),
    api.ServerEvent(heartbeat=api.Heartbeat(node_id=3, applied_index=99, leader_id=1, term=4)),
    api.SubscribeRequest(cursors=[api.Cursor(conversation_id="a", after_seq=5), api.Cursor(conversation_id="b")]),
    api.GetHistoryRequest(conversation_id="c", before_seq=10, limit=20, consistency=api.ReadConsistency.FOLLOWER),
    api.KvCompareAndSetRequest(key=b"\x00k", expected_value=b"", expect_absent=True, new_value=b"v", request_id="x"),
    api.NodeStatus(node_id=1, role="leader", peers=[api.PeerProgress(id=2, match_index=5, lag=1, state="replicate")]),
    api.ClusterStatus(nodes=[api.NodeStatus(node_id=2, reachable=False, error="UNAVAILABLE")], nodes_up=1),
]

PB_MODULES = (chat_pb2, data_pb2, monitoring_pb2)


def pb_class(message: betterproto2.Message) -> type:
    name = type(message).__name__
    for module in PB_MODULES:
        if hasattr(module, name):
            return getattr(module, name)  # type: ignore[no-any-return]
    raise AssertionError(f"no pb2 class {name}")


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_both_forms_give_the_same_bytes_and_parse_each_other(message: betterproto2.Message) -> None:
    data = bytes(message)
    pb = pb_class(message).FromString(data)
    assert pb.SerializeToString(deterministic=True) == data
    assert type(message).parse(pb.SerializeToString()) == message


def test_json_field_names_agree_for_a_sample() -> None:
    message = SAMPLES[2]
    pb = pb_class(message).FromString(bytes(message))
    assert json_format.MessageToDict(pb)["lastEvent"]["body"] == "hi"
    assert message.to_dict()["lastEvent"]["body"] == "hi"


def test_the_method_tables_cover_every_rpc_of_every_service() -> None:
    for full_name, descriptor in SERVICES.items():
        table = methods_of(descriptor)
        assert [m.name for m in table] == [m.name for m in descriptor.methods]
        for method in table:
            assert method.route == f"/{full_name}/{method.name}"
            proto = descriptor.methods_by_name[method.name]
            assert method.request.__name__ == proto.input_type.name
            assert method.response.__name__ == proto.output_type.name
    subscribe = next(m for m in methods_of(SERVICES["chat.v1.MessageService"]) if m.name == "Subscribe")
    assert subscribe.server_streaming and subscribe.handler_name == "subscribe"
    send = next(m for m in methods_of(SERVICES["chat.v1.MessageService"]) if m.name == "SendMessage")
    assert send.handler_name == "send_message" and not send.server_streaming


_text = st.text(max_size=30)
_u64 = st.integers(min_value=0, max_value=2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(
    row=st.builds(
        EventRow,
        conversation_id=_text,
        seq=_u64,
        kind=st.sampled_from(list(EventKind)),
        sender=_text,
        body=_text,
        target_seq=_u64,
        member=_text,
        time_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        edited_at_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        deleted=st.booleans(),
        request_id=_text,
    ),
    duplicate=st.booleans(),
)
def test_the_hot_path_encoders_give_the_bytes_of_the_typed_messages(row: EventRow, duplicate: bool) -> None:
    assert convert.server_event_bytes(row) == bytes(api.ServerEvent(event=convert.event(row)))
    typed = api.SendMessageResponse(message=convert.event(row), duplicate=duplicate)
    assert convert.send_response_bytes(row, duplicate) == bytes(typed)


@settings(max_examples=200, deadline=None)
@given(
    typing=st.builds(TypingNotice, conversation_id=_text, username=_text, typing=st.booleans(), expires_at_ms=_u64),
    presence=st.builds(PresenceNotice, username=_text, online=st.booleans(), last_seen_ms=_u64, expires_at_ms=_u64),
    now_ms=_u64,
)
def test_the_signal_encoders_give_the_bytes_of_the_typed_messages(
    typing: TypingNotice, presence: PresenceNotice, now_ms: int
) -> None:
    assert convert.typing_event_bytes(typing) == bytes(api.ServerEvent(typing=convert.typing(typing)))
    expected = bytes(api.ServerEvent(presence=convert.presence(presence, now_ms)))
    assert convert.presence_event_bytes(presence, now_ms) == expected
