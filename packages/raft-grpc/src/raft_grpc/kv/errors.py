"""The errors ``KvClient`` raises: one small hierarchy under ``KvError``."""

from __future__ import annotations


class KvError(Exception):
    """Base of every error the key-value client raises; ``code`` is the last gRPC status name, if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        """Build the error with its message and, if it came from a call, the gRPC status name."""
        super().__init__(message)
        self.code = code


class KvUnavailable(KvError):
    """No node could serve the call before its deadline (no leader, no quorum, nodes down).

    A write that fails this way may or may not have been applied; the client retried it with one (client_id,
    seq), so it was applied at most once.
    """


class KvInvalidArgument(KvError, ValueError):
    """The server refused the request's content (key or value size, missing field); nothing changed."""


class KvSessionExpired(KvError):
    """The client's session is unknown or expired; the client opens a new one for its next write."""
