"""``Subscription``: live events that survive reconnects, with per-conversation cursors, no duplicates and no gaps.

A subscription reads ``MessageService.Subscribe`` from one node. When the stream fails (node down, stream
reset, no message for ``idle_timeout`` seconds: the server sends heartbeats every few seconds), it resumes on
any node with the last seq seen per conversation. Events at or below a conversation's cursor are dropped
(duplicates); an event beyond cursor + 1 is preceded by the missing range, read with ``GetHistory``, so the
consumer sees every conversation's events exactly once and in order.

At each (re)connect the subscription lists the caller's conversations (unless ``baseline=False``) so that every
conversation has a cursor: on the first connect a conversation without one starts after its newest event (as
the server would), later ones joined meanwhile start at their JOINED event, and cursors of conversations the
caller no longer belongs to are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import betterproto2
import grpc

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import rpc
from chat_client_qt.client.errors import (
    ChatError,
    ClientClosed,
    RateLimited,
    ServerError,
    TransientError,
    Unavailable,
    from_rpc_error,
)

if TYPE_CHECKING:
    from chat_client_qt.client.client import ChatClient

log = logging.getLogger(__name__)

_EOF = cast(Any, grpc.aio).EOF  # what UnaryStreamCall.read returns at the end (missing from grpc-stubs)

#: What a subscription yields: the payloads of ``ServerEvent``.
StreamItem: TypeAlias = api.Event | api.TypingSignal | api.PresenceSignal | api.Heartbeat


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A change of the subscription's connection (yielded only with ``include_status=True``).

    Attributes:
        connected: whether a stream is open and delivering.
        endpoint: the node serving it (the one that failed, when disconnected).
        error: why it disconnected.
    """

    connected: bool
    endpoint: str | None
    error: ChatError | None = None


