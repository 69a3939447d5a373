"""``Metrics``: a node's Prometheus metrics (its own registry) and the HTTP endpoint that serves them.

The server calls plain methods (``set_raft``, ``observe_proposal``, ``observe_rpc``...) and never touches
prometheus-client objects directly, so the metric names and labels are decided here. All methods are
thread-safe (prometheus-client locks internally): storage may call ``observe_fsync`` from its worker thread.

Exposed metrics (``chat_`` prefix): ``raft_term``, ``raft_role{role}`` (1 for the current role, 0 for the
others), ``raft_leader_id`` (0: none known), ``raft_commit_index``, ``raft_applied_index``,
``raft_elections_total``, ``raft_peer_lag_entries{peer}`` (on the leader only), ``proposals_total{op,outcome}``,
``proposal_duration_seconds{op}``, ``fsync_duration_seconds``, ``connected_clients``,
``rpc_total{method,code}``, ``rpc_duration_seconds{method,code}`` and ``node_info{node_id,version}``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

import chat_server

log = logging.getLogger(__name__)

ROLES = ("follower", "pre-candidate", "candidate", "leader")
"""Raft roles known in advance (a ``raft_role`` series each); other role names get a series when first seen."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: proposals and RPCs (a LAN commit takes a few milliseconds; timeouts are seconds)."""
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds: an fsync takes tens of microseconds on NVMe, milliseconds on disks and network volumes."""


class Metrics:
    """One node's metrics in a registry of their own (so several nodes can share one process in tests)."""

    def __init__(self, node_id: int | None = None, *, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics in ``registry`` (default: a new one), labelled as node ``node_id`` in ``node_info``."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._peers: set[str] = set()
        self._roles: set[str] = set(ROLES)
        # The labelled children of the per-request metrics, by label values: ``labels()`` costs more than the
        # increment and the observation together, and these are fed once or twice per message.
        self._proposal_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._rpc_series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

        info = Gauge(
            "chat_node_info", "This node's id and the chat-server version.", ["node_id", "version"], registry=r
        )
        info.labels(str(node_id or ""), chat_server.__version__).set(1)
        self.term = Gauge("chat_raft_term", "The current Raft term.", registry=r)
        self.role = Gauge(
            "chat_raft_role", "1 for this node's current Raft role, 0 for the others.", ["role"], registry=r
        )
        for role in ROLES:
            self.role.labels(role).set(1 if role == "follower" else 0)
        self.leader = Gauge("chat_raft_leader_id", "The leader this node knows of (0: none).", registry=r)
        self.commit_index = Gauge("chat_raft_commit_index", "The highest log index known committed.", registry=r)
        self.applied_index = Gauge("chat_raft_applied_index", "The highest log index applied.", registry=r)
        self.elections = Counter("chat_raft_elections", "New leaders this node has seen elected.", registry=r)
        self.peer_lag = Gauge(
            "chat_raft_peer_lag_entries",
            "Entries a follower is behind the leader (on the leader).",
            ["peer"],
            registry=r,
        )
        self.proposals = Counter(
            "chat_proposals", "Commands proposed by this node, by operation and outcome.", ["op", "outcome"], registry=r
        )
        self.proposal_seconds = Histogram(
            "chat_proposal_duration_seconds",
            "Time from proposing a command to its result.",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fsync_seconds = Histogram(
            "chat_fsync_duration_seconds", "Time of one fsync of the Raft log.", buckets=FSYNC_BUCKETS, registry=r
        )
        self.clients = Gauge("chat_connected_clients", "Open Subscribe streams on this node.", registry=r)
        self.rpcs = Counter(
            "chat_rpc", "Client RPCs answered, by method and status code.", ["method", "code"], registry=r
        )
        self.rpc_seconds = Histogram(
            "chat_rpc_duration_seconds",
            "Time to answer a client RPC, by method and status code.",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    # -- what the server feeds in

    def set_raft(
        self, term: int, role: str, leader: int, commit: int, applied: int, peer_lag: Mapping[int, int]
    ) -> None:
        """Record the node's Raft state; ``peer_lag`` replaces the previous lags (empty off the leader).

        Args:
            term: The current term.
            role: ``follower``, ``pre-candidate``, ``candidate`` or ``leader``.
            leader: The known leader's id, 0 when none.
            commit: The commit index.
            applied: The applied index.
            peer_lag: Entries each follower is behind, by node id (the leader knows; others pass ``{}``).
        """
        self.term.set(term)
        self.leader.set(leader)
        self.commit_index.set(commit)
        self.applied_index.set(applied)
        with self._lock:
            self._roles.add(role)
            for name in self._roles:
                self.role.labels(name).set(1 if name == role else 0)
            current = {str(peer) for peer in peer_lag}
            for gone in self._peers - current:
                self.peer_lag.remove(gone)
            for peer, lag in peer_lag.items():
                self.peer_lag.labels(str(peer)).set(lag)
            self._peers = current

    def observe_proposal(self, op: str, outcome: str, seconds: float) -> None:
        """Count a proposal of operation ``op`` that ended with ``outcome`` (e.g. ``ok``) after ``seconds``."""
        series = self._proposal_series.get((op, outcome))
        if series is None:
            series = self._proposal_series[op, outcome] = (
                self.proposals.labels(op, outcome),
                self.proposal_seconds.labels(op),
            )
        series[0].inc()
        series[1].observe(seconds)

    def observe_fsync(self, seconds: float) -> None:
        """Record one fsync's duration."""
        self.fsync_seconds.observe(seconds)

    def election(self) -> None:
        """Count a newly elected leader seen by this node."""
        self.elections.inc()

    def client_connected(self) -> None:
        """A Subscribe stream opened."""
        self.clients.inc()

    def client_disconnected(self) -> None:
        """A Subscribe stream closed."""
        self.clients.dec()

    def set_clients(self, count: int) -> None:
        """Set the number of open Subscribe streams (instead of counting opens and closes)."""
        self.clients.set(count)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """Count a client RPC ``method`` (e.g. ``SendMessage``) answered with status ``code`` (e.g. ``OK``)."""
        series = self._rpc_series.get((method, code))
        if series is None:
            series = self._rpc_series[method, code] = (
                self.rpcs.labels(method, code),
                self.rpc_seconds.labels(method, code),
            )
        series[0].inc()
        series[1].observe(seconds)

    # -- exposition

    def render(self) -> bytes:
        """The text exposition of every metric (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def start_http(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` from a background thread; returns the bound port (for port 0).

        Args:
            host: The address to bind (brackets of an IPv6 address are removed).
            port: The port, 0 for any free one.

        Returns:
            The port bound.

        Raises:
            RuntimeError: If already serving.
            OSError: If the address cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already serving")
        self._server, self._thread = start_http_server(port, addr=host.strip("[]"), registry=self.registry)
        bound = int(self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop(self) -> None:
        """Stop the HTTP endpoint, if serving (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)
