"""``KvService``: the ``kv.v1.DataService`` servicer, a thin adapter from RPCs to a raft-core ``Node``.

Invariants this module owns: every RPC answers within its deadline (the node is given the call's remaining
time less a margin, 5 s without a deadline), bad input is refused before anything is proposed, and a client
never sees a stack trace: every raft-core error maps to one status (see ``status_for``), anything
unexpected to INTERNAL with a generic message (the details go to the server log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc

from raft_core.errors import (
    CommandFailed,
    CommitUnknown,
    NodeStopped,
    NotLeader,
    Overloaded,
    ProposalDropped,
    ReadTimeout,
    SessionError,
)
from raft_core.runtime import Node
from raft_core.types import NONE
from raft_grpc.kv._gen.kv.v1 import kv_pb2 as pb
from raft_grpc.kv._gen.kv.v1 import kv_pb2_grpc as pb_grpc
from raft_grpc.kv.state_machine import KvCommandError, KvStateMachine, check_key, encode_cas, encode_delete, encode_put
from raft_grpc.streams import answers_in_completion_order

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REPLY_BATCH = 256
"""Most replies ``WriteBatches`` puts in one stream message."""
WRITE_BATCHES_HEADER = "kv-write-batches"
"""Initial metadata of a ``WriteBatches`` call, sent at once: proof for the client that this server serves it."""
LEADER_KEY = "kv-leader"
"""Trailing metadata: the leader's client address (``host:port``), when this node knows it."""
LEADER_ID_KEY = "kv-leader-id"
"""Trailing metadata: the leader's node id, when this node knows it."""
DEFAULT_TIMEOUT = 5.0
"""Seconds an RPC without a deadline may take."""
MAX_CLIENT_ID = 128


