"""``MonitoringHandlers``: ``chat.v1.MonitoringService`` — this node's Raft status and the whole cluster's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from chat_server import api
from chat_server.services.context import ServiceContext
from raft_core.types import NONE


class MonitoringHandlers:
    """Node and cluster status; the cluster view asks every other node's MonitoringService."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        client_address: str,
        last_election_ms: Callable[[], int],
        connected_clients: Callable[[], int],
        tls_root: bytes | None = None,
    ) -> None:
        self.ctx = ctx
        self.client_address = client_address
        self._last_election_ms = last_election_ms
        self._connected = connected_clients
        self._tls_root = tls_root
        self._channels: dict[str, grpc.aio.Channel] = {}

    def node_status(self) -> api.NodeStatus:
        """This node's status as a message."""
        node = self.ctx.node
        st = node.status()
        peers = [
            api.PeerProgress(
                id=peer,
                match_index=p.match,
                lag=max(0, st.last_index - p.match),
                state=p.state,
                recent_active=p.recent_active,
            )
            for peer, p in sorted(st.progress.items())
            if peer != st.id
        ]
        return api.NodeStatus(
            node_id=st.id,
            role=st.role.value,
            term=st.term,
            leader_id=st.leader,
            leader_address=self.ctx.client_addresses.get(st.leader, "") if st.leader != NONE else "",
            commit_index=st.commit,
            applied_index=node.applied_index,
            last_index=st.last_index,
            peers=peers,
            last_election_ms=self._last_election_ms(),
            client_address=self.client_address,
            reachable=True,
            connected_clients=self._connected(),
        )

    async def get_node_status(
        self, request: api.GetNodeStatusRequest, context: grpc.aio.ServicerContext
    ) -> api.NodeStatus:
        """This node's status."""
        return self.node_status()

    async def get_cluster_status(
        self, request: api.GetClusterStatusRequest, context: grpc.aio.ServicerContext
    ) -> api.ClusterStatus:
        """Every configured node's status, asked in parallel; silent nodes are listed as unreachable."""
        timeout = (request.timeout_ms or 1000) / 1000
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = max(0.05, min(timeout, remaining - 0.1))
        others = {i: a for i, a in sorted(self.ctx.client_addresses.items()) if i != self.ctx.node.id}
        answers = await asyncio.gather(*(self._ask(i, a, timeout) for i, a in others.items()))
        nodes = sorted([self.node_status(), *answers], key=lambda s: s.node_id)
        return api.ClusterStatus(nodes=nodes, leader_id=_agreed_leader(nodes), nodes_up=sum(n.reachable for n in nodes))

    async def _ask(self, node_id: int, address: str, timeout: float) -> api.NodeStatus:
        channel = self._channels.get(address)
        if channel is None:
            if self._tls_root is not None:
                creds = grpc.ssl_channel_credentials(root_certificates=self._tls_root)
                channel = grpc.aio.secure_channel(address, creds)
            else:
                channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        call = channel.unary_unary(
            "/chat.v1.MonitoringService/GetNodeStatus",
            request_serializer=bytes,
            response_deserializer=api.NodeStatus.FromString,
        )
        try:
            status: api.NodeStatus = await call(api.GetNodeStatusRequest(), timeout=timeout)
            return status
        except grpc.aio.AioRpcError as exc:
            return api.NodeStatus(node_id=node_id, client_address=address, reachable=False, error=exc.code().name)
        except Exception as exc:
            return api.NodeStatus(node_id=node_id, client_address=address, reachable=False, error=type(exc).__name__)

    async def close(self) -> None:
        """Close the channels to the other nodes."""
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()


def _agreed_leader(nodes: list[api.NodeStatus]) -> int:
    votes: dict[int, int] = {}
    for n in nodes:
        if n.reachable and n.leader_id:
            votes[n.leader_id] = votes.get(n.leader_id, 0) + 1
    if not votes:
        return 0
    leader, count = max(votes.items(), key=lambda kv: kv[1])
    return leader if count * 2 > len(nodes) else 0


__all__ = ["MonitoringHandlers"]
