"""``PeerAuth``: who may open a Raft stream to this node, proven by an HMAC of the shared cluster secret.

Every stream carries, in its metadata, the sender's id (``raft-src``), the receiver's id (``raft-dst``) and
``raft-auth``: the hex HMAC-SHA256, keyed by the cluster secret, of ``"raft.v1 <src>-><dst>"``. A server
accepts a stream only from a member of its cluster other than itself, addressed to itself, with the right
HMAC (compared in constant time). The secret is never logged or shown in a ``repr``.

The token is a static credential: it proves cluster membership, not freshness. Without TLS anyone who can
read the traffic can replay it; enable mutual TLS (``TlsConfig``) on networks you do not control.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from raft_core.types import NodeId

SRC, DST, LANE, AUTH = "raft-src", "raft-dst", "raft-lane", "raft-auth"
"""Metadata keys of a Raft stream."""

MIN_SECRET_BYTES = 16


class PeerAuth:
    """Makes and checks the credentials of streams between the members of one cluster."""

    __slots__ = ("_members", "_secret")

    def __init__(self, secret: bytes, members: Iterable[NodeId]) -> None:
        """Use ``secret`` (at least 16 bytes, shared by every member) for the cluster of ``members``."""
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = bytes(secret)
        self._members = frozenset(members)

    def __repr__(self) -> str:
        return f"PeerAuth(members={sorted(self._members)}, secret=<hidden>)"

    def token(self, src: NodeId, dst: NodeId) -> str:
        """The ``raft-auth`` value of a stream from ``src`` to ``dst``."""
        return hmac.new(self._secret, b"raft.v1 %d->%d" % (src, dst), hashlib.sha256).hexdigest()

    def metadata(self, src: NodeId, dst: NodeId, lane: str) -> tuple[tuple[str, str], ...]:
        """The metadata with which ``src`` opens a stream on ``lane`` to ``dst``."""
        return ((SRC, str(src)), (DST, str(dst)), (LANE, lane), (AUTH, self.token(src, dst)))

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None, me: NodeId) -> NodeId | None:
        """The member that opened a stream to ``me`` with ``metadata``, or None if it did not prove it is one."""
        values = {key: value for key, value in metadata or () if isinstance(value, str)}
        try:
            src, dst = int(values[SRC]), int(values[DST])
            given = values[AUTH].encode("ascii")
        except (KeyError, ValueError, UnicodeEncodeError):
            return None
        if src not in self._members or src == me or dst != me:
            return None
        if not hmac.compare_digest(self.token(src, dst).encode("ascii"), given):
            return None
        return src
