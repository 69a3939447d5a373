"""``KvClient``: the asyncio client of ``kv.v1.DataService``: finds a working node, retries safely.

Invariants this module owns: every write carries one (client_id, seq) from its first attempt to its last, so a
write retried after a timeout, a lost connection or a leader change is applied at most once (the server's
session table answers a retry with the first result); each write says the lowest seq still in flight (its
floor), so several concurrent writes on one client are safe; no call outlives its overall deadline.

Retries: UNAVAILABLE, DEADLINE_EXCEEDED (of one attempt), RESOURCE_EXHAUSTED and connection failures are
retried with a short jittered backoff, on the leader named in the ``kv-leader`` trailing metadata if there
is one, else on the next endpoint. FAILED_PRECONDITION with a leader hint (a node started with
``--no-forward``) goes to that leader at once. INVALID_ARGUMENT raises ``KvInvalidArgument``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from raft_grpc.kv._gen.kv.v1 import kv_pb2 as pb
from raft_grpc.kv._gen.kv.v1 import kv_pb2_grpc as pb_grpc
from raft_grpc.kv.errors import KvError, KvInvalidArgument, KvSessionExpired, KvUnavailable
from raft_grpc.kv.service import LEADER_KEY

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

    def __init__(self, endpoints: Sequence[str], *, timeout: float = 5.0, attempt_timeout: float | None = None) -> None:
        """Use ``endpoints`` (``host:port``); ``timeout`` bounds every call, retries included.

        ``attempt_timeout`` bounds one attempt on one node (default: 40% of ``timeout``, at least 0.5 s), so a
        hung node costs only part of the budget before the next one is tried.
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

    async def __aenter__(self) -> KvClient:
        """Return the client (channels open lazily)."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close every channel."""
        await self.close()

    async def close(self) -> None:
        """Close every channel; the client may not be used afterwards."""
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
            return await self._call(method, build(header), deadline)
        except KvSessionExpired:
            if self._client_id == client:
                self._client_id = None  # the next write opens a new session
            raise
        finally:
            self._in_flight.discard(seq)

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


def _leader_hint(exc: grpc.aio.AioRpcError) -> str | None:
    metadata: Any = exc.trailing_metadata() or ()
    for key, value in metadata:
        if key == LEADER_KEY and isinstance(value, str) and value:
            return value
    return None


def _now() -> float:
    now: float = asyncio.get_running_loop().time()
    return now
