"""Controllable TCP proxies: the harness's network, so that partitions are real cuts from the nodes' view.

A ``LinkProxy`` carries every TCP connection that one node opens to one peer (one directed link ``src ->
dst``): node ``src`` is started with ``--peer dst=<proxy address>``. Raft peers only ever send on streams
they open themselves, so the directed link ``src -> dst`` carries exactly the messages from ``src`` to ``dst``
(and the HTTP/2 framing both ways that those streams need). Cutting that link alone is a one-way cut.

A link is ``up`` or cut in one of two ways:

- ``reset``: live connections are aborted with a TCP RST and new ones are accepted and reset at once (the
  peer sees "connection refused/reset" immediately, like a crashed host's kernel answering);
- ``blackhole``: live connections are aborted with a TCP RST too (a transport would otherwise only notice
  after its keepalive timeout), but new ones are accepted and then silently ignored: nothing is forwarded,
  nothing is answered, until the link heals (then they are reset so the dialer reconnects). This is a cable
  pulled out: connection attempts hang until the dialer's own timeout.

``Network`` owns the full mesh of links of a cluster and offers the partition vocabulary of etcd's
``rafttest`` network and Jepsen's nemeses: ``cut``, ``isolate``, ``partition``, ``heal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 2.0


class LinkState(Enum):
    """What a link does with traffic."""

    UP = "up"
    RESET = "reset"
    BLACKHOLE = "blackhole"


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s connection with a TCP RST (SO_LINGER 0), dropping anything unsent."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class LinkStats:
    """Counters of one link (for tests and failure reports)."""

    accepted: int = 0
    forwarded_connections: int = 0
    refused: int = 0
    blackholed: int = 0
    aborted: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        _abort(self.client)
        if self.upstream is not None:
            _abort(self.upstream)
        for task in self.tasks:
            task.cancel()


class LinkProxy:
    """A TCP proxy for one directed link: listens on ``listen_host`` and forwards to ``target``.

    ``source_host``, when given, is the local address the proxy dials from, so the target sees the connection
    come from the source node's own loopback address.
    """

    def __init__(
        self,
        name: str,
        listen_host: str,
        target: tuple[str, int],
        *,
        source_host: str | None = None,
        listen_port: int = 0,
    ) -> None:
        self.name = name
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.target = target
        self.source_host = source_host
        self.state = LinkState.UP
        self.stats = LinkStats()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"LinkProxy({self.name}, {self.address} -> {self.target[0]}:{self.target[1]}, {self.state.value})"

    @property
    def address(self) -> str:
        """``host:port`` the proxy listens on (the address the source node dials)."""
        return f"{self.listen_host}:{self.listen_port}"

    @property
    def live_connections(self) -> int:
        """Connections currently forwarded."""
        return len(self._connections)

    async def start(self) -> None:
        """Start listening (on a free port unless one was given)."""
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port, reuse_address=True)
        self.listen_port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and abort every connection."""
        if self._server is not None:
            self._server.close()
        self._abort_all()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def set_state(self, state: LinkState) -> None:
        """Bring the link up or cut it; cutting aborts every live connection, healing resets held ones."""
        previous, self.state = self.state, state
        if state is not LinkState.UP:
            self._abort_all()
        elif previous is LinkState.BLACKHOLE:
            self._release_held()
        if previous is not state:
            log.info("link %s: %s -> %s", self.name, previous.value, state.value)

    def cut(self, mode: LinkState = LinkState.RESET) -> None:
        """Cut the link (``RESET`` or ``BLACKHOLE``)."""
        if mode is LinkState.UP:
            raise ValueError("cut with mode UP; use heal()")
        self.set_state(mode)

    def heal(self) -> None:
        """Bring the link up."""
        self.set_state(LinkState.UP)

    def _abort_all(self) -> None:
        for connection in list(self._connections):
            connection.abort()
            self.stats.aborted += 1
        self._connections.clear()

    def _release_held(self) -> None:
        for writer in list(self._held):
            _abort(writer)
        self._held.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.stats.accepted += 1
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            _abort(writer)
        except Exception:  # a proxy must never die of one connection
            log.exception("link %s: connection handler failed", self.name)
            _abort(writer)
        finally:
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state is LinkState.RESET:
            self.stats.refused += 1
            _abort(writer)
            return
        if self.state is LinkState.BLACKHOLE:
            await self._hold(reader, writer)
            return
        local = (self.source_host, 0) if self.source_host else None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target, local_addr=local), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            self.stats.refused += 1
            _abort(writer)
            return
        if self.state is not LinkState.UP:  # cut while we were connecting
            _abort(up_writer)
            _abort(writer)
            return
        connection = _Connection(writer, up_writer)
        self._connections.add(connection)
        self.stats.forwarded_connections += 1
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, up=True)),
            asyncio.create_task(self._pump(up_reader, writer, up=False)),
        ]
        connection.tasks = pumps
        try:
            # One side finishing (EOF or error) ends the connection: half-closes are not needed by HTTP/2.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connection.abort()
            self._connections.discard(connection)
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Blackhole: read and discard until the link heals (then the connection is reset)."""
        self.stats.blackholed += 1
        self._held.add(writer)
        try:
            while self.state is LinkState.BLACKHOLE:
                data = await reader.read(CHUNK)
                if not data:
                    break
        except OSError:
            pass
        finally:
            self._held.discard(writer)
            _abort(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    return
                if self.state is not LinkState.UP:
                    return
                writer.write(data)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return


class Network:
    """The full mesh of directed ``LinkProxy``s of a cluster, with partition helpers.

    ``hosts[n]`` is node ``n``'s loopback address, ``targets[n]`` the ``(host, port)`` its server listens on.
    Proxy ``(i, j)`` listens on node ``j``'s host (so the dialed address looks like ``j``) and dials from node
    ``i``'s host.
    """

    def __init__(self, hosts: dict[int, str], targets: dict[int, tuple[str, int]]) -> None:
        self.nodes = sorted(targets)
        self.links: dict[tuple[int, int], LinkProxy] = {
            (i, j): LinkProxy(f"{i}->{j}", hosts[j], targets[j], source_host=hosts[i])
            for i, j in itertools.permutations(self.nodes, 2)
        }

    async def start(self) -> None:
        """Start every proxy."""
        for proxy in self.links.values():
            await proxy.start()

    async def close(self) -> None:
        """Stop every proxy."""
        await asyncio.gather(*(proxy.close() for proxy in self.links.values()), return_exceptions=True)

    def peer_address(self, src: int, dst: int) -> str:
        """The address node ``src`` dials to reach node ``dst``."""
        return self.links[(src, dst)].address

    def cut(self, src: int, dst: int, *, both: bool = True, mode: LinkState = LinkState.RESET) -> None:
        """Cut ``src -> dst`` (and ``dst -> src`` unless ``both`` is false: a one-way cut)."""
        self.links[(src, dst)].cut(mode)
        if both:
            self.links[(dst, src)].cut(mode)

    def isolate(self, node: int, *, mode: LinkState = LinkState.RESET) -> None:
        """Cut every link to and from ``node``."""
        for (i, j), proxy in self.links.items():
            if node in (i, j):
                proxy.cut(mode)

    def partition(self, *groups: Iterable[int], mode: LinkState = LinkState.RESET) -> None:
        """Only nodes in the same group can talk; a node in no group is alone. Heals everything else."""
        group_of: dict[int, int] = {}
        for index, group in enumerate(groups):
            for node in group:
                if node in group_of:
                    raise ValueError(f"node {node} is in two groups")
                group_of[node] = index
        for (i, j), proxy in self.links.items():
            gi, gj = group_of.get(i, -i - 1000), group_of.get(j, -j - 1000)
            if gi == gj:
                proxy.heal()
            else:
                proxy.cut(mode)

    def heal(self) -> None:
        """Bring every link up."""
        for proxy in self.links.values():
            proxy.heal()

    def describe(self) -> str:
        """One line per link that is not up, or "all links up"."""
        down = [f"{p.name}: {p.state.value}" for p in self.links.values() if p.state is not LinkState.UP]
        return "; ".join(down) if down else "all links up"
