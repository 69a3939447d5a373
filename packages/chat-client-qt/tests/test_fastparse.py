"""``fastparse``: the live stream's messages parsed through C protobuf equal betterproto2's own parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import fastparse, rpc

text = st.text(max_size=20)
u64 = st.integers(min_value=0, max_value=2**64 - 1)
i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

events = st.builds(
    api.Event,
    conversation_id=text,
    seq=u64,
    kind=st.sampled_from(list(api.EventKind)),
    sender=text,
    body=text,
    target_seq=u64,
    member=text,
    time_ms=i64,
    edited_at_ms=i64,
    deleted=st.booleans(),
    request_id=text,
)
server_events = st.one_of(
    st.builds(api.ServerEvent, event=events),
    st.builds(
        api.ServerEvent,
        typing=st.builds(
            api.TypingSignal, conversation_id=text, username=text, typing=st.booleans(), expires_at_ms=i64
        ),
    ),
    st.builds(
        api.ServerEvent,
        presence=st.builds(api.PresenceSignal, username=text, online=st.booleans(), last_seen_ms=i64),
    ),
    st.builds(
        api.ServerEvent,
        heartbeat=st.builds(api.Heartbeat, node_id=u64, applied_index=u64, leader_id=u64, term=u64),
    ),
    st.just(api.ServerEvent()),
)


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(server_events, max_size=5))
def test_a_batch_parses_to_what_betterproto2_parses(batch: list[api.ServerEvent]) -> None:
    data = bytes(api.ServerEventBatch(events=batch))
    fast = rpc.SUBSCRIBE_BATCHES.deserializer(data)
    assert fast == api.ServerEventBatch.parse(data)
    assert [type(e) for e in fast.events] == [api.ServerEvent] * len(batch)
    assert bytes(fast) == data  # the built objects serialize back to the same bytes
    assert fast.to_dict() == api.ServerEventBatch.parse(data).to_dict()


@settings(max_examples=200, deadline=None)
@given(event=server_events)
def test_a_single_event_parses_to_what_betterproto2_parses(event: api.ServerEvent) -> None:
    data = bytes(event)
    assert rpc.SUBSCRIBE.deserializer(data) == api.ServerEvent.parse(data)


def test_an_event_kind_from_a_newer_server_is_kept_as_betterproto2_keeps_it() -> None:
    event = bytes(api.Event(conversation_id="c", seq=1)) + b"\x18\x63"  # kind (field 3) = 99
    newer = b"\x0a" + bytes([len(event)]) + event  # ServerEvent.event (field 1)
    fast = rpc.SUBSCRIBE.deserializer(newer)
    assert fast == api.ServerEvent.parse(newer)
    assert fast.event is not None and int(fast.event.kind) == 99


def test_fields_it_cannot_build_are_refused_when_the_parser_is_made() -> None:
    with pytest.raises(TypeError, match="repeated scalar"):
        fastparse.parser(api.SearchUsersResponse, pb_module=_FakeModule)


class _FakeDescriptorField:
    name = "tags"
    type = 9  # string
    is_repeated = True
    message_type = None
    enum_type = None


class _FakeDescriptor:
    full_name = "chat.v1.SearchUsersResponse"
    name = "SearchUsersResponse"
    fields = (_FakeDescriptorField(),)


class _FakeModule:
    class SearchUsersResponse:
        DESCRIPTOR = _FakeDescriptor()
