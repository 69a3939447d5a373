"""raft_grpc: raft-core's ``Transport`` over gRPC (``raft.v1.NodeCommunication``), its codec and its servicer.

Public API: ``GrpcTransport`` (with ``TransportOptions`` and ``TlsConfig``), ``RaftServicer`` (to share a
``grpc.aio.Server`` with other services), the ``codec`` module and the error types.
"""

from raft_grpc import codec
from raft_grpc.auth import PeerAuth
from raft_grpc.errors import DecodeError, EncodeError, RaftGrpcError
from raft_grpc.lanes import BULK_KINDS, LaneStats
from raft_grpc.options import TlsConfig, TransportOptions
from raft_grpc.servicer import RaftServicer
from raft_grpc.transport import GrpcTransport

__version__ = "0.1.0"

__all__ = [
    "BULK_KINDS",
    "DecodeError",
    "EncodeError",
    "GrpcTransport",
    "LaneStats",
    "PeerAuth",
    "RaftGrpcError",
    "RaftServicer",
    "TlsConfig",
    "TransportOptions",
    "codec",
]
