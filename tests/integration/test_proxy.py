"""The harness's TCP proxy on its own (no KV server): bytes flow, cuts break and refuse, heal restores."""

from __future__ import annotations

import asyncio
import time

import pytest
from harness import LinkProxy, LinkState, Network, eventually, free_port, run


class EchoServer:
    """A TCP echo server that remembers the peer addresses it saw."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self.peers: list[tuple[str, int]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> EchoServer:
        self.server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers.append(writer.get_extra_info("peername"))
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


async def connect(proxy: LinkProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(proxy.listen_host, proxy.listen_port)


async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bytes:
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), 2.0)


async def is_broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether the connection is closed or reset (reads EOF or errors within 2 s)."""
    try:
        writer.write(b"x")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1), 2.0)
    except (OSError, asyncio.IncompleteReadError):
        return True
    return data == b""


def test_bytes_flow_both_ways_and_come_from_the_source_host():
    async def main() -> None:
        async with EchoServer("127.0.0.3") as echo:
            proxy = LinkProxy("1->2", "127.0.0.3", ("127.0.0.3", echo.port), source_host="127.0.0.2")
            await proxy.start()
            try:
                reader, writer = await connect(proxy)
                payload = bytes(range(256)) * 4096  # 1 MiB: several chunks, back-pressure
                writer.write(payload)
                await writer.drain()
                got = await asyncio.wait_for(reader.readexactly(len(payload)), 10.0)
                assert got == payload
                assert echo.peers[0][0] == "127.0.0.2"
                assert proxy.stats.bytes_up == len(payload) == proxy.stats.bytes_down
                writer.close()
            finally:
                await proxy.close()

    run(main(), 30)


@pytest.mark.parametrize("mode", [LinkState.RESET, LinkState.BLACKHOLE])
def test_cut_breaks_live_connections_and_heal_restores(mode):
    async def main() -> None:
        async with EchoServer("127.0.0.3") as echo:
            proxy = LinkProxy("1->2", "127.0.0.3", ("127.0.0.3", echo.port))
            await proxy.start()
            try:
                reader, writer = await connect(proxy)
                assert await roundtrip(reader, writer, b"hello") == b"hello"
                proxy.cut(mode)
                assert await is_broken(reader, writer)
                assert proxy.live_connections == 0
                # New connections get nothing through while cut.
                r2, w2 = await connect(proxy)
                w2.write(b"ping")
                with pytest.raises((TimeoutError, OSError, asyncio.IncompleteReadError)):
                    data = await asyncio.wait_for(r2.readexactly(4), 0.5)
                    raise AssertionError(f"got {data!r} through a cut link")
                proxy.heal()
                # A connection held by a blackhole is reset on heal, so the dialer reconnects at once.
                await eventually(lambda: proxy.stats.blackholed == 0 or not proxy._held, 2.0, "held released")
                r3, w3 = await connect(proxy)
                assert await roundtrip(r3, w3, b"again") == b"again"
                w3.close()
            finally:
                await proxy.close()

    run(main(), 30)


def test_reset_mode_refuses_new_connections_at_once():
    async def main() -> None:
        async with EchoServer("127.0.0.3") as echo:
            proxy = LinkProxy("1->2", "127.0.0.3", ("127.0.0.3", echo.port))
            await proxy.start()
            try:
                proxy.cut(LinkState.RESET)
                reader, writer = await connect(proxy)
                started = time.monotonic()
                assert await is_broken(reader, writer)
                assert time.monotonic() - started < 1.0
                assert proxy.stats.refused >= 1
            finally:
                await proxy.close()

    run(main(), 30)


def test_target_down_is_a_refused_connection():
    async def main() -> None:
        port = free_port("127.0.0.3")
        proxy = LinkProxy("1->2", "127.0.0.3", ("127.0.0.3", port))
        await proxy.start()
        try:
            reader, writer = await connect(proxy)
            assert await is_broken(reader, writer)
        finally:
            await proxy.close()

    run(main(), 30)


def test_network_one_way_cut_partition_and_heal():
    async def main() -> None:
        servers = {n: EchoServer(f"127.0.0.{n + 1}") for n in (1, 2, 3)}
        for server in servers.values():
            await server.__aenter__()
        net = Network({n: s.host for n, s in servers.items()}, {n: (s.host, s.port) for n, s in servers.items()})
        await net.start()

        async def works(i: int, j: int) -> bool:
            reader, writer = await connect(net.links[(i, j)])
            broken = await is_broken_after_echo(reader, writer)
            writer.close()
            return not broken

        try:
            assert all([await works(i, j) for (i, j) in net.links])
            net.cut(1, 2, both=False)
            assert not await works(1, 2)
            assert await works(2, 1)
            net.heal()
            assert await works(1, 2)
            net.partition([1, 2], [3])
            assert await works(1, 2) and await works(2, 1)
            for i, j in [(1, 3), (3, 1), (2, 3), (3, 2)]:
                assert not await works(i, j)
            assert "1->3: reset" in net.describe()
            net.heal()
            net.isolate(2)  # adds to whatever is already cut
            assert [await works(i, j) for (i, j) in [(1, 2), (2, 1), (1, 3), (3, 1)]] == [False, False, True, True]
            net.heal()
            assert all([await works(i, j) for (i, j) in net.links])
            assert net.describe() == "all links up"
        finally:
            await net.close()
            for server in servers.values():
                await server.__aexit__()

    run(main(), 60)


async def is_broken_after_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    try:
        return await roundtrip(reader, writer, b"ping") != b"ping"
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return True


def test_close_aborts_everything():
    async def main() -> None:
        async with EchoServer("127.0.0.3") as echo:
            proxy = LinkProxy("1->2", "127.0.0.3", ("127.0.0.3", echo.port))
            await proxy.start()
            reader, writer = await connect(proxy)
            assert await roundtrip(reader, writer, b"x") == b"x"
            await proxy.close()
            assert await is_broken(reader, writer)

    run(main(), 30)
