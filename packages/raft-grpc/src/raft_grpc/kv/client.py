"""``KvClient``: the asyncio client of ``kv.v1.DataService``: finds a working node, retries safely.

Invariants this module owns: every write carries one (client_id, seq) from its first attempt to its last, so a
write retried after a timeout, a lost connection or a leader change is applied at most once (the server's
session table answers a retry with the first result); each write says the lowest seq still in flight (its
floor), so several concurrent writes on one client are safe; no call outlives its overall deadline.

Retries: UNAVAILABLE, DEADLINE_EXCEEDED (of one attempt), RESOURCE_EXHAUSTED and connection failures are
retried with a short jittered backoff, on the leader named in the ``kv-leader`` trailing metadata if there
is one, else on the next endpoint. FAILED_PRECONDITION with a leader hint (a node started with
``--no-forward``) goes to that leader at once. INVALID_ARGUMENT raises ``KvInvalidArgument``.

Streaming (``KvClient(..., streaming=True)``): writes go over one long-lived ``WriteBatches`` stream per node
(``Write`` on a server without it), multiplexed by request id, which costs far less CPU per write than a unary
call: the writes waiting when the stream is free go in one stream message, and the server answers those ready
together in one message. A streamed write gets one
attempt (``attempt_timeout``) on the current endpoint; if the stream fails, the attempt times out or the
reply is a retriable error, the same request (same client_id and seq) goes through the unary retry path
above, so it is still applied exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from raft_grpc.kv._gen.kv.v1 import kv_pb2 as pb
from raft_grpc.kv._gen.kv.v1 import kv_pb2_grpc as pb_grpc
from raft_grpc.kv.errors import KvError, KvInvalidArgument, KvSessionExpired, KvUnavailable
from raft_grpc.kv.service import LEADER_KEY, WRITE_BATCHES_HEADER

_RETRY = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 << 20),
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
]


@dataclass(frozen=True, slots=True)
class CasResult:
    """The outcome of ``compare_and_set``: whether it set the value, and the key's value now (None: absent)."""

    succeeded: bool
    value: bytes | None
    revision: int


