"""A fake chat cluster for the client tests: MessageService / MonitoringService served by grpc.aio in-process.

The nodes share one ``FakeState`` (as if replicated) and can be told to misbehave: stop (connection refused),
act as a follower (UNAVAILABLE with a NOT_LEADER ErrorInfo), fail scripted calls, apply a write and then lose
the answer, drop Subscribe streams, or skip / replay events when a stream resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from chat_client_qt._gen.api.chat import v1 as api

T = TypeVar("T")
TOKEN = "tok-alice"


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh event loop with an overall deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 5 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rich_abort_metadata(code: grpc.StatusCode, message: str, *details: Any) -> tuple[tuple[str, bytes], ...]:
    """The ``grpc-status-details-bin`` trailer of a google.rpc.Status with ``details`` packed as Any."""
    packed = []
    for detail in details:
        box = any_pb2.Any()
        box.Pack(detail)
        packed.append(box)
    status = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def not_leader(leader: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason="NOT_LEADER", domain="chat.v1", metadata={"leader": leader})


def retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


@dataclass
class Failure:
    """A scripted failure of one call."""

    code: grpc.StatusCode
    message: str = "scripted failure"
    details: tuple[Any, ...] = ()
    apply_first: bool = False  # apply the write, then fail (the answer is lost)
    delay: float = 0.0  # sleep this long first (e.g. past the client's attempt timeout)


@dataclass
class FakeConversation:
    id: str
    name: str
    members: set[str]
    kind: api.ConversationKind = api.ConversationKind.ROOM
    events: list[api.Event] = field(default_factory=list)
    joined: dict[str, int] = field(default_factory=dict)


class FakeState:
    """The "replicated" state all fake nodes share."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {"alice": "password-a", "bob": "password-b"}
        self.tokens: dict[str, str] = {TOKEN: "alice", "tok-bob": "bob"}
        self.conversations: dict[str, FakeConversation] = {}
        self.applied: dict[str, bytes] = {}  # request_id -> the first answer
        self.calls: list[tuple[str, str, str | None]] = []  # (node, method, request_id)
        self.subscribers: list[asyncio.Queue[api.Event | None]] = []
        self.time_ms = 1_700_000_000_000

    def room(self, conversation_id: str, *members: str) -> FakeConversation:
        conversation = FakeConversation(conversation_id, conversation_id, set(members))
        self.conversations[conversation_id] = conversation
        self.append(conversation, api.Event(kind=api.EventKind.CREATED, sender=members[0] if members else ""))
        for member in members:
            conversation.joined[member] = len(conversation.events)
        return conversation

    def append(self, conversation: FakeConversation, event: api.Event) -> api.Event:
        self.time_ms += 1
        event.conversation_id = conversation.id
        event.seq = len(conversation.events) + 1
        event.time_ms = self.time_ms
        conversation.events.append(event)
        for queue in list(self.subscribers):
            queue.put_nowait(event)
        return event

    def post(self, conversation_id: str, sender: str, body: str, request_id: str = "") -> api.Event:
        """Append a message as if some other client sent it."""
        event = api.Event(kind=api.EventKind.MESSAGE, sender=sender, body=body, request_id=request_id)
        return self.append(self.conversations[conversation_id], event)

    def bodies(self, conversation_id: str) -> list[str]:
        return [e.body for e in self.conversations[conversation_id].events if e.kind is api.EventKind.MESSAGE]

    def request_ids(self, method: str) -> list[str | None]:
        return [rid for _, m, rid in self.calls if m == method]

    def nodes_called(self, method: str) -> list[str]:
        return [node for node, m, _ in self.calls if m == method]


_AUTH_FREE = {"Register", "Login", "GetNodeStatus", "GetClusterStatus"}
_WRITES = {
    "Register",
    "Login",
    "Logout",
    "SetDisplayName",
    "OpenDirect",
    "CreateRoom",
    "Invite",
    "Join",
    "Leave",
    "SendMessage",
    "EditMessage",
    "DeleteMessage",
    "MarkRead",
    "SetTyping",
}


