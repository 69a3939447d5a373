"""The table of chat.v1 RPC methods and typed helpers that carry betterproto2 messages over grpc.aio.

Each ``Method`` names one RPC (its route, request and response types, whether it streams), whether it is a
replicated write (sent to the leader when known) and whether it needs the session token. ``METHODS`` lists
every RPC of ``proto/chat/v1/*.proto`` (a unit test checks it against the .proto files and the generated
stubs). Messages go over the wire with ``bytes(msg)`` and come back with ``Resp.FromString``; no grpclib.

Example:
    >>> channel = grpc.aio.insecure_channel("127.0.0.1:7001")
    >>> status = await unary(channel, GET_NODE_STATUS, api.GetNodeStatusRequest(), timeout=1.0)
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import betterproto2
import grpc

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import fastparse, protofast

protofast.install()  # cheaper parsing of every response and streamed event

PACKAGE = "chat.v1"

ReqT = TypeVar("ReqT", bound=betterproto2.Message)
RespT = TypeVar("RespT", bound=betterproto2.Message)

Metadata = Sequence[tuple[str, str]]


class Kind(enum.Enum):
    """How an RPC exchanges messages."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    BIDI_STREAM = "bidi_stream"  # served by a dedicated helper (``send_stream``), not by ``unary``/``stream``


@dataclass(frozen=True, slots=True, eq=False)
class Method(Generic[ReqT, RespT]):
    """One RPC of the chat.v1 API.

    Attributes:
        service: the service's name without the package (``MessageService``).
        name: the method's name as in the .proto (``SendMessage``).
        request: the betterproto2 request class.
        response: the betterproto2 response class (of each streamed message for ``SERVER_STREAM``).
        kind: unary or server-streaming.
        write: a replicated write: sent to the leader when it is known.
        auth: needs the session token in the ``authorization`` metadata.
        parse: how response bytes become ``response`` (default ``response.FromString``; the live streams use
            ``fastparse``).
    """

    service: str
    name: str
    request: type[ReqT]
    response: type[RespT]
    kind: Kind = Kind.UNARY
    write: bool = False
    auth: bool = True
    parse: Callable[[bytes], RespT] | None = None

    @property
    def deserializer(self) -> Callable[[bytes], RespT]:
        """The function that turns response bytes into ``response`` messages."""
        return self.parse if self.parse is not None else self.response.FromString

    @property
    def route(self) -> str:
        """The gRPC route, e.g. ``/chat.v1.MessageService/SendMessage``."""
        return f"/{PACKAGE}.{self.service}/{self.name}"

    def __repr__(self) -> str:
        return f"Method({self.route})"


_MS = "MessageService"
_MON = "MonitoringService"
_DATA = "DataService"

# MessageService: accounts and sessions.
REGISTER = Method(_MS, "Register", api.RegisterRequest, api.RegisterResponse, write=True, auth=False)
LOGIN = Method(_MS, "Login", api.LoginRequest, api.LoginResponse, write=True, auth=False)
LOGOUT = Method(_MS, "Logout", api.LogoutRequest, api.LogoutResponse, write=True)
GET_ME = Method(_MS, "GetMe", api.GetMeRequest, api.User)
SET_DISPLAY_NAME = Method(_MS, "SetDisplayName", api.SetDisplayNameRequest, api.User, write=True)
SEARCH_USERS = Method(_MS, "SearchUsers", api.SearchUsersRequest, api.SearchUsersResponse)
# MessageService: conversations.
OPEN_DIRECT = Method(_MS, "OpenDirect", api.OpenDirectRequest, api.Conversation, write=True)
CREATE_ROOM = Method(_MS, "CreateRoom", api.CreateRoomRequest, api.Conversation, write=True)
INVITE = Method(_MS, "Invite", api.InviteRequest, api.Conversation, write=True)
JOIN = Method(_MS, "Join", api.JoinRequest, api.Conversation, write=True)
LEAVE = Method(_MS, "Leave", api.LeaveRequest, api.LeaveResponse, write=True)
LIST_CONVERSATIONS = Method(_MS, "ListConversations", api.ListConversationsRequest, api.ListConversationsResponse)
LIST_PUBLIC_ROOMS = Method(_MS, "ListPublicRooms", api.ListPublicRoomsRequest, api.ListConversationsResponse)
LIST_MEMBERS = Method(_MS, "ListMembers", api.ListMembersRequest, api.ListMembersResponse)
# MessageService: messages.
SEND_MESSAGE = Method(_MS, "SendMessage", api.SendMessageRequest, api.SendMessageResponse, write=True)
SEND_MESSAGE_BATCHES = Method(
    _MS, "SendMessageBatches", api.SendMessageBatch, api.SendMessageResultBatch, kind=Kind.BIDI_STREAM, write=True
)
EDIT_MESSAGE = Method(_MS, "EditMessage", api.EditMessageRequest, api.Event, write=True)
DELETE_MESSAGE = Method(_MS, "DeleteMessage", api.DeleteMessageRequest, api.Event, write=True)
GET_HISTORY = Method(_MS, "GetHistory", api.GetHistoryRequest, api.GetHistoryResponse)
SUBSCRIBE = Method(
    _MS,
    "Subscribe",
    api.SubscribeRequest,
    api.ServerEvent,
    kind=Kind.SERVER_STREAM,
    parse=fastparse.parser(api.ServerEvent),
)
SUBSCRIBE_BATCHES = Method(
    _MS,
    "SubscribeBatches",
    api.SubscribeRequest,
    api.ServerEventBatch,
    kind=Kind.SERVER_STREAM,
    parse=fastparse.parser(api.ServerEventBatch),
)
MARK_READ = Method(_MS, "MarkRead", api.MarkReadRequest, api.MarkReadResponse, write=True)
SET_TYPING = Method(_MS, "SetTyping", api.SetTypingRequest, api.SetTypingResponse, write=True)
SEARCH_MESSAGES = Method(_MS, "SearchMessages", api.SearchMessagesRequest, api.SearchMessagesResponse)
# MonitoringService (no token).
GET_NODE_STATUS = Method(_MON, "GetNodeStatus", api.GetNodeStatusRequest, api.NodeStatus, auth=False)
GET_CLUSTER_STATUS = Method(_MON, "GetClusterStatus", api.GetClusterStatusRequest, api.ClusterStatus, auth=False)
# DataService (administrator token).
KV_GET = Method(_DATA, "Get", api.KvGetRequest, api.KvGetResponse)
KV_PUT = Method(_DATA, "Put", api.KvPutRequest, api.KvPutResponse, write=True)
KV_DELETE = Method(_DATA, "Delete", api.KvDeleteRequest, api.KvDeleteResponse, write=True)
KV_COMPARE_AND_SET = Method(_DATA, "CompareAndSet", api.KvCompareAndSetRequest, api.KvCompareAndSetResponse, write=True)

