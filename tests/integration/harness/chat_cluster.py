"""``ChatCluster``: N chat-server node processes on loopback, their Raft links through the harness's proxies,
plus the chat workload (``ChatUser``) and the checks the chat scenarios end with.

Node ``n`` runs ``python -m chat_server serve --config <root>/config/node<n>.toml`` on ``127.0.0.(n+1)``, with
two ports: the client port (clients, the harness's status calls) and the peer port (Raft). In node ``n``'s
config, every other node ``m``'s peer address is the proxy ``n -> m`` of ``Network`` and its own entry is its
real peer address, so every Raft byte between two nodes crosses a link the test controls; client addresses are
the nodes' real ones. fsync stays on (the default); argon2 is made cheap, Raft timing short and rate limits high.

The harness reads a node's view through ``chat.v1.MonitoringService/GetNodeStatus`` and its data by opening
``<root>/node<n>/chat.db`` read-only (an online backup into memory, so a running node's file is read as one
consistent snapshot and never written). ``wait_databases_converged`` polls until every node holds the same
rows in every replicated table; two nodes that differ at the same applied index, or that hold different events
at the same seq of a conversation, fail at once: committed entries never conflict.

``ChatUser`` is one account on a ``ChatClient`` (chat-client-qt's library, ``use_outbox=False``): every send is
recorded with its request_id and outcome (acknowledged at a seq, or unknown), every subscription event is kept
per conversation, and every client call is bounded by the client's own deadline plus ``MARGIN_S``, enforced
here, so a scenario can never hang on its load. ``check_*`` compare what the users saw with the databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from .cluster import Cluster, NodeView, Timing, free_port
from .process import NodeProcess
from .proxy import Network

T = TypeVar("T")

READY_MARKER = "serving clients on"
"""What a chat node prints (and logs) once it serves clients."""
STATUS_TIMEOUT_S = 1.0
COMMIT_SETTLE_S = 0.3
"""Longer than a node's commit delay (``commit_delay_ms``, 100 by default): a database position that has not
moved for this long, while nothing is being applied, holds everything its node applied."""
MARGIN_S = 2.0
"""Seconds a client call may overrun its own deadline before the harness calls it a hang."""
PASSWORD = "integration-password"

CHAT_TIMING = Timing(tick_interval=0.05, election_ticks=10, heartbeat_ticks=2)
"""50 ms ticks, elections after 0.5 to 1 s, heartbeats every 100 ms: as the key-value harness, a little slower
than the server's defaults so that 5 nodes, the proxies and 30 clients share 2 cores without spurious elections."""

TEST_SETTINGS: dict[str, Any] = {
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 64,
    "rate_limit_per_s": 1000.0,
    "rate_limit_burst": 2000,
    "shutdown_grace_s": 1.0,
    "log_format": "text",
    "log_level": "INFO",
}
"""Settings of every test node (a scenario's ``settings`` override them): cheap argon2 and high per-user rate
limits; fsync is left on."""

REPLICATED_TABLES: dict[str, str] = {
    "meta": "id",
    "users": "username",
    "sessions": "token_hash",
    "conversations": "id",
    "members": "conversation_id, username",
    "events": "id",
    "applied_requests": "actor, request_id",
    "kv": "key",
}
"""The chat database's tables (see ``chat_server.store.schema``) with the order their rows are compared in."""

EVENT_COLUMNS = (
    "id",
    "conversation_id",
    "seq",
    "kind",
    "sender",
    "body",
    "target_seq",
    "member",
    "time_ms",
    "edited_at_ms",
    "deleted",
    "request_id",
)

# chat.v1 EventKind values (proto/chat/v1/chat.proto); the database stores the same numbers.
CREATED, MESSAGE, EDITED, DELETED, JOINED, LEFT, RENAMED = 1, 2, 3, 4, 5, 6, 7


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic-string escapes
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


# -- the database ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRow:
    """One row of a node's ``events`` table."""

    id: int
    conversation_id: str
    seq: int
    kind: int
    sender: str
    body: str
    target_seq: int
    member: str
    time_ms: int
    edited_at_ms: int
    deleted: int
    request_id: str


