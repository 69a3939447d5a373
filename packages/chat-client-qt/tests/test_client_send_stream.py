"""How ``SendStream`` fails its waiting sends when the stream ends: the server's status, or UNAVAILABLE."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from chat_fakes import run

from chat_client_qt.client import api, send_stream


class FakeCall:
    """A ``SendMessageBatches`` call whose first write fails and ends it with ``code`` / ``details``."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        self.ended = asyncio.Event()
        self.written: list[Any] = []

    async def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((send_stream.HEADER, "1"),)

    async def write(self, batch: Any) -> None:
        self.written.append(batch)
        self.ended.set()
        code, details = self.status
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)

    def done(self) -> bool:
        return self.ended.is_set()

    async def code(self) -> grpc.StatusCode:
        await self.ended.wait()
        return self.status[0]

    async def details(self) -> str:
        await self.ended.wait()
        return self.status[1]

    def cancel(self) -> bool:
        self.ended.set()
        return True

    def __aiter__(self) -> FakeCall:
        return self

    async def __anext__(self) -> Any:
        await self.ended.wait()
        raise StopAsyncIteration


class FakeChannel:
    def __init__(self, call: FakeCall) -> None:
        self.call = call

    def stream_stream(self, route: str, **_: Any) -> Any:
        assert route == send_stream.ROUTE
        return lambda: self.call


def failed_send(code: grpc.StatusCode, details: str) -> tuple[grpc.aio.AioRpcError, FakeCall]:
    """Send one message over a stream whose write ends the call with ``code`` / ``details``; the send's error."""
    call = FakeCall(code, details)

    async def main() -> grpc.aio.AioRpcError:
        stream = send_stream.SendStream(FakeChannel(call))  # type: ignore[arg-type]
        request = api.SendMessageRequest(conversation_id="r:1", body="hi", request_id="rid-1")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.send(request, "token", timeout=5.0)
        assert stream.broken
        await stream.close()
        return caught.value

    return run(main(), timeout=10), call


def test_a_write_failing_in_the_clients_transport_fails_the_send_as_unavailable():
    """grpc.aio reports a write that failed locally (the node was killed mid-write) as INTERNAL "Internal error
    from Core": not the server's status; the send must come back retryable (UNAVAILABLE), not as a server error."""
    error, call = failed_send(grpc.StatusCode.INTERNAL, send_stream.LOCAL_INTERNAL)
    assert len(call.written) == 1, "the send was written before the stream broke"
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "broke" in (error.details() or "")


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.INTERNAL, "internal error (details are in the server log)"),
        (grpc.StatusCode.UNAUTHENTICATED, "the session token expired: log in again"),
    ],
)
def test_a_status_the_server_ended_the_stream_with_reaches_the_send(code, details):
    error, _ = failed_send(code, details)
    assert (error.code(), error.details()) == (code, details)
