"""End-to-end benchmarks of real clusters on loopback: the key-value service and the replication engine.

Every node is its own process (``python -m raft_grpc.kv serve``) on its own 127.0.0.x address, with
DiskStorage and fsync on. Three measurements (medians of ``--repeats`` runs):

1. **Puts**: load generators in separate processes keep C requests in flight (C = 1, 16, 64, 256; split over
   up to 4 processes, one ``KvClient`` each) of 100-byte values for ``--seconds``; puts/s and the p50/p99
   latency of ``KvClient.put`` (call to acknowledgement, retries included). 3 and 5 nodes; each row twice,
   with unary writes and with ``KvClient(streaming=True)`` (one ``Write`` stream per client, ``--loadgen
   ... --streaming``).
2. **Failover**: the leader is SIGKILLed while a client waits to write; the time from the kill to the first
   acknowledged write, over ``--failover-trials`` trials (the killed node is restarted and caught up between
   trials); median and max. 3 nodes.
3. **Replication engine alone** (the way PySyncObj measures itself): three processes each running a
   raft-core ``Node`` over ``GrpcTransport`` and ``DiskStorage``; the leader's process proposes 100-byte
   commands itself with 1,000 outstanding; committed proposals/s and p50/p99 commit latency.

Run: ``python packages/raft-grpc/benchmarks/bench_kv.py [--quick]``. Every process started here is stopped
by its PID; loads are bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VALUE = b"v" * 100
START_DEADLINE_S = 30.0


def free_port(host: str) -> int:
    """A port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile of already sorted values."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0.0


class Proc:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, argv: list[str]) -> None:
        """Start ``argv``; stderr goes to stdout."""
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def spawn(cls, argv: list[str]) -> Proc:
        """Start ``argv``."""
        return cls(argv)

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, text: str, deadline: float) -> str:
        """The first line containing ``text``; raises after ``deadline`` (monotonic) or when the process ends."""
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise RuntimeError(f"no {text!r} from {self.popen.args}: {''.join(self.lines[-20:])}")
                self._changed.wait(min(left, 1.0))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the process and wait for it (SIGKILL if it lingers)."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


class KvCluster:
    """``n`` raft-kv processes on 127.0.0.2 .. 127.0.0.(n+1)."""

    def __init__(self, n: int, root: Path) -> None:
        """Pick addresses and write the secret; nothing starts yet."""
        self.n = n
        self.root = root
        self.addresses = {i: f"127.0.0.{i + 1}:{free_port(f'127.0.0.{i + 1}')}" for i in range(1, n + 1)}
        self.secret = root / "secret"
        self.secret.write_text(secrets.token_hex(32))
        self.procs: dict[int, Proc] = {}

    @property
    def endpoints(self) -> list[str]:
        """Every node's address."""
        return list(self.addresses.values())

    def start(self, node: int) -> None:
        """Start (or restart) ``node`` and wait until it serves."""
        argv = [sys.executable, "-m", "raft_grpc.kv", "serve", "--id", str(node), "--listen", self.addresses[node]]
        for peer, address in self.addresses.items():
            if peer != node:
                argv += ["--peer", f"{peer}={address}"]
        argv += ["--data-dir", str(self.root / f"node{node}"), "--secret-file", str(self.secret)]
        argv += ["--log-level", "WARNING"]
        proc = self.procs[node] = Proc.spawn(argv)
        proc.wait_line(f"raft-kv node {node} serving on", time.monotonic() + START_DEADLINE_S)

    def start_all(self) -> None:
        """Start every node."""
        for node in self.addresses:
            self.start(node)

    def stop_all(self) -> None:
        """Stop every node (by PID)."""
        for proc in self.procs.values():
            proc.stop()


async def find_leader(cluster: KvCluster, deadline: float) -> int:
    """The id of the leader, once a live node reports one."""
    from raft_grpc.kv.client import KvClient

    async with KvClient(cluster.endpoints, timeout=2.0) as client:
        while time.monotonic() < deadline:
            for node, address in cluster.addresses.items():
                if cluster.procs[node].popen.poll() is not None:
                    continue
                with contextlib.suppress(Exception):
                    status = await client.status(address, timeout=0.5)
                    if status.leader_id and cluster.procs[status.leader_id].popen.poll() is None:
                        return int(status.leader_id)
            await asyncio.sleep(0.05)
    raise RuntimeError("no leader")


