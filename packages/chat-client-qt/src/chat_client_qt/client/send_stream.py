"""``SendStream``: many SendMessage calls over one long-lived ``SendMessageBatches`` stream to one node.

Why: a unary call costs a node (and the client) far more CPU than the message it carries; a client that sends
for many users, or many messages at once, shares one stream per node instead. One task writes: it puts every
send waiting when the stream is free (up to ``MAX_BATCH``) in one ``SendMessageBatch``; one task reads the
results (those ready together arrive in one message) and hands each to its send by id. The messages are the
C-backed protobuf classes (``_gen/pb``); a response becomes the same betterproto2 ``SendMessageResponse`` a
unary call returns.

Contract with ``Connection``: ``send`` returns the response or raises the ``grpc.aio.AioRpcError`` the unary
call would have raised (the item's code, message and rich details such as NOT_LEADER's leader), so the
connection's retry rules apply unchanged; a stream that fails, or a send that times out, raises
UNAVAILABLE / DEADLINE_EXCEEDED (the send may or may not have been applied; the retry's request_id makes it
exactly-once). Nothing is written before the server's headers arrive, and only if they carry ``HEADER``: a
server without the method answers UNIMPLEMENTED (a trailers-only response, without it) with nothing sent
(``refused``), and the connection goes back to unary calls. (Writing into such a call races with its end,
and a lost race turns its status into INTERNAL: the header makes the refusal certain.)
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt._gen.pb.chat.v1 import chat_pb2 as pb
from chat_client_qt.client import fastparse

ROUTE = "/chat.v1.MessageService/SendMessageBatches"
MAX_BATCH = 256
"""Most sends one stream message carries (the server's limit)."""
FINAL_STATUS_S = 1.0
"""Seconds a stream whose write failed is given to deliver its final status."""
DETAILS_KEY = "grpc-status-details-bin"
HEADER = "chat-send-batches"
"""The initial-metadata key a server serving ``SendMessageBatches`` sends at once."""
LOCAL_INTERNAL = "Internal error from Core"
"""The details grpc.aio gives a call whose write failed in the client's own transport (e.g. the node was killed
while a batch was being written): INTERNAL, but no status the server sent, so the sends fail as UNAVAILABLE."""

_STATUS_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}
_response = fastparse.builder(api.SendMessageResponse)


class SendStream:
    """One ``SendMessageBatches`` call on ``channel`` (see the module); ``broken`` once it has ended."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        call: Any = channel.stream_stream(
            ROUTE,
            request_serializer=pb.SendMessageBatch.SerializeToString,
            response_deserializer=pb.SendMessageResultBatch.FromString,
        )
        self._call: Any = call()  # no request iterator: the write loop writes
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[pb.SendMessageResult]] = {}
        self._outbox: asyncio.Queue[pb.SendMessageItem] = asyncio.Queue()
        self.broken = False
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write_loop()), loop.create_task(self._read_loop())]

    async def send(self, request: api.SendMessageRequest, token: str, timeout: float) -> api.SendMessageResponse:
        """Send ``request`` as ``token``'s; its response, or the ``AioRpcError`` its unary call would raise."""
        if self.broken:
            raise _error(grpc.StatusCode.UNAVAILABLE, "the SendMessageBatches stream has ended")
        item_id = self._next_id
        self._next_id += 1
        message = pb.SendMessageRequest(
            conversation_id=request.conversation_id, body=request.body, request_id=request.request_id
        )
        item = pb.SendMessageItem(id=item_id, token=token, request=message, timeout_ms=max(1, int(timeout * 1000)))
        future: asyncio.Future[pb.SendMessageResult] = asyncio.get_running_loop().create_future()
        self._waiting[item_id] = future
        self._outbox.put_nowait(item)
        try:
            async with asyncio.timeout(timeout):
                result = await future
        except TimeoutError:
            raise _error(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer within the attempt's deadline") from None
        finally:
            self._waiting.pop(item_id, None)
        if result.WhichOneof("outcome") == "response":
            return _response(result.response)
        failure = result.error
        trailers = ((DETAILS_KEY, failure.status_details),) if failure.status_details else ()
        code = _STATUS_BY_VALUE.get(failure.code, grpc.StatusCode.UNKNOWN)
        raise _error(code, failure.message, trailers)

    async def refused(self) -> bool:
        """Whether the server refused the stream as UNIMPLEMENTED (then nothing sent on it was applied)."""
        if not self._call.done():
            return False
        try:
            return bool(await self._call.code() is grpc.StatusCode.UNIMPLEMENTED)
        except Exception:
            return False

    async def close(self) -> None:
        """Cancel the call; every send still waiting fails with UNAVAILABLE."""
        self._fail(grpc.StatusCode.UNAVAILABLE, "the SendMessageBatches stream was closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _write_loop(self) -> None:
        outbox = self._outbox
        try:
            headers = await self._call.initial_metadata()  # the server sends its headers at once (see the module)
            if not any(key == HEADER for key, _ in headers or ()):
                return  # refused: write nothing; the read loop fails the sends with the call's status
            while True:
                batch = [await outbox.get()]
                while len(batch) < MAX_BATCH and not outbox.empty():
                    batch.append(outbox.get_nowait())
                await self._call.write(pb.SendMessageBatch(items=batch))
        except Exception:  # the call is ending: let its status arrive before cancelling it (which would hide it)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FINAL_STATUS_S):
                    await self._call.code()
            self._fail(*await self._final_status())

    async def _read_loop(self) -> None:
        try:
            with contextlib.suppress(Exception):  # the call ended: every waiting send fails (and is retried)
                async for message in self._call:
                    for result in message.results:
                        future = self._waiting.get(result.id)
                        if future is not None and not future.done():
                            future.set_result(result)
        finally:
            self._fail(*await self._final_status())
            self._tasks[0].cancel()  # the write loop waits for sends nobody will make

    async def _final_status(self) -> tuple[grpc.StatusCode, str]:
        """The status the server ended the call with, else UNAVAILABLE.

        "Else" is: OK (the stream ended early), no status yet, or a failure in the client's own transport
        (``LOCAL_INTERNAL``).
        """
        if self._call.done():
            with contextlib.suppress(Exception):
                code = await self._call.code()
                details = await self._call.details()
                if code is grpc.StatusCode.INTERNAL and details == LOCAL_INTERNAL:
                    return grpc.StatusCode.UNAVAILABLE, "the connection to the node broke while sending"
                if code is not grpc.StatusCode.OK:
                    return code, details or code.name
        return grpc.StatusCode.UNAVAILABLE, "the SendMessageBatches stream ended before the answer came"

    def _fail(self, code: grpc.StatusCode, message: str) -> None:
        self.broken = True
        self._call.cancel()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(_error(code, message))


def _error(code: grpc.StatusCode, message: str, trailers: tuple[tuple[str, bytes], ...] = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), message, None)