class KvClient:
    """A client of a key-value cluster, given some or all of its nodes' client addresses.

    Example:
        >>> async with KvClient(["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]) as kv:
        ...     await kv.put(b"greeting", b"hello")
        ...     assert await kv.get(b"greeting") == b"hello"
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 5.0,
        attempt_timeout: float | None = None,
        streaming: bool = False,
    ) -> None:
        """Use ``endpoints`` (``host:port``); ``timeout`` bounds every call, retries included.

        ``attempt_timeout`` bounds one attempt on one node (default: 40% of ``timeout``, at least 0.5 s), so a
        hung node costs only part of the budget before the next one is tried. With ``streaming``, writes go
        over a ``Write`` stream (see the module's docstring); reads stay unary.
        """
        if not endpoints:
            raise ValueError("KvClient needs at least one endpoint")
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout or max(0.5, timeout * 0.4)
        self._endpoints = list(dict.fromkeys(endpoints))
        self._current = 0
        self._find_leader = True  # before the first write, and after a failover, look for the leader
        self._stubs: dict[str, tuple[grpc.aio.Channel, Any]] = {}  # the generated stub is typed for sync channels
        self._client_id: str | None = None
        self._session_lock = asyncio.Lock()
        self._next_seq = 1
        self._in_flight: set[int] = set()
        self._rng = random.Random()
        self.streaming = streaming
        self._streams: dict[str, _WriteStream] = {}
        self._write_batches = True  # WriteBatches until a server answers UNIMPLEMENTED

    async def __aenter__(self) -> KvClient:
        """Return the client (channels open lazily)."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close every channel."""
        await self.close()

    async def close(self) -> None:
        """Close every channel; the client may not be used afterwards."""
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            await stream.close()
        stubs, self._stubs = self._stubs, {}
        for channel, _ in stubs.values():
            await channel.close(None)

    @property
    def client_id(self) -> str | None:
        """The session's client id, once the first write opened it."""
        return self._client_id

    # -- reads ----------------------------------------------------------------------------------------------

    async def get(self, key: bytes, *, stale: bool = False, timeout: float | None = None) -> bytes | None:
        """The value of ``key`` (None if absent): linearizable unless ``stale`` (then any node's view)."""
        reply = await self._call("Get", pb.GetRequest(key=key, stale=stale), self._deadline(timeout))
        return reply.value if reply.found else None

    async def status(self, endpoint: str | None = None, *, timeout: float | None = None) -> pb.StatusResponse:
        """The status of ``endpoint`` (or of the first node that answers)."""
        deadline = self._deadline(timeout)
        if endpoint is None:
            reply: pb.StatusResponse = await self._call("Status", pb.StatusRequest(), deadline)
            return reply
        remaining = max(0.01, deadline - _now())
        try:
            reply = await self._stub(endpoint).Status(pb.StatusRequest(), timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            raise KvUnavailable(f"{endpoint}: {exc.details()}", exc.code().name) from None
        return reply

    # -- writes ---------------------------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes, *, timeout: float | None = None) -> int:
        """Set ``key`` to ``value``; returns the store's revision after the write."""
        reply = await self._write("Put", lambda h: pb.PutRequest(header=h, key=key, value=value), timeout)
        return int(reply.revision)

    async def delete(self, key: bytes, *, timeout: float | None = None) -> bool:
        """Remove ``key``; returns whether it existed."""
        reply = await self._write("Delete", lambda h: pb.DeleteRequest(header=h, key=key), timeout)
        return bool(reply.existed)

    async def compare_and_set(
        self, key: bytes, expected: bytes | None, new_value: bytes, *, timeout: float | None = None
    ) -> CasResult:
        """Set ``key`` to ``new_value`` if it holds ``expected`` (None: if it is absent)."""

        def build(header: pb.WriteHeader) -> pb.CompareAndSetRequest:
            if expected is None:
                return pb.CompareAndSetRequest(header=header, key=key, expect_absent=True, new_value=new_value)
            return pb.CompareAndSetRequest(header=header, key=key, expected_value=expected, new_value=new_value)

        reply = await self._write("CompareAndSet", build, timeout)
        return CasResult(reply.succeeded, reply.current_value if reply.found else None, reply.revision)

    # -- internals ------------------------------------------------------------------------------------------

    async def _write(self, method: str, build: Callable[[pb.WriteHeader], Any], timeout: float | None) -> Any:
        deadline = self._deadline(timeout)
        client = await self._session(deadline)
        if self._find_leader:
            await self._aim_at_leader(deadline)
        seq = self._next_seq
        self._next_seq += 1
        self._in_flight.add(seq)
        try:
            header = pb.WriteHeader(client_id=client, seq=seq, floor=min(self._in_flight))
            request = build(header)
            if self.streaming:
                reply = await self._stream_attempt(method, request, deadline)
                if reply is not None:
                    return reply
            return await self._call(method, request, deadline)
        except KvSessionExpired:
            if self._client_id == client:
                self._client_id = None  # the next write opens a new session
            raise
        finally:
            self._in_flight.discard(seq)

    async def _stream_attempt(self, method: str, request: Any, deadline: float) -> Any:
        """One attempt of a write over the current endpoint's ``Write`` stream: its reply, or None to retry.

        None means the write may or may not have been applied (the stream failed, the attempt timed out, or
        the node answered with a retriable error): the caller retries it with the same (client_id, seq).
        Non-retriable errors raise as ``_call`` raises them.
        """
        remaining = deadline - _now()
        if remaining <= 0:
            return None
        endpoint = self._endpoints[self._current % len(self._endpoints)]
        stream = self._streams.get(endpoint)
        if stream is None or stream.broken:
            stub = self._stub(endpoint)
            call = stub.WriteBatches() if self._write_batches else stub.Write()
            stream = self._streams[endpoint] = _WriteStream(call, batched=self._write_batches)
        attempt = min(remaining, self.attempt_timeout)
        wrapped = pb.WriteRequest(**{_STREAM_FIELD[method]: request}, timeout_ms=max(1, int(attempt * 1000)))
        try:
            reply = await stream.send(wrapped, attempt)
        except (_StreamFailed, TimeoutError):
            if await stream.refused_as_unimplemented():  # an older server: use Write from now on (nothing applied)
                self._write_batches = False
                return await self._stream_attempt(method, request, deadline)
            self._retarget(endpoint, None)
            self._find_leader = True
            return None
        if reply.WhichOneof("result") != "error":
            return getattr(reply, _STREAM_FIELD[method])
        error = reply.error
        status = _STATUS_BY_CODE.get(error.code, grpc.StatusCode.UNKNOWN)
        hint = error.leader_address or None
        code, last = status.name, f"{endpoint}: {status.name}: {error.message}"
        if status is grpc.StatusCode.INVALID_ARGUMENT:
            raise KvInvalidArgument(error.message or "invalid argument", code)
        if status is grpc.StatusCode.FAILED_PRECONDITION and hint is None:
            raise KvSessionExpired(error.message or "session expired", code)
        if status not in _RETRY and status is not grpc.StatusCode.FAILED_PRECONDITION:
            raise KvError(last, code)
        self._retarget(endpoint, hint)
        self._find_leader = hint is None
        if hint is None:
            await asyncio.sleep(min(self._backoff(0), max(0.0, deadline - _now())))
        return None

    async def _aim_at_leader(self, deadline: float) -> None:
        """Point writes at the leader the current endpoint knows of.

        A follower would forward them: two more hops per write. Best effort: on any failure the writes go
        where they went.
        """
        self._find_leader = False
        endpoint = self._endpoints[self._current % len(self._endpoints)]
        try:
            status = await self._stub(endpoint).Status(pb.StatusRequest(), timeout=min(0.5, deadline - _now()))
        except (grpc.aio.AioRpcError, ValueError):
            return
        if status.leader_address and status.leader_address != endpoint:
            self._retarget(endpoint, status.leader_address)

    async def _session(self, deadline: float) -> str:
        async with self._session_lock:
            if self._client_id is None:
                reply = await self._call("OpenSession", pb.OpenSessionRequest(), deadline)
                self._client_id = reply.client_id
                self._next_seq, self._in_flight = 1, set()
            return self._client_id

    async def _call(self, method: str, request: Any, deadline: float) -> Any:
        """Send ``request`` until a node answers, retrying the retriable until ``deadline``."""
        attempt = 0
        last = "no attempt made"
        code: str | None = None
        while (remaining := deadline - _now()) > 0:
            endpoint = self._endpoints[self._current % len(self._endpoints)]
            call = getattr(self._stub(endpoint), method)
            try:
                return await call(request, timeout=min(remaining, self.attempt_timeout))
            except grpc.aio.AioRpcError as exc:
                status, hint = exc.code(), _leader_hint(exc)
                code, last = status.name, f"{endpoint}: {status.name}: {exc.details()}"
                if status is grpc.StatusCode.INVALID_ARGUMENT:
                    raise KvInvalidArgument(exc.details() or "invalid argument", code) from None
                if status is grpc.StatusCode.FAILED_PRECONDITION and hint is None:
                    raise KvSessionExpired(exc.details() or "session expired", code) from None
                if status not in _RETRY and status is not grpc.StatusCode.FAILED_PRECONDITION:
                    raise KvError(last, code) from None
                self._retarget(endpoint, hint)
                self._find_leader = hint is None  # after this write, ask the next endpoint who leads
                if hint is None or attempt > 0:
                    await asyncio.sleep(min(self._backoff(attempt), max(0.0, deadline - _now())))
                attempt += 1
        raise KvUnavailable(f"no node answered {method} within {self.timeout:.1f}s (last: {last})", code)

    def _retarget(self, failed: str, hint: str | None) -> None:
        """Aim the next attempt at the hinted leader, else at the endpoint after ``failed``."""
        if hint is not None and hint != failed:
            if hint not in self._endpoints:
                self._endpoints.append(hint)
            self._current = self._endpoints.index(hint)
        elif self._endpoints[self._current % len(self._endpoints)] == failed:
            self._current = (self._current + 1) % len(self._endpoints)

    def _backoff(self, attempt: int) -> float:
        return min(0.25, 0.01 * (1 << min(attempt, 10))) * self._rng.uniform(0.5, 1.5)

    def _deadline(self, timeout: float | None) -> float:
        return _now() + (self.timeout if timeout is None else timeout)

    def _stub(self, endpoint: str) -> Any:
        entry = self._stubs.get(endpoint)
        if entry is None:
            channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            entry = self._stubs[endpoint] = (channel, pb_grpc.DataServiceStub(channel))
        return entry[1]


MAX_REQUEST_BATCH = 256
"""Most writes one ``WriteRequestBatch`` carries."""
WRITE_FAILURE_STATUS_S = 1.0
"""Seconds a stream whose write failed is given to deliver its final status."""
_STREAM_FIELD = {"Put": "put", "Delete": "delete", "CompareAndSet": "compare_and_set"}
"""The ``WriteRequest``/``WriteReply`` oneof field of each write method."""
_STATUS_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}


class _StreamFailed(Exception):
    """The ``Write`` stream ended before the reply came (the write may or may not have been applied)."""


class _WriteStream:
    """One long-lived ``WriteBatches`` (or ``Write``) call: requests sent in order by one task, replies matched by id.

    With ``batched``, the send task puts every request waiting when the stream is free (up to
    ``MAX_REQUEST_BATCH``) in one ``WriteRequestBatch``.
    """

    def __init__(self, call: Any, *, batched: bool) -> None:
        self._call = call
        self._batched = batched
        self._next_id = 1
        self._waiting: dict[int, asyncio.Future[pb.WriteReply]] = {}
        self._outbox: asyncio.Queue[pb.WriteRequest] = asyncio.Queue()
        self.broken = False
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._send_loop()), loop.create_task(self._receive_loop())]

    async def send(self, request: pb.WriteRequest, timeout: float) -> pb.WriteReply:
        """The reply to ``request`` (its id is set here); ``_StreamFailed`` or ``TimeoutError`` if none comes."""
        if self.broken:
            raise _StreamFailed("stream closed")
        request.id = self._next_id
        self._next_id += 1
        future: asyncio.Future[pb.WriteReply] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = future
        self._outbox.put_nowait(request)
        try:
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._waiting.pop(request.id, None)

    async def refused_as_unimplemented(self) -> bool:
        """Whether the server refused the call as UNIMPLEMENTED (then nothing sent on it was applied).

        The call's final status says so; nothing cancels the call before that status has arrived (see the loops).
        """
        if not self._call.done():
            return False
        try:
            return await self._call.code() is grpc.StatusCode.UNIMPLEMENTED
        except Exception:
            return False

    async def close(self) -> None:
        """Cancel the call; every write still waiting fails with ``_StreamFailed``."""
        self._fail()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _send_loop(self) -> None:
        outbox = self._outbox
        try:
            if self._batched:
                # Nothing is sent before the server has accepted the call (it sends WRITE_BATCHES_HEADER at once):
                # a server without WriteBatches answers a clean UNIMPLEMENTED (a trailers-only response, without
                # the header). Writing into that call would race with its end, and a lost race turns its status
                # into INTERNAL, hiding the refusal.
                headers = await self._call.initial_metadata()
                if not any(key == WRITE_BATCHES_HEADER for key, _ in headers or ()):
                    return  # refused: write nothing; the receive loop fails the writes with the call's status
            while True:
                request = await outbox.get()
                if not self._batched:
                    await self._call.write(request)
                    continue
                batch = [request]
                while len(batch) < MAX_REQUEST_BATCH and not outbox.empty():
                    batch.append(outbox.get_nowait())
                await self._call.write(pb.WriteRequestBatch(requests=batch))
        except Exception:  # the call is ending: let its status arrive before cancelling it (which would hide it)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(WRITE_FAILURE_STATUS_S):
                    await self._call.code()
            self._fail()

    async def _receive_loop(self) -> None:
        try:
            # The call ended (the node went away, or refused it): every waiting write is retried.
            with contextlib.suppress(Exception):
                async for message in self._call:
                    for reply in message.replies if self._batched else (message,):
                        future = self._waiting.get(reply.id)
                        if future is not None and not future.done():
                            future.set_result(reply)
        finally:
            self._fail()
            self._tasks[0].cancel()  # the send loop waits for requests nobody will send

    def _fail(self) -> None:
        self.broken = True
        self._call.cancel()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(_StreamFailed("the Write stream ended"))


def _leader_hint(exc: grpc.aio.AioRpcError) -> str | None:
    metadata: Any = exc.trailing_metadata() or ()
    for key, value in metadata:
        if key == LEADER_KEY and isinstance(value, str) and value:
            return value
    return None


def _now() -> float:
    now: float = asyncio.get_running_loop().time()
    return now
