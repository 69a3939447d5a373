"""``Outbox``: the on-disk (SQLite) queue of messages not yet acknowledged, and ``OutboxFlusher`` that sends them.

One database per account (``<data dir>/<username>/outbox.sqlite3``). A message is recorded here before its
first send attempt, with the request_id it keeps for every attempt, so that a client crash or a cluster outage
loses nothing and a retry is never applied twice. States: ``pending`` (to be sent), ``sent`` (acknowledged,
with the resulting seq), ``failed`` (rejected by the server for good, e.g. permission denied; the UI may
``requeue`` it).

Writes are single-row INSERT / UPDATE statements in autocommit mode (WAL journal, ``synchronous=NORMAL``:
a committed row survives a crash of the client; a power loss may lose the last moments). The methods are
synchronous and fast; the ``ChatClient`` calls them on its event loop thread.

``OutboxFlusher`` delivers the pending messages: one worker per conversation sends its messages oldest first,
one at a time (so they keep their order), each with its own request_id on every attempt, until the server
answers: then the message is marked sent with its seq, or failed for a non-retryable error. Transient errors
(cluster unreachable, outcome unknown, rate limited) keep it pending and the worker retries after a jittered
backoff; an expired session pauses the workers until ``resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client.errors import (
    ChatError,
    ClientClosed,
    MessageQueued,
    RateLimited,
    TransientError,
    Unauthenticated,
)

log = logging.getLogger(__name__)

APP_NAME = "chat-client-qt"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    seq INTEGER,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, conversation_id, id);
"""
_COLUMNS = "request_id, conversation_id, body, created_at, state, attempts, last_error, seq, updated_at"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class OutboxState(enum.StrEnum):
    """Where an outbox message stands."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message of the outbox.

    Attributes:
        request_id: the id sent with every attempt (the server applies it at most once).
        conversation_id: where it goes.
        body: its text.
        created_at: when it was written (seconds since the epoch).
        state: pending, sent or failed.
        attempts: how many delivery rounds were made.
        last_error: the last failure's message (None if none).
        seq: the message's seq once sent.
        updated_at: when the row last changed (seconds since the epoch).
    """

    request_id: str
    conversation_id: str
    body: str
    created_at: float
    state: OutboxState
    attempts: int
    last_error: str | None
    seq: int | None
    updated_at: float


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/chat-client-qt``, or ``~/.local/share/chat-client-qt`` when XDG_DATA_HOME is unset."""
    base = os.environ.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / APP_NAME


def account_dir(data_dir: str | Path, account: str) -> Path:
    """The directory of one account's files under ``data_dir`` (an unusual name is replaced by its hash)."""
    name = account if _SAFE_NAME.match(account) and account not in (".", "..") else None
    if name is None:
        name = "u-" + uuid.uuid5(uuid.NAMESPACE_URL, account).hex
    return Path(data_dir) / name