# -- 1. puts --------------------------------------------------------------------------------------------


async def load(
    endpoints: list[str], concurrency: int, seconds: float, tag: str, streaming: bool = False
) -> dict[str, object]:
    """Keep ``concurrency`` puts in flight for ``seconds``; the count and every latency."""
    from raft_grpc.kv.client import KvClient

    latencies: list[float] = []
    async with KvClient(endpoints, timeout=10.0, streaming=streaming) as client:
        await client.put(f"{tag}/warmup".encode(), VALUE)
        end = time.perf_counter() + seconds

        async def worker(w: int) -> None:
            n = 0
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                await client.put(f"{tag}/{w}/{n % 64}".encode(), VALUE)
                latencies.append(time.perf_counter() - t0)
                n += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"count": len(latencies), "elapsed": elapsed, "latencies": latencies}


def run_puts(
    cluster: KvCluster, concurrency: int, seconds: float, streaming: bool = False
) -> tuple[float, float, float]:
    """(puts/s, p50 ms, p99 ms) with load generators in separate processes (``KvClient(streaming=...)``)."""
    procs = min(4, concurrency)
    per = [concurrency // procs + (1 if k < concurrency % procs else 0) for k in range(procs)]
    children = []
    for k, c in enumerate(per):
        argv = [sys.executable, __file__, "--loadgen", ",".join(cluster.endpoints), str(c), str(seconds), f"g{k}"]
        if streaming:
            argv.append("--streaming")
        children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        results.append(json.loads(out.strip().splitlines()[-1]))
    latencies = sorted(x for r in results for x in r["latencies"])
    rate = sum(r["count"] for r in results) / max(r["elapsed"] for r in results)
    return rate, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


# -- 2. failover ----------------------------------------------------------------------------------------


async def failover_trial(cluster: KvCluster) -> float:
    """Kill the leader; seconds until the first acknowledged write."""
    from raft_grpc.kv.client import KvClient

    leader = await find_leader(cluster, time.monotonic() + 20)
    async with KvClient(cluster.endpoints, timeout=20.0, attempt_timeout=0.3) as client:
        await client.put(b"failover/before", VALUE)
        cluster.procs[leader].stop(signal.SIGKILL)
        t0 = time.perf_counter()
        await client.put(b"failover/after", VALUE)
        took = time.perf_counter() - t0
    cluster.start(leader)
    await wait_caught_up(cluster, time.monotonic() + 30)
    return took


async def wait_caught_up(cluster: KvCluster, deadline: float) -> None:
    """Until every node has applied as much as the leader."""
    from raft_grpc.kv.client import KvClient

    async with KvClient(cluster.endpoints, timeout=2.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                applied = [(await client.status(a, timeout=0.5)).applied_index for a in cluster.endpoints]
                if len(set(applied)) == 1:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("nodes did not catch up")


# -- 3. the replication engine alone --------------------------------------------------------------------


async def engine_node(node: int, addresses: dict[int, str], root: Path, secret: bytes, seconds: float) -> None:
    """One engine process: node 1 leads and proposes with 1,000 outstanding; the others serve until SIGTERM."""
    from raft_core import Membership
    from raft_core.runtime import Command, Node, NodeOptions
    from raft_core.storage import DiskStorage
    from raft_grpc import GrpcTransport

    class Count:
        def __init__(self) -> None:
            self.n = 0

        def apply(self, command: Command) -> object:
            self.n += 1
            return self.n

        def snapshot(self) -> bytes:
            return str(self.n).encode()

        def restore(self, data: bytes) -> None:
            self.n = int(data)

    storage = DiskStorage.open(root / f"engine{node}", membership=Membership.of(*addresses))
    options = NodeOptions(tick_interval=0.02, heartbeat_ticks=3, election_ticks=15, max_pending_proposals=2000)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Node(node, Count(), storage, GrpcTransport(node, addresses, secret=secret), options) as raft:
        print("engine ready", flush=True)
        if node != 1:
            await stop.wait()
            return
        await raft.wait_for_leader(timeout=30)
        if raft.leader != 1:
            await raft.transfer_leadership(1, timeout=10)
        latencies: list[float] = []
        slots = asyncio.Semaphore(1000)
        end = time.perf_counter() + seconds

        async def one() -> None:
            t0 = time.perf_counter()
            try:
                await raft.propose(VALUE)
                latencies.append(time.perf_counter() - t0)
            finally:
                slots.release()

        tasks = set()
        t0 = time.perf_counter()
        while time.perf_counter() < end:
            await slots.acquire()
            task = asyncio.get_running_loop().create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = time.perf_counter() - t0
        latencies.sort()
        result = {
            "rate": len(latencies) / elapsed,
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
        }
        print("engine result " + json.dumps(result), flush=True)


def run_engine(seconds: float) -> tuple[float, float, float]:
    """(committed/s, p50 ms, p99 ms) of the engine benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        addresses = {i: f"127.0.0.{i + 1}:{free_port(f'127.0.0.{i + 1}')}" for i in (1, 2, 3)}
        secret = secrets.token_hex(32)
        procs = [
            Proc.spawn(
                [sys.executable, __file__, "--engine-node", str(i), json.dumps(addresses), tmp, secret, str(seconds)]
            )
            for i in (1, 2, 3)
        ]
        try:
            line = procs[0].wait_line("engine result", time.monotonic() + seconds + 60)
        finally:
            for proc in procs:
                proc.stop()
    result = json.loads(line.split("engine result ", 1)[1])
    return result["rate"], result["p50"] * 1000, result["p99"] * 1000


# -- main -----------------------------------------------------------------------------------------------


def median_row(runs: list[tuple[float, float, float]]) -> str:
    """Median rate [min..max], median p50 and p99."""
    rates = [r[0] for r in runs]
    return (
        f"{statistics.median(rates):>8.0f}/s [{min(rates):.0f}..{max(rates):.0f}]  "
        f"p50 {statistics.median(r[1] for r in runs):6.2f} ms  p99 {statistics.median(r[2] for r in runs):7.2f} ms"
    )


def main() -> None:
    """Run the measurements and print medians."""
    parser = argparse.ArgumentParser(description="raft-grpc end-to-end benchmarks")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s, 3 failover trials")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--failover-trials", type=int, default=10)
    args, _ = parser.parse_known_args()
    if args.quick:
        args.repeats, args.seconds, args.failover_trials = 1, 2.0, 3

    print("puts of 100-byte values, fsync on, load generators in separate processes")
    for n in args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            cluster = KvCluster(n, Path(tmp))
            try:
                cluster.start_all()
                asyncio.run(find_leader(cluster, time.monotonic() + 30))
                for c in args.concurrency:
                    for streaming in (False, True):
                        runs = [run_puts(cluster, c, args.seconds, streaming) for _ in range(args.repeats)]
                        mode = "streaming" if streaming else "unary    "
                        print(f"  {n} nodes, {c:>3} in flight, {mode}: {median_row(runs)}", flush=True)
            finally:
                cluster.stop_all()

    with tempfile.TemporaryDirectory() as tmp:
        cluster = KvCluster(3, Path(tmp))
        try:
            cluster.start_all()
            trials = [asyncio.run(failover_trial(cluster)) for _ in range(args.failover_trials)]
        finally:
            cluster.stop_all()
    print(
        f"failover (leader SIGKILL to first acknowledged write), {len(trials)} trials: "
        f"median {statistics.median(trials):.3f} s, max {max(trials):.3f} s (target: median < 0.7 s)",
        flush=True,
    )

    runs = [run_engine(args.seconds) for _ in range(args.repeats)]
    print(f"replication engine alone, 3 processes, 1,000 outstanding in the leader: {median_row(runs)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        endpoints, concurrency, seconds, tag = sys.argv[2].split(","), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
        streaming = "--streaming" in sys.argv[6:]
        print(json.dumps(asyncio.run(load(endpoints, concurrency, seconds, tag, streaming))), flush=True)
    elif len(sys.argv) > 1 and sys.argv[1] == "--engine-node":
        node, addresses = int(sys.argv[2]), {int(k): v for k, v in json.loads(sys.argv[3]).items()}
        asyncio.run(engine_node(node, addresses, Path(sys.argv[4]), sys.argv[5].encode(), float(sys.argv[6])))
    else:
        main()
