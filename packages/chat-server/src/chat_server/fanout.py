"""``Fanout``: live delivery of committed events to this node's subscription streams, gap-free and exactly once.

Every node serves subscriptions from its own applied state. The state machine reports each commit (events,
typing and presence signals) to ``Fanout.notify`` on the event loop; each open stream has a ``Subscription``
holding one cursor per conversation (the last seq it delivered) and a bounded queue.

Invariants owned here:
- a stream delivers each conversation's events in seq order, each exactly once: an event at or below the
  cursor is dropped, one past ``cursor + 1`` first has the missing range read from the database;
- a stream that falls behind (its queue fills) loses nothing: the queue is dropped and the stream catches up
  from the database, from its cursors;
- a subscription is registered before its starting cursors are read, with no await in between, so no commit
  falls between "read from the database" and "delivered live";
- a user who joins a conversation while subscribed gets it from the JOINED event on; one who leaves gets the
  LEFT event and nothing after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chat_server.store import EventKind, EventRow, EventsAppended, MembershipRow, PresenceNotice, TypingNotice

log = logging.getLogger(__name__)

QUEUE_LIMIT = 2000
"""Items a stream may have waiting before it is switched to catching up from the database."""
CATCH_UP_PAGE = 200
BATCH_LIMIT = 64
"""Most items ``stream_batches`` puts in one group (one stream message), a filled gap aside."""


class EventSource(Protocol):
    """The read side the fan-out needs (``ChatQueries``)."""

    def events_after(self, conversation_id: str, after_seq: int, limit: int = 50) -> tuple[list[EventRow], bool]:
        """The oldest ``limit`` events with seq > ``after_seq``, and whether newer ones exist."""
        ...

    def memberships(self, username: str) -> list[MembershipRow]:
        """Each conversation ``username`` belongs to."""
        ...


Item = EventRow | TypingNotice | PresenceNotice


@dataclass(eq=False)
class Subscription:
    """One open stream: whose it is, where it stands per conversation, and what waits to be sent."""

    username: str
    cursors: dict[str, int]
    queue: asyncio.Queue[Item] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    closed: bool = False

    def push(self, item: Item) -> None:
        """Queue ``item``; on overflow drop the queue and mark the stream for a catch-up from the database."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_WAKE)  # wake the stream so it notices


_WAKE = TypingNotice(conversation_id="", username="", typing=False, expires_at_ms=0)
_HEARTBEAT = TypingNotice(conversation_id="", username="", typing=True, expires_at_ms=0)
"""Queued by a stream's heartbeat timer: the stream sends a heartbeat (``None``)."""


class Fanout:
    """The node's open subscriptions, indexed by user and by conversation."""

    def __init__(self, source: EventSource, *, co_members: Callable[[str], Iterable[str]] | None = None) -> None:
        """Serve from ``source``; ``co_members(user)`` names who shares a conversation with ``user`` (presence)."""
        self._source = source
        self._co_members = co_members
        self._by_user: dict[str, set[Subscription]] = defaultdict(set)
        self._by_conversation: dict[str, set[Subscription]] = defaultdict(set)

    def __len__(self) -> int:
        return sum(len(subs) for subs in self._by_user.values())

    # -- opening and closing --------------------------------------------------------------------------------

    def open(self, username: str, cursors: dict[str, int]) -> Subscription:
        """Register a stream for ``username`` resuming after ``cursors`` (synchronous: no commit can interleave).

        Conversations the user belongs to but not in ``cursors`` start after their newest event; cursors
        for conversations the user is not in are ignored; a cursor past a conversation's end is clamped.
        """
        start: dict[str, int] = {}
        for m in self._source.memberships(username):
            given = cursors.get(m.conversation_id)
            start[m.conversation_id] = m.last_seq if given is None else min(given, m.last_seq)
        sub = Subscription(username, start)
        self._by_user[username].add(sub)
        for conversation_id in start:
            self._by_conversation[conversation_id].add(sub)
        return sub

    def close(self, sub: Subscription) -> None:
        """Forget ``sub``."""
        sub.closed = True
        self._discard(self._by_user, sub.username, sub)
        for conversation_id in list(sub.cursors):
            self._discard(self._by_conversation, conversation_id, sub)

    def close_all(self) -> None:
        """End every stream (at shutdown): each sees ``closed`` and stops after its current item."""
        for subs in list(self._by_user.values()):
            for sub in list(subs):
                self.close(sub)
                if not sub.queue.full():
                    sub.queue.put_nowait(_WAKE)

    @staticmethod
    def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    # -- commits --------------------------------------------------------------------------------------------

    def notify(self, notice: object) -> None:
        """Take one commit's notice from the state machine (called on the event loop, after the commit)."""
        if isinstance(notice, EventsAppended):
            self._events(notice.conversation_id, notice.events)
        elif isinstance(notice, TypingNotice):
            for sub in self._by_conversation.get(notice.conversation_id, ()):
                if sub.username != notice.username:
                    sub.push(notice)
        elif isinstance(notice, PresenceNotice):
            users = set(self._co_members(notice.username)) if self._co_members is not None else set(self._by_user)
            users.add(notice.username)
            for user in users:
                for sub in self._by_user.get(user, ()):
                    sub.push(notice)

    def _events(self, conversation_id: str, events: Sequence[EventRow]) -> None:
        for event in events:
            if event.kind is EventKind.JOINED and event.member in self._by_user:
                for sub in self._by_user[event.member]:
                    if conversation_id not in sub.cursors:
                        sub.cursors[conversation_id] = event.seq - 1
                        self._by_conversation[conversation_id].add(sub)
        for sub in list(self._by_conversation.get(conversation_id, ())):
            for event in events:
                sub.push(event)

    # -- streaming ------------------------------------------------------------------------------------------

    async def stream(self, sub: Subscription, *, heartbeat_s: float = 10.0) -> AsyncIterator[Item | None]:
        """The items to send on ``sub``'s stream, in order; ``None`` means "send a heartbeat now".

        Starts with a heartbeat, then everything after the starting cursors, then live items. Ends when
        the caller stops iterating (closing the subscription).
        """
        async with contextlib.aclosing(self.stream_batches(sub, heartbeat_s=heartbeat_s, max_batch=1)) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def stream_batches(
        self, sub: Subscription, *, heartbeat_s: float = 10.0, max_batch: int = BATCH_LIMIT
    ) -> AsyncGenerator[list[Item | None], None]:
        """``stream``'s items in groups: each list holds what was ready at once (never empty).

        A catch-up page goes in groups of up to ``max_batch``; live items that queued while the previous group
        was being sent go together too (up to ``max_batch``, plus any gap filled from the database). So a
        busy stream sends fewer, larger messages, and an idle one sends each item as it comes.
        """
        # One timer per stream, moved lazily: it fires at most once per ``heartbeat_s`` and queues a heartbeat only
        # if nothing was sent for that long (cheaper than a timeout around every wait for the queue).
        loop = asyncio.get_running_loop()
        last_sent = loop.time()
        timer: asyncio.TimerHandle | None = None

        def beat() -> None:
            nonlocal timer
            idle = loop.time() - last_sent
            if idle >= heartbeat_s:
                sub.push(_HEARTBEAT)
                idle = 0.0
            timer = loop.call_later(heartbeat_s - idle, beat)

        try:
            yield [None]
            for group in _grouped(self._catch_up(sub), max_batch):
                yield group
            last_sent = loop.time()
            timer = loop.call_later(heartbeat_s, beat)
            while not sub.closed:
                if sub.overflowed:
                    sub.overflowed = False
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    for group in _grouped(self._catch_up(sub), max_batch):
                        yield group
                    last_sent = loop.time()
                    continue
                queued = await sub.queue.get()
                batch: list[Item | None] = []
                self._take(sub, queued, batch)
                while len(batch) < max_batch and not sub.queue.empty() and not sub.overflowed:
                    self._take(sub, sub.queue.get_nowait(), batch)
                if batch:
                    yield batch
                    last_sent = loop.time()
        finally:
            if timer is not None:
                timer.cancel()
            self.close(sub)

    def _take(self, sub: Subscription, queued: Item, batch: list[Item | None]) -> None:
        """Add what the queued ``queued`` means for ``sub`` to ``batch`` (nothing for a wake-up or an old event)."""
        if queued is _WAKE:
            return
        if queued is _HEARTBEAT:
            batch.append(None)
            return
        if isinstance(queued, EventRow):
            batch.extend(self._deliver(sub, queued))
        else:
            batch.append(queued)

    def _deliver(self, sub: Subscription, event: EventRow) -> list[EventRow]:
        """``event`` (preceded by any events missing before it) if it is new to ``sub``; updates the cursor."""
        cursor = sub.cursors.get(event.conversation_id)
        if cursor is None or event.seq <= cursor:
            return []
        out: list[EventRow] = []
        if event.seq > cursor + 1:
            out = self._read_range(event.conversation_id, cursor, event.seq - 1)
        out.append(event)
        return self._advance(sub, out)

    def _advance(self, sub: Subscription, events: list[EventRow]) -> list[EventRow]:
        """Move ``sub``'s cursors over ``events`` (in order), stopping a conversation after the user's LEFT."""
        delivered = []
        for event in events:
            cursor = sub.cursors.get(event.conversation_id)
            if cursor is None or event.seq != cursor + 1:
                continue
            sub.cursors[event.conversation_id] = event.seq
            delivered.append(event)
            if event.kind is EventKind.LEFT and event.member == sub.username:
                del sub.cursors[event.conversation_id]
                self._discard(self._by_conversation, event.conversation_id, sub)
        return delivered

    def _read_range(self, conversation_id: str, after: int, upto: int) -> list[EventRow]:
        out: list[EventRow] = []
        while after < upto:
            page, _ = self._source.events_after(conversation_id, after, min(CATCH_UP_PAGE, upto - after))
            page = [e for e in page if e.seq <= upto]
            if not page:
                break
            out.extend(page)
            after = page[-1].seq
        return out

    def _catch_up(self, sub: Subscription) -> Iterator[EventRow]:
        """Everything after ``sub``'s cursors in the database, read a page at a time as the stream is consumed.

        Memory stays bounded by one page however far behind the stream is; commits between pages are queued
        live and dropped later as duplicates, since every page is read from the cursor the previous one left.
        """
        for conversation_id in list(sub.cursors):
            while conversation_id in sub.cursors:
                page, more = self._source.events_after(conversation_id, sub.cursors[conversation_id], CATCH_UP_PAGE)
                delivered = self._advance(sub, page)
                yield from delivered
                if not more or not delivered:
                    break


def _grouped(items: Iterator[EventRow], size: int) -> Iterator[list[Item | None]]:
    """``items`` in lists of up to ``size``, consumed lazily (a page is read only when its group is wanted)."""
    group: list[Item | None] = []
    for item in items:
        group.append(item)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