class InvalidRequest(ValueError):
    """A request field is missing or out of range (the message says which and how to fix it)."""


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message a client gets for ``exc`` (never a stack trace)."""
    if isinstance(exc, InvalidRequest | KvCommandError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"overloaded, retry shortly: {exc}"
    if isinstance(exc, SessionError):
        return grpc.StatusCode.FAILED_PRECONDITION, f"{exc}; open a new session (OpenSession)"
    if isinstance(exc, NotLeader):
        if exc.leader != NONE:
            return grpc.StatusCode.FAILED_PRECONDITION, f"not the leader; send to node {exc.leader} (see {LEADER_KEY})"
        return grpc.StatusCode.UNAVAILABLE, "no leader is known; retry shortly"
    if isinstance(exc, ProposalDropped):
        return grpc.StatusCode.UNAVAILABLE, f"not applied, retry: {exc}"
    if isinstance(exc, CommitUnknown):
        return (
            grpc.StatusCode.UNAVAILABLE,
            f"no quorum within the deadline; retry with the same client_id and seq: {exc}",
        )
    if isinstance(exc, ReadTimeout):
        return grpc.StatusCode.UNAVAILABLE, f"no leader confirmed the read within the deadline: {exc}"
    if isinstance(exc, NodeStopped):
        return grpc.StatusCode.UNAVAILABLE, "this node is stopping; use another"
    if isinstance(exc, CommandFailed):
        return grpc.StatusCode.INVALID_ARGUMENT, f"the store refused the command: {exc.detail}"
    if isinstance(exc, ValueError):  # e.g. a command over the node's max_command_bytes
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error (details are in the server log)"


class KvService(pb_grpc.DataServiceServicer):
    """Serves ``kv.v1.DataService`` from one node of the cluster (method names are the RPCs', hence N802).

    Example:
        >>> service = KvService(node, {1: "10.0.0.1:7001", 2: "10.0.0.2:7001", 3: "10.0.0.3:7001"})
        >>> pb_grpc.add_DataServiceServicer_to_server(service, server)
    """

    def __init__(
        self,
        node: Node,
        client_addresses: Mapping[int, str],
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        margin: float = 0.1,
    ) -> None:
        """Serve ``node`` (whose state machine is a ``KvStateMachine``); ``client_addresses`` go in leader hints.

        ``margin`` is the time kept back from each call's deadline, so a node that cannot answer in time
        still answers UNAVAILABLE before the client gives up.
        """
        self.node = node
        self.client_addresses = dict(client_addresses)
        self.default_timeout = default_timeout
        self.margin = margin

    @property
    def store(self) -> KvStateMachine:
        """The node's key-value state machine."""
        sm = self.node.state_machine
        assert isinstance(sm, KvStateMachine)
        return sm

    # -- RPCs -----------------------------------------------------------------------------------------------

    async def OpenSession(self, request: pb.OpenSessionRequest, context: Any) -> pb.OpenSessionResponse:  # noqa: N802
        """Open an exactly-once session (a log entry) and return its client id."""

        async def work(timeout: float) -> pb.OpenSessionResponse:
            client = await self.node.open_session(timeout=timeout)
            assert isinstance(client, str)
            return pb.OpenSessionResponse(client_id=client)

        return await self._serve(context, work)

    async def Get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:  # noqa: N802
        """Read one key: linearizable through ReadIndex, or this node's applied state with ``stale``."""

        async def work(timeout: float) -> pb.GetResponse:
            check_key(request.key)
            if request.stale:
                value, revision = self.store.get(request.key)
            else:
                value, revision = await self.node.read(lambda sm: sm.get(request.key), timeout=timeout)
            return pb.GetResponse(found=value is not None, value=value or b"", revision=revision)

        return await self._serve(context, work)

    async def Put(self, request: pb.PutRequest, context: Any) -> pb.PutResponse:  # noqa: N802
        """Set a key, exactly once per (client_id, seq)."""
        return await self._serve(context, self._put(request))

    async def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.DeleteResponse:  # noqa: N802
        """Remove a key, exactly once per (client_id, seq)."""
        return await self._serve(context, self._delete(request))

    async def CompareAndSet(self, request: pb.CompareAndSetRequest, context: Any) -> pb.CompareAndSetResponse:  # noqa: N802
        """Set a key if it holds the expected value (or is absent), exactly once per (client_id, seq)."""
        return await self._serve(context, self._compare_and_set(request))

    async def Write(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.WriteRequest], context: Any
    ) -> AsyncIterator[pb.WriteReply]:
        """Serve a stream of writes: each request in a task of its own, each reply sent as it completes.

        A request's failure is its reply's ``error`` (the status its unary RPC would have had); the stream
        ends when the client half-closes it and every reply is sent, or when the call ends (then the
        requests still running are cancelled, as a unary call's would be).
        """

        async def requests() -> AsyncIterator[list[pb.WriteRequest]]:
            async for request in request_iterator:
                yield [request]

        answers = answers_in_completion_order(requests(), self._write_one, max_batch=1)
        async with contextlib.aclosing(answers) as replies:
            async for batch in replies:
                yield batch[0]

    async def WriteBatches(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.WriteRequestBatch], context: Any
    ) -> AsyncIterator[pb.WriteReplyBatch]:
        """``Write`` with many requests per stream message, and the replies ready together in one message.

        The headers go out at once, with ``WRITE_BATCHES_HEADER``: the client waits for it before it sends (see
        ``KvClient``).
        """
        await context.send_initial_metadata(((WRITE_BATCHES_HEADER, "1"),))

        async def requests() -> AsyncIterator[list[pb.WriteRequest]]:
            async for batch in request_iterator:
                yield list(batch.requests)

        answers = answers_in_completion_order(requests(), self._write_one, max_batch=MAX_REPLY_BATCH)
        async with contextlib.aclosing(answers) as replies:
            async for batch in replies:
                yield pb.WriteReplyBatch(replies=batch)

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:  # noqa: N802
        """This node's role, term, leader (and its client address), log positions, and peers on a leader."""

        async def work(timeout: float) -> pb.StatusResponse:
            st = self.node.status()
            peers = [
                pb.PeerStatus(
                    id=peer,
                    match_index=p.match,
                    lag=max(0, st.last_index - p.match),
                    state=p.state,
                    recent_active=p.recent_active,
                )
                for peer, p in sorted(st.progress.items())
                if peer != st.id
            ]
            return pb.StatusResponse(
                node_id=st.id,
                role=st.role.value,
                term=st.term,
                leader_id=st.leader,
                leader_address=self.client_addresses.get(st.leader, "") if st.leader != NONE else "",
                commit_index=st.commit,
                applied_index=self.node.applied_index,
                last_index=st.last_index,
                peers=peers,
            )

        return await self._serve(context, work)

    # -- internals ------------------------------------------------------------------------------------------

    def _put(self, request: pb.PutRequest) -> Callable[[float], Awaitable[pb.PutResponse]]:
        async def work(timeout: float) -> pb.PutResponse:
            result = await self._propose(request.header, encode_put(request.key, request.value), timeout)
            return pb.PutResponse(revision=result["rev"])

        return work

    def _delete(self, request: pb.DeleteRequest) -> Callable[[float], Awaitable[pb.DeleteResponse]]:
        async def work(timeout: float) -> pb.DeleteResponse:
            result = await self._propose(request.header, encode_delete(request.key), timeout)
            return pb.DeleteResponse(existed=result["existed"], revision=result["rev"])

        return work

    def _compare_and_set(
        self, request: pb.CompareAndSetRequest
    ) -> Callable[[float], Awaitable[pb.CompareAndSetResponse]]:
        async def work(timeout: float) -> pb.CompareAndSetResponse:
            condition = request.WhichOneof("condition")
            if condition is None:
                raise InvalidRequest("set expected_value or expect_absent")
            expected = request.expected_value if condition == "expected_value" else None
            result = await self._propose(request.header, encode_cas(request.key, expected, request.new_value), timeout)
            if result["ok"]:
                return pb.CompareAndSetResponse(
                    succeeded=True, found=True, current_value=request.new_value, revision=result["rev"]
                )
            current = result["value"]
            return pb.CompareAndSetResponse(
                succeeded=False, found=current is not None, current_value=current or b"", revision=result["rev"]
            )

        return work

    async def _write_one(self, request: pb.WriteRequest) -> pb.WriteReply:
        """The reply to one streamed write: its result, or the error its unary RPC would have ended with."""
        budget = self._budget_of(request.timeout_ms / 1000 if request.timeout_ms else None)
        try:
            op = request.WhichOneof("op")
            if op == "put":
                return pb.WriteReply(id=request.id, put=await self._put(request.put)(budget))
            if op == "delete":
                return pb.WriteReply(id=request.id, delete=await self._delete(request.delete)(budget))
            if op == "compare_and_set":
                cas = await self._compare_and_set(request.compare_and_set)(budget)
                return pb.WriteReply(id=request.id, compare_and_set=cas)
            raise InvalidRequest("set one of put, delete, compare_and_set")
        except Exception as exc:
            code, message = self._refusal(exc)
            hint = dict(self._leader_hint(exc))
            error = pb.WriteError(
                code=code.value[0],
                message=message,
                leader_address=hint.get(LEADER_KEY, ""),
                leader_id=int(hint.get(LEADER_ID_KEY, 0)),
            )
            return pb.WriteReply(id=request.id, error=error)

    @staticmethod
    def _refusal(exc: Exception) -> tuple[grpc.StatusCode, str]:
        """``status_for(exc)``, logged as the unary handlers log it."""
        code, message = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.error("DataService call failed", exc_info=exc)
        else:
            log.debug("DataService call refused: %s: %s", code.name, message)
        return code, message

    async def _propose(self, header: pb.WriteHeader, command: bytes, timeout: float) -> dict[str, Any]:
        # A write carries its (client_id, seq): if the leader it was forwarded to dies, the node forwards it
        # again to the next leader, and the session table applies it once whatever the number of copies.
        client, seq, floor = _check_header(header)
        result = await self.node.propose(command, client=client, seq=seq, floor=floor, timeout=timeout)
        assert isinstance(result, dict)
        return result

    async def _serve(self, context: Any, work: Callable[[float], Awaitable[T]]) -> T:
        """Run ``work`` with the call's time budget; map any failure to a status and abort the call."""
        try:
            return await work(self._budget(context))
        except Exception as exc:
            error: Exception = exc
            code, message = self._refusal(exc)
        await context.abort(code, message, trailing_metadata=self._leader_hint(error))
        raise AssertionError("unreachable: abort raises")

    def _budget(self, context: Any) -> float:
        return self._budget_of(context.time_remaining())

    def _budget_of(self, remaining: float | None) -> float:
        """The time the node may take of ``remaining`` seconds (None: no deadline, the default)."""
        if remaining is None:
            return self.default_timeout
        return max(0.01, min(remaining - min(self.margin, remaining * 0.2), self.default_timeout * 12))

    def _leader_hint(self, exc: BaseException) -> tuple[tuple[str, str], ...]:
        leader = exc.leader if isinstance(exc, NotLeader) and exc.leader != NONE else self.node.leader
        if leader == NONE or leader == self.node.id:
            return ()
        hint = [(LEADER_ID_KEY, str(leader))]
        address = self.client_addresses.get(leader)
        if address:
            hint.append((LEADER_KEY, address))
        return tuple(hint)


def _check_header(header: pb.WriteHeader) -> tuple[str, int, int]:
    """(client_id, seq, floor) of a write, or ``InvalidRequest`` naming the field at fault."""
    if not header.client_id:
        raise InvalidRequest("header.client_id is required: call OpenSession first")
    if len(header.client_id) > MAX_CLIENT_ID:
        raise InvalidRequest(f"header.client_id is longer than {MAX_CLIENT_ID} characters")
    if header.seq < 1:
        raise InvalidRequest("header.seq must be 1 or more (number each client's writes 1, 2, 3, ...)")
    floor = header.floor or header.seq
    if floor > header.seq:
        raise InvalidRequest(f"header.floor ({floor}) must not exceed header.seq ({header.seq})")
    return header.client_id, header.seq, floor
