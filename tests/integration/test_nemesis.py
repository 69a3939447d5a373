"""A randomized nemesis (Jepsen style): partitions, one-way cuts, crashes and pauses under load, then a verdict.

Each step picks one fault at random, holds it for a while with writers and readers running, and undoes it.
The faults never take more than a minority down at once, so the cluster must keep making progress overall,
and at the end every acknowledged write must be present and every key's history linearizable.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from harness import Cluster, LinkState, Workload, keys_of, run, verify


async def one_fault(cluster: Cluster, rng: random.Random, hold: float) -> str:
    """Inject one random fault for ``hold`` seconds, then undo it; returns what it was."""
    ids = cluster.ids
    minority = rng.sample(ids, rng.randint(1, (len(ids) - 1) // 2))
    kind = rng.choice(["partition", "isolate", "one-way", "kill", "pause", "bridge"])
    mode = rng.choice([LinkState.RESET, LinkState.BLACKHOLE])
    if kind == "partition":
        cluster.partition(minority, [n for n in ids if n not in minority], mode=mode)
    elif kind == "isolate":
        cluster.isolate(minority[0], mode=mode)
    elif kind == "one-way":
        src = minority[0]
        for n in ids:
            if n != src:
                cluster.net.cut(src, n, both=False, mode=mode)
    elif kind == "bridge" and len(ids) >= 5:
        # Two halves that only talk through one bridge node (etcd's "bridge" nemesis).
        bridge, rest = ids[0], ids[1:]
        left, right = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        for a in left:
            for b in right:
                cluster.net.cut(a, b, mode=mode)
        minority = [bridge]
    elif kind == "kill":
        for n in minority:
            await cluster.kill(n)
    elif kind == "pause":
        for n in minority:
            cluster.pause(n)
    await asyncio.sleep(hold)  # the fault's duration: the point of the step, not a wait for a condition
    cluster.heal()
    if kind == "kill":
        for n in minority:
            await cluster.restart(n)
    if kind == "pause":
        for n in minority:
            cluster.resume(n)
    return f"{kind}({mode.value}) {minority} for {hold:.1f}s"


def nemesis(clusters, size: int, duration: float, seed: int) -> None:
    cluster = clusters(size)
    rng = random.Random(seed)

    async def main() -> None:
        async with cluster, Workload(cluster.endpoints(), clients=4, timeout=3.0, seed=seed) as load:
            stop = asyncio.Event()
            writers = asyncio.ensure_future(
                load.writers(10, keys_of("n", 6), duration=duration + 30, max_ops=10_000, stop=stop, read_ratio=0.3)
            )
            steps: list[str] = []
            try:
                end = time.monotonic() + duration
                while time.monotonic() < end:
                    steps.append(await one_fault(cluster, rng, rng.uniform(0.5, 2.5)))
                    await cluster.leader(timeout=20)
                    acked = len(load.history.acked_writes())
                    await asyncio.sleep(rng.uniform(0.2, 1.0))  # healthy interval between faults
                    steps[-1] += f" (acked so far {acked})"
            finally:
                stop.set()
                async with asyncio.timeout(30):
                    await writers
            print("\n".join(steps))
            await verify(cluster, load.history, timeout=45)
            print(load.history.summary())

    run(main(), duration + 180)


def test_nemesis_short_5_nodes(clusters):
    nemesis(clusters, 5, duration=20.0, seed=20261126)


@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nemesis_long_5_nodes(clusters, seed):
    nemesis(clusters, 5, duration=120.0, seed=seed)