class CursorStore:
    """The last seq seen per conversation: only ever moves forward, except by ``remove``."""

    def __init__(self, initial: Mapping[str, int] | None = None) -> None:
        self._seqs: dict[str, int] = {}
        self._listeners: list[Callable[[str, int], None]] = []
        if initial:
            self.seed(initial)

    def get(self, conversation_id: str) -> int | None:
        """The cursor of a conversation (None: none yet)."""
        return self._seqs.get(conversation_id)

    def advance(self, conversation_id: str, seq: int) -> None:
        """Move a cursor forward to ``seq`` (no effect if it is already there or beyond)."""
        if seq > self._seqs.get(conversation_id, -1):
            self._seqs[conversation_id] = seq
            for listener in list(self._listeners):
                listener(conversation_id, seq)

    def seed(self, cursors: Mapping[str, int]) -> None:
        """Advance several cursors at once (e.g. from a cache); lower values than the current ones are ignored."""
        for conversation_id, seq in cursors.items():
            self.advance(conversation_id, int(seq))

    def remove(self, conversation_id: str) -> None:
        """Forget a conversation's cursor (the caller left it)."""
        self._seqs.pop(conversation_id, None)

    def snapshot(self) -> dict[str, int]:
        """A copy of every cursor."""
        return dict(self._seqs)

    def add_listener(self, listener: Callable[[str, int], None]) -> Callable[[], None]:
        """Call ``listener(conversation_id, seq)`` whenever a cursor advances; returns a function removing it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def __len__(self) -> int:
        return len(self._seqs)


_STABLE_S = 5.0  # a stream that lasted this long resets the reconnect backoff


class _StreamBroken(Exception):
    """The stream must be reopened (ended, idle, or a gap could not be filled)."""


# Stream errors after which the subscription gives up (the caller must act: log in again, ...).
_FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class Subscription:
    """An async iterator of ``StreamItem`` (and ``StreamStatus`` if asked) that resumes across nodes.

    Made by ``ChatClient.subscribe``. Iterate it with ``async for``; stop it with ``aclose`` (or use it as an
    async context manager). It raises only non-retryable errors (e.g. ``Unauthenticated``) and ``ClientClosed``.

    Example:
        >>> async with client.subscribe() as events:
        ...     async for item in events:
        ...         if isinstance(item, api.Event):
        ...             print(item.conversation_id, item.seq, item.body)
    """

    def __init__(
        self,
        client: ChatClient,
        cursors: CursorStore,
        *,
        baseline: bool = True,
        idle_timeout: float = 30.0,
        include_status: bool = False,
        history_page: int = 500,
    ) -> None:
        self._client = client
        self._shared = cursors
        self._cursors = CursorStore(cursors.snapshot())
        self.baseline = baseline
        self.idle_timeout = idle_timeout
        self.include_status = include_status
        self.history_page = history_page
        self._call: grpc.aio.UnaryStreamCall[Any, Any] | None = None
        self._endpoint: str | None = None
        self._connected = False
        self._connects = 0
        self._gen = self._run()
        self._closed = False
        self._wake = asyncio.Event()
        self._running = False
        self._batches = True  # SubscribeBatches until a server answers UNIMPLEMENTED
        self._idle_timer: asyncio.TimerHandle | None = None
        self._reading_since: float | None = None
        self._idle_expired = False

    # -- public -----------------------------------------------------------------------------------------------

    @property
    def cursors(self) -> dict[str, int]:
        """The last seq yielded per conversation."""
        return self._cursors.snapshot()

    @property
    def endpoint(self) -> str | None:
        """The node serving the stream now (None while reconnecting)."""
        return self._endpoint if self._connected else None

    @property
    def connected(self) -> bool:
        """Whether a stream is open and has delivered its first message."""
        return self._connected

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` was called."""
        return self._closed

    @property
    def reconnects(self) -> int:
        """How many times the stream was reopened after the first connect."""
        return max(0, self._connects - 1)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> StreamItem | StreamStatus:
        if self._closed:
            raise StopAsyncIteration
        self._running = True
        try:
            return await self._gen.__anext__()
        finally:
            self._running = False

    async def aclose(self) -> None:
        """Stop: cancel the open stream; iteration ends (also for a task waiting in ``__anext__``)."""
        self._closed = True
        self._wake.set()
        self._cancel_call()
        if not self._running:
            await self._gen.aclose()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals --------------------------------------------------------------------------------------------

    def _cancel_call(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    async def _read(self, call: grpc.aio.UnaryStreamCall[Any, Any]) -> Any:
        """``call.read()``, which the idle watchdog cancels after ``idle_timeout`` seconds without a message.

        One timer per subscription, moved lazily (it fires at most once per ``idle_timeout`` while messages
        flow), instead of a timeout around every read: reads are the hot path of a busy stream.
        """
        loop = asyncio.get_running_loop()
        self._idle_expired = False
        self._reading_since = loop.time()
        if self._idle_timer is None:
            self._idle_timer = loop.call_at(self._reading_since + self.idle_timeout, self._check_idle)
        try:
            return await call.read()
        finally:
            self._reading_since = None

    def _check_idle(self) -> None:
        """The watchdog: cancel the call if the current read has waited ``idle_timeout``, else look again later."""
        self._idle_timer = None
        since = self._reading_since
        if since is None:
            return  # not reading now: the next read sets the timer again
        loop = asyncio.get_running_loop()
        due = since + self.idle_timeout
        if loop.time() < due:
            self._idle_timer = loop.call_at(due, self._check_idle)
            return
        call = self._call
        if call is not None:
            self._idle_expired = True
            call.cancel()

    def _idle_error(self, endpoint: str) -> Unavailable:
        self._idle_expired = False
        return Unavailable(f"no message from {endpoint} in {self.idle_timeout:.0f}s", endpoint=endpoint)

    async def _run(self) -> AsyncGenerator[StreamItem | StreamStatus, None]:
        conn = self._client.connection
        loop = asyncio.get_running_loop()
        attempt = 0
        connected_at = 0.0
        while not self._closed:
            endpoint = conn.pick(write=False)
            error: ChatError
            stream_failed = True
            try:
                if self.baseline:
                    await self._seed_baseline(first=self._connects == 0)
                if self._closed:
                    break
                request = api.SubscribeRequest(
                    cursors=[api.Cursor(conversation_id=c, after_seq=s) for c, s in self._cursors.snapshot().items()]
                )
                self._endpoint = endpoint
                method = rpc.SUBSCRIBE_BATCHES if self._batches else rpc.SUBSCRIBE
                self._call = conn.open_stream(
                    endpoint, method, request, metadata=self._client.auth_metadata(required=True)
                )
                log.debug("subscribed on %s with %d cursors", endpoint, len(request.cursors))
                while True:
                    call = self._call
                    if call is None:
                        raise _StreamBroken("closed")
                    try:
                        message = await self._read(call)
                    except asyncio.CancelledError:
                        if self._idle_expired:  # the idle watchdog cancelled the call
                            raise TimeoutError from None
                        task = asyncio.current_task()
                        if self._closed and (task is None or not task.cancelling()):
                            return  # aclose() from another task cancelled the call: just end
                        raise
                    if message is _EOF:
                        raise _StreamBroken(f"{endpoint} ended the stream")
                    if not self._connected:
                        self._connected = True
                        self._connects += 1
                        connected_at = loop.time()
                        log.info("subscription connected to %s", endpoint)
                        if self.include_status:
                            yield StreamStatus(True, endpoint)
                    if isinstance(message, api.ServerEventBatch):
                        received: Sequence[api.ServerEvent] = message.events
                    else:
                        assert isinstance(message, api.ServerEvent)
                        received = (message,)
                    for server_event in received:
                        for item in await self._accept(server_event):
                            if isinstance(item, api.Event):
                                self._cursors.advance(item.conversation_id, item.seq)
                                self._shared.advance(item.conversation_id, item.seq)
                            yield item
                            if isinstance(item, api.Event):
                                self._after_yield(item)
            except grpc.aio.AioRpcError as exc:
                if self._closed:
                    break
                if self._idle_expired:
                    error = self._idle_error(endpoint)
                elif exc.code() is grpc.StatusCode.UNIMPLEMENTED and self._batches:
                    self._batches = False  # an older server: the one-event-per-message stream carries the same
                    log.info("%s does not offer SubscribeBatches; using Subscribe", endpoint)
                    continue
                else:
                    error = from_rpc_error(exc, endpoint=endpoint)
                    if exc.code() in _FATAL_CODES:
                        raise error from None
            except TimeoutError:
                error = self._idle_error(endpoint)
            except _StreamBroken as exc:
                error = Unavailable(str(exc), endpoint=endpoint)
            except ClientClosed:
                if self._closed:
                    return  # closed while a baseline or history call was waiting
                raise
            except (TransientError, RateLimited, ServerError) as exc:  # from the baseline or a gap fill
                error = exc
                stream_failed = False  # the connection already moved on from the node that failed
            finally:
                self._cancel_call()
            if self._closed:
                break
            was_connected, self._connected = self._connected, False
            if was_connected and loop.time() - connected_at > _STABLE_S:
                attempt = 0  # it worked for a while: reconnect quickly (a flapping node keeps backing off)
            log.info("subscription on %s lost: %s", endpoint, error.message)
            if stream_failed:
                conn.report_failure(endpoint, error.leader if isinstance(error, Unavailable) else None)
            if self.include_status and (was_connected or attempt == 0):
                yield StreamStatus(False, endpoint, error)
            delay = conn.backoff(attempt)
            if isinstance(error, RateLimited) and error.retry_after:
                delay = max(delay, error.retry_after)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _seed_baseline(self, *, first: bool) -> None:
        """Give every conversation of the caller a cursor, and drop those of conversations left."""
        listing = await self._client.conversations()
        known = set()
        for conversation in listing.conversations:
            known.add(conversation.id)
            if self._cursors.get(conversation.id) is not None:
                continue
            # On a reconnect, a conversation joined while we were away starts from its JOINED event.
            start = conversation.last_seq if first or not conversation.joined_seq else conversation.joined_seq - 1
            self._cursors.advance(conversation.id, start)
            self._shared.advance(conversation.id, start)
        for conversation_id in set(self._cursors.snapshot()) - known:
            self._cursors.remove(conversation_id)

    async def _accept(self, message: api.ServerEvent) -> list[StreamItem]:
        """The items to yield for one stream message: [] for a duplicate, the gap's events then the event."""
        field, payload = betterproto2.which_one_of(message, "payload")
        if not field or payload is None:
            return []
        if not isinstance(payload, api.Event):
            return [payload]
        last = self._cursors.get(payload.conversation_id)
        if last is not None and payload.seq <= last:
            log.debug("duplicate %s/%d dropped", payload.conversation_id, payload.seq)
            return []
        items: list[StreamItem] = []
        if last is not None and payload.seq > last + 1:
            items.extend(await self._fill_gap(payload.conversation_id, last, payload.seq))
        items.append(payload)
        return items

    async def _fill_gap(self, conversation_id: str, last: int, seq: int) -> list[api.Event]:
        """The events strictly between ``last`` and ``seq`` of a conversation, read with GetHistory."""
        log.info("gap in %s: %d..%d, reading history", conversation_id, last + 1, seq - 1)
        events: list[api.Event] = []
        cursor = last
        while cursor < seq - 1:
            limit = min(self.history_page, seq - 1 - cursor)
            if cursor == 0:  # after_seq=0 means "the newest page": ask for the first page by its upper bound
                page = await self._client.history(conversation_id, before_seq=limit + 1, limit=limit)
            else:
                page = await self._client.history(conversation_id, after_seq=cursor, limit=limit)
            progressed = False
            for event in page.events:
                if event.seq <= cursor or event.seq >= seq:
                    continue
                if event.seq != cursor + 1:
                    raise _StreamBroken(f"history of {conversation_id} skips from {cursor} to {event.seq}")
                events.append(event)
                cursor = event.seq
                progressed = True
            if not progressed:
                raise _StreamBroken(f"history of {conversation_id} lacks {cursor + 1}..{seq - 1}")
        return events

    def _after_yield(self, event: api.Event) -> None:
        """Forget the cursor of a conversation the caller just left."""
        username = self._client.username
        if event.kind is api.EventKind.LEFT and username and event.member == username:
            self._cursors.remove(event.conversation_id)
            self._shared.remove(event.conversation_id)
