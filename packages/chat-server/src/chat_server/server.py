"""``ChatServer``: one chat node as a process — storage, the Raft node, the SQLite state machine, the client API.

Two grpc.aio servers: the peer server (Raft traffic, run by ``GrpcTransport`` on ``peer_listen``,
authenticated by the cluster secret and optionally mutual TLS) and the client server on ``client_listen``
(``chat.v1`` MessageService, DataService and MonitoringService through the betterproto2 adapter, the
standard health service, server reflection; TLS when configured). Health is NOT_SERVING until the node
knows a leader. ``serve`` owns signal handling: on SIGTERM or SIGINT the node stops accepting calls, lets
in-flight ones finish, hands leadership to the most up-to-date peer if it leads, and closes its storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio  # what grpc_health.v1.health.aio re-exports
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from chat_server import rpc
from chat_server.auth import Passwords
from chat_server.catalog import DATA_SERVICE, MESSAGE_SERVICE, MONITORING_SERVICE, SERVICES
from chat_server.fanout import Fanout
from chat_server.metrics import Metrics
from chat_server.ratelimit import RateLimiter
from chat_server.services.context import ServiceContext
from chat_server.services.data import DataHandlers
from chat_server.services.messages import MessageHandlers
from chat_server.services.monitoring import MonitoringHandlers
from chat_server.settings import Settings
from chat_server.store import ChatQueries, ChatStateMachine
from raft_core import Membership
from raft_core.runtime import LeaderChange, Node, NodeOptions
from raft_core.storage import DiskStorage
from raft_core.types import NONE
from raft_grpc.options import TlsConfig, TransportOptions
from raft_grpc.transport import GrpcTransport

log = logging.getLogger(__name__)

CLIENT_MAX_MESSAGE = 4 << 20
METRICS_INTERVAL_S = 1.0
TRANSFER_TIMEOUT_S = 2.0


def node_options(settings: Settings) -> NodeOptions:
    """The runtime options of a chat node."""
    return NodeOptions(
        tick_interval=settings.tick_ms / 1000,
        election_ticks=settings.election_ticks,
        heartbeat_ticks=settings.heartbeat_ticks,
        snapshot_entries=settings.snapshot_entries,
        compact_keep_entries=settings.compact_keep_entries,
        forward_proposals=settings.forward_writes,
        max_inflight_appends=settings.max_inflight_appends,
    )


class ChatServer:
    """One node of the chat cluster: ``await start()``, then ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.node: Node | None = None
        self.client_port: int | None = None
        self.state_machine: ChatStateMachine | None = None
        self.fanout: Fanout | None = None
        self._client_server: grpc.aio.Server | None = None
        self._health: Any = None
        self._messages: MessageHandlers | None = None
        self._monitoring: MonitoringHandlers | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_election_ms = 0

    @property
    def client_address(self) -> str:
        """The client address served (with the bound port if the setting asked for port 0)."""
        host = self.settings.client_listen.rpartition(":")[0]
        return f"{host}:{self.client_port}"

    async def start(self) -> None:
        """Open storage and the database, bind both servers, start the node."""
        s = self.settings
        data_dir = Path(s.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        fanout_ref: list[Fanout] = []
        sm = ChatStateMachine(
            data_dir / "chat.db",
            on_notice=lambda notice: fanout_ref[0].notify(notice),
            commit_delay=self.settings.commit_delay_ms / 1000,
            call_later=asyncio.get_running_loop().call_later,
        )
        self.state_machine = sm
        queries = ChatQueries(sm)
        fanout = Fanout(queries, co_members=queries.co_members)
        fanout_ref.append(fanout)
        self.fanout = fanout

        peer_tls = None
        if s.peer_tls_cert_file is not None:
            assert s.peer_tls_key_file is not None and s.peer_tls_ca_file is not None
            peer_tls = TlsConfig.from_files(s.peer_tls_ca_file, s.peer_tls_cert_file, s.peer_tls_key_file)
        transport = GrpcTransport(
            s.node_id,
            s.peer_addresses(),
            secret=s.cluster_secret_bytes(),
            tls=peer_tls,
            options=TransportOptions(initial_backoff=0.02, max_backoff=0.5, connect_timeout=1.0),
        )
        storage = DiskStorage.open(
            data_dir / "raft",
            membership=Membership.of(*s.peer_addresses()),
            unsafe_skip_fsync=s.unsafe_skip_fsync,
            on_sync=self.metrics.observe_fsync,
        )
        node = Node(s.node_id, sm, storage, transport, node_options(s))
        self.node = node

        limiter = RateLimiter(s.rate_limit_per_s, s.rate_limit_burst)
        ctx = ServiceContext(
            node,
            queries,
            s.client_addresses(),
            limiter,
            observe_proposal=self.metrics.observe_proposal,
            sessions_generation=lambda: sm.sessions_generation,
        )
        passwords = Passwords(time_cost=s.password_hash_time_cost, memory_kib=s.password_hash_memory_kib)
        self._messages = MessageHandlers(
            ctx,
            fanout,
            passwords,
            token_ttl_s=s.token_ttl_s,
            max_subscribers=s.max_subscribers,
            observe_send=self.metrics.observe_rpc,
        )
        data = DataHandlers(ctx, s.admin_token_value())
        self._monitoring = MonitoringHandlers(
            ctx,
            client_address=s.client_addresses().get(s.node_id, s.client_listen),
            last_election_ms=lambda: self._last_election_ms,
            connected_clients=lambda: len(fanout),
            tls_root=Path(s.tls_cert_file).read_bytes() if s.tls_cert_file else None,
        )

        server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", CLIENT_MAX_MESSAGE),
                ("grpc.max_receive_message_length", 2 << 20),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.http2.max_pings_without_data", 0),
            ]
        )
        observe = self.metrics.observe_rpc
        server.add_generic_rpc_handlers(
            (
                rpc.generic_handler(SERVICES[MESSAGE_SERVICE], self._messages, observe=observe),
                rpc.generic_handler(SERVICES[DATA_SERVICE], data, observe=observe),
                rpc.generic_handler(SERVICES[MONITORING_SERVICE], self._monitoring, observe=observe),
            )
        )
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
        )
        try:
            if s.tls_cert_file is not None:
                assert s.tls_key_file is not None
                creds = grpc.ssl_server_credentials(
                    [(Path(s.tls_key_file).read_bytes(), Path(s.tls_cert_file).read_bytes())]
                )
                self.client_port = server.add_secure_port(s.client_listen, creds)
            else:
                self.client_port = server.add_insecure_port(s.client_listen)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen on {s.client_listen}: {exc}") from None
        self._client_server = server
        await self._set_health(serving=False)
        await server.start()
        await node.start()
        node.add_observer(self._on_leader_change)
        await self._set_health(serving=node.leader != NONE)
        if s.metrics_listen:
            host, _, port = s.metrics_listen.rpartition(":")
            self.metrics.start_http(host, int(port))
        self._spawn(self._report_metrics())
        log.info("node %d serving clients on %s", s.node_id, self.client_address)

    async def stop(self) -> None:
        """Stop gracefully: refuse new calls, finish in-flight ones, hand over leadership, close storage."""
        grace = self.settings.shutdown_grace_s
        if self._health is not None:
            with contextlib.suppress(Exception):
                await self._health.enter_graceful_shutdown()
        if self.fanout is not None:
            self.fanout.close_all()  # streams end now: their clients resume on another node
        if self._messages is not None:
            await self._messages.close()
        if self._client_server is not None:
            await self._client_server.stop(grace)
            self._client_server = None
        node = self.node
        if node is not None:
            await self._hand_over(node)
            await node.stop()
            self.node = None
        if self._monitoring is not None:
            await self._monitoring.close()
        for task in self._tasks:
            task.cancel()
        if self.state_machine is not None:
            self.state_machine.close()
            self.state_machine = None
        self.metrics.stop()
        log.info("node %d stopped", self.settings.node_id)

    async def _hand_over(self, node: Node) -> None:
        """If leading, transfer leadership to the most up-to-date peer (best effort, bounded)."""
        if not node.is_leader:
            return
        progress = node.status().progress
        peers = sorted(((p.match, peer) for peer, p in progress.items() if peer != node.id), reverse=True)
        if not peers:
            return
        target = peers[0][1]
        try:
            await node.transfer_leadership(target, timeout=TRANSFER_TIMEOUT_S)
            log.info("node %d handed leadership to node %d", node.id, target)
        except Exception as exc:
            log.warning("node %d could not hand leadership to node %d: %s", node.id, target, exc)

    # -- health, metrics ------------------------------------------------------------------------------------

    def _on_leader_change(self, change: LeaderChange) -> None:
        if change.leader != NONE:
            self._last_election_ms = int(time.time() * 1000)
            self.metrics.election()
        self._spawn(self._set_health(serving=change.leader != NONE))

    async def _set_health(self, *, serving: bool) -> None:
        if self._health is None:
            return
        value = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *SERVICES):
            await self._health.set(service, value)

    async def _report_metrics(self) -> None:
        while True:
            node = self.node
            if node is not None:
                with contextlib.suppress(Exception):
                    st = node.status()
                    lag = {p: max(0, st.last_index - pr.match) for p, pr in st.progress.items() if p != st.id}
                    self.metrics.set_raft(st.term, st.role.value, st.leader, st.commit, node.applied_index, lag)
                    self.metrics.set_clients(len(self.fanout) if self.fanout is not None else 0)
            await asyncio.sleep(METRICS_INTERVAL_S)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def serve(settings: Settings) -> int:
    """Run one node until SIGTERM or SIGINT; print the startup line once serving. Returns the exit code."""
    server = ChatServer(settings)
    try:
        await server.start()
    except (RuntimeError, OSError) as exc:
        log.error("node %d cannot start: %s", settings.node_id, exc)
        await server.stop()
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # Everything made so far (modules, classes, generated message types, the node) lives as long as the process:
    # keep it out of the cyclic collector, whose full passes over it took 30-80 ms on this machine (a stall of
    # every stream and proposal on the node each time). Only what is made from now on is scanned.
    gc.collect()
    gc.freeze()
    print(f"chat-server node {settings.node_id} serving clients on {server.client_address}", flush=True)
    await stopping.wait()
    log.info("node %d stopping on a signal", settings.node_id)
    await server.stop()
    return 0
