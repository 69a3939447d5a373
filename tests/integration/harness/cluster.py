"""``Cluster``: N key-value node processes on loopback, their peer links through the harness's proxies.

Node ``n`` (1-based) listens on ``127.0.0.(n+1)`` at a free port, keeps its data under ``<root>/node<n>`` and
logs to ``<root>/logs/node<n>.log``. Its ``--peer m=...`` addresses are the proxies ``n -> m`` of ``Network``,
so every Raft byte between two nodes crosses a link the test controls; clients talk to nodes directly.

The harness reads each node's own view through ``kv.v1.DataService/Status`` and stale ``Get``s (this node's
applied state), never through the node's logs. ``leader()`` and ``wait_converged()`` poll with deadlines.
A ``LeaderMonitor`` samples every node's (role, term) in the background so that "at most one leader per term"
is checked over the whole test, not only at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from .process import NodeProcess
from .proxy import LinkState, Network

READY_MARKER = "serving on"
STATUS_TIMEOUT_S = 1.0


def host_of(node: int) -> str:
    """Node ``node``'s own loopback address."""
    if not 1 <= node <= 8:
        raise ValueError("nodes are numbered 1..8 (127.0.0.2..127.0.0.9)")
    return f"127.0.0.{node + 1}"


def free_port(host: str) -> int:
    """A port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pb() -> tuple[Any, Any]:
    from raft_grpc.kv._gen.kv.v1 import kv_pb2, kv_pb2_grpc

    return kv_pb2, kv_pb2_grpc


@dataclass(frozen=True)
class Timing:
    """Raft timing of the nodes (CLI flags). Elections time out after 0.5 to 1 s by default here."""

    tick_interval: float = 0.05
    election_ticks: int = 10
    heartbeat_ticks: int = 2

    @property
    def election_timeout(self) -> float:
        """The longest randomized election timeout in seconds."""
        return 2 * self.election_ticks * self.tick_interval

    def args(self) -> list[str]:
        """The flags."""
        return [
            "--tick-interval",
            str(self.tick_interval),
            "--election-ticks",
            str(self.election_ticks),
            "--heartbeat-ticks",
            str(self.heartbeat_ticks),
        ]


@dataclass(frozen=True)
class NodeView:
    """One node's answer to Status."""

    node: int
    role: str
    term: int
    leader: int
    commit: int
    applied: int
    last: int


class Cluster:
    """N node processes, the proxy mesh between them and gRPC channels to each (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        timing: Timing | None = None,
        extra_args: Sequence[str] = (),
        log_level: str = "INFO",
        name: str = "cluster",
    ) -> None:
        if size < 1 or size > 8:
            raise ValueError("1 to 8 nodes")
        self.root = root
        self.name = name
        self.ids = list(range(1, size + 1))
        self.timing = timing or Timing()
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.hosts = {n: host_of(n) for n in self.ids}
        self.ports = {n: free_port(self.hosts[n]) for n in self.ids}
        self.net = Network(self.hosts, {n: (self.hosts[n], self.ports[n]) for n in self.ids})
        self.secret_file = root / "cluster.secret"
        self.nodes: dict[int, NodeProcess] = {}
        self._channels: dict[int, grpc.aio.Channel] = {}
        self.monitor = LeaderMonitor(self)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Cluster:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

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

    def argv(self, n: int) -> list[str]:
        """The command line of node ``n``."""
        argv = [sys.executable, "-m", "raft_grpc.kv", "serve", "--id", str(n), "--listen", self.endpoint(n)]
        for m in self.ids:
            if m != n:
                argv += ["--peer", f"{m}={self.net.peer_address(n, m)}"]
        for m in self.ids:
            argv += ["--client-address", f"{m}={self.endpoint(m)}"]
        argv += ["--data-dir", str(self.root / f"node{n}"), "--secret-file", str(self.secret_file)]
        argv += [*self.timing.args(), "--log-level", self.log_level, *self.extra_args]
        return argv

    async def close(self) -> None:
        """Stop the monitor, kill every node still running (ours only), close channels and proxies."""
        await self.monitor.stop()
        for proc in self.nodes.values():
            if proc.paused:
                proc.resume()
        await asyncio.gather(*(proc.kill() for proc in self.nodes.values()), return_exceptions=True)
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close(grace=None)
        self._channels.clear()
        await self.net.close()

    def force_cleanup(self) -> None:
        """Synchronous last resort for the fixture finalizer: SIGKILL our processes that still run."""
        for proc in self.nodes.values():
            proc.force_cleanup()

    def log_report(self, lines: int = 80) -> str:
        """Every node's log tail and the network state, for a failure report."""
        parts = [f"network: {self.net.describe()}"]
        for n, proc in sorted(self.nodes.items()):
            parts.append(f"---- node {n} ({proc.state}, {proc.log_path}) ----\n{proc.log_tail(lines)}")
        return "\n".join(parts)

    # -- addresses ------------------------------------------------------------------------------------------

    def endpoint(self, n: int) -> str:
        """Node ``n``'s client (and Raft) address."""
        return f"{self.hosts[n]}:{self.ports[n]}"

    def endpoints(self, nodes: Iterable[int] | None = None) -> list[str]:
        """Client addresses of ``nodes`` (default: all)."""
        return [self.endpoint(n) for n in (self.ids if nodes is None else nodes)]

    # -- faults ---------------------------------------------------------------------------------------------

    def live(self) -> list[int]:
        """Nodes whose process runs and is not paused."""
        return [n for n, p in sorted(self.nodes.items()) if p.alive and not p.paused]

    async def kill(self, n: int) -> None:
        """SIGKILL node ``n``."""
        await self.nodes[n].kill()
        self._drop_channel(n)

    async def stop(self, n: int) -> int:
        """SIGTERM node ``n`` and wait for it to exit; returns its exit code."""
        rc = await self.nodes[n].stop()
        self._drop_channel(n)
        return rc

    def pause(self, n: int) -> None:
        """SIGSTOP node ``n``."""
        self.nodes[n].pause()

    def resume(self, n: int) -> None:
        """SIGCONT node ``n``."""
        self.nodes[n].resume()

    async def restart(self, n: int) -> None:
        """Start node ``n`` again on its address and data directory (it must have been killed or stopped)."""
        await self.nodes[n].restart()

    def isolate(self, n: int, mode: LinkState = LinkState.RESET) -> None:
        """Cut node ``n`` from every peer (clients still reach it)."""
        self.net.isolate(n, mode=mode)

    def partition(self, *groups: Iterable[int], mode: LinkState = LinkState.RESET) -> None:
        """Only nodes of the same group talk to each other."""
        self.net.partition(*groups, mode=mode)

    def heal(self) -> None:
        """Bring every link up."""
        self.net.heal()

    # -- node views -----------------------------------------------------------------------------------------

    def stub(self, n: int) -> Any:
        """A ``DataService`` stub bound to node ``n`` only."""
        _, pb_grpc = _pb()
        channel = self._channels.get(n)
        if channel is None:
            channel = grpc.aio.insecure_channel(
                self.endpoint(n),
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 500),
                ],
            )
            self._channels[n] = channel
        return pb_grpc.DataServiceStub(channel)

    def _drop_channel(self, n: int) -> None:
        channel = self._channels.pop(n, None)
        if channel is not None:
            task = asyncio.ensure_future(channel.close(grace=None))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def status(self, n: int, timeout: float = STATUS_TIMEOUT_S) -> NodeView | None:
        """Node ``n``'s Status, or None if it does not answer in time."""
        pb, _ = _pb()
        if not self.nodes[n].alive or self.nodes[n].paused:
            return None
        try:
            st = await self.stub(n).Status(pb.StatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        return NodeView(n, st.role, st.term, st.leader_id, st.commit_index, st.applied_index, st.last_index)

    async def statuses(self, nodes: Iterable[int] | None = None) -> dict[int, NodeView]:
        """Status of every live node of ``nodes`` that answers."""
        targets = [n for n in (self.live() if nodes is None else nodes) if n in self.live()]
        views = await asyncio.gather(*(self.status(n) for n in targets))
        return {v.node: v for v in views if v is not None}

    async def leader(self, timeout: float = 15.0, among: Iterable[int] | None = None) -> int:
        """Poll until one node leads the highest term seen and a majority of the cluster follows it."""
        nodes = list(self.ids if among is None else among)
        majority = len(self.ids) // 2 + 1
        deadline = time.monotonic() + timeout
        last: dict[int, NodeView] = {}
        while time.monotonic() < deadline:
            last = await self.statuses(nodes)
            if last:
                top = max(v.term for v in last.values())
                leaders = [v.node for v in last.values() if v.role == "leader" and v.term == top]
                if len(leaders) == 1:
                    lead = leaders[0]
                    followers = [v for v in last.values() if v.term == top and v.leader == lead]
                    if len(followers) >= majority:
                        return lead
            await asyncio.sleep(0.05)
        raise AssertionError(f"no leader among {nodes} within {timeout}s; last views: {sorted(last.values(), key=str)}")

    async def stale_get(self, n: int, key: str, timeout: float = 2.0) -> tuple[str | None, int]:
        """Node ``n``'s own applied value of ``key`` and the store revision (no leader involved)."""
        pb, _ = _pb()
        resp = await self.stub(n).Get(pb.GetRequest(key=key.encode(), stale=True), timeout=timeout)
        return (resp.value.decode() if resp.found else None), resp.revision

    async def wait_converged(
        self, keys: Iterable[str], timeout: float = 30.0, nodes: Iterable[int] | None = None
    ) -> dict[str, str | None]:
        """Wait until every live node of ``nodes`` has applied everything committed and holds the same value
        for each of ``keys``; returns that state.
        """
        wanted = sorted(set(keys))
        deadline = time.monotonic() + timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            targets = [n for n in (self.live() if nodes is None else nodes) if n in self.live()]
            views = await self.statuses(targets)
            problem = self._converged_problem(targets, views)
            if not problem:
                try:
                    states = {n: await self._snapshot(n, wanted) for n in targets}
                except grpc.aio.AioRpcError as exc:
                    problem = f"stale read failed: {exc.code().name}"
                else:
                    first = states[targets[0]]
                    diff = [n for n in targets if states[n] != first]
                    if not diff:
                        after = await self.statuses(targets)
                        if all(after.get(n) and after[n].applied == views[n].applied for n in targets):
                            return {k: v for k, (v, _) in first.items()}
                        problem = "applied index moved while reading"
                    else:
                        problem = f"nodes {diff} differ from node {targets[0]}: " + _first_diff(states, targets)
            await asyncio.sleep(0.1)
        raise AssertionError(f"cluster did not converge within {timeout}s: {problem}")

    @staticmethod
    def _converged_problem(targets: list[int], views: dict[int, NodeView]) -> str:
        missing = [n for n in targets if n not in views]
        if missing:
            return f"nodes {missing} do not answer Status"
        applied = {n: v.applied for n, v in views.items()}
        commits = {n: v.commit for n, v in views.items()}
        if len(set(applied.values())) > 1 or len(set(commits.values())) > 1:
            return f"applied {applied}, commit {commits}"
        if any(v.applied < v.commit for v in views.values()):
            return f"applied {applied} behind commit {commits}"
        return ""

    async def _snapshot(self, n: int, keys: list[str]) -> dict[str, tuple[str | None, int]]:
        results = await asyncio.gather(*(self.stale_get(n, k) for k in keys))
        return dict(zip(keys, results, strict=True))


def _first_diff(states: dict[int, dict[str, tuple[str | None, int]]], targets: list[int]) -> str:
    first = states[targets[0]]
    for n in targets[1:]:
        for key, value in states[n].items():
            if first.get(key) != value:
                return f"key {key!r}: node {targets[0]} {first.get(key)!r}, node {n} {value!r}"
    return "?"


class LeaderMonitor:
    """Samples every live node's Status about every 100 ms; remembers who claimed to lead which term."""

    def __init__(self, cluster: Cluster, interval: float = 0.1) -> None:
        self.cluster = cluster
        self.interval = interval
        self.leaders_by_term: dict[int, set[int]] = defaultdict(set)
        self.max_term: dict[int, int] = {}
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def sample(self) -> None:
        """Take one sample now."""
        views = await self.cluster.statuses()
        self.samples += 1
        for v in views.values():
            if v.role == "leader":
                self.leaders_by_term[v.term].add(v.node)
            previous = self.max_term.get(v.node, 0)
            self.max_term[v.node] = max(previous, v.term)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.sample()
            await asyncio.sleep(self.interval)

    def check_election_safety(self) -> None:
        """At most one leader was ever seen per term."""
        bad = {term: sorted(nodes) for term, nodes in self.leaders_by_term.items() if len(nodes) > 1}
        if bad:
            raise AssertionError(f"two leaders in one term (split brain): {bad}")

    def terms_led_by(self, node: int) -> list[int]:
        """Terms in which ``node`` was seen leading."""
        return sorted(t for t, nodes in self.leaders_by_term.items() if node in nodes)
