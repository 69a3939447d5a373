"""``Connection``: grpc.aio channels to every node of the cluster, node choice, leader tracking and retries.

The connection knows every endpoint (``host:port``) and keeps one channel per endpoint (plain, or TLS with
a CA file). Calls go to a sticky "current" node; replicated writes go to the leader when it is known, learnt
from a ``NOT_LEADER`` error's ``leader`` metadata or from a ``GetNodeStatus`` / ``GetClusterStatus`` answer.

Retries: a call that fails with UNAVAILABLE (including connection failures), DEADLINE_EXCEEDED (one attempt's
deadline) or CANCELLED (by the server or the transport) is sent again, with the very same request message
(hence the same request_id), to the leader named in the error at once, or else to the next node after a
jittered exponential backoff, until the call's overall deadline. Other errors surface at once as ``ChatError``.

Sends (``SendMessage``) go over one ``SendMessageBatches`` stream per node (``send_stream``): many senders
sharing a connection share its messages, which costs the nodes and the client a fraction of a unary call per
send. Each attempt is still one send with the same retry rules; a server without that method answers
UNIMPLEMENTED and the connection uses unary ``SendMessage`` calls from then on (``batch_sends=False``: always).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.client import rpc
from chat_client_qt.client.errors import (
    ChatError,
    ClientClosed,
    OutcomeUnknown,
    Unavailable,
    from_rpc_error,
)
from chat_client_qt.client.send_stream import SendStream

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Come back quickly when a node restarts (the defaults back off up to two minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # We retry ourselves, with request_ids; grpc's retry policy would hide which node answered.
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 16 << 20),
]


class Connection:
    """Channels to the nodes of one cluster, with node choice and retries (see the module's docstring).

    Example:
        >>> conn = Connection(["127.0.0.1:7001", "127.0.0.1:7002"], timeout=5.0)
        >>> status = await conn.call(rpc.GET_NODE_STATUS, api.GetNodeStatusRequest())
        >>> await conn.close()
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        tls_ca: str | Path | None = None,
        tls_server_name: str | None = None,
        timeout: float = 10.0,
        attempt_timeout: float | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        channel_options: Sequence[tuple[str, Any]] = (),
        rng: random.Random | None = None,
        batch_sends: bool = True,
    ) -> None:
        """Connect (lazily) to ``endpoints``.

        Args:
            endpoints: the nodes' client addresses, ``host:port`` (a comma-separated string is accepted).
            tls_ca: a PEM file of the CA that signed the nodes' certificates; None: plaintext.
            tls_server_name: the name to check in the nodes' certificates instead of the endpoint's host.
            timeout: the default overall deadline of one call, retries included (seconds).
            attempt_timeout: the deadline of one attempt on one node (default: a third of ``timeout``, at least
                1 s), so that a hung node costs only part of the budget.
            backoff_initial: the first retry delay; it doubles per failed attempt, with jitter.
            backoff_max: the largest retry delay.
            channel_options: extra grpc channel options.
            rng: the random source of the jitter (tests pass a seeded one).
            batch_sends: send messages over ``SendMessageBatches`` streams (see the module); False: unary calls.
        """
        if isinstance(endpoints, str):
            endpoints = [e for e in (part.strip() for part in endpoints.split(",")) if e]
        if not endpoints:
            raise ValueError("Connection needs at least one endpoint")
        self._endpoints: list[str] = list(dict.fromkeys(endpoints))
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout if attempt_timeout is not None else max(1.0, timeout / 3)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._credentials: grpc.ChannelCredentials | None = None
        if tls_ca is not None:
            self._credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        self._options: list[tuple[str, Any]] = [*_CHANNEL_OPTIONS, *channel_options]
        if tls_server_name:
            self._options.append(("grpc.ssl_target_name_override", tls_server_name))
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.batch_sends = batch_sends
        self._send_streams: dict[str, SendStream] = {}
        self._current = 0
        self._leader: str | None = None
        self._rng = rng or random.Random()
        self._closed = False

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Every known endpoint (the configured ones, then leaders learnt from the cluster)."""
        return list(self._endpoints)

    @property
    def current(self) -> str:
        """The node that reads and streams go to now."""
        return self._endpoints[self._current % len(self._endpoints)]

    @property
    def leader(self) -> str | None:
        """The leader's client address, if known."""
        return self._leader

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def set_leader(self, address: str | None) -> None:
        """Record the leader's client address (None: unknown); a new address becomes an endpoint."""
        if address and address not in self._endpoints:
            self._endpoints.append(address)
        if address != self._leader:
            log.info("leader: %s", address or "unknown")
        self._leader = address or None

    def learn(self, status: api.NodeStatus | api.ClusterStatus) -> None:
        """Learn the leader's address from a monitoring answer (if it names one)."""
        if isinstance(status, api.NodeStatus):
            if status.leader_address:
                self.set_leader(status.leader_address)
            return
        for node in status.nodes:
            if status.leader_id and node.node_id == status.leader_id and node.client_address:
                self.set_leader(node.client_address)
                return
        for node in status.nodes:
            if node.reachable and node.leader_address:
                self.set_leader(node.leader_address)
                return

    def pick(self, *, write: bool = False) -> str:
        """The endpoint for the next attempt: the leader for writes when known, else the current node."""
        if write and self._leader is not None:
            return self._leader
        return self.current

    def report_failure(self, endpoint: str, leader_hint: str | None = None) -> None:
        """Note that ``endpoint`` failed: follow ``leader_hint``, or move the current node on."""
        if leader_hint and leader_hint != endpoint:
            self.set_leader(leader_hint)
            return
        if self._leader == endpoint:
            self.set_leader(None)
        if self.current == endpoint:  # concurrent failures on one node move on once, not once each
            self._current = (self._current + 1) % len(self._endpoints)

    def backoff(self, attempt: int) -> float:
        """The jittered delay before retry number ``attempt`` (0-based): exponential, capped."""
        base = min(self.backoff_max, self.backoff_initial * (1 << min(attempt, 16)))
        return base * self._rng.uniform(0.5, 1.0)

    def channel(self, endpoint: str) -> grpc.aio.Channel:
        """The (lazily created) channel to ``endpoint``."""
        if self._closed:
            raise ClientClosed("the connection is closed")
        channel = self._channels.get(endpoint)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(endpoint, self._credentials, options=self._options)
            else:
                channel = grpc.aio.insecure_channel(endpoint, options=self._options)
            self._channels[endpoint] = channel
        return channel

    # -- calls ------------------------------------------------------------------------------------------------

    async def call(
        self,
        method: rpc.Method[rpc.ReqT, rpc.RespT],
        request: rpc.ReqT,
        *,
        metadata: rpc.Metadata | None = None,
        timeout: float | None = None,
        endpoint: str | None = None,
        request_id: str | None = None,
    ) -> rpc.RespT:
        """Send a unary request until a node answers, retrying the retryable failures until the deadline.

        The same ``request`` object (same request_id) is sent on every attempt.

        Args:
            method: the RPC (from ``rpc``).
            request: its request message.
            metadata: call metadata (e.g. the ``authorization`` header).
            timeout: the overall deadline in seconds (default: the connection's ``timeout``).
            endpoint: send only to this node (monitoring of one node); default: choose and rotate.
            request_id: the write's request_id, attached to errors for the caller's retry.

        Returns:
            The response message.

        Raises:
            ChatError: a non-retryable error at once; ``Unavailable`` or ``OutcomeUnknown`` at the deadline.
        """
        loop = asyncio.get_running_loop()
        budget = self.timeout if timeout is None else timeout
        deadline = loop.time() + budget
        attempt = 0
        redirects = 0
        last: ChatError | None = None
        maybe_applied = False
        redirect: str | None = None
        while (remaining := deadline - loop.time()) > 0:
            target = endpoint or redirect or self.pick(write=method.write)
            redirect = None
            try:
                return await self._attempt(target, method, request, min(remaining, self.attempt_timeout), metadata)
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc, endpoint=target, request_id=request_id)
            if self._closed:
                raise ClientClosed("the connection is closed", request_id=request_id)
            if not error.retryable:
                raise error
            last = error
            maybe_applied = maybe_applied or isinstance(error, OutcomeUnknown)
            hint = error.leader if isinstance(error, Unavailable) else None
            log.debug("%s on %s: %s %s (leader hint: %s)", method.name, target, error.code, error.message, hint)
            if endpoint is None:
                self.report_failure(target, hint)
            if hint and hint != target and redirects < 2 and endpoint is None:
                redirects += 1  # follow a redirect at once (twice in a row at most: hints may be stale)
                redirect = hint  # reads too: a node that says NOT_LEADER wants this call served by the leader
                continue
            redirects = 0
            await asyncio.sleep(min(self.backoff(attempt), max(0.0, deadline - loop.time())))
            attempt += 1
        if self._closed:
            raise ClientClosed("the connection is closed", request_id=request_id)
        cls = OutcomeUnknown if method.write and maybe_applied else Unavailable
        why = f"{last.endpoint}: {last.message}" if last is not None else "no attempt made"
        raise cls(
            f"no node answered {method.name} within {budget:.1f}s ({why})",
            code=last.code if last is not None else None,
            endpoint=last.endpoint if last is not None else None,
            details=last.details if last is not None else None,
            request_id=request_id,
        )

    async def _attempt(
        self,
        target: str,
        method: rpc.Method[rpc.ReqT, rpc.RespT],
        request: rpc.ReqT,
        timeout: float,
        metadata: rpc.Metadata | None,
    ) -> rpc.RespT:
        """One attempt of ``method`` on ``target``: a unary call, or a send over the node's batched stream."""
        if method is not rpc.SEND_MESSAGE or not self.batch_sends:
            return await rpc.unary(self.channel(target), method, request, timeout=timeout, metadata=metadata)
        stream = self._send_streams.get(target)
        if stream is None or stream.broken:
            stream = self._send_streams[target] = SendStream(self.channel(target))
        assert isinstance(request, api.SendMessageRequest)
        try:
            response = await stream.send(request, _bearer(metadata), timeout)
        except grpc.aio.AioRpcError:
            if self.batch_sends:  # else another send already found the server refusing the stream
                if not await stream.refused():
                    raise
                log.info("%s has no SendMessageBatches: sending with unary calls from now on", target)
                self.batch_sends = False
            # The server refuses the stream (nothing was sent on it): this attempt goes as a unary call.
            return await rpc.unary(self.channel(target), method, request, timeout=timeout, metadata=metadata)
        return response  # type: ignore[return-value]  # SEND_MESSAGE's response type

    def open_stream(
        self,
        endpoint: str,
        method: rpc.Method[rpc.ReqT, rpc.RespT],
        request: rpc.ReqT,
        *,
        metadata: rpc.Metadata | None = None,
    ) -> grpc.aio.UnaryStreamCall[rpc.ReqT, rpc.RespT]:
        """Open a server-streaming call on ``endpoint`` (no retry: the caller resumes it)."""
        return rpc.stream(self.channel(endpoint), method, request, metadata=metadata)

    async def discover_leader(self, *, timeout: float = 1.0) -> str | None:
        """Ask the nodes (current first) who leads, until one knows; returns the leader's address or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        start = self._current
        for i in range(len(self._endpoints)):
            endpoint = self._endpoints[(start + i) % len(self._endpoints)]
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                status = await rpc.unary(
                    self.channel(endpoint), rpc.GET_NODE_STATUS, api.GetNodeStatusRequest(), timeout=remaining
                )
            except grpc.aio.AioRpcError as exc:
                log.debug("GetNodeStatus on %s: %s", endpoint, exc.code())
                continue
            if status.leader_address:
                self.learn(status)
                return status.leader_address
        return self._leader

    async def close(self) -> None:
        """Close every channel (open calls fail with CANCELLED); the connection cannot be used afterwards."""
        self._closed = True
        streams, self._send_streams = self._send_streams, {}
        for stream in streams.values():
            await stream.close()
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)


def _bearer(metadata: rpc.Metadata | None) -> str:
    """The token of the ``authorization: Bearer <token>`` entry of ``metadata`` ("" if there is none)."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and value.lower().startswith("bearer "):
            return value[7:].strip()
    return ""
