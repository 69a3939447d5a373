"""``ChatStateMachine``: the replicated chat state, applied into one SQLite database file per node.

It is a raft-core ``DurableStateMachine`` and ``BatchingStateMachine``: the commands of one batch (what the
runtime applies from one Ready; a lone ``apply`` outside a batch is a batch of one) are applied in one
transaction, each inside its own savepoint (a send undoes its own writes instead: ``writes.SELF_UNDOING``),
and the transaction also stores the last command's index and log time (table ``meta``), so after a restart
``durable_position()`` says exactly how far the file got and the runtime resumes right after it, never
applying an entry twice. One commit per batch instead of per command is what makes a busy node cheap: a
commit writes every page the command touched to the WAL. With a commit delay (the server's: 100 ms, at most
256 commands) a batch's transaction stays open and the next batches join it, so a busy node commits a few
times per ``commit_delay`` instead of once per Raft round (about a third of the cost of applying a message
was its share of a commit). Nothing else changes for readers: they use this connection, which sees what it
applied, and the notices go out at ``end_batch`` as before. A crash loses only work the log still holds (the
durable position says where to resume); ``snapshot`` and ``close`` commit first, so a snapshot never lies
ahead of the durable position. A refused command (a ``ChatRefusal``) is rolled back (to its savepoint, or by
its own undo) but its index is still recorded; so is a command whose bytes do not decode (logged, refused
with ``InvalidArgument``). Any other error is a bug or a local failure: a deterministic one (e.g. a
constraint violated by a bug) is rolled back and recorded like a refusal; a failing disk
(``sqlite3.OperationalError``) rolls back the whole batch and stops the state machine (``StoreFailed`` from
then on, ``end_batch`` included, which stops the node) without recording the index, so that a restarted node
re-applies from its last good position (the log still holds the batch).

Determinism: ``apply`` reads only the command and ``Command.time``; seqs, ids and times are derived from the
database and the log, so every node holds the same rows (compare ``Connection.iterdump()``), and the same
results, however its batches fall. Only the full-text index's internal storage (``messages_fts_data`` and
``messages_fts_idx``: FTS5 writes a segment per transaction) depends on the batch boundaries; what it indexes
is the same everywhere.

At the end of each batch the optional listener ``on_notice`` gets the notices of its commands in order
(``store.notices``); never for refusals or duplicate retries. A listener exception is logged and does not
affect the command.

``snapshot()`` is the whole database image (``Connection.serialize``, in rollback-journal form);
``restore(data)`` checks an image, writes it to ``<file>.restore`` in the same directory, fsyncs it, and
swaps it in with ``os.replace`` (then fsyncs the directory), so a crash leaves either the old or the new
database, never a mix; a leftover ``.restore`` file is removed on open.

Results of ``apply`` are described in ``store.writes``. Not thread-safe: use it (and ``ChatQueries`` over it)
from one thread, the event loop's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from chat_server.commands import CommandDecodeError, decode
from chat_server.store import schema
from chat_server.store.checkpoint import Checkpointer
from chat_server.store.errors import ChatRefusal, InvalidArgument
from chat_server.store.notices import Notice
from chat_server.store.queries import ChatQueries
from chat_server.store.writes import SELF_UNDOING, ChatWriter
from raft_core.runtime import Cancellable
from raft_core.runtime import Command as LogCommand

log = logging.getLogger(__name__)

RESTORE_SUFFIX: Final = ".restore"
"""Suffix of the temporary file a restore writes next to the database."""
_SESSION_OPS: Final = frozenset({"login", "logout"})
"""The commands that write the sessions table."""
_SET_POSITION = "UPDATE meta SET applied_index = ?, applied_time_ms = ? WHERE id = 1"


class StoreFailed(RuntimeError):
    """The database failed underneath the state machine (disk error); the node must be restarted."""


class SnapshotError(ValueError):
    """Bytes given to ``restore`` that are not a chat database image of this schema version."""


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checked_image(data: bytes) -> bytes:
    """``data`` as a rollback-journal image after checking it holds a sound chat database."""
    if len(data) < 512 or not data.startswith(b"SQLite format 3\x00"):
        raise SnapshotError("not a chat database snapshot: it does not hold an SQLite database")
    image = bytearray(data)
    if len(image) >= 20:
        image[18] = image[19] = 1  # a WAL-mode header cannot be opened in memory; the file is set to WAL on open
    mem = sqlite3.connect(":memory:")
    try:
        mem.deserialize(bytes(image))
        schema.check(mem)
        (verdict,) = mem.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise SnapshotError(f"the snapshot's database is damaged: {verdict}")
    except (sqlite3.DatabaseError, schema.SchemaError) as exc:
        raise SnapshotError(f"not a chat database snapshot: {exc}") from None
    finally:
        mem.close()
    return bytes(image)


class ChatStateMachine:
    """The chat state in SQLite, applied command by command (see the module)."""

    def __init__(
        self,
        path: Path | str,
        on_notice: Callable[[Notice], None] | None = None,
        *,
        commit_delay: float = 0.0,
        call_later: Callable[[float, Callable[[], None]], Cancellable] | None = None,
        max_uncommitted: int = 256,
    ) -> None:
        """Open (or create) the database at ``path``; ``on_notice`` is told about each applied change.

        With ``commit_delay`` > 0 and a ``call_later`` (the event loop's), a batch's transaction stays open for
        up to ``commit_delay`` seconds or ``max_uncommitted`` commands, so that several batches share one
        commit (see the module); otherwise every batch commits in ``end_batch``.
        """
        self.path = Path(path)
        self.on_notice = on_notice
        """The listener (may be set later, e.g. once the fanout exists)."""
        self._commit_delay = commit_delay if call_later is not None else 0.0
        self._call_later = call_later
        self._max_uncommitted = max_uncommitted
        self._commit_timer: Cancellable | None = None
        self._restore_file = self.path.with_name(self.path.name + RESTORE_SUFFIX)
        self._restore_file.unlink(missing_ok=True)  # an unfinished restore: the live database is untouched
        self._failed: str | None = None
        self._sessions_generation = 0
        self._open()

    def _open(self) -> None:
        self._conn = schema.open_database(self.path)
        self._checkpointer = Checkpointer(self.path)  # does most of the automatic checkpoints' work, off the loop
        self._writer = ChatWriter(self._conn)
        self._index, self._time = ChatQueries(self._conn).applied_position()
        self._durable = (self._index, self._time)
        self._batching = False
        self._notices: list[Notice] = []

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection (reads between applies; it changes on ``restore``)."""
        return self._conn

    @property
    def sessions_generation(self) -> int:
        """A number that changes whenever the sessions table may have changed (login, logout, restore).

        While it stays the same, a session read earlier is still what the table holds: readers may cache them.
        """
        return self._sessions_generation

    @property
    def queries(self) -> ChatQueries:
        """Reads of this state machine's database."""
        return ChatQueries(self)

    def durable_position(self) -> tuple[int, int]:
        """``(index, log time)`` of the last command applied and committed; ``(0, 0)`` for a new database."""
        return self._durable

    def begin_batch(self) -> None:
        """Start a batch: the following ``apply`` calls share one transaction, committed by ``end_batch``."""
        self._batching = True

    def end_batch(self) -> None:
        """Commit the batch, then tell the listener its notices; ``StoreFailed`` if the database failed."""
        self._batching = False
        if self._failed is not None:
            self._notices.clear()
            raise StoreFailed(self._failed)
        if (self._index, self._time) != self._durable:
            if self._commit_delay > 0 and self._index - self._durable[0] < self._max_uncommitted:
                self._flush_search_index()  # searches between batches see the batch, as every other read does
                if self._commit_timer is None:
                    assert self._call_later is not None  # a commit delay needs it (see __init__)
                    self._commit_timer = self._call_later(self._commit_delay, self._commit_when_due)
            else:
                self._commit()
        notices, self._notices = self._notices, []
        listener = self.on_notice
        if listener is not None:
            for notice in notices:
                try:
                    listener(notice)
                except Exception:
                    log.exception("the notice listener failed on %r", notice)

    def flush(self) -> None:
        """Commit what was applied and is not committed yet (``StoreFailed`` if the database fails)."""
        if self._failed is not None:
            raise StoreFailed(self._failed)
        if (self._index, self._time) != self._durable:
            self._commit()

    def _commit(self) -> None:
        """Commit the open transaction with the applied position (``StoreFailed`` if the database fails)."""
        conn = self._conn
        with self._failing_store("commit"):
            if not conn.in_transaction:
                conn.execute("BEGIN")
            self._writer.flush_search_index()
            conn.execute(_SET_POSITION, (self._index, self._time))
            conn.execute("COMMIT")
            self._checkpointer.note_commit()
        self._durable = (self._index, self._time)

    def _flush_search_index(self) -> None:
        with self._failing_store("index"):
            self._writer.flush_search_index()

    @contextlib.contextmanager
    def _failing_store(self, verb: str) -> Iterator[None]:
        """A database error inside: the store fails (``_fail``) and ``StoreFailed`` is raised."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            self._fail(f"the chat database could not {verb} entries up to {self._index} ({exc}); restart the node")
            raise StoreFailed(self._failed) from exc

    def _commit_when_due(self) -> None:
        """The deferred commit (a ``call_later`` callback: it runs between batches)."""
        self._commit_timer = None
        try:
            self.flush()
        except StoreFailed:
            log.error("the deferred commit failed; the node stops at its next batch: %s", self._failed)

    def apply(self, command: LogCommand) -> object:
        """Apply one committed command (in the current batch, or as a batch of one); its result or its refusal."""
        if self._batching:
            return self._apply(command)
        self.begin_batch()
        try:
            return self._apply(command)
        finally:
            self.end_batch()

    def _apply(self, command: LogCommand) -> object:
        if self._failed is not None:
            raise StoreFailed(self._failed)
        if command.index <= self._index:
            log.warning("entry %d was applied already (applied index %d); skipped", command.index, self._index)
            return None
        conn = self._conn
        if not conn.in_transaction:
            conn.execute("BEGIN")
        try:
            cmd = decode(command.data)
        except CommandDecodeError as exc:
            log.error("entry %d is not a chat command and is skipped: %s", command.index, exc)
            self._record_position(command)
            raise InvalidArgument(
                "the server could not read this request (malformed command); nothing changed"
            ) from None
        if cmd.op in _SESSION_OPS:
            self._sessions_generation += 1
        notices: list[Notice] = []
        writer = self._writer
        queued = len(writer.search_updates)
        savepoint = type(cmd) not in SELF_UNDOING
        if savepoint:
            conn.execute("SAVEPOINT command")
        try:
            result = writer.apply(cmd, command.time, notices)
            if savepoint:
                conn.execute("RELEASE command")
        except ChatRefusal:
            self._rollback_command(queued, savepoint)
            self._record_position(command)
            raise
        except sqlite3.OperationalError as exc:
            self._fail(f"the chat database failed at entry {command.index} ({exc}); restart the node")
            log.exception("entry %d (%s): database failure; the state machine stops", command.index, cmd.op)
            raise StoreFailed(self._failed) from exc
        except Exception:
            self._rollback_command(queued, savepoint)
            log.exception("entry %d (%s) could not be applied; it is skipped", command.index, cmd.op)
            self._record_position(command)
            raise
        except BaseException:
            self._rollback_command(queued, savepoint)
            raise
        self._record_position(command)
        self._notices += notices
        return result

    def _rollback_command(self, queued: int, savepoint: bool) -> None:
        """Undo the current command (back to its savepoint), keeping the batch's earlier commands.

        Without a savepoint the writer has already deleted what the command wrote (``SELF_UNDOING``).
        """
        self._writer.rolled_back(queued)
        if savepoint and self._conn.in_transaction:
            self._conn.execute("ROLLBACK TO command")
            self._conn.execute("RELEASE command")

    def _fail(self, reason: str) -> None:
        """The database failed: drop the whole batch, stop applying (``StoreFailed`` from now on)."""
        self._failed = reason
        self._notices.clear()
        self._writer.rolled_back(0)
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self._index, self._time = self._durable

    def _record_position(self, command: LogCommand) -> None:
        """The batch has got as far as ``command`` (``end_batch`` stores it with the batch's changes)."""
        self._index, self._time = command.index, command.time

    def snapshot(self) -> bytes:
        """A consistent image of the whole database at the applied index (call between batches)."""
        self.flush()  # the image, and the position a restart resumes from, hold everything applied
        image = self._conn.serialize()
        # Bytes 18-19 say rollback-journal form (1, 1): the image opens anywhere, even in memory. One copy of the
        # image is made (join over a memoryview), not two.
        return b"".join((image[:18], b"\x01\x01", memoryview(image)[20:]))

    def restore(self, data: bytes) -> None:
        """Replace the database atomically with an image ``snapshot`` produced (``SnapshotError`` if not one).

        Until the final rename the live database is untouched; after it the new one is in place.
        """
        image = _checked_image(data)
        self._cancel_commit_timer()
        tmp = self._restore_file
        with open(tmp, "wb") as f:
            f.write(image)
            f.flush()
            os.fsync(f.fileno())
        self._checkpointer.close()
        conn = self._conn
        if conn.in_transaction:  # applied, not yet committed (a commit delay): replaced with the rest
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for suffix in ("-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        os.replace(tmp, self.path)
        _fsync_directory(self.path.parent)
        self._failed = None
        self._sessions_generation += 1
        self._open()
        log.info("chat database restored from a snapshot at index %d", self._index)

    def close(self) -> None:
        """Commit what is applied, then close the database (the object is unusable afterwards)."""
        self._cancel_commit_timer()
        with contextlib.suppress(StoreFailed):
            self.flush()
        self._checkpointer.close()
        self._conn.close()

    def _cancel_commit_timer(self) -> None:
        timer, self._commit_timer = self._commit_timer, None
        if timer is not None:
            timer.cancel()

    def __enter__(self) -> ChatStateMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
