"""In-process chat clusters for the server's tests: N ``ChatServer``s on one event loop, and a small caller."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import betterproto2
import grpc

from chat_server import api
from chat_server.catalog import SERVICES
from chat_server.rpc import Method, methods_of
from chat_server.server import ChatServer
from chat_server.settings import Settings, load_settings

ADMIN_TOKEN = "admin-token-0123456789"
PASSWORD = "correct horse battery"

_METHODS: dict[str, Method] = {m.name: m for d in SERVICES.values() for m in methods_of(d)}


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cluster_settings(root: Path, size: int, **overrides: Any) -> list[Settings]:
    ports = free_ports(2 * size)
    nodes = [
        {"id": i + 1, "peer": f"127.0.0.1:{ports[2 * i]}", "client": f"127.0.0.1:{ports[2 * i + 1]}"}
        for i in range(size)
    ]
    out = []
    for i in range(size):
        flags: dict[str, Any] = {
            "node_id": i + 1,
            "peer_listen": nodes[i]["peer"],
            "client_listen": nodes[i]["client"],
            "nodes": nodes,
            "data_dir": root / f"node-{i + 1}",
            "cluster_secret": "cluster-secret-0123456789",
            "admin_token": ADMIN_TOKEN,
            "unsafe_skip_fsync": True,
            "password_hash_time_cost": 1,
            "password_hash_memory_kib": 64,
            "tick_ms": 10,
            "election_ticks": 10,
            "heartbeat_ticks": 2,
            "shutdown_grace_s": 0.2,
        }
        flags.update(overrides)
        out.append(load_settings(flags=flags, env={}))
    return out


class Caller:
    """Calls chat.v1 RPCs on one node with betterproto2 messages, optionally with a bearer token."""

    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address
        self.token = token
        self._channel = grpc.aio.insecure_channel(address)

    def with_token(self, token: str | None) -> Caller:
        other = Caller.__new__(Caller)
        other.address, other.token, other._channel = self.address, token, self._channel
        return other

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    async def __call__(self, name: str, request: betterproto2.Message, timeout: float = 10.0) -> Any:
        m = _METHODS[name]
        call = self._channel.unary_unary(m.route, request_serializer=bytes, response_deserializer=m.response.FromString)
        return await call(request, metadata=self._metadata(), timeout=timeout)

    def stream(self, name: str, request: betterproto2.Message, timeout: float | None = None) -> Any:
        m = _METHODS[name]
        call = self._channel.unary_stream(
            m.route, request_serializer=bytes, response_deserializer=m.response.FromString
        )
        return call(request, metadata=self._metadata(), timeout=timeout)

    async def close(self) -> None:
        await self._channel.close(None)


class InProcessCluster:
    """``size`` chat nodes in this process; ``async with`` starts them and waits for a leader."""

    def __init__(self, root: Path, size: int = 3, **overrides: Any) -> None:
        self.settings = cluster_settings(root, size, **overrides)
        self.servers: dict[int, ChatServer] = {}
        self.callers: list[Caller] = []

    async def __aenter__(self) -> InProcessCluster:
        for s in self.settings:
            await self.start(s.node_id)
        await self.leader()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for caller in self.callers:
            await caller.close()
        for server in list(self.servers.values()):
            await server.stop()
        self.servers.clear()

    async def start(self, node_id: int) -> ChatServer:
        server = ChatServer(self.settings[node_id - 1])
        await server.start()
        self.servers[node_id] = server
        return server

    async def stop(self, node_id: int) -> None:
        await self.servers.pop(node_id).stop()

    async def leader(self, timeout: float = 10.0) -> int:
        async with asyncio.timeout(timeout):
            while True:
                for server in self.servers.values():
                    if server.node is not None and server.node.is_leader:
                        return server.node.id
                await asyncio.sleep(0.02)

    def address(self, node_id: int) -> str:
        return self.settings[node_id - 1].client_listen

    def caller(self, node_id: int, token: str | None = None) -> Caller:
        caller = Caller(self.address(node_id), token)
        self.callers.append(caller)
        return caller


def rid() -> str:
    return uuid.uuid4().hex


async def sign_up(caller: Caller, username: str) -> Caller:
    """Register ``username`` and log in; returns a caller carrying its token."""
    await caller("Register", api.RegisterRequest(username=username, password=PASSWORD, request_id=rid()))
    answer = await caller("Login", api.LoginRequest(username=username, password=PASSWORD, request_id=rid()))
    return caller.with_token(answer.token)


async def take(stream: Any, count: int, *, kinds: tuple[str, ...] = ("event",), timeout: float = 10.0) -> list[Any]:
    """The next ``count`` payloads of the given kinds from a Subscribe stream."""
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        async for item in stream:
            kind, payload = betterproto2.which_one_of(item, "payload")
            if kind in kinds:
                out.append(payload)
                if len(out) == count:
                    return out
    return out


async def aiter_events(stream: Any) -> AsyncIterator[Any]:
    async for item in stream:
        kind, payload = betterproto2.which_one_of(item, "payload")
        if kind == "event":
            yield payload


async def send(caller: Caller, conversation_id: str, body: str) -> Any:
    """Send ``body`` with a fresh request id; the SendMessageResponse."""
    return await caller(
        "SendMessage", api.SendMessageRequest(conversation_id=conversation_id, body=body, request_id=rid())
    )
