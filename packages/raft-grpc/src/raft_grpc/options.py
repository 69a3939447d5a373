"""``TransportOptions`` (queues, limits, timeouts, backoff) and ``TlsConfig`` (mutual TLS), validated when built.

The options also render the grpc channel and server arguments they imply, so client and server agree on
message size limits and keepalive (a client pinging more often than its server allows is cut off).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import grpc

GrpcOptions = list[tuple[str, int | str]]

_SLACK = 64 << 10
"""Bytes grpc accepts above ``max_message_bytes``: a larger Batch gets INVALID_ARGUMENT from raft-grpc itself,
and only one beyond this slack is refused by grpc (RESOURCE_EXHAUSTED) before it is read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    """How a ``GrpcTransport`` queues, batches, limits and reconnects. Times are in seconds.

    Memory per peer is bounded by the two lanes' byte limits (plus one batch being written). A message that
    does not fit its lane's queue is dropped and the node told the peer is unreachable; Raft retries.
    """

    control_queue_messages: int = 1024
    """Messages waiting on a peer's control lane (votes, heartbeats, replies, TimeoutNow)."""
    control_queue_bytes: int = 4 << 20
    """Serialized bytes waiting on a peer's control lane."""
    bulk_queue_messages: int = 256
    """Messages waiting on a peer's bulk lane (appends, snapshot chunks, forwarded proposals)."""
    bulk_queue_bytes: int = 32 << 20
    """Serialized bytes waiting on a peer's bulk lane."""
    max_message_bytes: int = 8 << 20
    """Largest stream message (one Batch) sent or accepted; a single larger WireMessage is never sent."""
    connect_timeout: float = 2.0
    """Deadline for a lane's stream to be established."""
    stall_timeout: float = 10.0
    """A write blocked this long (the peer stopped reading) ends the stream; queued messages are dropped."""
    initial_backoff: float = 0.05
    """First pause before reconnecting a failed lane; doubles per failure, with +-50% jitter."""
    max_backoff: float = 2.0
    """Longest pause between reconnects (also grpc's own reconnect backoff ceiling)."""
    keepalive_time: float = 10.0
    """Idle time after which a connection is pinged, so a dead peer is noticed without traffic."""
    keepalive_timeout: float = 5.0
    """How long a ping may stay unanswered before the connection is closed."""
    shutdown_grace: float = 0.5
    """Seconds an own server lets open streams finish when the transport closes."""

    def __post_init__(self) -> None:
        """Reject values that are not positive, and backoff bounds in the wrong order."""
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"TransportOptions.{f.name} must be positive, got {value!r}")
        if self.initial_backoff > self.max_backoff:
            raise ValueError("TransportOptions.initial_backoff must not exceed max_backoff")
        if self.max_message_bytes > self.bulk_queue_bytes:
            raise ValueError("TransportOptions.max_message_bytes must not exceed bulk_queue_bytes")

    def channel_options(self) -> GrpcOptions:
        """The grpc channel arguments for one lane's channel (each lane gets its own HTTP/2 connection)."""
        return [
            ("grpc.max_send_message_length", self.max_message_bytes + _SLACK),
            ("grpc.max_receive_message_length", 1 << 20),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", _ms(self.initial_backoff)),
            ("grpc.min_reconnect_backoff_ms", _ms(self.initial_backoff)),
            ("grpc.max_reconnect_backoff_ms", _ms(self.max_backoff)),
            ("grpc.enable_retries", 0),
            ("grpc.use_local_subchannel_pool", 1),  # a connection of its own: control never shares with bulk
        ]

    def server_options(self) -> GrpcOptions:
        """The grpc server arguments matching ``channel_options`` (sizes, and pings the clients will send)."""
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes + _SLACK),
            ("grpc.max_send_message_length", 1 << 20),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", _ms(self.keepalive_time / 2)),
            ("grpc.http2.max_ping_strikes", 0),
        ]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Mutual TLS between the nodes of a cluster: every node presents a certificate signed by the cluster CA.

    Servers require and verify client certificates; clients verify the server's certificate against the
    CA and the name in ``server_name`` (by default, the host of the peer's address). PEM bytes throughout.
    """

    ca_certificate: bytes
    """The cluster CA certificate (PEM) that signs every node's certificate."""
    certificate_chain: bytes
    """This node's certificate (PEM), valid for both server and client authentication."""
    private_key: bytes = field(repr=False)
    """This node's private key (PEM). Never logged."""
    server_name: str | None = None
    """Name to expect in peers' server certificates instead of their address's host (e.g. ``raft-node``)."""

    def __post_init__(self) -> None:
        """Reject empty PEM inputs."""
        for name in ("ca_certificate", "certificate_chain", "private_key"):
            if not getattr(self, name):
                raise ValueError(f"TlsConfig.{name} is empty")

    @classmethod
    def from_files(
        cls, ca: str | Path, certificate: str | Path, key: str | Path, server_name: str | None = None
    ) -> TlsConfig:
        """Read the CA certificate, this node's certificate and its key from PEM files."""
        return cls(Path(ca).read_bytes(), Path(certificate).read_bytes(), Path(key).read_bytes(), server_name)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Server credentials that require a client certificate signed by the cluster CA."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.ca_certificate,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials presenting this node's certificate and trusting only the cluster CA."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_certificate,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )
