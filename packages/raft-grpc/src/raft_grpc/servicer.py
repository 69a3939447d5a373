"""``RaftServicer``: the server side of ``raft.v1.NodeCommunication``, delivering peers' messages to a node.

Invariants this module owns: a stream is served only after ``PeerAuth`` proved it comes from another member
of the cluster, addressed to this node (else ``UNAUTHENTICATED``); a stream message is delivered whole or not
at all, and only if it parses, validates, fits ``max_message_bytes`` (else ``INVALID_ARGUMENT``) and every
message in it is from the stream's sender (else ``PERMISSION_DENIED``) to this node (else
``INVALID_ARGUMENT``). A refused stream ends; the node is never told anything about it, and bad input never
raises out of the handler in any other way. Nothing here logs the secret or message contents.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from raft_core.runtime.transport import Receiver
from raft_core.runtime.wire import WireMessage
from raft_core.types import NodeId
from raft_grpc import codec
from raft_grpc._gen.raft.v1 import raft_pb2 as pb
from raft_grpc.auth import PeerAuth
from raft_grpc.errors import DecodeError

log = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["NodeCommunication"].full_name
"""The full gRPC service name, ``raft.v1.NodeCommunication``."""
SEND_METHOD = f"/{SERVICE}/Send"
"""The route of the one RPC: a client stream of Batches."""


class _Refused(Exception):
    """A stream message that must not be delivered, with the status to end the stream with."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class RaftServicer:
    """Serves ``raft.v1.NodeCommunication`` for node ``node_id``; deliveries go to the attached receiver.

    Add it to a ``grpc.aio.Server`` (before the server starts) with ``add_to_server``; the transport attaches
    the node as receiver when it starts. Streams arriving before that, or after ``detach``, get
    ``UNAVAILABLE``.
    """

    def __init__(self, node_id: NodeId, auth: PeerAuth, *, max_message_bytes: int) -> None:
        """Serve node ``node_id``, checking streams with ``auth``, refusing Batches over ``max_message_bytes``."""
        self.node_id = node_id
        self._auth = auth
        self._max_bytes = max_message_bytes
        self._receiver: Receiver | None = None
        self.delivered = 0
        self.refused = 0

    def attach(self, receiver: Receiver) -> None:
        """Deliver accepted messages to ``receiver`` from now on."""
        self._receiver = receiver

    def detach(self) -> None:
        """Stop delivering: new stream messages get ``UNAVAILABLE``."""
        self._receiver = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register ``raft.v1.NodeCommunication`` on ``server`` (call before the server starts)."""
        handler = grpc.stream_unary_rpc_method_handler(
            self.send, request_deserializer=None, response_serializer=pb.SendSummary.SerializeToString
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Send": handler}),))

    async def send(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, pb.SendSummary]
    ) -> pb.SendSummary:
        """Serve one peer stream: authenticate it, then deliver each valid Batch to the node.

        Args:
            requests: The stream's messages, each the raw bytes of one ``raft.v1.Batch``.
            context: The call's context (metadata in, status out).

        Returns:
            How many messages were delivered, when the peer ends the stream.
        """
        peer = self._auth.authenticate(context.invocation_metadata(), self.node_id)
        if peer is None:
            self.refused += 1
            log.warning("refused a Raft stream from %s: not an authenticated member of this cluster", context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "not an authenticated member of this cluster")
        received = 0
        async for raw in requests:
            try:
                messages = self._check(raw, peer)
            except _Refused as refusal:
                self.refused += 1
                log.warning("refused a Batch from node %s (%s): %s", peer, context.peer(), refusal.details)
                await context.abort(refusal.code, refusal.details)
            receiver = self._receiver
            if receiver is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"node {self.node_id} is not running")
            for m in messages:
                receiver.receive(m)
            received += len(messages)
            self.delivered += len(messages)
        return pb.SendSummary(received=received)

    def _check(self, raw: object, peer: NodeId | None) -> list[WireMessage]:
        """The messages of one stream message, or ``_Refused`` naming why none may be delivered."""
        if not isinstance(raw, bytes):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, "expected a serialized raft.v1.Batch")
        if len(raw) > self._max_bytes:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"Batch of {len(raw)} bytes exceeds {self._max_bytes}")
        try:
            messages = codec.decode_batch(raw)
        except DecodeError as exc:
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)[:300]) from None
        for m in messages:
            if m.src != peer:
                raise _Refused(
                    grpc.StatusCode.PERMISSION_DENIED, f"a message claims src {m.src} on node {peer}'s stream"
                )
            if m.dst != self.node_id:
                raise _Refused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"a message for node {m.dst} reached node {self.node_id}"
                )
        return messages
