"""A one-node cluster that proposes numbered commands and reports each acknowledged one (for crash tests).

``python runtime_crash_writer.py DIR write RUN`` proposes ``RUN:0``, ``RUN:1``, ... (4 at a time) forever,
printing ``acked RUN:N`` after each ``propose`` returns; the test kills it with SIGKILL at a random moment.
``... DIR check`` restarts the node from DIR, waits until it has applied its whole log, and prints the applied
commands as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from raft_core import Membership
from raft_core.runtime import Command, MemoryNetwork, Node, NodeOptions
from raft_core.storage import DiskStorage

OPTIONS = NodeOptions(tick_interval=0.01, election_ticks=10, snapshot_entries=150, compact_keep_entries=20)


class Recorder:
    """Keeps every applied command, in order."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, command: Command) -> object:
        self.applied.append(command.data.decode())
        return len(self.applied)

    def snapshot(self) -> bytes:
        return json.dumps(self.applied).encode()

    def restore(self, data: bytes) -> None:
        self.applied = json.loads(data)


async def main(directory: str, mode: str, run: str) -> None:
    storage = DiskStorage.open(directory, membership=Membership.of(1))
    recorder = Recorder()
    node = Node(1, recorder, storage, MemoryNetwork().transport(1), OPTIONS)
    async with node:
        await node.wait_for_leader(timeout=10)
        if mode == "check":
            await node.read(timeout=10)
            print(json.dumps(recorder.applied), flush=True)
            return
        print("ready", flush=True)
        counter = iter(range(10**9))

        async def writer() -> None:
            for n in counter:
                await node.propose(f"{run}:{n}".encode())
                print(f"acked {run}:{n}", flush=True)

        await asyncio.gather(*(writer() for _ in range(4)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""))
