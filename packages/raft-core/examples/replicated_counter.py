"""A replicated counter across processes: run one process per node, each adds to the same counter.

    python examples/replicated_counter.py --id 1 --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
    python examples/replicated_counter.py --id 2 --cluster ...   # same --cluster, in a second terminal
    python examples/replicated_counter.py --id 3 --cluster ...   # and a third

Each process adds 1 to the counter ``--adds`` times (exactly once each, even across leader changes), then
prints the value it reads (linearizably) until it reaches ``--expect`` and keeps serving until Ctrl-C or
SIGTERM. State lives in ``--data`` (default ``./counter-data/<id>``): stop a process and start it again, and
it resumes from its log and snapshots.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from raft_core import Membership, NotLeader, Overloaded
from raft_core.runtime import Node, NodeOptions, ReplicatedObject, TcpTransport, query, replicated
from raft_core.storage import DiskStorage


class Counter(ReplicatedObject):
    """The replicated state: one integer."""

    def __init__(self) -> None:
        """Start at zero."""
        self.value = 0

    @replicated
    def add(self, n: int) -> int:
        """Add ``n`` (runs on every node, in log order); returns the new value."""
        self.value += n
        return self.value

    @query
    def get(self) -> int:
        """The current value (linearizable)."""
        return self.value


def parse_cluster(text: str) -> dict[int, tuple[str, int]]:
    """``1=host:port,2=host:port`` as a dict."""
    cluster: dict[int, tuple[str, int]] = {}
    for item in text.split(","):
        node, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        cluster[int(node)] = (host, int(port))
    return cluster


async def main() -> None:
    """Run one node of the counter until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--id", type=int, required=True, help="this node's id")
    parser.add_argument("--cluster", required=True, help="every node: 1=host:port,2=host:port,...")
    parser.add_argument("--data", type=Path, help="data directory (default ./counter-data/<id>)")
    parser.add_argument("--adds", type=int, default=10, help="how many times this process adds 1")
    parser.add_argument("--expect", type=int, default=0, help="print the value until it reaches this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"node {args.id}: %(levelname)s %(message)s")

    cluster = parse_cluster(args.cluster)
    storage = DiskStorage.open(args.data or Path("counter-data") / str(args.id), membership=Membership.of(*cluster))
    counter = Counter()
    node = Node(args.id, counter, storage, TcpTransport(args.id, cluster), NodeOptions())
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)

    async with node:
        counter.attach(node)
        await node.wait_for_leader()
        for _ in range(args.adds):
            while True:
                try:
                    print(f"node {args.id} added 1: counter = {await counter.add(1)}", flush=True)
                    break
                except (NotLeader, Overloaded):
                    await asyncio.sleep(0.2)  # no leader right now: back off, then retry the same call
        value = await counter.get()
        while value < args.expect and not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            value = await counter.get()
        print(f"node {args.id} reads: counter = {value}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
