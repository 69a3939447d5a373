"""The client's ``protofast``: parsing with a cached validator accepts and refuses exactly as before."""

from __future__ import annotations

import betterproto2
import pydantic
import pytest

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import protofast, rpc


def out_of_range() -> api.SearchUsersRequest:
    """A message whose uint32 ``limit`` was set past its range (parsing masks it, so set it by hand)."""
    message = api.SearchUsersRequest(query="al")
    message.limit = 2**40
    return message


def test_it_is_installed_for_the_pinned_betterproto2() -> None:
    assert rpc.PACKAGE == "chat.v1"  # importing the method table installs it
    assert betterproto2.__version__ == protofast.BETTERPROTO2_VERSION
    assert betterproto2.Message._validate is protofast._validate
    assert protofast.install() is True  # idempotent


def test_parsing_gives_the_same_messages_and_refusals_as_the_stock_check(monkeypatch: pytest.MonkeyPatch) -> None:
    event = api.Event(conversation_id="r:x", seq=7, kind=api.EventKind.MESSAGE, sender="alice", body="hé", time_ms=1)
    data = bytes(api.ServerEventBatch(events=[api.ServerEvent(event=event)]))
    fast = api.ServerEventBatch.parse(data)
    with pytest.raises(pydantic.ValidationError) as fast_error:
        out_of_range()._validate()
    stock = protofast.__dict__["_validate"]
    monkeypatch.setattr(betterproto2.Message, "_validate", _stock_validate)
    assert api.ServerEventBatch.parse(data) == fast
    assert fast.events[0].event == event
    with pytest.raises(pydantic.ValidationError) as stock_error:
        out_of_range()._validate()
    assert fast_error.value.errors() == stock_error.value.errors()
    assert stock is protofast._validate


def _stock_validate(self: betterproto2.Message) -> None:
    """betterproto2 0.10.0's own check, as it reads (a new validator every time)."""
    import pydantic_core

    fields = self.__dict__.copy()
    del fields["_unknown_fields"]
    pydantic_core.SchemaValidator(self.__pydantic_core_schema__).validate_python(fields)  # type: ignore[attr-defined]
