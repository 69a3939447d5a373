"""``ChatNodes``: N ``chat-server`` processes on loopback, their Raft links through the harness's proxies.

The same shape as the key-value ``Cluster`` (node ``n`` on ``127.0.0.(n+1)``, peer traffic crossing the
directed proxies of ``Network`` so partitions are real network cuts, SIGKILL/SIGSTOP/restart by PID), with the
chat server's two ports per node: clients talk to the client port directly, peers reach the peer port through
the proxies. fsync stays on; password hashing is made cheap and the Raft timing short for tests.

A node's view comes from ``chat.v1.MonitoringService/GetNodeStatus``; its database (``events`` of each
conversation) is read directly from its SQLite file, read-only, for the convergence checks.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc

from .cluster import Cluster, NodeView, free_port
from .process import NodeProcess
from .proxy import Network

READY_MARKER = "serving clients on"


class ChatNodes(Cluster):
    """N chat-server node processes (see the module docstring); ``async with`` starts them and finds a leader."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        settings: dict[str, Any] | None = None,
        name: str = "chat",
    ) -> None:
        super().__init__(root, size, name=name)
        self.peer_ports = {n: free_port(self.hosts[n]) for n in self.ids}
        self.net = Network(self.hosts, {n: (self.hosts[n], self.peer_ports[n]) for n in self.ids})
        self.settings: dict[str, Any] = {
            "tick-ms": 20,
            "election-ticks": 15,
            "heartbeat-ticks": 3,
            "password-hash-time-cost": 1,
            "password-hash-memory-kib": 64,
            "rate-limit-per-s": 1000,
            "rate-limit-burst": 1000,
            "log-format": "text",
            "shutdown-grace-s": 0.5,
            **(settings or {}),
        }

    async def start(self, *, wait_leader: bool = True) -> None:
        """Start the proxies, then every node (concurrently), then wait for a leader."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret_file.write_text(secrets.token_hex(32) + "\n")
        self.secret_file.chmod(0o600)
        await self.net.start()
        for n in self.ids:
            self.nodes[n] = NodeProcess(n, self.argv(n), self.root / "logs" / f"node{n}.log", ready_marker=READY_MARKER)
        for proc in self.nodes.values():
            proc.spawn()
        await asyncio.gather(*(proc.wait_ready() for proc in self.nodes.values()))
        self.monitor.start()
        if wait_leader:
            await self.leader()

    def data_dir(self, n: int) -> Path:
        """Node ``n``'s data directory."""
        return self.root / f"node{n}"

    def argv(self, n: int) -> list[str]:
        """The command line of node ``n`` (its peers' addresses are the proxies ``n -> m``)."""
        peer_of = {m: self.net.peer_address(n, m) for m in self.ids if m != n}
        peer_of[n] = f"{self.hosts[n]}:{self.peer_ports[n]}"
        argv = [sys.executable, "-m", "chat_server", "serve", "--node-id", str(n)]
        argv += ["--client-listen", self.endpoint(n), "--peer-listen", peer_of[n]]
        for m in self.ids:
            argv += ["--node", f"{m}={peer_of[m]},{self.endpoint(m)}"]
        argv += ["--data-dir", str(self.data_dir(n)), "--cluster-secret-file", str(self.secret_file)]
        for key, value in self.settings.items():
            argv += [f"--{key}", str(value)]
        return argv

    def _channel(self, n: int) -> grpc.aio.Channel:
        channel = self._channels.get(n)
        if channel is None:
            channel = grpc.aio.insecure_channel(self.endpoint(n), options=[("grpc.max_reconnect_backoff_ms", 500)])
            self._channels[n] = channel
        return channel

    async def status(self, n: int, timeout: float = 1.0) -> NodeView | None:
        """Node ``n``'s MonitoringService view, or None if it does not answer in time."""
        from chat_server._gen.pb.chat.v1 import monitoring_pb2 as pb

        if not self.nodes[n].alive or self.nodes[n].paused:
            return None
        call = self._channel(n).unary_unary(
            "/chat.v1.MonitoringService/GetNodeStatus",
            request_serializer=pb.GetNodeStatusRequest.SerializeToString,
            response_deserializer=pb.NodeStatus.FromString,
        )
        try:
            st = await call(pb.GetNodeStatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        return NodeView(n, st.role, st.term, st.leader_id, st.commit_index, st.applied_index, st.last_index)

    async def wait_applied_equal(self, timeout: float = 30.0, nodes: Sequence[int] | None = None) -> int:
        """Poll until every node of ``nodes`` (default: all) answers with one applied index; returns it."""
        targets = list(self.ids if nodes is None else nodes)
        deadline = asyncio.get_running_loop().time() + timeout
        views: dict[int, NodeView] = {}
        while asyncio.get_running_loop().time() < deadline:
            views = await self.statuses(targets)
            applied = {v.applied for v in views.values()}
            commits = {v.commit for v in views.values()}
            if len(views) == len(targets) and len(applied) == 1 and applied == commits:
                return applied.pop()
            await asyncio.sleep(0.1)
        raise AssertionError(f"nodes {targets} did not converge within {timeout}s: {sorted(views.values(), key=str)}")

    def events(self, n: int, conversations: Iterable[str] | None = None) -> dict[str, list[tuple[Any, ...]]]:
        """Node ``n``'s events per conversation, read from its database: (seq, kind, sender, body, request_id)."""
        path = self.data_dir(n) / "chat.db"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            query = (
                "SELECT conversation_id, seq, kind, sender, body, request_id FROM events ORDER BY conversation_id, seq"
            )
            out: dict[str, list[tuple[Any, ...]]] = {}
            wanted = None if conversations is None else set(conversations)
            for cid, *rest in db.execute(query):
                if wanted is None or cid in wanted:
                    out.setdefault(cid, []).append(tuple(rest))
            return out
        finally:
            db.close()
