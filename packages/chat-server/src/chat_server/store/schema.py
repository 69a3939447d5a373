"""The chat database: its tables (DDL), schema version (``PRAGMA user_version``) and connection setup.

Tables: ``meta`` (the applied index and its log time, one row), ``users``, ``sessions``, ``conversations``
(with the denormalised ``last_seq``, ``last_event_id`` and ``member_count``), ``members`` (current members
with their join seq and read cursor), ``events`` (every conversation's sequence; ``id`` is the global commit
order), ``messages_fts`` (an FTS5 index over the bodies of live MESSAGE events, external content on
``events``), ``applied_requests`` (the exactly-once table) and ``kv`` (the admin key-value store).

Connections run in autocommit mode (``isolation_level=None``): the state machine issues BEGIN / COMMIT itself,
one transaction per batch of commands. WAL with ``synchronous=NORMAL``: a power cut may lose the newest commits, which
is safe because the applied index is committed with them and the Raft log still holds those entries.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of a database made by this code."""

_DDL = """
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    applied_index INTEGER NOT NULL,
    applied_time_ms INTEGER NOT NULL
);
INSERT INTO meta (id, applied_index, applied_time_ms) VALUES (1, 0, 0);

CREATE TABLE users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL DEFAULT 0,
    presence_expires_ms INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users (username),
    device TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms, token_hash);

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    name TEXT NOT NULL,
    topic TEXT NOT NULL,
    public INTEGER NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (username),
    created_at_ms INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_event_id INTEGER NOT NULL,
    member_count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX public_rooms ON conversations (last_event_id) WHERE public = 1;

CREATE TABLE members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    username TEXT NOT NULL REFERENCES users (username),
    joined_seq INTEGER NOT NULL,
    read_seq INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, username)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (username, conversation_id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    target_seq INTEGER NOT NULL,
    member TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    edited_at_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX events_by_target ON events (conversation_id, target_seq) WHERE target_seq > 0;

CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body, content = 'events', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2', columnsize = 0
);

CREATE TABLE applied_requests (
    actor TEXT NOT NULL,
    request_id TEXT NOT NULL,
    op TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (actor, request_id)
) WITHOUT ROWID;
CREATE INDEX applied_requests_by_time ON applied_requests (time_ms, actor, request_id);

CREATE TABLE kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL
);
"""


class SchemaError(RuntimeError):
    """The database was made by an incompatible version of this code (or is not a chat database)."""


def configure(conn: sqlite3.Connection) -> None:
    """Set the per-connection pragmas: WAL, ``synchronous=NORMAL``, foreign keys, in-memory temp tables."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")


def create(conn: sqlite3.Connection) -> None:
    """Create the tables in an empty database and stamp the schema version (one transaction)."""
    conn.execute("BEGIN")
    try:
        for statement in _DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def check(conn: sqlite3.Connection) -> None:
    """Raise ``SchemaError`` unless ``conn`` holds a chat database of this schema version."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version != SCHEMA_VERSION:
        raise SchemaError(f"chat database schema version {version} is not supported (this code uses {SCHEMA_VERSION})")
    if conn.execute("SELECT count(*) FROM meta WHERE id = 1").fetchone() != (1,):
        raise SchemaError("chat database has no meta row")


def open_database(path: Path | str) -> sqlite3.Connection:
    """Open (creating if new) the chat database at ``path``: configured, schema created or checked.

    The connection is in autocommit mode and not bound to the opening thread; use it from one thread at a time.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    try:
        configure(conn)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        if version == 0 and not has_tables:
            create(conn)
        check(conn)
    except BaseException:
        conn.close()
        raise
    return conn
