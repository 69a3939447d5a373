"""``ChatClient``: the asyncio client of the chat cluster (every MessageService RPC, monitoring, outbox, live events).

Writes carry a request_id made once per user action (uuid4, or the caller's) and reused on every retry, on any
node, so an action is applied at most once. Messages go through the on-disk outbox (see ``outbox``) unless the
client is made with ``use_outbox=False``. ``subscribe`` gives live events across reconnects (see
``subscription``). The client holds no Qt objects; a Qt app drives it through qasync.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import rpc
from chat_client_qt.client.connection import Connection
from chat_client_qt.client.errors import ClientClosed, InvalidInput, Unauthenticated
from chat_client_qt.client.outbox import (
    Outbox,
    OutboxFlusher,
    OutboxItem,
    OutboxListener,
    OutboxState,
    default_data_dir,
)
from chat_client_qt.client.subscription import CursorStore, Subscription

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
SENT_RETENTION_S = 7 * 24 * 3600.0


def new_request_id() -> str:
    """A fresh request_id for one user action (a uuid4)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in session: who, and the bearer token (never shown in ``repr``)."""

    username: str
    token: str = field(repr=False)
    expires_at_ms: int = 0


class ChatClient:
    """The client of one chat cluster, for one account at a time.

    Example:
        >>> async with ChatClient(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"]) as client:
        ...     await client.login("alice", "correct horse")
        ...     room = await client.create_room("general", public=True)
        ...     await client.send(room.id, "hello")
        ...     async for item in client.subscribe():
        ...         print(item)
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        data_dir: str | Path | None = None,
        tls_ca: str | Path | None = None,
        tls_server_name: str | None = None,
        timeout: float = 10.0,
        attempt_timeout: float | None = None,
        use_outbox: bool = True,
        device: str = "chat-client-qt",
        connection: Connection | None = None,
    ) -> None:
        """Make a client (channels open lazily, nothing is sent yet).

        Args:
            endpoints: the nodes' client addresses (``host:port``), or a comma-separated string.
            data_dir: where per-account files live (the outbox); default ``$XDG_DATA_HOME/chat-client-qt`` or
                ``~/.local/share/chat-client-qt``.
            tls_ca: a PEM CA file to verify the nodes with TLS; None: plaintext.
            tls_server_name: the name expected in the nodes' certificates, if not the endpoint's host.
            timeout: the default overall deadline of a call, retries included (seconds).
            attempt_timeout: the deadline of one attempt on one node (default: a third of ``timeout``).
            use_outbox: record messages in the on-disk outbox before sending them (False: send directly, as
                benchmarks may prefer).
            device: the device name sent with ``login``.
            connection: a ready ``Connection`` to use instead of making one from the arguments above.
        """
        self.connection = connection or Connection(
            endpoints, tls_ca=tls_ca, tls_server_name=tls_server_name, timeout=timeout, attempt_timeout=attempt_timeout
        )
        self.timeout = timeout
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.use_outbox = use_outbox
        self.device = device
        self._session: Session | None = None
        self._outbox: Outbox | None = None
        self._flusher: OutboxFlusher | None = None
        self._outbox_listeners: list[OutboxListener] = []
        self._cursors = CursorStore()
        self._subscriptions: list[Subscription] = []
        self._closed = False

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop subscriptions and the outbox flusher, close the outbox and every channel (pending stays on disk)."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.aclose()
        self._subscriptions.clear()
        await self._close_outbox()
        await self.connection.close()

    # -- session ----------------------------------------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The current session (None: not logged in)."""
        return self._session

    @property
    def username(self) -> str | None:
        """The logged-in username."""
        return self._session.username if self._session is not None else None

    def auth_metadata(self, *, required: bool = False) -> tuple[tuple[str, str], ...]:
        """The call metadata carrying the session token (empty without a session, or Unauthenticated if required)."""
        if self._session is None:
            if required:
                raise Unauthenticated("not logged in")
            return ()
        return (("authorization", f"Bearer {self._session.token}"),)

    async def register(
        self, username: str, password: str, display_name: str = "", *, request_id: str | None = None
    ) -> api.RegisterResponse:
        """Create an account (does not log in)."""
        rid = request_id or new_request_id()
        request = api.RegisterRequest(username=username, password=password, display_name=display_name, request_id=rid)
        return await self._call(rpc.REGISTER, request, request_id=rid)

    async def login(
        self, username: str, password: str, *, device: str | None = None, request_id: str | None = None
    ) -> api.LoginResponse:
        """Open a session; stores its token and username, opens the account's outbox and resumes its delivery."""
        rid = request_id or new_request_id()
        request = api.LoginRequest(username=username, password=password, device=device or self.device, request_id=rid)
        response = await self._call(rpc.LOGIN, request, request_id=rid)
        name = response.user.username if response.user is not None and response.user.username else username
        await self.use_session(name, response.token, response.expires_at_ms)
        log.info("logged in as %s", name)
        return response

    async def use_session(self, username: str, token: str, expires_at_ms: int = 0) -> None:
        """Adopt a session saved earlier (e.g. in a keyring) without logging in again; opens the outbox."""
        if self._closed:
            raise ClientClosed("the client is closed")
        previous = self._session
        self._session = Session(username, token, expires_at_ms)
        if previous is not None and previous.username != username:
            await self._close_outbox()
            self._cursors = CursorStore()
        if self.use_outbox:
            self._open_outbox(username)

    async def logout(self, *, request_id: str | None = None) -> api.LogoutResponse:
        """End the session on the cluster and forget it here (the outbox stays on disk for the next login)."""
        rid = request_id or new_request_id()
        try:
            return await self._call(rpc.LOGOUT, api.LogoutRequest(request_id=rid), request_id=rid)
        finally:
            self._session = None
            await self._close_outbox()

    async def me(self) -> api.User:
        """The caller's own account."""
        return await self._call(rpc.GET_ME, api.GetMeRequest())

    async def set_display_name(self, display_name: str, *, request_id: str | None = None) -> api.User:
        """Change the caller's display name."""
        rid = request_id or new_request_id()
        return await self._call(
            rpc.SET_DISPLAY_NAME, api.SetDisplayNameRequest(display_name=display_name, request_id=rid), request_id=rid
        )

    async def search_users(self, query: str, *, limit: int = 0) -> api.SearchUsersResponse:
        """Users whose username or display name contains ``query``, with presence (limit 0: the server's 20)."""
        return await self._call(rpc.SEARCH_USERS, api.SearchUsersRequest(query=query, limit=limit))

    # -- conversations ----------------------------------------------------------------------------------------

    async def open_direct(self, username: str, *, request_id: str | None = None) -> api.Conversation:
        """Open (or get) the direct conversation with ``username``."""
        rid = request_id or new_request_id()
        return await self._call(
            rpc.OPEN_DIRECT, api.OpenDirectRequest(username=username, request_id=rid), request_id=rid
        )

    async def create_room(
        self,
        name: str,
        *,
        topic: str = "",
        public: bool = False,
        members: Iterable[str] = (),
        request_id: str | None = None,
    ) -> api.Conversation:
        """Create a room with the caller as its first member and ``members`` invited."""
        rid = request_id or new_request_id()
        request = api.CreateRoomRequest(name=name, topic=topic, public=public, members=list(members), request_id=rid)
        return await self._call(rpc.CREATE_ROOM, request, request_id=rid)

    async def invite(
        self, conversation_id: str, usernames: Iterable[str], *, request_id: str | None = None
    ) -> api.Conversation:
        """Add users to a room the caller belongs to."""
        rid = request_id or new_request_id()
        request = api.InviteRequest(conversation_id=conversation_id, usernames=list(usernames), request_id=rid)
        return await self._call(rpc.INVITE, request, request_id=rid)

    async def join(self, conversation_id: str, *, request_id: str | None = None) -> api.Conversation:
        """Join a public room."""
        rid = request_id or new_request_id()
        return await self._call(
            rpc.JOIN, api.JoinRequest(conversation_id=conversation_id, request_id=rid), request_id=rid
        )

    async def leave(self, conversation_id: str, *, request_id: str | None = None) -> api.LeaveResponse:
        """Leave a room."""
        rid = request_id or new_request_id()
        return await self._call(
            rpc.LEAVE, api.LeaveRequest(conversation_id=conversation_id, request_id=rid), request_id=rid
        )

    async def conversations(self) -> api.ListConversationsResponse:
        """The caller's conversations, most recently active first."""
        return await self._call(rpc.LIST_CONVERSATIONS, api.ListConversationsRequest())

    async def public_rooms(self, query: str = "", *, limit: int = 0) -> api.ListConversationsResponse:
        """Public rooms whose name contains ``query`` (limit 0: the server's 50)."""
        return await self._call(rpc.LIST_PUBLIC_ROOMS, api.ListPublicRoomsRequest(query=query, limit=limit))

    async def members(self, conversation_id: str) -> api.ListMembersResponse:
        """The members of a conversation, with presence."""
        return await self._call(rpc.LIST_MEMBERS, api.ListMembersRequest(conversation_id=conversation_id))

    # -- messages ---------------------------------------------------------------------------------------------

    async def history(
        self,
        conversation_id: str,
        *,
        before_seq: int = 0,
        after_seq: int = 0,
        limit: int = 0,
        consistency: api.ReadConsistency = api.ReadConsistency.LINEARIZABLE,
        min_applied: int = 0,
    ) -> api.GetHistoryResponse:
        """A page of a conversation's events, oldest first (before ``before_seq``, after ``after_seq``, or newest)."""
        request = api.GetHistoryRequest(
            conversation_id=conversation_id,
            before_seq=before_seq,
            after_seq=after_seq,
            limit=limit,
            consistency=consistency,
            min_applied=min_applied,
        )
        return await self._call(rpc.GET_HISTORY, request)

    async def mark_read(self, conversation_id: str, seq: int, *, request_id: str | None = None) -> api.MarkReadResponse:
        """Move the caller's read cursor of a conversation forward to ``seq``."""
        rid = request_id or new_request_id()
        request = api.MarkReadRequest(conversation_id=conversation_id, seq=seq, request_id=rid)
        return await self._call(rpc.MARK_READ, request, request_id=rid)

    async def set_typing(self, conversation_id: str, typing: bool = True) -> api.SetTypingResponse:
        """Say the caller is (or stopped) typing in a conversation."""
        return await self._call(rpc.SET_TYPING, api.SetTypingRequest(conversation_id=conversation_id, typing=typing))

    async def search_messages(
        self, query: str, *, conversation_id: str = "", limit: int = 0
    ) -> api.SearchMessagesResponse:
        """Full-text search over the caller's conversations (or one), newest first."""
        request = api.SearchMessagesRequest(query=query, conversation_id=conversation_id, limit=limit)
        return await self._call(rpc.SEARCH_MESSAGES, request)

    async def send(
        self, conversation_id: str, body: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> api.SendMessageResponse:
        """Send a message; returns the server's answer (``duplicate`` when a retry found it applied).

        With the outbox, the message is first recorded on disk, then delivered in order after the conversation's
        older pending messages, with the same request_id on every attempt.

        Raises:
            MessageQueued: (outbox) no node answered within ``timeout``; it stays pending and is delivered later.
            Unavailable, OutcomeUnknown: (no outbox) no node answered; retry with ``error.request_id``.
            ChatError: the server rejected it (with the outbox, it is then marked failed).
        """
        _check_body(body)
        if self._flusher is None:
            if self.use_outbox and self._session is None:
                raise Unauthenticated("not logged in")
            rid = request_id or new_request_id()
            request = api.SendMessageRequest(conversation_id=conversation_id, body=body, request_id=rid)
            return await self._call(rpc.SEND_MESSAGE, request, request_id=rid, timeout=timeout)
        item = await self.enqueue(conversation_id, body, request_id=request_id)
        return await self._flusher.wait(item.request_id, self.timeout if timeout is None else timeout)

    async def enqueue(self, conversation_id: str, body: str, *, request_id: str | None = None) -> OutboxItem:
        """Record a message in the outbox and return at once; the flusher delivers it (watch with a listener)."""
        _check_body(body)
        if self._outbox is None or self._flusher is None:
            raise Unauthenticated("not logged in" if self._session is None else "the outbox is disabled")
        item = self._outbox.add(conversation_id, body, request_id=request_id)
        self._flusher.notify(item.request_id)
        self._flusher.kick(conversation_id)
        return item

    async def edit(self, conversation_id: str, seq: int, body: str, *, request_id: str | None = None) -> api.Event:
        """Replace the body of one of the caller's messages; returns the EDITED event."""
        _check_body(body)
        rid = request_id or new_request_id()
        request = api.EditMessageRequest(conversation_id=conversation_id, seq=seq, body=body, request_id=rid)
        return await self._call(rpc.EDIT_MESSAGE, request, request_id=rid)

    async def delete(self, conversation_id: str, seq: int, *, request_id: str | None = None) -> api.Event:
        """Delete one of the caller's messages; returns the DELETED event."""
        rid = request_id or new_request_id()
        request = api.DeleteMessageRequest(conversation_id=conversation_id, seq=seq, request_id=rid)
        return await self._call(rpc.DELETE_MESSAGE, request, request_id=rid)

    # -- live events ------------------------------------------------------------------------------------------

    def subscribe(
        self,
        *,
        cursors: Mapping[str, int] | None = None,
        baseline: bool = True,
        idle_timeout: float = 30.0,
        include_status: bool = False,
    ) -> Subscription:
        """Live events (``Event``, ``TypingSignal``, ``PresenceSignal``, ``Heartbeat``) across reconnects.

        Args:
            cursors: cursors to seed first (the last seq seen per conversation, e.g. from a cache).
            baseline: list the conversations at each (re)connect so every one has a cursor (see ``subscription``).
            idle_timeout: reopen the stream when no message (heartbeats included) came for this long.
            include_status: also yield ``StreamStatus`` when the stream connects or is lost.
        """
        if cursors:
            self.seed_cursors(cursors)
        if self._closed:
            raise ClientClosed("the client is closed")
        subscription = Subscription(
            self, self._cursors, baseline=baseline, idle_timeout=idle_timeout, include_status=include_status
        )
        self._subscriptions = [s for s in self._subscriptions if not s.closed]
        self._subscriptions.append(subscription)
        return subscription

    @property
    def cursors(self) -> dict[str, int]:
        """The last seq delivered per conversation (what a cache should save)."""
        return self._cursors.snapshot()

    def seed_cursors(self, cursors: Mapping[str, int]) -> None:
        """Advance the cursors (e.g. from a cache); subscriptions started later resume from them."""
        self._cursors.seed(cursors)

    def add_cursor_listener(self, listener: Callable[[str, int], None]) -> Callable[[], None]:
        """Call ``listener(conversation_id, seq)`` when a cursor advances; returns a function removing it."""
        return self._cursors.add_listener(listener)

    # -- outbox -----------------------------------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox | None:
        """The open outbox of the logged-in account (None: not logged in, or disabled)."""
        return self._outbox

    def pending(self, conversation_id: str | None = None) -> list[OutboxItem]:
        """Messages waiting for delivery, oldest first."""
        return self._outbox.pending(conversation_id) if self._outbox is not None else []

    def failed(self) -> list[OutboxItem]:
        """Messages the server rejected (retry or discard them)."""
        return self._outbox.failed() if self._outbox is not None else []

    async def retry(self, request_id: str) -> OutboxItem:
        """Send a failed message again (same request_id); returns its new (pending) state.

        Raises:
            KeyError: no such message in the outbox.
            ValueError: it was sent already.
        """
        if self._outbox is None or self._flusher is None:
            raise Unauthenticated("not logged in")
        item = self._outbox.requeue(request_id)
        self._flusher.notify(request_id)
        if item.state is OutboxState.PENDING:
            self._flusher.kick(item.conversation_id)
        return item

    def discard(self, request_id: str) -> bool:
        """Forget a failed (or sent) message; returns whether it was removed."""
        return self._outbox.discard(request_id) if self._outbox is not None else False

    def add_outbox_listener(self, listener: OutboxListener) -> Callable[[], None]:
        """Call ``listener(item)`` whenever an outbox message changes state; returns a function removing it."""
        self._outbox_listeners.append(listener)

        def remove() -> None:
            if listener in self._outbox_listeners:
                self._outbox_listeners.remove(listener)

        return remove

    async def flush(self, timeout: float | None = None) -> int:
        """Wait until the outbox has nothing pending (or ``timeout``); returns how many are still pending."""
        if self._flusher is None or self._outbox is None:
            return 0
        self._flusher.kick_all()
        await self._flusher.wait_idle(self.timeout if timeout is None else timeout)
        return len(self._outbox.pending())

    # -- monitoring -------------------------------------------------------------------------------------------

    async def node_status(self, endpoint: str | None = None, *, timeout: float | None = None) -> api.NodeStatus:
        """The Raft status of ``endpoint`` (or of whichever node answers); learns the leader from it."""
        status = await self.connection.call(
            rpc.GET_NODE_STATUS, api.GetNodeStatusRequest(), endpoint=endpoint, timeout=timeout
        )
        self.connection.learn(status)
        return status

    async def cluster_status(self, *, timeout_ms: int = 0, timeout: float | None = None) -> api.ClusterStatus:
        """Every node's status as one node sees it (``timeout_ms`` per node; 0: the server's 1000)."""
        status = await self.connection.call(
            rpc.GET_CLUSTER_STATUS, api.GetClusterStatusRequest(timeout_ms=timeout_ms), timeout=timeout
        )
        self.connection.learn(status)
        return status

    # -- internals --------------------------------------------------------------------------------------------

    async def _call(
        self,
        method: rpc.Method[rpc.ReqT, rpc.RespT],
        request: rpc.ReqT,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> rpc.RespT:
        if self._closed:
            raise ClientClosed("the client is closed", request_id=request_id)
        metadata = self.auth_metadata(required=True) if method.auth else ()
        return await self.connection.call(method, request, metadata=metadata, timeout=timeout, request_id=request_id)

    async def _deliver(self, item: OutboxItem) -> api.SendMessageResponse:
        request = api.SendMessageRequest(
            conversation_id=item.conversation_id, body=item.body, request_id=item.request_id
        )
        return await self._call(rpc.SEND_MESSAGE, request, request_id=item.request_id)

    def _open_outbox(self, username: str) -> None:
        if self._outbox is not None and self._flusher is not None:
            self._flusher.resume()
            self._flusher.kick_all()
            return
        self._outbox = Outbox.for_account(self.data_dir, username)
        pruned = self._outbox.prune_sent(SENT_RETENTION_S)
        if pruned:
            log.debug("outbox: forgot %d old sent messages", pruned)
        self._flusher = OutboxFlusher(self._outbox, self._deliver)
        self._flusher.add_listener(self._outbox_changed)
        self._flusher.start()

    def _outbox_changed(self, item: OutboxItem) -> None:
        for listener in list(self._outbox_listeners):
            try:
                listener(item)
            except Exception:
                log.exception("outbox listener failed")

    async def _close_outbox(self) -> None:
        flusher, self._flusher = self._flusher, None
        outbox, self._outbox = self._outbox, None
        if flusher is not None:
            await flusher.close()
        if outbox is not None:
            outbox.close()


def _check_body(body: str) -> None:
    size = len(body.encode("utf-8"))
    if not 1 <= size <= MAX_BODY_BYTES:
        raise InvalidInput(f"body: must be 1 to {MAX_BODY_BYTES} bytes of UTF-8 (got {size})")
