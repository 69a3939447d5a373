"""The errors raft-grpc raises: one small hierarchy under ``RaftGrpcError``."""

from __future__ import annotations


class RaftGrpcError(Exception):
    """Base of every raft-grpc error."""


class DecodeError(RaftGrpcError, ValueError):
    """Bytes or a protobuf message from the wire are not a valid ``WireMessage`` (the message names why)."""


class EncodeError(RaftGrpcError, ValueError):
    """A ``WireMessage`` cannot be put on the wire (a field is out of range, or it is too large)."""
