"""``GrpcTransport``: raft-core's ``Transport`` over grpc.aio, with two lanes per peer and authenticated streams.

Outbound, every peer has a control lane and a bulk lane (see ``raft_grpc.lanes``), each a grpc channel with
one long-lived client stream of ``raft.v1.Batch``es fed from a bounded queue. ``send`` never blocks: it
encodes each message, picks its lane and queues it; a full queue, a message too large to ever send, or a
lost stream drops messages and tells the node the peer is unreachable (Raft retries). Inbound, a
``RaftServicer`` authenticates each stream and hands valid messages to the node, either on a server the
transport runs on its own address or on a ``grpc.aio.Server`` shared with other services.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial

import grpc

from raft_core.runtime.transport import Receiver
from raft_core.runtime.wire import WireMessage
from raft_core.types import NodeId
from raft_grpc import codec
from raft_grpc._gen.raft.v1 import raft_pb2 as pb
from raft_grpc.auth import PeerAuth
from raft_grpc.errors import EncodeError
from raft_grpc.lanes import BULK, BULK_KINDS, CONTROL, LaneSender, LaneStats
from raft_grpc.options import TlsConfig, TransportOptions
from raft_grpc.servicer import SEND_METHOD, RaftServicer

log = logging.getLogger(__name__)


class GrpcTransport:
    """This node's end of the cluster's gRPC mesh.

    Example:
        >>> transport = GrpcTransport(
        ...     1, {1: "10.0.0.1:7001", 2: "10.0.0.2:7001", 3: "10.0.0.3:7001"}, secret=cluster_secret
        ... )
        >>> node = Node(1, state_machine, storage, transport)
    """

    def __init__(
        self,
        node_id: NodeId,
        addresses: Mapping[NodeId, str],
        *,
        secret: bytes,
        tls: TlsConfig | None = None,
        options: TransportOptions | None = None,
        server: grpc.aio.Server | None = None,
    ) -> None:
        """Set up node ``node_id`` of the cluster ``addresses``; nothing runs until ``start``.

        Args:
            node_id: This node's id; it must be a key of ``addresses``.
            addresses: Every member (this node included) and its ``host:port``.
            secret: The cluster secret (at least 16 bytes) shared by every member; proves membership.
            tls: Mutual TLS settings; without them traffic is authenticated but not encrypted.
            options: Queues, limits, timeouts and backoff (defaults suit a LAN).
            server: A ``grpc.aio.Server`` not yet started to serve on (its owner binds, starts and stops it,
                and must use ``options.server_options()``); by default the transport runs its own server
                on ``addresses[node_id]``.

        Raises:
            ValueError: ``node_id`` has no address, an id is not positive, or the secret is too short.
        """
        if node_id not in addresses:
            raise ValueError(f"node {node_id} has no address in {dict(addresses)}")
        if any(node <= 0 for node in addresses):
            raise ValueError(f"node ids must be positive: {sorted(addresses)}")
        self.node_id = node_id
        self._addresses = dict(addresses)
        self._tls = tls
        self._opts = options or TransportOptions()
        self._auth = PeerAuth(secret, addresses)
        self.servicer = RaftServicer(node_id, self._auth, max_message_bytes=self._opts.max_message_bytes)
        self._server = server
        self._own_server = server is None
        if server is not None:
            self.servicer.add_to_server(server)
        self._receiver: Receiver | None = None
        self._lanes: dict[NodeId, tuple[LaneSender, LaneSender]] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._port: int | None = None

    # -- the Transport protocol -----------------------------------------------------------------------------

    async def start(self, receiver: Receiver) -> None:
        """Serve this node's address (unless on a shared server) and start both lanes to every peer.

        Raises:
            RuntimeError: The transport is already started, or its own server could not bind its address.
        """
        if self._lanes or self._receiver is not None:
            raise RuntimeError(f"the transport of node {self.node_id} is already started")
        self._receiver = receiver
        self.servicer.attach(receiver)
        if self._own_server:
            await self._start_server()
        for peer in sorted(self._addresses):
            if peer != self.node_id:
                lanes = (self._lane(peer, CONTROL), self._lane(peer, BULK))
                self._lanes[peer] = lanes
                for lane in lanes:
                    lane.start()

    def send(self, messages: Sequence[WireMessage]) -> None:
        """Queue ``messages`` on their peers' lanes; never blocks.

        A message to an unknown node, one that cannot be encoded, one larger than ``max_message_bytes`` or
        one that does not fit its lane's queue is dropped, and the node told its destination is unreachable.
        """
        unreachable: set[NodeId] = set()
        limit = self._opts.max_message_bytes
        for m in messages:
            lanes = self._lanes.get(m.dst)
            if lanes is None:
                unreachable.add(m.dst)
                continue
            try:
                data = codec.encode_message(m)
            except EncodeError as exc:
                log.error("dropped a message to node %d: %s", m.dst, exc)
                unreachable.add(m.dst)
                continue
            if codec.framed_size(len(data)) > limit:
                log.warning("dropped a %d-byte %s to node %d (limit %d)", len(data), type(m).__name__, m.dst, limit)
                unreachable.add(m.dst)
            elif not lanes[type(m) in BULK_KINDS].put(data):
                unreachable.add(m.dst)
        for node in unreachable:
            self._report_unreachable(node)

    def address_of(self, node: NodeId) -> str | None:
        """The ``host:port`` of ``node``, if it is a member."""
        return self._addresses.get(node)

    async def close(self) -> None:
        """Stop every lane, close the channels and (if it is the transport's own) stop the server."""
        self.servicer.detach()
        for lanes in self._lanes.values():
            for lane in lanes:
                await lane.close()
        self._lanes.clear()
        for channel in self._channels:
            await channel.close(None)
        self._channels.clear()
        if self._own_server and self._server is not None:
            await self._server.stop(self._opts.shutdown_grace)
            self._server = None
        self._receiver = None

    # -- extras ---------------------------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The port the transport's own server bound (useful with ``host:0``); None on a shared server."""
        return self._port

    def stats(self) -> dict[NodeId, dict[str, LaneStats]]:
        """Per peer and lane: messages and bytes queued, sent, dropped, batches and streams opened."""
        return {peer: {lane.lane: lane.snapshot_stats() for lane in lanes} for peer, lanes in self._lanes.items()}

    # -- internals ------------------------------------------------------------------------------------------

    async def _start_server(self) -> None:
        server = grpc.aio.server(options=self._opts.server_options())
        self.servicer.add_to_server(server)
        address = self._addresses[self.node_id]
        try:
            if self._tls is None:
                self._port = server.add_insecure_port(address)
            else:
                self._port = server.add_secure_port(address, self._tls.server_credentials())
        except RuntimeError as exc:
            raise RuntimeError(f"node {self.node_id} cannot serve on {address}: {exc}") from None
        await server.start()
        self._server = server

    def _lane(self, peer: NodeId, lane: str) -> LaneSender:
        address = self._addresses[peer]
        options = self._opts.channel_options()
        if self._tls is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            if self._tls.server_name:
                options.append(("grpc.ssl_target_name_override", self._tls.server_name))
            channel = grpc.aio.secure_channel(address, self._tls.channel_credentials(), options=options)
        self._channels.append(channel)
        method = channel.stream_unary(
            SEND_METHOD, request_serializer=None, response_deserializer=pb.SendSummary.FromString
        )
        metadata = self._auth.metadata(self.node_id, peer, lane)
        open_stream = partial(method, metadata=metadata, wait_for_ready=False)
        return LaneSender(peer, lane, open_stream, self._opts, self._report_unreachable)

    def _report_unreachable(self, node: NodeId) -> None:
        receiver = self._receiver
        if receiver is not None:
            receiver.unreachable(node)