class FakeNode:
    """One fake node: a grpc.aio server on 127.0.0.1 over the shared state."""

    def __init__(self, state: FakeState, node_id: int, port: int = 0) -> None:
        self.state = state
        self.node_id = node_id
        self.port = port
        self.server: grpc.aio.Server | None = None
        self.leader: str | None = None  # set: act as a follower that knows this leader (writes get NOT_LEADER)
        self.failures: dict[str, list[Failure]] = {}
        self.resume_skip = 0  # on a resumed Subscribe, skip this many events after each cursor (forces a gap)
        self.resume_replay = 0  # on a resumed Subscribe, resend this many events up to each cursor (duplicates)
        self.history_hidden: set[tuple[str, int]] = set()
        self._streams: list[asyncio.Queue[api.Event | None]] = []
        self.subscribes: list[api.SubscribeRequest] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def fail(self, method: str, *failures: Failure) -> None:
        self.failures.setdefault(method, []).extend(failures)

    async def start(self, tls: tuple[bytes, bytes] | None = None) -> FakeNode:
        """Serve on 127.0.0.1 (``tls``: (certificate chain PEM, private key PEM) to serve TLS)."""
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("chat.v1.MessageService", self._message_handlers()),
                grpc.method_handlers_generic_handler("chat.v1.MonitoringService", self._monitoring_handlers()),
            )
        )
        if tls is not None:
            credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
            self.port = server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        else:
            self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        server, self.server = self.server, None
        for queue in self._streams:
            queue.put_nowait(None)
        if server is not None:
            await server.stop(0)

    def drop_streams(self) -> None:
        """End every open Subscribe stream of this node with UNAVAILABLE."""
        for queue in list(self._streams):
            queue.put_nowait(None)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    # -- plumbing -----------------------------------------------------------------------------------------------

    def _message_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        unary: dict[str, tuple[type[Any], Callable[..., Awaitable[Any]]]] = {
            "Register": (api.RegisterRequest, self._register),
            "Login": (api.LoginRequest, self._login),
            "Logout": (api.LogoutRequest, self._logout),
            "GetMe": (api.GetMeRequest, self._get_me),
            "SearchUsers": (api.SearchUsersRequest, self._search_users),
            "CreateRoom": (api.CreateRoomRequest, self._create_room),
            "ListConversations": (api.ListConversationsRequest, self._list_conversations),
            "SendMessage": (api.SendMessageRequest, self._send_message),
            "GetHistory": (api.GetHistoryRequest, self._get_history),
        }
        handlers: dict[str, grpc.RpcMethodHandler] = {
            name: grpc.unary_unary_rpc_method_handler(
                self._wrap(name, fn), request_deserializer=req.FromString, response_serializer=bytes
            )
            for name, (req, fn) in unary.items()
        }
        handlers["Subscribe"] = grpc.unary_stream_rpc_method_handler(
            self._subscribe, request_deserializer=api.SubscribeRequest.FromString, response_serializer=bytes
        )
        handlers["SubscribeBatches"] = grpc.unary_stream_rpc_method_handler(
            self._subscribe_batches, request_deserializer=api.SubscribeRequest.FromString, response_serializer=bytes
        )
        return handlers

    def _monitoring_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "GetNodeStatus": grpc.unary_unary_rpc_method_handler(
                self._wrap("GetNodeStatus", self._node_status),
                request_deserializer=api.GetNodeStatusRequest.FromString,
                response_serializer=bytes,
            )
        }

    def _wrap(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            rid = getattr(request, "request_id", None)
            self.state.calls.append((self.address, name, rid))
            scripted = self.failures.get(name)
            failure = scripted.pop(0) if scripted else None
            if failure is not None and failure.delay:
                await asyncio.sleep(failure.delay)
            if failure is not None and not failure.apply_first:
                await self._abort(context, failure)
            if self.leader is not None and name in _WRITES:
                message = "not the leader"
                trailer = rich_abort_metadata(grpc.StatusCode.UNAVAILABLE, message, not_leader(self.leader))
                await context.abort(grpc.StatusCode.UNAVAILABLE, message, trailing_metadata=trailer)
            user = None
            if name not in _AUTH_FREE:
                user = self._user(context)
                if user is None:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown token")
            if rid and rid in self.state.applied and name in _WRITES:
                answer = self.state.applied[rid]
                if name == "SendMessage":
                    response = api.SendMessageResponse.FromString(answer)
                    response.duplicate = True
                    return response
                return answer  # the first answer, serialized already
            result = await fn(request, context, user)
            if rid and name in _WRITES:
                self.state.applied.setdefault(rid, bytes(result))
            if failure is not None:
                await self._abort(context, failure)
            return result

        return handler

    async def _abort(self, context: grpc.aio.ServicerContext[Any, Any], failure: Failure) -> None:
        trailer = rich_abort_metadata(failure.code, failure.message, *failure.details) if failure.details else ()
        await context.abort(failure.code, failure.message, trailing_metadata=trailer)

    def _user(self, context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                return self.state.tokens.get(value.removeprefix("Bearer "))
        return None

    def _conversation(self, conversation_id: str) -> FakeConversation | None:
        return self.state.conversations.get(conversation_id)

    def _to_pb(self, conversation: FakeConversation, user: str) -> api.Conversation:
        return api.Conversation(
            id=conversation.id,
            kind=conversation.kind,
            name=conversation.name,
            last_seq=len(conversation.events),
            member_count=len(conversation.members),
            joined_seq=conversation.joined.get(user, 0),
        )

    # -- MessageService -----------------------------------------------------------------------------------------

    async def _register(self, request: api.RegisterRequest, context: Any, user: str | None) -> api.RegisterResponse:
        if request.username in self.state.users:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"username {request.username!r} is taken")
        if len(request.password) < 8:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "password: must be 8 to 1024 characters")
        self.state.users[request.username] = request.password
        return api.RegisterResponse(user=api.User(username=request.username, display_name=request.display_name))

    async def _login(self, request: api.LoginRequest, context: Any, user: str | None) -> api.LoginResponse:
        if self.state.users.get(request.username) != request.password:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")
        token = f"tok-{request.username}-{len(self.state.tokens)}"
        self.state.tokens[token] = request.username
        return api.LoginResponse(token=token, user=api.User(username=request.username), expires_at_ms=1)

    async def _logout(self, request: api.LogoutRequest, context: Any, user: str | None) -> api.LogoutResponse:
        for token, name in list(self.state.tokens.items()):
            if name == user:
                del self.state.tokens[token]
        return api.LogoutResponse()

    async def _get_me(self, request: api.GetMeRequest, context: Any, user: str | None) -> api.User:
        return api.User(username=user or "", display_name=(user or "").title())

    async def _search_users(
        self, request: api.SearchUsersRequest, context: Any, user: str | None
    ) -> api.SearchUsersResponse:
        if not request.query:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query: must not be empty")
        return api.SearchUsersResponse(users=[api.User(username=u) for u in self.state.users if request.query in u])

    async def _create_room(self, request: api.CreateRoomRequest, context: Any, user: str | None) -> api.Conversation:
        conversation = self.state.room(f"room-{len(self.state.conversations) + 1}", user or "", *request.members)
        conversation.name = request.name
        return self._to_pb(conversation, user or "")

    async def _list_conversations(
        self, request: api.ListConversationsRequest, context: Any, user: str | None
    ) -> api.ListConversationsResponse:
        mine = [c for c in self.state.conversations.values() if user in c.members]
        return api.ListConversationsResponse(conversations=[self._to_pb(c, user or "") for c in mine])

    async def _send_message(
        self, request: api.SendMessageRequest, context: Any, user: str | None
    ) -> api.SendMessageResponse:
        conversation = self._conversation(request.conversation_id)
        if conversation is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"conversation {request.conversation_id!r} not found")
        assert conversation is not None
        if user not in conversation.members:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "you are not a member of this conversation")
        event = api.Event(
            kind=api.EventKind.MESSAGE, sender=user or "", body=request.body, request_id=request.request_id
        )
        return api.SendMessageResponse(message=self.state.append(conversation, event))

    async def _get_history(
        self, request: api.GetHistoryRequest, context: Any, user: str | None
    ) -> api.GetHistoryResponse:
        conversation = self._conversation(request.conversation_id)
        if conversation is None or user not in conversation.members:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a member")
        assert conversation is not None
        limit = request.limit or 50
        if request.after_seq:
            page = [e for e in conversation.events if e.seq > request.after_seq][:limit]
            more = len([e for e in conversation.events if e.seq > request.after_seq]) > limit
        else:
            below = [e for e in conversation.events if not request.before_seq or e.seq < request.before_seq]
            page, more = below[-limit:], len(below) > limit
        page = [e for e in page if (conversation.id, e.seq) not in self.history_hidden]
        return api.GetHistoryResponse(events=page, has_more=more, last_seq=len(conversation.events))

    async def _subscribe_batches(
        self, request: api.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[api.ServerEventBatch]:
        """``_subscribe``'s items, each in a batch of its own."""
        async with contextlib.aclosing(self._subscribe(request, context)) as items:
            async for item in items:
                yield api.ServerEventBatch(events=[item])

    async def _subscribe(
        self, request: api.SubscribeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[api.ServerEvent]:
        self.state.calls.append((self.address, "Subscribe", None))
        self.subscribes.append(request)
        user = self._user(context)
        if user is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown token")
        queue: asyncio.Queue[api.Event | None] = asyncio.Queue()
        self._streams.append(queue)
        self.state.subscribers.append(queue)
        try:
            yield api.ServerEvent(heartbeat=api.Heartbeat(node_id=self.node_id, applied_index=1, leader_id=1, term=1))
            cursors = {c.conversation_id: c.after_seq for c in request.cursors}
            sent: dict[str, int] = {}
            for conversation in list(self.state.conversations.values()):
                if user not in conversation.members:
                    continue
                if conversation.id in cursors:
                    start = max(0, cursors[conversation.id] - self.resume_replay)
                    if len(conversation.events) - start > self.resume_skip:
                        start += self.resume_skip  # skip only when a later event shows the gap
                else:
                    start = len(conversation.events)
                sent[conversation.id] = start
                for event in list(conversation.events[start:]):
                    sent[conversation.id] = event.seq
                    yield api.ServerEvent(event=event)
            while True:
                event = await queue.get()
                if event is None:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "stream dropped")
                    return
                conversation = self.state.conversations[event.conversation_id]
                if user not in conversation.members or event.seq <= sent.get(event.conversation_id, 0):
                    continue
                sent[event.conversation_id] = event.seq
                yield api.ServerEvent(event=event)
        finally:
            with contextlib.suppress(ValueError):
                self._streams.remove(queue)
            with contextlib.suppress(ValueError):
                self.state.subscribers.remove(queue)

    # -- MonitoringService --------------------------------------------------------------------------------------

    async def _node_status(self, request: api.GetNodeStatusRequest, context: Any, user: str | None) -> api.NodeStatus:
        return api.NodeStatus(
            node_id=self.node_id,
            role="follower" if self.leader else "leader",
            leader_address=self.leader or self.address,
            client_address=self.address,
        )


class FakeCluster:
    """Several fake nodes over one state; ``async with`` starts and stops them."""

    def __init__(self, size: int = 2) -> None:
        self.state = FakeState()
        self.nodes = [FakeNode(self.state, i + 1) for i in range(size)]

    @property
    def endpoints(self) -> list[str]:
        return [n.address for n in self.nodes]

    async def __aenter__(self) -> FakeCluster:
        for node in self.nodes:
            await node.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes:
            await node.stop()
