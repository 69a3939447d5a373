"""``Checkpointer``: copies the chat database's WAL back into the database file on a thread of its own.

SQLite in WAL mode appends every commit to the ``-wal`` file; the commit that takes the WAL past 1,000 pages
copies it back into the database and fsyncs both (an automatic checkpoint), which costs the event loop tens of
milliseconds every few dozen batches. This daemon thread, with its own connection, runs a PASSIVE checkpoint
every ``interval`` seconds while commits happen (it never blocks the writer or readers, and SQLite releases the
GIL while it works), so by the time the writer's automatic checkpoint comes, most pages are copied already and
it has little left to do. The automatic checkpoint stays on: it is what lets the WAL start over. A checkpoint
running beside a busy writer never quite catches up with it, and the writer restarts the WAL only after a
checkpoint that did; so background checkpoints alone would let the WAL grow without bound. Stop the thread
(``close``) before the database file is replaced or closed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S: Final = 0.25
"""Seconds between two checkpoints while the database is being written."""


class Checkpointer:
    """Background checkpoints of one database (see the module); ``note_commit`` after each commit."""

    def __init__(self, path: Path, *, interval: float = DEFAULT_INTERVAL_S) -> None:
        """Start checkpointing the database at ``path`` every ``interval`` seconds while it changes."""
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        """Checkpoints run so far (for tests and metrics)."""
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}", daemon=True)
        self._thread.start()

    def note_commit(self) -> None:
        """Something was committed: the next round checkpoints it."""
        self._dirty.set()

    def close(self) -> None:
        """Run a last checkpoint and stop the thread (waits for it)."""
        self._stop.set()
        self._dirty.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            log.error("checkpoints of %s are off (cannot open it: %s); the WAL grows until restart", self.path, exc)
            return
        try:
            while True:
                self._dirty.wait()
                stopping = self._stop.wait(0 if self._stop.is_set() else self.interval)
                self._dirty.clear()
                self._checkpoint(conn)
                if stopping:
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # e.g. a full disk: the WAL keeps the data; the next round tries again
            log.warning("checkpoint of %s failed: %s", self.path, exc)
