"""``MessageHandlers``: the ``chat.v1.MessageService`` handlers — accounts, conversations, messages, delivery.

Each write validates its input, makes everything non-deterministic (ids, hashes, tokens, times) here, and
proposes one command; it answers only once the command is applied on this node (so committed on a
majority). Reads are linearizable (ReadIndex) unless the request opts into a follower read.

Presence is a replicated lease: while a user has a subscription open on a node, that node renews the user's
lease (``PRESENCE_LEASE_S``) every ``PRESENCE_RENEW_S`` — one log entry per user every few seconds, whatever
the user does — and ends it when the user's last stream on the node closes. Typing is a replicated signal,
throttled here to one entry per user and conversation every ``TYPING_THROTTLE_S``; it expires by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import pydantic

from chat_server import api, commands, convert
from chat_server._gen.pb.chat.v1 import chat_pb2 as pb
from chat_server.auth import Passwords, bearer_token, new_token, token_hash
from chat_server.errors import ChatError
from chat_server.fanout import BATCH_LIMIT, Fanout, Item
from chat_server.services.context import CallContext, ItemContext, ServiceContext
from chat_server.store import EventRow, PresenceNotice, TypingNotice
from raft_grpc.streams import answers_in_completion_order

log = logging.getLogger(__name__)

M = TypeVar("M", bound=pydantic.BaseModel)

MIN_PASSWORD, MAX_PASSWORD = 8, 1024
PRESENCE_LEASE_S = 45.0
PRESENCE_RENEW_S = 15.0
TYPING_THROTTLE_S = 3.0
TYPING_TTL_S = 6.0
HEARTBEAT_S = 10.0
ENCODED_CACHE = 4096
MAX_SEND_BATCH = 256
"""Most items one ``SendMessageBatch`` may carry, and most results one ``SendMessageResultBatch`` carries."""
SEND_BATCHES_HEADER = "chat-send-batches"
"""Initial metadata of a ``SendMessageBatches`` call: proof for the client that this server serves it."""


def build(model: type[M], **fields: Any) -> M:
    """``model(**fields)``, or INVALID_ARGUMENT naming the first field at fault and why."""
    try:
        return model(**fields)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or model.__name__
        raise ChatError.invalid(where, str(first.get("msg", "invalid"))) from None


def _limit(value: int, default: int, maximum: int) -> int:
    return default if value == 0 else min(value, maximum)


class MessageHandlers:
    """The handlers of ``chat.v1.MessageService`` on one node."""

    def __init__(
        self,
        ctx: ServiceContext,
        fanout: Fanout,
        passwords: Passwords,
        *,
        token_ttl_s: float,
        max_subscribers: int = 10_000,
        observe_send: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """Handlers over ``ctx``; ``observe_send`` (the metrics' RPC observer) counts each batched send.

        Each send carried by ``SendMessageBatches`` is reported as a ``SendMessage`` call, so dashboards count
        sends whatever their transport.
        """
        self.ctx = ctx
        self.max_subscribers = max_subscribers
        self.fanout = fanout
        self.passwords = passwords
        self.token_ttl_ms = int(token_ttl_s * 1000)
        self._observe_send = observe_send
        self._typing_sent: dict[tuple[str, str], float] = {}
        # Each live event is encoded once for all the streams it goes to (key: its identity and version).
        self._encoded: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._streams: dict[str, int] = {}  # username -> open streams on this node
        self._presence_tasks: dict[str, asyncio.Task[None]] = {}

    # -- accounts -------------------------------------------------------------------------------------------

    async def register(self, request: api.RegisterRequest, context: grpc.aio.ServicerContext) -> api.RegisterResponse:
        """Hash the password (argon2id, before proposing) and create the account."""
        ctx = self.ctx
        request_id = ctx.request_id(request.request_id)
        _check_password(request.password)
        probe = build(
            commands.Register,
            request_id=request_id,
            username=request.username,
            password_hash="-",
            display_name=request.display_name or request.username,
        )
        command = probe.model_copy(update={"password_hash": await self.passwords.hash(request.password)})
        user = await ctx.propose(command, context)
        return api.RegisterResponse(user=convert.user(user, ctx.now_ms()))

    async def login(self, request: api.LoginRequest, context: grpc.aio.ServicerContext) -> api.LoginResponse:
        """Check the password against the replicated hash and open a replicated session."""
        ctx = self.ctx
        ctx.request_id(request.request_id)  # checked for shape; sessions need no dedup (see below)
        if not request.username or not request.password:
            raise ChatError.invalid("username/password", "both are required")
        await ctx.linearizable(context)
        stored = ctx.queries.password_hash(request.username)
        # The same answer for an unknown user and a wrong password, after the same work.
        ok = await self.passwords.verify(stored or _DUMMY_HASH, request.password) and stored is not None
        if not ok:
            raise ChatError.unauthenticated("wrong username or password")
        ctx.check_rate(request.username)
        token = new_token()
        expires = ctx.now_ms() + self.token_ttl_ms
        # Each attempt opens its own session (a fresh request id): a retry after an unknown outcome gets a
        # new token, and an orphaned session just expires.
        command = build(
            commands.Login,
            request_id=uuid.uuid4().hex,
            username=request.username,
            token_hash=token_hash(token),
            device=request.device[:64],
            expires_at_ms=expires,
        )
        await ctx.propose(command, context)
        user = ctx.queries.user(request.username)
        if user is None:  # pragma: no cover - the login was just applied on this node
            raise ChatError(grpc.StatusCode.INTERNAL, "the account vanished during login; retry")
        return api.LoginResponse(token=token, user=convert.user(user, ctx.now_ms()), expires_at_ms=expires)

    async def logout(self, request: api.LogoutRequest, context: grpc.aio.ServicerContext) -> api.LogoutResponse:
        """End the caller's session on every node."""
        await self.ctx.caller(context)
        token = bearer_token(context.invocation_metadata())
        assert token is not None
        command = build(
            commands.Logout, request_id=self.ctx.request_id(request.request_id), token_hash=token_hash(token)
        )
        await self.ctx.propose(command, context)
        return api.LogoutResponse()

    async def get_me(self, request: api.GetMeRequest, context: grpc.aio.ServicerContext) -> api.User:
        """The caller's account."""
        return self._user(await self.ctx.caller(context))

    async def set_display_name(self, request: api.SetDisplayNameRequest, context: grpc.aio.ServicerContext) -> api.User:
        """Change the caller's display name."""
        me = await self._writer(context)
        command = build(
            commands.SetDisplayName,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            display_name=request.display_name,
        )
        await self.ctx.propose(command, context)
        return self._user(me)

    async def search_users(
        self, request: api.SearchUsersRequest, context: grpc.aio.ServicerContext
    ) -> api.SearchUsersResponse:
        """Users matching the query."""
        await self.ctx.caller(context)
        if len(request.query) > 64:
            raise ChatError.invalid("query", "at most 64 characters")
        now = self.ctx.now_ms()
        rows = self.ctx.queries.search_users(request.query, _limit(request.limit, 20, 100))
        return api.SearchUsersResponse(users=[convert.user(r, now) for r in rows])

    def _user(self, username: str) -> api.User:
        row = self.ctx.queries.user(username)
        if row is None:
            raise ChatError(grpc.StatusCode.NOT_FOUND, f"no user {username!r}")
        return convert.user(row, self.ctx.now_ms())

    async def _writer(self, context: CallContext) -> str:
        me = await self.ctx.caller(context)
        self.ctx.check_rate(me)
        return me

    # -- conversations --------------------------------------------------------------------------------------

    async def open_direct(self, request: api.OpenDirectRequest, context: grpc.aio.ServicerContext) -> api.Conversation:
        """The direct conversation with one other user (created on first use)."""
        me = await self._writer(context)
        peer = request.username
        if peer == me:
            raise ChatError.invalid("username", "a direct conversation needs another user")
        command = build(
            commands.OpenDirect,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            peer=peer,
            conversation_id="dm:" + ":".join(sorted([me, peer])),
        )
        return self._conversation_for(me, await self.ctx.propose(command, context))

    async def create_room(self, request: api.CreateRoomRequest, context: grpc.aio.ServicerContext) -> api.Conversation:
        """A new room with the caller and the invited members."""
        me = await self._writer(context)
        command = build(
            commands.CreateRoom,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            conversation_id="r:" + uuid.uuid4().hex,
            name=request.name,
            topic=request.topic,
            public=request.public,
            members=[m for m in dict.fromkeys(request.members) if m != me],
        )
        return self._conversation_for(me, await self.ctx.propose(command, context))

    async def invite(self, request: api.InviteRequest, context: grpc.aio.ServicerContext) -> api.Conversation:
        """Add users to a room."""
        me = await self._writer(context)
        command = build(
            commands.Invite,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            conversation_id=request.conversation_id,
            usernames=list(dict.fromkeys(request.usernames)),
        )
        return self._conversation_for(me, await self.ctx.propose(command, context))

    async def join(self, request: api.JoinRequest, context: grpc.aio.ServicerContext) -> api.Conversation:
        """Join a public room."""
        me = await self._writer(context)
        command = build(
            commands.Join,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            conversation_id=request.conversation_id,
        )
        return self._conversation_for(me, await self.ctx.propose(command, context))

    async def leave(self, request: api.LeaveRequest, context: grpc.aio.ServicerContext) -> api.LeaveResponse:
        """Leave a room."""
        me = await self._writer(context)
        command = build(
            commands.Leave,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            conversation_id=request.conversation_id,
        )
        result = await self.ctx.propose(command, context)
        return api.LeaveResponse(seq=convert.seq_of(result))

    async def list_conversations(
        self, request: api.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListConversationsResponse:
        """The caller's conversations, most recently active first."""
        me = await self.ctx.caller(context)
        await self.ctx.linearizable(context)
        rows = self.ctx.queries.conversations_for(me)
        return api.ListConversationsResponse(conversations=[convert.conversation(r) for r in rows])

    async def list_public_rooms(
        self, request: api.ListPublicRoomsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListConversationsResponse:
        """Public rooms matching the query."""
        await self.ctx.caller(context)
        if len(request.query) > 64:
            raise ChatError.invalid("query", "at most 64 characters")
        await self.ctx.linearizable(context)
        rows = self.ctx.queries.public_rooms(request.query, _limit(request.limit, 50, 200))
        return api.ListConversationsResponse(conversations=[convert.conversation(r) for r in rows])

    async def list_members(
        self, request: api.ListMembersRequest, context: grpc.aio.ServicerContext
    ) -> api.ListMembersResponse:
        """A conversation's members, with presence."""
        me = await self.ctx.caller(context)
        await self.ctx.linearizable(context)
        self._require_member(request.conversation_id, me)
        now = self.ctx.now_ms()
        return api.ListMembersResponse(
            members=[convert.user(r, now) for r in self.ctx.queries.members(request.conversation_id)]
        )

    def _require_member(self, conversation_id: str, username: str) -> None:
        if not conversation_id:
            raise ChatError.invalid("conversation_id", "required")
        if self.ctx.queries.conversation(conversation_id) is None:
            raise ChatError(grpc.StatusCode.NOT_FOUND, f"no conversation {conversation_id!r}")
        if not self.ctx.queries.is_member(conversation_id, username):
            raise ChatError(grpc.StatusCode.PERMISSION_DENIED, f"you are not a member of {conversation_id!r}")

    def _conversation_for(self, username: str, result: object) -> api.Conversation:
        conversation_id = convert.conversation_id_of(result)
        for row in self.ctx.queries.conversations_for(username):
            if row.id == conversation_id:
                return convert.conversation(row)
        found = self.ctx.queries.conversation(conversation_id, username)
        if found is None:  # pragma: no cover - it was just applied on this node
            raise ChatError(grpc.StatusCode.NOT_FOUND, f"no conversation {conversation_id!r}")
        return convert.conversation(found)

    # -- messages -------------------------------------------------------------------------------------------

    async def send_message(
        self, request: api.SendMessageRequest, context: grpc.aio.ServicerContext
    ) -> api.SendMessageResponse | bytes:
        """Post a message (exactly once per request_id); the answer comes encoded (see ``convert``)."""
        event, duplicate = await self._post(request.conversation_id, request.body, request.request_id, context)
        return convert.send_response_bytes(event, duplicate)

    async def send_message_batches(
        self, batches: AsyncIterator[pb.SendMessageBatch], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Serve many SendMessage calls over one stream: each item as its own call, answers batched when ready.

        Each item is authenticated, rate-limited, validated and proposed exactly as a ``SendMessage`` call with
        its token and timeout; its result is the response or the error (with NOT_LEADER's leader) that call
        would have had. A malformed or oversized stream message ends the stream with INVALID_ARGUMENT once the
        items before it are answered.
        """
        await context.send_initial_metadata(((SEND_BATCHES_HEADER, "1"),))  # the client waits for it before it sends
        refusal: list[ChatError] = []

        async def items() -> AsyncIterator[list[pb.SendMessageItem]]:
            try:
                async for batch in batches:
                    if len(batch.items) > MAX_SEND_BATCH:
                        raise ChatError.invalid("items", f"at most {MAX_SEND_BATCH} per SendMessageBatch")
                    yield list(batch.items)
            except ChatError as exc:
                refusal.append(exc)

        answers = answers_in_completion_order(items(), self._send_item, max_batch=MAX_SEND_BATCH)
        async with contextlib.aclosing(answers) as ready:
            async for results in ready:
                yield convert.send_result_batch_bytes(results)
        if refusal:
            raise refusal[0]

    async def _send_item(self, item: pb.SendMessageItem) -> pb.SendMessageResult:
        """The result of one batched send: its response, or the error its SendMessage call would have had."""
        start = time.monotonic()
        context = ItemContext(item.token, item.timeout_ms / 1000 if item.timeout_ms else None)
        request = item.request
        try:
            event, duplicate = await self._post(request.conversation_id, request.body, request.request_id, context)
        except Exception as exc:
            error = self.ctx.error(exc)
            if error.code is grpc.StatusCode.INTERNAL:
                log.exception("a batched SendMessage failed")
            self._observed_send(error.code.name, start)
            return convert.send_result_error(item.id, error)
        self._observed_send("OK", start)
        return convert.send_result(item.id, event, duplicate)

    def _observed_send(self, code: str, start: float) -> None:
        if self._observe_send is not None:
            self._observe_send("SendMessage", code, time.monotonic() - start)

    async def _post(
        self, conversation_id: str, body: str, request_id: str, context: CallContext
    ) -> tuple[EventRow, bool]:
        """Propose the caller's message; the event and whether the request_id had been applied before."""
        me = await self._writer(context)
        command = build(
            commands.Send,
            request_id=self.ctx.request_id(request_id),
            actor=me,
            conversation_id=conversation_id,
            body=body,
        )
        return convert.event_result(await self.ctx.propose(command, context))

    async def edit_message(self, request: api.EditMessageRequest, context: grpc.aio.ServicerContext) -> api.Event:
        """Replace one of the caller's messages."""
        me = await self._writer(context)
        command = build(
            commands.Edit,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            conversation_id=request.conversation_id,
            seq=request.seq,
            body=request.body,
        )
        event, _ = convert.event_result(await self.ctx.propose(command, context))
        return convert.event(event)

    async def delete_message(self, request: api.DeleteMessageRequest, context: grpc.aio.ServicerContext) -> api.Event:
        """Delete one of the caller's messages."""
        me = await self._writer(context)
        command = build(
            commands.Delete,
            request_id=self.ctx.request_id(request.request_id),
            actor=me,
            conversation_id=request.conversation_id,
            seq=request.seq,
        )
        event, _ = convert.event_result(await self.ctx.propose(command, context))
        return convert.event(event)

    async def get_history(
        self, request: api.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> api.GetHistoryResponse:
        """A page of a conversation's events, oldest first."""
        me = await self.ctx.caller(context)
        if request.before_seq and request.after_seq:
            raise ChatError.invalid("before_seq/after_seq", "give at most one of them")
        if request.consistency == api.ReadConsistency.FOLLOWER:
            await self.ctx.at_least(request.min_applied, context)
        else:
            await self.ctx.linearizable(context)
        self._require_member(request.conversation_id, me)
        queries = self.ctx.queries
        rows, more = queries.events(
            request.conversation_id,
            before_seq=request.before_seq,
            after_seq=request.after_seq,
            limit=_limit(request.limit, 50, 500),
        )
        return api.GetHistoryResponse(
            events=[convert.event(r) for r in rows],
            has_more=more,
            last_seq=queries.last_seq(request.conversation_id),
            applied_index=self.ctx.node.applied_index,
        )

    async def mark_read(self, request: api.MarkReadRequest, context: grpc.aio.ServicerContext) -> api.MarkReadResponse:
        """Move the caller's read cursor forward."""
        me = await self._writer(context)
        command = build(commands.MarkRead, actor=me, conversation_id=request.conversation_id, seq=request.seq)
        result = await self.ctx.propose(command, context)
        read_seq, unread = convert.read_result(result)
        return api.MarkReadResponse(read_seq=read_seq, unread_count=unread)

    async def search_messages(
        self, request: api.SearchMessagesRequest, context: grpc.aio.ServicerContext
    ) -> api.SearchMessagesResponse:
        """Full-text search over the caller's conversations."""
        me = await self.ctx.caller(context)
        if not 1 <= len(request.query) <= 256:
            raise ChatError.invalid("query", "1 to 256 characters")
        await self.ctx.linearizable(context)
        if request.conversation_id:
            self._require_member(request.conversation_id, me)
        rows = self.ctx.queries.search_messages(
            me, request.query, request.conversation_id or None, _limit(request.limit, 20, 100)
        )
        return api.SearchMessagesResponse(messages=[convert.event(r) for r in rows])

    # -- typing and presence --------------------------------------------------------------------------------

    async def set_typing(
        self, request: api.SetTypingRequest, context: grpc.aio.ServicerContext
    ) -> api.SetTypingResponse:
        """Signal typing; at most one replicated signal per user and conversation every few seconds."""
        me = await self.ctx.caller(context)
        self._require_member(request.conversation_id, me)
        key = (me, request.conversation_id)
        now = time.monotonic()
        last = self._typing_sent.get(key)
        if request.typing and last is not None and now - last < TYPING_THROTTLE_S:
            return api.SetTypingResponse()  # absorbed: the last signal has not expired yet
        if not request.typing and last is None:
            return api.SetTypingResponse()  # nothing to stop
        if request.typing:
            self._typing_sent[key] = now
        else:
            self._typing_sent.pop(key, None)
        if len(self._typing_sent) > 10_000:
            self._typing_sent = {k: t for k, t in self._typing_sent.items() if now - t < TYPING_THROTTLE_S}
        command = build(
            commands.Typing,
            actor=me,
            conversation_id=request.conversation_id,
            typing=request.typing,
            expires_at_ms=self.ctx.now_ms() + int(TYPING_TTL_S * 1000),
        )
        await self.ctx.propose(command, context)
        return api.SetTypingResponse()

    async def subscribe(self, request: api.SubscribeRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Every event after the cursors, then live events, typing and presence, with periodic heartbeats."""
        async with contextlib.aclosing(self._subscription(request, context, max_batch=1)) as batches:
            async for batch in batches:
                for item in batch:
                    yield self._server_event(item)

    async def subscribe_batches(
        self, request: api.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """``subscribe``'s items, those ready together in one ``ServerEventBatch`` (encoded from cached bytes)."""
        async with contextlib.aclosing(self._subscription(request, context, max_batch=BATCH_LIMIT)) as batches:
            async for batch in batches:
                yield convert.server_event_batch_bytes(map(self._server_event, batch))

    async def _subscription(
        self, request: api.SubscribeRequest, context: grpc.aio.ServicerContext, *, max_batch: int
    ) -> AsyncGenerator[list[Item | None], None]:
        me = await self.ctx.caller(context)
        if len(self.fanout) >= self.max_subscribers:
            raise ChatError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this node serves its maximum of {self.max_subscribers} subscriptions; use another node",
            )
        cursors: dict[str, int] = {}
        for cursor in request.cursors:
            cursors[cursor.conversation_id] = cursor.after_seq
        sub = self.fanout.open(me, cursors)
        self._stream_opened(me)
        try:
            async with contextlib.aclosing(
                self.fanout.stream_batches(sub, heartbeat_s=HEARTBEAT_S, max_batch=max_batch)
            ) as batches:
                async for batch in batches:
                    yield batch
        finally:
            self._stream_closed(me)

    def _server_event(self, item: EventRow | TypingNotice | PresenceNotice | None) -> bytes:
        """``item`` as an encoded ``ServerEvent``; an event or signal is encoded once for all this node's streams."""
        if item is None:
            status = self.ctx.node
            heartbeat = api.Heartbeat(
                node_id=status.id, applied_index=status.applied_index, leader_id=status.leader, term=_term(status)
            )
            return bytes(api.ServerEvent(heartbeat=heartbeat))
        if isinstance(item, TypingNotice):
            return self._encoded_once((item,), lambda: convert.typing_event_bytes(item))
        if isinstance(item, PresenceNotice):
            now = self.ctx.now_ms()
            online = item.online and item.expires_at_ms > now
            return self._encoded_once((item, online), lambda: convert.presence_event_bytes(item, now))
        key = (item.conversation_id, item.seq, item.edited_at_ms, item.deleted)
        return self._encoded_once(key, lambda: convert.server_event_bytes(item))

    def _encoded_once(self, key: tuple[object, ...], encode: Callable[[], bytes]) -> bytes:
        data = self._encoded.get(key)
        if data is None:
            data = self._encoded[key] = encode()
            if len(self._encoded) > ENCODED_CACHE:
                self._encoded.popitem(last=False)
        return data

    def _stream_opened(self, username: str) -> None:
        self._streams[username] = self._streams.get(username, 0) + 1
        if username not in self._presence_tasks:
            self._presence_tasks[username] = asyncio.create_task(self._keep_present(username))

    def _stream_closed(self, username: str) -> None:
        left = self._streams.get(username, 1) - 1
        if left > 0:
            self._streams[username] = left
            return
        self._streams.pop(username, None)
        task = self._presence_tasks.pop(username, None)
        if task is not None:
            task.cancel()
        asyncio.create_task(self._set_presence(username, online=False))  # noqa: RUF006 - fire and forget

    async def _keep_present(self, username: str) -> None:
        """Renew ``username``'s presence lease while it has a stream here (skipping renewals others made).

        After the first renewal (at once: the user comes online now) the next check comes after a random part
        of ``PRESENCE_RENEW_S``, so users whose streams opened together (a node restart, a reconnect wave) do not
        all renew in the same instant: each renewal is a log entry and a signal to every co-member's stream.
        """
        delay = random.uniform(0.0, PRESENCE_RENEW_S)
        while True:
            row = self.ctx.queries.user(username)
            now = self.ctx.now_ms()
            if row is None or row.presence_expires_ms - now < (PRESENCE_LEASE_S - PRESENCE_RENEW_S) * 1000:
                await self._set_presence(username, online=True)
            await asyncio.sleep(delay)
            delay = PRESENCE_RENEW_S

    async def _set_presence(self, username: str, *, online: bool) -> None:
        expires = self.ctx.now_ms() + int(PRESENCE_LEASE_S * 1000) if online else 0
        command = commands.Presence(actor=username, online=online, expires_at_ms=expires)
        try:
            await self.ctx.node.propose(commands.encode(command), timeout=PRESENCE_RENEW_S, idempotent=True)
        except Exception as exc:  # presence is best effort: the next renewal tries again
            log.debug("presence update for a user failed: %s", type(exc).__name__)

    async def close(self) -> None:
        """Stop the presence renewals (at shutdown)."""
        for task in self._presence_tasks.values():
            task.cancel()
        self._presence_tasks.clear()


def _term(node: Any) -> int:
    try:
        return int(node.status().term)
    except Exception:
        return 0


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ChatError.invalid("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")


# An argon2id hash of a random password: verifying against it costs what a real check costs.
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$pYbXUQ5p1rTx1cOdaNfLZqT5kX3K3nSgJsydlTT2j0c"
