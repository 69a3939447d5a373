"""``ServiceContext``: what every handler shares — the Raft node, the read side, deadlines, authentication.

It also proposes commands, mapping their errors to statuses. ``CallContext`` is what it reads of a call: a
``grpc.aio.ServicerContext``, or an ``ItemContext`` for one call carried inside a batched stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import grpc

from chat_server import commands
from chat_server.auth import bearer_token, token_hash
from chat_server.errors import ChatError, chat_error_for
from chat_server.ratelimit import RateLimited, RateLimiter
from chat_server.store import ChatQueries, SessionRow
from raft_core.runtime import Node
from raft_core.types import NONE

DEFAULT_TIMEOUT = 10.0
"""Seconds a call without a deadline may take."""
MARGIN = 0.05
"""Seconds kept back from each call's deadline so that the answer still arrives in time."""
MAX_REQUEST_ID = 64
SESSION_CACHE = 10_000
"""Most sessions ``caller`` remembers (the cache starts over when full)."""

ProposalObserver = Callable[[str, str, float], None]


class CallContext(Protocol):
    """What a handler reads of its call: the metadata (the session token) and the time it may still take."""

    def invocation_metadata(self) -> Iterable[Any] | None:
        """The call's metadata: ``(key, value)`` pairs."""
        ...

    def time_remaining(self) -> float | None:
        """Seconds until the call's deadline (None: no deadline)."""
        ...


class ItemContext:
    """The ``CallContext`` of one call inside a batched stream: its own token and deadline."""

    __slots__ = ("_deadline", "_metadata")

    def __init__(self, token: str, timeout: float | None) -> None:
        """``token``: the caller's session token ("" for none); ``timeout``: seconds it may take (None: default)."""
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def invocation_metadata(self) -> Iterable[Any] | None:
        """The item's token as ``authorization`` metadata (empty without a token)."""
        return self._metadata

    def time_remaining(self) -> float | None:
        """Seconds left of the item's timeout (None: the server's default applies)."""
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())


class ServiceContext:
    """Shared by the handlers of one node."""

    def __init__(
        self,
        node: Node,
        queries: ChatQueries,
        client_addresses: Mapping[int, str],
        limiter: RateLimiter,
        *,
        clock: Callable[[], float] = time.time,
        observe_proposal: ProposalObserver | None = None,
        sessions_generation: Callable[[], int] | None = None,
    ) -> None:
        """``sessions_generation`` (the state machine's) lets ``caller`` reuse sessions it has read already."""
        self.node = node
        self.queries = queries
        self.client_addresses = dict(client_addresses)
        self.limiter = limiter
        self.clock = clock
        self.observe_proposal = observe_proposal
        self._sessions_generation = sessions_generation
        self._sessions: dict[str, tuple[int, SessionRow]] = {}  # token hash -> (generation, session)

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (for values made before proposing)."""
        return int(self.clock() * 1000)

    @staticmethod
    def timeout(context: CallContext) -> float:
        """The time this call may still take."""
        remaining = context.time_remaining()
        if remaining is None:
            return DEFAULT_TIMEOUT
        return max(0.0, min(remaining, 3600.0) - MARGIN)

    def leader_address(self) -> str | None:
        """The leader's client address, when known."""
        leader = self.node.leader
        return self.client_addresses.get(leader) if leader != NONE else None

    def error(self, exc: BaseException) -> ChatError:
        """The status a client gets for ``exc``."""
        return chat_error_for(exc, self.leader_address())

    async def propose(self, command: commands.ChatCommand, context: CallContext) -> Any:
        """Replicate ``command`` and return the state machine's result (errors mapped to ``ChatError``)."""
        start = time.monotonic()
        outcome = "ok"
        try:
            # Every chat command is idempotent (request ids are deduplicated by the state machine; mark-read,
            # typing and presence are idempotent by nature), so a follower may forward it again after a
            # leader change instead of letting it time out with a dead leader.
            data = commands.encode(command)
            return await self.node.propose(data, timeout=self.timeout(context), idempotent=True)
        except ChatError:
            outcome = "error"
            raise
        except Exception as exc:
            error = self.error(exc)
            outcome = error.code.name.lower()
            raise error from None
        finally:
            if self.observe_proposal is not None:
                self.observe_proposal(command.op, outcome, time.monotonic() - start)

    async def linearizable(self, context: CallContext) -> None:
        """Wait until this node has applied everything committed before now (ReadIndex)."""
        try:
            await self.node.read(timeout=self.timeout(context))
        except Exception as exc:
            raise self.error(exc) from None

    async def at_least(self, applied: int, context: CallContext) -> None:
        """Wait until this node has applied ``applied`` (a client's "never older than what I saw")."""
        try:
            await self.node.wait_applied(applied, timeout=self.timeout(context))
        except TimeoutError:
            raise ChatError(
                grpc.StatusCode.UNAVAILABLE, f"this node has not caught up to index {applied} yet; retry"
            ) from None
        except Exception as exc:
            raise self.error(exc) from None

    async def caller(self, context: CallContext) -> str:
        """The username the call's bearer token belongs to, or UNAUTHENTICATED.

        A token this node does not know yet (a login just committed elsewhere) is looked up again after a
        linearizable read barrier, so a client may log in on one node and go on with another at once.
        """
        token = bearer_token(context.invocation_metadata())
        if token is None:
            raise ChatError.unauthenticated()
        digest = token_hash(token)
        session = self._session(digest)
        if session is None:
            await self.linearizable(context)
            session = self._session(digest)
        if session is None:
            raise ChatError.unauthenticated("the session token is unknown or was logged out; sign in again")
        if session.expires_at_ms <= self.now_ms():
            raise ChatError.unauthenticated("the session has expired; sign in again")
        return session.username

    def _session(self, digest: str) -> SessionRow | None:
        """The session of token hash ``digest``: from the cache while the sessions table is unchanged."""
        if self._sessions_generation is None:
            return self.queries.session_by_token_hash(digest)
        generation = self._sessions_generation()
        cached = self._sessions.get(digest)
        if cached is not None and cached[0] == generation:
            return cached[1]
        session = self.queries.session_by_token_hash(digest)
        if session is not None:
            if len(self._sessions) >= SESSION_CACHE:
                self._sessions.clear()
            self._sessions[digest] = (generation, session)
        return session

    def check_rate(self, username: str) -> None:
        """RESOURCE_EXHAUSTED if ``username`` is over its rate on this node."""
        try:
            self.limiter.check(username)
        except RateLimited as exc:
            raise ChatError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"too many requests; retry after {exc.retry_after:.2f}s"
            ) from None

    @staticmethod
    def request_id(value: str) -> str:
        """``value`` if it is a valid request id, else INVALID_ARGUMENT."""
        if not value:
            raise ChatError.invalid("request_id", "required: a client-generated id (e.g. a UUID) reused on retries")
        if len(value) > MAX_REQUEST_ID:
            raise ChatError.invalid("request_id", f"at most {MAX_REQUEST_ID} characters")
        return value