class Outbox:
    """The SQLite outbox of one account (see the module's docstring).

    Example:
        >>> box = Outbox(Path("/tmp/alice/outbox.sqlite3"))
        >>> item = box.add("room-1", "hello")
        >>> box.mark_sent(item.request_id, seq=42)
        >>> box.close()
    """

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the outbox database at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # private messages
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        log.debug("outbox %s open", self.path)

    @classmethod
    def for_account(cls, data_dir: str | Path, account: str) -> Outbox:
        """Open the outbox of ``account`` under ``data_dir``."""
        return cls(account_dir(data_dir, account) / "outbox.sqlite3")

    def close(self) -> None:
        """Close the database (the rows stay on disk)."""
        with self._lock:
            self._db.close()

    # -- writes -----------------------------------------------------------------------------------------------

    def add(
        self,
        conversation_id: str,
        body: str,
        *,
        request_id: str | None = None,
        created_at: float | None = None,
    ) -> OutboxItem:
        """Record a new pending message (a new uuid4 request_id unless given); an existing request_id is kept."""
        request_id = request_id or str(uuid.uuid4())
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO outbox (request_id, conversation_id, body, created_at, state, updated_at)"
                " VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (request_id) DO NOTHING",
                (request_id, conversation_id, body, created_at if created_at is not None else now, now),
            )
        item = self.get(request_id)
        assert item is not None
        return item

    def record_attempt(self, request_id: str, error: str | None = None) -> None:
        """Count one delivery round of a message (and its error, if it failed transiently)."""
        self._update(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, updated_at = ? WHERE request_id = ?",
            (error, time.time(), request_id),
        )

    def mark_sent(self, request_id: str, seq: int) -> None:
        """The server acknowledged the message at ``seq`` (counts as a delivery round)."""
        self._update(
            "UPDATE outbox SET state = 'sent', seq = ?, attempts = attempts + 1, last_error = NULL, updated_at = ?"
            " WHERE request_id = ?",
            (seq, time.time(), request_id),
        )

    def mark_failed(self, request_id: str, error: str) -> None:
        """The server rejected the message for good (``error`` says why; counts as a delivery round)."""
        self._update(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, updated_at = ?"
            " WHERE request_id = ? AND state != 'sent'",
            (error, time.time(), request_id),
        )

    def requeue(self, request_id: str) -> OutboxItem:
        """Make a failed message pending again (same request_id); raises KeyError if unknown, ValueError if sent."""
        item = self.get(request_id)
        if item is None:
            raise KeyError(request_id)
        if item.state is OutboxState.SENT:
            raise ValueError(f"{request_id} was sent already")
        self._update(
            "UPDATE outbox SET state = 'pending', updated_at = ? WHERE request_id = ? AND state = 'failed'",
            (time.time(), request_id),
        )
        item = self.get(request_id)
        assert item is not None
        return item

    def discard(self, request_id: str) -> bool:
        """Forget a failed or sent message (pending ones may be in flight and stay); returns whether it was removed."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE request_id = ? AND state IN ('failed', 'sent')", (request_id,)
            )
        return cursor.rowcount > 0

    def prune_sent(self, older_than: float) -> int:
        """Forget sent messages acknowledged more than ``older_than`` seconds ago; returns how many."""
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM outbox WHERE state = 'sent' AND updated_at < ?", (time.time() - older_than,)
            )
        return cursor.rowcount

    # -- reads ------------------------------------------------------------------------------------------------

    def get(self, request_id: str) -> OutboxItem | None:
        """The message with ``request_id``, if any."""
        rows = self._query(f"SELECT {_COLUMNS} FROM outbox WHERE request_id = ?", (request_id,))
        return rows[0] if rows else None

    def items(self, state: OutboxState | None = None, conversation_id: str | None = None) -> list[OutboxItem]:
        """Messages (of one state and conversation, if given), oldest first."""
        where, params = [], []
        if state is not None:
            where.append("state = ?")
            params.append(str(state))
        if conversation_id is not None:
            where.append("conversation_id = ?")
            params.append(conversation_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._query(f"SELECT {_COLUMNS} FROM outbox{clause} ORDER BY id", tuple(params))

    def pending(self, conversation_id: str | None = None) -> list[OutboxItem]:
        """Messages waiting to be sent, oldest first."""
        return self.items(OutboxState.PENDING, conversation_id)

    def failed(self) -> list[OutboxItem]:
        """Messages the server rejected, oldest first."""
        return self.items(OutboxState.FAILED)

    def next_pending(self, conversation_id: str) -> OutboxItem | None:
        """The oldest pending message of a conversation."""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND conversation_id = ? ORDER BY id LIMIT 1",
            (conversation_id,),
        )
        return rows[0] if rows else None

    def pending_conversations(self) -> list[str]:
        """The conversations with pending messages, the one with the oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT conversation_id FROM outbox WHERE state = 'pending' GROUP BY conversation_id ORDER BY MIN(id)"
            ).fetchall()
        return [str(row[0]) for row in rows]

    # -- internals --------------------------------------------------------------------------------------------

    def _update(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _query(self, sql: str, params: tuple[object, ...]) -> list[OutboxItem]:
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [
            OutboxItem(
                request_id=row[0],
                conversation_id=row[1],
                body=row[2],
                created_at=float(row[3]),
                state=OutboxState(row[4]),
                attempts=int(row[5]),
                last_error=row[6],
                seq=None if row[7] is None else int(row[7]),
                updated_at=float(row[8]),
            )
            for row in rows
        ]


#: Delivers one outbox message (``SendMessage`` with its request_id); raises ``ChatError``.
SendFunction = Callable[[OutboxItem], Awaitable[api.SendMessageResponse]]
#: Called with the new state of a message whenever it changes.
OutboxListener = Callable[[OutboxItem], None]


class OutboxFlusher:
    """Background delivery of an ``Outbox``'s pending messages (see the module's docstring).

    Runs on the asyncio loop: ``start`` picks up what a previous run left pending, ``kick`` wakes the worker
    of a conversation after a new message was added.
    """

    def __init__(
        self,
        outbox: Outbox,
        send: SendFunction,
        *,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self._send = send
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, list[asyncio.Future[api.SendMessageResponse]]] = {}
        self._last_error: dict[str, ChatError] = {}
        self._listeners: list[OutboxListener] = []
        self._authorized = asyncio.Event()
        self._authorized.set()
        self._closed = False

    # -- control ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start a worker for every conversation with pending messages (e.g. left by a previous run)."""
        for conversation_id in self.outbox.pending_conversations():
            self.kick(conversation_id)

    def kick(self, conversation_id: str) -> None:
        """Make sure the conversation's worker runs, and cut its backoff short."""
        if self._closed:
            return
        worker = self._workers.get(conversation_id)
        if worker is not None and not worker.done():
            self._wake[conversation_id].set()
            return
        self._wake[conversation_id] = asyncio.Event()
        self._workers[conversation_id] = asyncio.get_running_loop().create_task(
            self._work(conversation_id), name=f"outbox:{conversation_id}"
        )

    def kick_all(self) -> None:
        """Wake every worker (e.g. when the cluster is known to be back)."""
        for conversation_id in self.outbox.pending_conversations():
            self.kick(conversation_id)

    def resume(self) -> None:
        """Let the workers go on after a new login (they pause on UNAUTHENTICATED)."""
        self._authorized.set()

    @property
    def paused(self) -> bool:
        """Whether delivery waits for a new session (the last attempt got UNAUTHENTICATED)."""
        return not self._authorized.is_set()

    @property
    def busy(self) -> bool:
        """Whether any worker is running."""
        return any(not w.done() for w in self._workers.values())

    def add_listener(self, listener: OutboxListener) -> Callable[[], None]:
        """Call ``listener(item)`` on every state change of a message; returns a function removing it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def notify(self, request_id: str) -> None:
        """Tell the listeners about the current state of a message."""
        item = self.outbox.get(request_id)
        if item is None:
            return
        for listener in list(self._listeners):
            try:
                listener(item)
            except Exception:
                log.exception("outbox listener failed")

    async def wait(self, request_id: str, timeout: float | None) -> api.SendMessageResponse:
        """Wait until a message is sent (its response) or failed (raises its error).

        Raises:
            MessageQueued: still pending after ``timeout`` seconds (it stays in the outbox).
            ChatError: the server rejected it.
        """
        item = self.outbox.get(request_id)
        if item is None:
            raise KeyError(request_id)
        if item.state is OutboxState.SENT:
            event = api.Event(
                conversation_id=item.conversation_id, seq=item.seq or 0, body=item.body, request_id=request_id
            )
            return api.SendMessageResponse(message=event, duplicate=True)
        if item.state is OutboxState.FAILED:
            raise self._last_error.get(request_id) or ChatError(item.last_error or "failed", request_id=request_id)
        future: asyncio.Future[api.SendMessageResponse] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, []).append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            cause = self._last_error.get(request_id)
            why = f": {cause.message}" if cause is not None else ""
            raise MessageQueued(
                f"not delivered yet{why}; it stays in the outbox and will be sent when a node answers",
                cause=cause,
                request_id=request_id,
                code=cause.code if cause is not None else None,
                endpoint=cause.endpoint if cause is not None else None,
            ) from None
        finally:
            waiters = self._waiters.get(request_id, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(request_id, None)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no message is pending and no worker runs; returns False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.busy or self.outbox.pending():
            workers = [w for w in self._workers.values() if not w.done()]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if workers:
                await asyncio.wait(workers, timeout=remaining)
            else:
                await asyncio.sleep(min(0.05, remaining))  # pending but idle: paused or just added
        return True

    async def close(self) -> None:
        """Stop every worker; waiting ``wait`` calls raise ``ClientClosed``. Pending messages stay on disk."""
        self._closed = True
        workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(ClientClosed("the client was closed; the message stays in the outbox"))
        self._waiters.clear()

    # -- delivery ---------------------------------------------------------------------------------------------

    def _resolve(self, request_id: str, result: api.SendMessageResponse | ChatError) -> None:
        for future in self._waiters.pop(request_id, []):
            if future.done():
                continue
            if isinstance(result, ChatError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pause(self, conversation_id: str, delay: float) -> None:
        wake = self._wake[conversation_id]
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)

    async def _work(self, conversation_id: str) -> None:
        attempt = 0
        try:
            while not self._closed:
                item = self.outbox.next_pending(conversation_id)
                if item is None:
                    return
                await self._authorized.wait()
                try:
                    response = await self._send(item)
                except Unauthenticated as exc:
                    self._transient(item, exc)
                    log.info("outbox paused: %s", exc.message)
                    self._authorized.clear()
                    continue
                except RateLimited as exc:
                    self._transient(item, exc)
                    await self._pause(conversation_id, max(exc.retry_after or 0.0, self._backoff(attempt)))
                    attempt += 1
                    continue
                except TransientError as exc:
                    self._transient(item, exc)
                    await self._pause(conversation_id, self._backoff(attempt))
                    attempt += 1
                    continue
                except ChatError as exc:
                    log.warning("outbox message %s to %s failed: %s", item.request_id, conversation_id, exc.message)
                    self.outbox.mark_failed(item.request_id, exc.message)
                    self._last_error[item.request_id] = exc
                    self.notify(item.request_id)
                    self._resolve(item.request_id, exc)
                    attempt = 0
                    continue
                except Exception as exc:  # a bug must not stop delivery for good
                    log.exception("outbox delivery of %s failed unexpectedly", item.request_id)
                    self._transient(item, ChatError(f"{type(exc).__name__}: {exc}", request_id=item.request_id))
                    await self._pause(conversation_id, self._backoff(attempt))
                    attempt += 1
                    continue
                seq = response.message.seq if response.message is not None else 0
                self.outbox.mark_sent(item.request_id, seq)
                self._last_error.pop(item.request_id, None)
                log.debug("outbox message %s sent at %s/%d", item.request_id, conversation_id, seq)
                self.notify(item.request_id)
                self._resolve(item.request_id, response)
                attempt = 0
        finally:
            if self._workers.get(conversation_id) is asyncio.current_task():
                del self._workers[conversation_id]

    def _transient(self, item: OutboxItem, error: ChatError) -> None:
        log.debug("outbox message %s still pending: %s", item.request_id, error.message)
        self.outbox.record_attempt(item.request_id, error.message)
        self._last_error[item.request_id] = error
        self.notify(item.request_id)

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff_initial * (1 << min(attempt, 16)))
        return base * self._rng.uniform(0.5, 1.0)
