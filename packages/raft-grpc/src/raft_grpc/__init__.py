"""raft_grpc: the gRPC wire layer for raft-core (planned). Nothing is implemented yet."""

__version__ = "0.1.0"
