"""``ChatSession``: a signed-in ``ChatClient`` seen from Qt: live events, connection and cluster state as signals.

The session runs on the qasync loop, i.e. on the GUI thread, and never blocks it: the subscription, the
cluster-status poll, typing signals and read cursors are asyncio tasks, and every result comes back as a
Qt signal. While the subscription is down the session says so (``connection_changed(False, reason)``) and
keeps retrying; the widgets keep showing what they have (their cache) and sends wait in the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from PyQt6.QtCore import QObject, pyqtSignal

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.client import (
    ChatClient,
    ChatError,
    ClientClosed,
    OutboxItem,
    StreamStatus,
    Subscription,
    Unauthenticated,
)

log = logging.getLogger(__name__)

TYPING_EVERY_S = 2.5  # at most one "typing" call per conversation this often (the server throttles to 3 s)
READ_DEBOUNCE_S = 0.4  # read cursors are replicated writes: coalesce them
CLOSE_TIMEOUT_S = 5.0  # quitting never waits longer than this for the network side


class ChatSession(QObject):
    """The network side of the main window (see the module's docstring).

    Signals:
        event_received(api.Event): a conversation event, each exactly once and in order per conversation.
        typing_received(api.TypingSignal), presence_received(api.PresenceSignal),
        heartbeat_received(api.Heartbeat): the stream's other items.
        connection_changed(bool, str): the live stream connected (endpoint) or is reconnecting (reason).
        cluster_status_changed(object): an ``api.ClusterStatus``, or None when no node answered.
        outbox_changed(OutboxItem): one's own message changed state (pending, sent, failed).
        session_lost(str): the session is no longer valid (sign in again).
    """

    event_received = pyqtSignal(object)
    typing_received = pyqtSignal(object)
    presence_received = pyqtSignal(object)
    heartbeat_received = pyqtSignal(object)
    connection_changed = pyqtSignal(bool, str)
    cluster_status_changed = pyqtSignal(object)
    outbox_changed = pyqtSignal(object)
    session_lost = pyqtSignal(str)

    def __init__(
        self,
        client: ChatClient,
        *,
        status_interval: float = 3.0,
        idle_timeout: float = 25.0,
        parent: QObject | None = None,
    ) -> None:
        """Wrap a signed-in client (``start`` begins the live stream and the status poll)."""
        super().__init__(parent)
        if client.username is None:
            raise ValueError("the client is not signed in")
        self.client = client
        self.username: str = client.username
        self.status_interval = status_interval
        self.idle_timeout = idle_timeout
        self.connected = False
        self.endpoint: str | None = None
        self.last_status: api.ClusterStatus | None = None
        self._tasks = TaskSet("session")
        self._typing_sent: dict[str, float] = {}
        self._read_wanted: dict[str, int] = {}
        self._read_timers: dict[str, asyncio.TimerHandle] = {}
        self._remove_listener = client.add_outbox_listener(self.outbox_changed.emit)
        self._subscription: Subscription | None = None
        self._closed = False
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, cursors: Mapping[str, int] | None = None) -> None:
        """Start the live stream (resuming after ``cursors``, e.g. the conversation list's last seqs) and polls."""
        if self._started:
            return
        self._started = True
        if cursors:
            self.client.seed_cursors(cursors)
        self._tasks.spawn(self._stream(), name="session:stream")
        self._tasks.spawn(self._poll_status(), name="session:status")

    async def close(self, *, logout: bool = False) -> None:
        """Stop every task and close the client (``logout``: end the session on the cluster first)."""
        if self._closed:
            return
        self._closed = True
        self._remove_listener()
        for handle in self._read_timers.values():
            handle.cancel()
        if self._subscription is not None:
            await self._subscription.aclose()  # ends the stream even if a cancellation were lost
        await self._tasks.cancel_all()
        if logout:
            try:
                await self.client.logout()
            except ChatError as exc:
                log.info("logout: %s", exc.message)
        try:
            await asyncio.wait_for(self.client.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("the client did not close within %.0f s", CLOSE_TIMEOUT_S)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    # -- actions ---------------------------------------------------------------------------------------------

    def typing(self, conversation_id: str) -> None:
        """Say that the user types in a conversation (throttled; failures are ignored)."""
        loop = asyncio.get_event_loop()
        if loop.time() - self._typing_sent.get(conversation_id, -1e9) < TYPING_EVERY_S:
            return
        self._typing_sent[conversation_id] = loop.time()
        self._tasks.spawn(self._set_typing(conversation_id, True), name="session:typing")

    def stopped_typing(self, conversation_id: str) -> None:
        """Say that the user stopped typing (e.g. sent the message)."""
        if self._typing_sent.pop(conversation_id, None) is not None:
            self._tasks.spawn(self._set_typing(conversation_id, False), name="session:typing")

    def mark_read(self, conversation_id: str, seq: int) -> None:
        """Move the read cursor of a conversation to ``seq`` (coalesced, in the background)."""
        if seq <= self._read_wanted.get(conversation_id, 0):
            return
        self._read_wanted[conversation_id] = seq
        if conversation_id in self._read_timers:
            return
        loop = asyncio.get_event_loop()
        self._read_timers[conversation_id] = loop.call_later(READ_DEBOUNCE_S, self._flush_read, conversation_id)

    def refresh_status(self) -> None:
        """Ask for the cluster's status now (the answer comes as ``cluster_status_changed``)."""
        self._tasks.spawn(self._status_once(), name="session:status-now")

    # -- internals -------------------------------------------------------------------------------------------

    def _flush_read(self, conversation_id: str) -> None:
        self._read_timers.pop(conversation_id, None)
        if self._closed:
            return
        seq = self._read_wanted[conversation_id]
        self._tasks.spawn(self._send_read(conversation_id, seq), name="session:read")

    async def _send_read(self, conversation_id: str, seq: int) -> None:
        try:
            await self.client.mark_read(conversation_id, seq)
        except ChatError as exc:
            log.info("mark_read %s/%d: %s", conversation_id, seq, exc.message)

    async def _set_typing(self, conversation_id: str, typing: bool) -> None:
        try:
            await asyncio.wait_for(self.client.set_typing(conversation_id, typing), 3.0)
        except (ChatError, TimeoutError) as exc:
            log.debug("set_typing %s: %s", conversation_id, exc)

    def _set_connected(self, connected: bool, endpoint: str | None, reason: str) -> None:
        self.connected = connected
        self.endpoint = endpoint if connected else None
        self.connection_changed.emit(connected, endpoint if connected and endpoint else reason)

    async def _stream(self) -> None:
        while not self._closed:
            subscription = self.client.subscribe(include_status=True, idle_timeout=self.idle_timeout)
            self._subscription = subscription
            try:
                async for item in subscription:
                    if isinstance(item, StreamStatus):
                        reason = item.error.message if item.error is not None else "connection lost"
                        self._set_connected(item.connected, item.endpoint, reason)
                        if item.connected:
                            self.refresh_status()
                    elif isinstance(item, api.Event):
                        self.event_received.emit(item)
                    elif isinstance(item, api.TypingSignal):
                        self.typing_received.emit(item)
                    elif isinstance(item, api.PresenceSignal):
                        self.presence_received.emit(item)
                    elif isinstance(item, api.Heartbeat):
                        self.heartbeat_received.emit(item)
            except Unauthenticated as exc:
                self._set_connected(False, None, exc.message)
                self.session_lost.emit(exc.message)
                return
            except ClientClosed:
                return
            except ChatError as exc:
                log.warning("live stream stopped: %s; starting it again", exc.message)
                self._set_connected(False, None, exc.message)
                await asyncio.sleep(1.0)
            finally:
                await subscription.aclose()

    async def _poll_status(self) -> None:
        while not self._closed:
            await self._status_once()
            await asyncio.sleep(self.status_interval)

    async def _status_once(self) -> None:
        try:
            status = await self.client.cluster_status(timeout_ms=500, timeout=2.0)
        except ChatError as exc:
            log.debug("cluster status: %s", exc.message)
            self.last_status = None
            self.cluster_status_changed.emit(None)
            return
        self.last_status = status
        self.cluster_status_changed.emit(status)

    def pending_count(self) -> int:
        """How many of the user's messages wait in the outbox."""
        return len(self.client.pending())

    async def send(self, conversation_id: str, body: str) -> OutboxItem:
        """Put a message in the outbox (delivered in the background; watch ``outbox_changed``)."""
        self.stopped_typing(conversation_id)
        return await self.client.enqueue(conversation_id, body)