@dataclass(frozen=True)
class ChatDatabase:
    """A consistent copy of one node's chat database: every replicated table's rows, in key order."""

    node: int
    tables: dict[str, list[tuple[Any, ...]]]

    @property
    def applied_index(self) -> int:
        """The Raft index the database has applied (table ``meta``)."""
        return int(self.tables["meta"][0][1])

    def events(self, conversation_id: str) -> list[EventRow]:
        """A conversation's events in seq order."""
        return sorted((e for e in self.all_events() if e.conversation_id == conversation_id), key=lambda e: e.seq)

    def all_events(self) -> list[EventRow]:
        """Every event, in commit order."""
        return [EventRow(*row) for row in self.tables["events"]]

    def by_conversation(self) -> dict[str, list[EventRow]]:
        """Every conversation's events, in seq order."""
        out: dict[str, list[EventRow]] = defaultdict(list)
        for event in sorted(self.all_events(), key=lambda e: (e.conversation_id, e.seq)):
            out[event.conversation_id].append(event)
        return dict(out)


def read_database(path: Path, node: int = 0) -> ChatDatabase:
    """Copy the chat database at ``path`` (running node or not) into memory and read every replicated table.

    The file is opened read-only; SQLite's online backup reads it inside one read transaction, so a database
    being written by its node is seen as of one commit.
    """
    if not path.exists():
        raise FileNotFoundError(path)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        tables = {
            table: [tuple(row) for row in copy.execute(f"SELECT * FROM {table} ORDER BY {order}")]
            for table, order in REPLICATED_TABLES.items()
        }
        columns = [row[1] for row in copy.execute("PRAGMA table_info(events)")]
        if tuple(columns) != EVENT_COLUMNS:
            raise AssertionError(f"the events table changed shape: {columns}; update EVENT_COLUMNS")
    finally:
        source.close()
        copy.close()
    return ChatDatabase(node, tables)


def first_difference(reference: ChatDatabase, other: ChatDatabase) -> str:
    """The first table row where two databases differ (``""`` if they are equal)."""
    for table in REPLICATED_TABLES:
        mine, theirs = reference.tables[table], other.tables[table]
        for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
            if a != b:
                return f"{table} row {i}: node {reference.node} {a!r}, node {other.node} {b!r}"
        if len(mine) != len(theirs):
            return f"{table}: node {reference.node} has {len(mine)} rows, node {other.node} {len(theirs)}"
    return ""


def check_no_conflicts(databases: Mapping[int, ChatDatabase]) -> None:
    """Safety at any moment: no two nodes hold different events at one (conversation, seq), and each node's
    conversations are numbered 1, 2, 3, ... with no hole (a lagging node holds a prefix)."""
    seen: dict[tuple[str, int], tuple[int, EventRow]] = {}
    for n, db in sorted(databases.items()):
        for conversation_id, events in db.by_conversation().items():
            seqs = [e.seq for e in events]
            if seqs != list(range(1, len(seqs) + 1)):
                raise AssertionError(f"node {n}: conversation {conversation_id} is not numbered 1..n: {seqs}")
            for event in events:
                key = (conversation_id, event.seq)
                if key in seen and seen[key][1] != event:
                    other, theirs = seen[key]
                    raise AssertionError(
                        f"conflicting committed events at {conversation_id}#{event.seq}: "
                        f"node {other} {theirs}, node {n} {event}"
                    )
                seen.setdefault(key, (n, event))


# -- the cluster ----------------------------------------------------------------------------------------------


