"""Three ``python -m raft_grpc.kv serve`` processes started through the CLI contract, used by KvClient."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from grpc_helpers import SECRET, run
from kv_helpers import free_ports

from raft_grpc.kv import KvClient


async def start_node(i, addresses, tmp_path):
    peers = [arg for j, a in addresses.items() if j != i for arg in ("--peer", f"{j}={a}")]
    argv = ["-m", "raft_grpc.kv", "serve", "--id", str(i), "--listen", addresses[i], *peers]
    argv += ["--data-dir", str(tmp_path / f"node{i}"), "--secret-file", str(tmp_path / "secret")]
    return await asyncio.create_subprocess_exec(
        sys.executable, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )


def test_three_processes_serve_and_stop_on_sigterm(tmp_path):
    (tmp_path / "secret").write_bytes(SECRET)
    addresses = {i: f"127.0.0.1:{port}" for i, port in enumerate(free_ports(3), 1)}

    async def main():
        procs = []
        try:
            for i in addresses:
                procs.append(await start_node(i, addresses, tmp_path))
            for i, proc in zip(addresses, procs, strict=True):
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
                assert line.decode().strip() == f"raft-kv node {i} serving on {addresses[i]}"
            async with KvClient(list(addresses.values()), timeout=10) as kv:
                await kv.put(b"hello", b"world")
                assert await kv.get(b"hello") == b"world"
                status = await kv.status()
                assert status.leader_id in addresses
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(proc.wait(), timeout=10) for proc in procs]
            assert codes == [0, 0, 0]
        finally:
            for proc in procs:  # only the processes this test started
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()

    run(main(), timeout=60)
