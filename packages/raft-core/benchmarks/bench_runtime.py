"""The asyncio runtime end to end: 3 ``Node``s in one process over ``MemoryNetwork`` with ``DiskStorage``.

Two measurements, each repeated ``--repeats`` times (median and [min..max] printed):

1. **Throughput and latency**: ``C`` concurrent clients each propose commands of 100 bytes back to back on
   the leader for ``--seconds``; fsync is ON (every node persists each Ready with one fdatasync). Reported:
   committed proposals per second and the p50/p99 latency of ``propose`` (from call to result).
2. **Overload**: ``--burst`` (default 10,000) proposals are fired at the leader at once, repeatedly, for
   ``--seconds``. Reported: how many were accepted and how many refused at once with ``Overloaded``, and
   whether the leader kept its leadership (its term and role unchanged: no spurious election). PySyncObj
   loses its leader in about a third of such runs (measured on this machine, see the raft-core issue).

All three nodes share one event loop and one core, like three processes on a busy 2-core machine.
Run: ``python packages/raft-core/benchmarks/bench_runtime.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from raft_core import Membership, Overloaded, ProposalDropped, RaftError
from raft_core.runtime import Command, MemoryNetwork, Node, NodeOptions
from raft_core.storage import DiskStorage

PAYLOAD = b"x" * 100


class Sink:
    """A state machine that counts what it applies."""

    def __init__(self) -> None:
        """Start at zero."""
        self.count = 0

    def apply(self, command: Command) -> object:
        """Count one command."""
        self.count += 1
        return self.count

    def snapshot(self) -> bytes:
        """The count."""
        return str(self.count).encode()

    def restore(self, data: bytes) -> None:
        """Restore the count."""
        self.count = int(data)


async def start_cluster(root: Path, options: NodeOptions) -> list[Node]:
    """Three started nodes with node 1 elected."""
    network = MemoryNetwork()
    membership = Membership.of(1, 2, 3)
    nodes = [
        Node(i, Sink(), DiskStorage.open(root / str(i), membership=membership), network.transport(i), options)
        for i in (1, 2, 3)
    ]
    for node in nodes:
        await node.start()
    await nodes[0].transfer_leadership(1, timeout=10) if await nodes[0].wait_for_leader(timeout=10) != 1 else None
    return nodes


async def throughput(clients: int, seconds: float) -> tuple[float, float, float]:
    """(proposals/s, p50 ms, p99 ms) with ``clients`` concurrent proposers on the leader."""
    with tempfile.TemporaryDirectory() as tmp:
        nodes = await start_cluster(Path(tmp), NodeOptions())
        leader = nodes[0]
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                await leader.propose(PAYLOAD)
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
        for node in nodes:
            await node.stop()
    latencies.sort()
    return len(latencies) / elapsed, _ms_at(latencies, 0.50), _ms_at(latencies, 0.99)


def _ms_at(sorted_seconds: list[float], q: float) -> float:
    """The ``q`` quantile of sorted durations in seconds, in milliseconds."""
    return sorted_seconds[min(len(sorted_seconds) - 1, int(q * len(sorted_seconds)))] * 1000


async def overload(burst: int, seconds: float) -> tuple[int, int, bool]:
    """(accepted, refused, leader kept) while bursts of ``burst`` proposals hit the leader."""
    with tempfile.TemporaryDirectory() as tmp:
        nodes = await start_cluster(Path(tmp), NodeOptions())
        leader = nodes[0]
        term = leader.status().term
        accepted = refused = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            results = await asyncio.gather(*(leader.propose(PAYLOAD) for _ in range(burst)), return_exceptions=True)
            refused += sum(isinstance(r, Overloaded) for r in results)
            accepted += sum(not isinstance(r, BaseException) for r in results)
            failed = [r for r in results if isinstance(r, RaftError) and not isinstance(r, ProposalDropped)]
            if failed:
                raise failed[0]
        kept = leader.is_leader and leader.status().term == term
        for node in nodes:
            await node.stop()
    return accepted, refused, kept


def main() -> None:
    """Run both measurements and print medians."""
    parser = argparse.ArgumentParser(description="raft-core runtime benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="3 repeats of 1 s")
    args, _ = parser.parse_known_args()  # the bench session passes bench_core.py's options to every script
    if args.quick:
        args.repeats, args.seconds = 3, 1.0

    print("3 nodes, one event loop, DiskStorage with fsync ON, 100-byte commands")
    for clients in (1, 16, 256):
        runs = [asyncio.run(throughput(clients, args.seconds)) for _ in range(args.repeats)]
        rates = [r[0] for r in runs]
        print(
            f"  {clients:>3} clients: {statistics.median(rates):>8.0f} proposals/s [{min(rates):.0f}..{max(rates):.0f}]"
            f"  p50 {statistics.median(r[1] for r in runs):.2f} ms  p99 {statistics.median(r[2] for r in runs):.2f} ms"
        )
    runs = [asyncio.run(overload(args.burst, args.seconds)) for _ in range(args.repeats)]
    kept = sum(r[2] for r in runs)
    print(
        f"overload, bursts of {args.burst}: accepted {statistics.median(r[0] for r in runs):.0f}, "
        f"refused with Overloaded {statistics.median(r[1] for r in runs):.0f} (medians); "
        f"leader kept its leadership in {kept}/{len(runs)} runs"
    )


if __name__ == "__main__":
    main()