class ChatCluster(Cluster):
    """N chat-server processes and the proxy mesh between their peer ports (see the module docstring).

    ``async with`` starts the proxies and the nodes and waits for a leader; leaving kills what still runs.
    Faults (``kill``, ``stop``, ``pause``, ``resume``, ``restart``, ``isolate``, ``partition``, ``heal``),
    ``leader()``, ``statuses()`` and the background ``monitor`` (at most one leader per term) are the key-value
    ``Cluster``'s; ``status()`` asks the node's MonitoringService.
    """

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        timing: Timing | None = None,
        settings: Mapping[str, Any] | None = None,
        name: str = "chat",
    ) -> None:
        super().__init__(root, size, timing=timing or CHAT_TIMING, name=name)
        # ``Cluster`` chose one free port per node: here it is the client port (``endpoint(n)``).
        self.peer_ports: dict[int, int] = {}
        for n in self.ids:
            port = free_port(self.hosts[n])
            while port == self.ports[n]:
                port = free_port(self.hosts[n])
            self.peer_ports[n] = port
        self.net = Network(self.hosts, {n: (self.hosts[n], self.peer_ports[n]) for n in self.ids})
        self.settings: dict[str, Any] = {**TEST_SETTINGS, **(settings or {})}
        self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHAT_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self._status_channels: dict[int, grpc.aio.Channel] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self, *, wait_leader: bool = True) -> None:
        """Start the proxies, write every node's config (it names the proxies), start the nodes, find a leader."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret_file.write_text(secrets.token_hex(32) + "\n")
        self.secret_file.chmod(0o600)
        await self.net.start()
        for n in self.ids:
            path = self.config_path(n)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.config_text(n))
            self.nodes[n] = NodeProcess(
                n, self.argv(n), self.root / "logs" / f"node{n}.log", ready_marker=READY_MARKER, env=self.env
            )
        for proc in self.nodes.values():
            proc.spawn()
        await asyncio.gather(*(proc.wait_ready() for proc in self.nodes.values()))
        self.monitor.start()
        if wait_leader:
            await self.leader()

    async def close(self) -> None:
        """Stop the monitor, kill our nodes, close the status channels and the proxies."""
        await super().close()
        for channel in self._status_channels.values():
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
        self._status_channels.clear()

    def config_path(self, n: int) -> Path:
        """Node ``n``'s TOML config file."""
        return self.root / "config" / f"node{n}.toml"

    def data_dir(self, n: int) -> Path:
        """Node ``n``'s data directory (``chat.db`` and ``raft/``)."""
        return self.root / f"node{n}"

    def database_path(self, n: int) -> Path:
        """Node ``n``'s chat database."""
        return self.data_dir(n) / "chat.db"

    def peer_address(self, n: int, m: int) -> str:
        """The address node ``n`` reaches node ``m``'s Raft endpoint at: its own listener, or the proxy."""
        return f"{self.hosts[n]}:{self.peer_ports[n]}" if n == m else self.net.peer_address(n, m)

    def config_text(self, n: int) -> str:
        """Node ``n``'s settings as TOML."""
        values: dict[str, Any] = {
            "node_id": n,
            "client_listen": self.endpoint(n),
            "peer_listen": self.peer_address(n, n),
            "data_dir": self.data_dir(n),
            "cluster_secret_file": self.secret_file,
            "tick_ms": max(1, round(self.timing.tick_interval * 1000)),
            "election_ticks": self.timing.election_ticks,
            "heartbeat_ticks": self.timing.heartbeat_ticks,
            **self.settings,
        }
        lines = [f"{key} = {_toml(value)}" for key, value in values.items()]
        for m in self.ids:
            lines += ["", "[[nodes]]", f"id = {m}"]
            lines += [f"peer = {_toml(self.peer_address(n, m))}", f"client = {_toml(self.endpoint(m))}"]
        return "\n".join(lines) + "\n"

    def argv(self, n: int) -> list[str]:
        """The command line of node ``n``."""
        return [sys.executable, "-m", "chat_server", "serve", "--config", str(self.config_path(n))]

    def log_since_start(self, n: int) -> str:
        """What node ``n``'s current (or last) run has logged."""
        return self.nodes[n].output_since_start()

    # -- node views -----------------------------------------------------------------------------------------

    def _drop_channel(self, n: int) -> None:
        super()._drop_channel(n)
        channel = self._status_channels.pop(n, None)
        if channel is not None:
            task = asyncio.ensure_future(channel.close(grace=None))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    def _status_channel(self, n: int) -> grpc.aio.Channel:
        channel = self._status_channels.get(n)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                self.endpoint(n),
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 500),
                ],
            )
            self._status_channels[n] = channel
        return channel

    async def node_status(self, n: int, timeout: float = STATUS_TIMEOUT_S) -> Any:
        """Node ``n``'s ``chat.v1.NodeStatus`` (protobuf); raises ``grpc.aio.AioRpcError`` if it does not answer."""
        from chat_server._gen.pb.chat.v1 import monitoring_pb2, monitoring_pb2_grpc

        stub = monitoring_pb2_grpc.MonitoringServiceStub(self._status_channel(n))
        return await stub.GetNodeStatus(monitoring_pb2.GetNodeStatusRequest(), timeout=timeout)

    async def status(self, n: int, timeout: float = STATUS_TIMEOUT_S) -> NodeView | None:
        """Node ``n``'s Raft view from its MonitoringService, or None if it does not answer in time."""
        if not self.nodes[n].alive or self.nodes[n].paused:
            return None
        try:
            st = await self.node_status(n, timeout)
        except grpc.aio.AioRpcError:
            return None
        return NodeView(n, st.role, st.term, st.leader_id, st.commit_index, st.applied_index, st.last_index)

    def stub(self, n: int) -> Any:
        """Not for chat nodes (they serve no key-value ``DataService`` without an admin token)."""
        raise NotImplementedError("ChatCluster nodes are read through node_status() and database()")

    async def stale_get(self, n: int, key: str, timeout: float = 2.0) -> tuple[str | None, int]:
        """Not for chat nodes."""
        raise NotImplementedError("ChatCluster nodes are read through node_status() and database()")

    async def wait_converged(
        self, keys: Iterable[str], timeout: float = 30.0, nodes: Iterable[int] | None = None
    ) -> dict[str, str | None]:
        """Not for chat nodes: use ``wait_databases_converged``."""
        raise NotImplementedError("use wait_databases_converged()")

    # -- databases ------------------------------------------------------------------------------------------

    async def database(self, n: int) -> ChatDatabase:
        """A consistent copy of node ``n``'s database (read in a thread: the proxies share this event loop)."""
        return await asyncio.to_thread(read_database, self.database_path(n), n)

    async def databases(self, nodes: Iterable[int] | None = None) -> dict[int, ChatDatabase]:
        """Copies of the databases of ``nodes`` (default: every node)."""
        targets = list(self.ids if nodes is None else nodes)
        copies = await asyncio.gather(*(self.database(n) for n in targets))
        return dict(zip(targets, copies, strict=True))

    async def wait_databases_converged(self, timeout: float = 60.0, nodes: Iterable[int] | None = None) -> ChatDatabase:
        """Wait until every node of ``nodes`` (default: all, which must be running) has applied everything
        committed and holds the same rows in every replicated table; returns that database.

        Fails at once when two nodes hold different events at one seq, or different rows at the same applied
        index. Call it once the load has stopped (closed subscriptions end presence leases: a few more entries).
        """
        targets = list(self.ids if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        settling: tuple[object, float] = (None, 0.0)  # (database positions and applied indexes, seen since)
        while time.monotonic() < deadline:
            views = await self.statuses(targets)
            missing = [n for n in targets if n not in views]
            applied = {n: v.applied for n, v in views.items()}
            commit = {n: v.commit for n, v in views.items()}
            if missing:
                problem = f"nodes {missing} do not answer GetNodeStatus"
            elif len(set(applied.values())) > 1 or applied != commit:
                problem = f"applied {applied}, commit {commit}"
            else:
                dbs = await self.databases(targets)
                check_no_conflicts(dbs)
                positions = {n: db.applied_index for n, db in dbs.items()}
                reference = dbs[targets[0]]
                # The files must hold everything applied. A node commits its SQLite transaction up to
                # commit_delay_ms after applying, and a file read before that shows an older position; the file
                # never records entries the state machine does not see (a new leader's no-op), so a position
                # short of the applied index counts once it has stood still for longer than the commit delay.
                seen = (tuple(positions.values()), tuple(applied.values()))
                if seen != settling[0]:
                    settling = (seen, time.monotonic())
                settled = positions == applied or time.monotonic() - settling[1] > COMMIT_SETTLE_S
                if len(set(positions.values())) == 1 and settled:
                    for n in targets[1:]:
                        diff = first_difference(reference, dbs[n])
                        if diff:
                            raise AssertionError(f"databases differ at applied index {reference.applied_index}: {diff}")
                    after = await self.statuses(targets)
                    if all(n in after and after[n].applied == applied[n] for n in targets):
                        return reference
                    problem = "the applied index moved while the databases were read"
                else:
                    problem = f"database positions {positions}, applied {applied}"
            await asyncio.sleep(0.1)
        raise AssertionError(f"databases of nodes {targets} did not converge within {timeout}s: {problem}")

    def endpoints_from(self, first: int, nodes: Iterable[int] | None = None) -> list[str]:
        """Client addresses of ``nodes`` (default: all), starting with node ``first`` (the client's first pick)."""
        order = list(self.ids if nodes is None else nodes)
        if first in order:
            k = order.index(first)
            order = order[k:] + order[:k]
        return self.endpoints(order)


# -- the workload ---------------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One ``send`` of a ``ChatUser``: acknowledged at ``seq``, or of unknown outcome (``seq`` None)."""

    room: str
    body: str
    request_id: str
    start: float
    end: float
    seq: int | None = None
    duplicate: bool = False
    error: str = ""

    @property
    def acked(self) -> bool:
        """Whether the cluster acknowledged it."""
        return self.seq is not None


class ClientHang(AssertionError):
    """A client call ran past its own deadline plus ``MARGIN_S``."""


async def bounded(awaitable: Awaitable[T], deadline_s: float, what: str) -> T:
    """Await ``awaitable`` for at most ``deadline_s + MARGIN_S``; a longer wait is a ``ClientHang``."""
    try:
        async with asyncio.timeout(deadline_s + MARGIN_S):
            return await awaitable
    except TimeoutError:
        raise ClientHang(f"{what} did not return within its {deadline_s}s deadline + {MARGIN_S}s") from None


class ChatUser:
    """One account on its own ``ChatClient``: records its sends and what its subscription delivered."""

    def __init__(
        self,
        name: str,
        endpoints: Sequence[str],
        *,
        timeout: float = 10.0,
        attempt_timeout: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        from chat_client_qt.client import ChatClient

        self.name = name
        self.timeout = timeout
        self.send_timeout = timeout if send_timeout is None else send_timeout
        self.client = ChatClient(
            list(endpoints), use_outbox=False, timeout=timeout, attempt_timeout=attempt_timeout, device=name
        )
        self.sent: list[Sent] = []
        self.received: dict[str, list[Any]] = defaultdict(list)  # conversation -> api.Event, in delivery order
        self.subscription: Any = None
        self.stream_error: BaseException | None = None
        self._reader: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"ChatUser({self.name})"

    async def call(self, awaitable: Awaitable[T], what: str, timeout: float | None = None) -> T:
        """A client call bounded by its deadline (``timeout`` or the client's) plus the harness's margin."""
        return await bounded(awaitable, self.timeout if timeout is None else timeout, f"{self.name}: {what}")

    async def sign_up(self, password: str = PASSWORD) -> None:
        """Register and log in."""
        await self.call(self.client.register(self.name, password), "register")
        await self.call(self.client.login(self.name, password), "login")

    @property
    def token(self) -> str:
        """The session token."""
        assert self.client.session is not None, f"{self.name} is not logged in"
        return self.client.session.token

    async def send(self, room: str, body: str, *, request_id: str | None = None, timeout: float | None = None) -> Sent:
        """Send ``body`` (deadline ``timeout``, default ``send_timeout``) and record the outcome; only a transient
        failure (the outcome is unknown) is swallowed."""
        from chat_client_qt.client import TransientError, new_request_id

        timeout = self.send_timeout if timeout is None else timeout
        rid = request_id or new_request_id()
        record = Sent(room, body, rid, time.monotonic(), 0.0)
        try:
            answer = await self.call(
                self.client.send(room, body, request_id=rid, timeout=timeout), f"send {body!r}", timeout
            )
        except TransientError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        else:
            assert answer.message is not None, f"{self.name}: a SendMessageResponse without its message"
            record.seq = answer.message.seq
            record.duplicate = answer.duplicate
            assert answer.message.body == body and answer.message.request_id == rid, (
                f"{self.name}: the ack of {body!r} names {answer.message.body!r} ({answer.message.request_id})"
            )
        record.end = time.monotonic()
        self.sent.append(record)
        return record

    def acked(self) -> list[Sent]:
        """Sends acknowledged (the last answer for each request_id)."""
        return [s for s in self.sent if s.acked]

    def last_seq(self) -> int:
        """The seq of this user's last acknowledged send."""
        seqs = [s.seq for s in self.sent if s.seq is not None]
        assert seqs, f"{self.name} has no acknowledged send"
        return seqs[-1]

    def unknown(self) -> list[Sent]:
        """Sends whose request_id was never acknowledged."""
        acked_ids = {s.request_id for s in self.sent if s.acked}
        return [s for s in self.sent if not s.acked and s.request_id not in acked_ids]

    def subscribe(self, cursors: Mapping[str, int] | None = None) -> None:
        """Start reading a resumable subscription in the background (``cursors``: start after these seqs)."""
        from chat_client_qt.client import api

        subscription = self.client.subscribe(cursors=dict(cursors or {}), idle_timeout=15.0)
        self.subscription = subscription

        async def read() -> None:
            try:
                async for item in subscription:
                    if isinstance(item, api.Event):
                        self.received[item.conversation_id].append(item)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # recorded: a non-retryable stream error fails the checks
                self.stream_error = exc

        self._reader = asyncio.create_task(read(), name=f"{self.name}-subscription")

    @property
    def reconnects(self) -> int:
        """How many times the subscription was reopened."""
        return int(self.subscription.reconnects) if self.subscription is not None else 0

    def delivered_up_to(self, room: str) -> int:
        """The last seq the subscription delivered in ``room`` (0: none)."""
        events = self.received.get(room)
        return int(events[-1].seq) if events else 0

    async def close(self) -> None:
        """Stop the subscription and close the client (bounded)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10.0):
                if self.subscription is not None:
                    await self.subscription.aclose()
                if self._reader is not None:
                    self._reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._reader
                await self.client.close()


async def close_all(users: Iterable[ChatUser]) -> None:
    """Close every user's client."""
    await asyncio.gather(*(u.close() for u in users), return_exceptions=True)


async def wait_delivered(users: Iterable[ChatUser], last_seq: Mapping[str, int], timeout: float = 30.0) -> None:
    """Wait until every user's subscription delivered each of its rooms (keys of ``received`` or ``last_seq``
    rooms it subscribed to) up to ``last_seq[room]``."""
    deadline = time.monotonic() + timeout
    pending: list[str] = []
    while time.monotonic() < deadline:
        pending = []
        for user in users:
            if user.stream_error is not None:
                raise AssertionError(f"{user.name}'s subscription failed: {user.stream_error!r}")
            for room in user_rooms(user, last_seq):
                if user.delivered_up_to(room) < last_seq[room]:
                    pending.append(f"{user.name}@{room}: {user.delivered_up_to(room)}/{last_seq[room]}")
        if not pending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscriptions not caught up after {timeout}s: {pending[:10]} ({len(pending)} behind)")


def user_rooms(user: ChatUser, rooms: Iterable[str]) -> list[str]:
    """The rooms of ``rooms`` that ``user`` subscribed to (has a cursor for)."""
    cursors = user.client.cursors
    return [room for room in rooms if room in cursors or room in user.received]


# -- the checks -----------------------------------------------------------------------------------------------


def check_sends(db: ChatDatabase, users: Iterable[ChatUser], rooms: Iterable[str]) -> dict[str, int]:
    """What the users sent against the converged database.

    - every acknowledged send is in its room exactly once, at the seq its acknowledgement named (with its
      sender, body and request_id), and every acknowledgement of one request_id names the same seq;
    - a send of unknown outcome is there at most once;
    - every MESSAGE in these rooms was sent by someone (nothing invented), and no body appears twice.

    Returns counts: ``acked`` (request_ids acknowledged), ``unknown`` (never acknowledged), ``unknown_applied``.
    """
    rooms = list(rooms)
    events = {room: db.events(room) for room in rooms}
    messages = {room: [e for e in evs if e.kind == MESSAGE] for room, evs in events.items()}
    by_body: dict[str, list[EventRow]] = defaultdict(list)
    for room in rooms:
        for e in messages[room]:
            by_body[e.body].append(e)
    twice = {body: [(e.conversation_id, e.seq) for e in evs] for body, evs in by_body.items() if len(evs) > 1}
    assert not twice, f"messages applied more than once: {dict(list(twice.items())[:5])}"
    sent_by_rid: dict[str, list[tuple[ChatUser, Sent]]] = defaultdict(list)
    for user in users:
        for s in user.sent:
            sent_by_rid[s.request_id].append((user, s))
    counts = Counter[str]()
    for rid, attempts in sent_by_rid.items():
        user, first = attempts[0]
        assert all(s.body == first.body and s.room == first.room for _, s in attempts), f"{rid} reused"
        found = by_body.get(first.body, [])
        acks = {s.seq for _, s in attempts if s.seq is not None}
        if acks:
            counts["acked"] += 1
            assert len(acks) == 1, f"{user.name}: request {rid} ({first.body!r}) acknowledged at seqs {sorted(acks)}"
            (seq,) = acks
            assert found, f"acknowledged message lost: {user.name} {first.body!r} at {first.room}#{seq}"
            e = found[0]
            assert (e.conversation_id, e.seq, e.sender, e.request_id) == (first.room, seq, user.name, rid), (
                f"acknowledged {first.body!r} at {first.room}#{seq} by {user.name} ({rid}) but the database has {e}"
            )
        else:
            counts["unknown"] += 1
            if found:
                counts["unknown_applied"] += 1
                e = found[0]
                assert (e.conversation_id, e.sender, e.request_id) == (first.room, user.name, rid), f"{e} vs {first}"
    known_bodies = {attempts[0][1].body for attempts in sent_by_rid.values()}
    invented = [e for room in rooms for e in messages[room] if e.body not in known_bodies]
    assert not invented, f"messages nobody sent: {invented[:5]}"
    return dict(counts)


def check_streams(db: ChatDatabase, users: Iterable[ChatUser], rooms: Iterable[str]) -> int:
    """Every subscription delivered, per room, a gap-free, duplicate-free, in-order run of the database's
    events, each equal to the database's (kind, sender, body, member, target_seq, request_id, time_ms).

    Returns the number of events checked.
    """
    checked = 0
    for user in users:
        for room in rooms:
            got = user.received.get(room, [])
            if not got:
                continue
            reference = db.events(room)
            seqs = [int(e.seq) for e in got]
            expected = list(range(seqs[0], seqs[0] + len(seqs)))
            if seqs != expected:
                bad = next(i for i, (a, b) in enumerate(zip(seqs, expected, strict=True)) if a != b)
                around = seqs[max(0, bad - 3) : bad + 3]
                raise AssertionError(f"{user.name}'s stream of {room} has a gap or a duplicate: ...{around}...")
            assert seqs[-1] <= len(reference), (
                f"{user.name} got {room}#{seqs[-1]}, the database ends at {len(reference)}"
            )
            for event in got:
                row = reference[int(event.seq) - 1]
                mine = (int(event.kind), event.sender, event.body, event.member, int(event.target_seq),
                        event.request_id, int(event.time_ms))  # fmt: skip
                theirs = (row.kind, row.sender, row.body, row.member, row.target_seq, row.request_id, row.time_ms)
                assert mine == theirs, f"{user.name}'s stream has {room}#{event.seq} = {mine}, the database {theirs}"
                checked += 1
    return checked


def messages_in(db: ChatDatabase, room: str) -> list[str]:
    """The bodies of a room's MESSAGE events, in seq order."""
    return [e.body for e in db.events(room) if e.kind == MESSAGE]


# -- the pytest fixture ---------------------------------------------------------------------------------------


def chat_cluster_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The body of a ``chat_clusters`` fixture: a factory of (not started) ``ChatCluster``s under ``tmp_path``;
    every node still running at the end is SIGKILLed, and failed tests get the node logs (conftest's hook)."""
    made: list[ChatCluster] = []
    request.node._clusters = made

    def make(size: int, **kwargs: Any) -> ChatCluster:
        name = kwargs.pop("name", f"chat{len(made)}")
        cluster = ChatCluster(tmp_path / name, size, name=name, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.force_cleanup()