#: Every RPC of chat.v1, in .proto order per service.
METHODS: tuple[Method[Any, Any], ...] = (
    REGISTER,
    LOGIN,
    LOGOUT,
    GET_ME,
    SET_DISPLAY_NAME,
    SEARCH_USERS,
    OPEN_DIRECT,
    CREATE_ROOM,
    INVITE,
    JOIN,
    LEAVE,
    LIST_CONVERSATIONS,
    LIST_PUBLIC_ROOMS,
    LIST_MEMBERS,
    SEND_MESSAGE,
    SEND_MESSAGE_BATCHES,
    EDIT_MESSAGE,
    DELETE_MESSAGE,
    GET_HISTORY,
    SUBSCRIBE,
    SUBSCRIBE_BATCHES,
    MARK_READ,
    SET_TYPING,
    SEARCH_MESSAGES,
    GET_NODE_STATUS,
    GET_CLUSTER_STATUS,
    KV_GET,
    KV_PUT,
    KV_DELETE,
    KV_COMPARE_AND_SET,
)

#: The methods by route.
BY_ROUTE: dict[str, Method[Any, Any]] = {m.route: m for m in METHODS}


def unary_callable(
    channel: grpc.aio.Channel, method: Method[ReqT, RespT]
) -> grpc.aio.UnaryUnaryMultiCallable[ReqT, RespT]:
    """A grpc.aio multi-callable for a unary ``method`` on ``channel`` (betterproto2 in, betterproto2 out)."""
    if method.kind is not Kind.UNARY:
        raise TypeError(f"{method.route} is not unary")
    return cast(
        "grpc.aio.UnaryUnaryMultiCallable[ReqT, RespT]",
        channel.unary_unary(method.route, request_serializer=bytes, response_deserializer=method.deserializer),
    )


def stream_callable(
    channel: grpc.aio.Channel, method: Method[ReqT, RespT]
) -> grpc.aio.UnaryStreamMultiCallable[ReqT, RespT]:
    """A grpc.aio multi-callable for a server-streaming ``method`` on ``channel``."""
    if method.kind is not Kind.SERVER_STREAM:
        raise TypeError(f"{method.route} is not server-streaming")
    return cast(
        "grpc.aio.UnaryStreamMultiCallable[ReqT, RespT]",
        channel.unary_stream(method.route, request_serializer=bytes, response_deserializer=method.deserializer),
    )


async def unary(
    channel: grpc.aio.Channel,
    method: Method[ReqT, RespT],
    request: ReqT,
    *,
    timeout: float | None = None,
    metadata: Metadata | None = None,
) -> RespT:
    """Make one unary call (no retry); raises ``grpc.aio.AioRpcError`` on failure."""
    call = unary_callable(channel, method)(request, timeout=timeout, metadata=tuple(metadata or ()))
    return await call


def stream(
    channel: grpc.aio.Channel,
    method: Method[ReqT, RespT],
    request: ReqT,
    *,
    timeout: float | None = None,
    metadata: Metadata | None = None,
) -> grpc.aio.UnaryStreamCall[ReqT, RespT]:
    """Open one server-streaming call (no retry); read it with ``await call.read()`` or ``async for``."""
    return stream_callable(channel, method)(request, timeout=timeout, metadata=tuple(metadata or ()))
