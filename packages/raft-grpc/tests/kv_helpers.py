"""Helpers of the key-value tests: free loopback ports and in-process clusters of KvServers."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from grpc_helpers import SECRET, eventually

from raft_core.types import NONE
from raft_grpc.kv import KvServer, ServerConfig


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the OS handed out for 127.0.0.1:0 (released again for the caller to bind)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def cluster_configs(tmp_path: Path, n: int = 3, *, forward: bool = True) -> list[ServerConfig]:
    """Configs of an ``n``-node cluster on loopback with data directories under ``tmp_path``."""
    ports = free_ports(n)
    addresses = {i: f"127.0.0.1:{port}" for i, port in enumerate(ports, 1)}
    return [
        ServerConfig(
            id=i,
            listen=addresses[i],
            peers={j: a for j, a in addresses.items() if j != i},
            client_addresses={},
            data_dir=tmp_path / f"node{i}",
            secret=SECRET,
            forward=forward,
        )
        for i in addresses
    ]


class Cluster:
    """Running in-process KvServers (``servers[i]`` is node i + 1, or None once stopped)."""

    def __init__(self, configs: list[ServerConfig]) -> None:
        self.configs = configs
        self.servers: list[KvServer | None] = [None] * len(configs)

    @property
    def endpoints(self) -> list[str]:
        return [c.listen for c in self.configs]

    async def start(self, i: int) -> KvServer:
        server = KvServer(self.configs[i - 1])
        await server.start()
        self.servers[i - 1] = server
        return server

    async def stop(self, i: int) -> None:
        server, self.servers[i - 1] = self.servers[i - 1], None
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> Cluster:
        for i in range(1, len(self.configs) + 1):
            await self.start(i)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for i in range(1, len(self.configs) + 1):
            await self.stop(i)

    def running(self) -> list[KvServer]:
        return [s for s in self.servers if s is not None]

    async def leader(self, timeout: float = 10.0) -> int:
        """The id of the leader every running node agrees on."""

        def agreed() -> bool:
            leaders = {s.node.leader for s in self.running() if s.node is not None}
            return len(leaders) == 1 and NONE not in leaders

        await eventually(agreed, timeout=timeout, what="an agreed leader")
        node = self.running()[0].node
        assert node is not None
        return node.leader
