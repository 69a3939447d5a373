"""3 and 5 real node processes: a leader is elected; writes and linearizable reads work from any node."""

from __future__ import annotations

import time

import pytest
from harness import Workload, keys_of, run, verify


@pytest.mark.parametrize("size", [3, 5])
def test_leader_elected_and_every_node_serves_writes_and_linearizable_reads(clusters, size):
    cluster = clusters(size)

    async def main() -> None:
        started = time.monotonic()
        async with cluster:
            leader = await cluster.leader()
            print(f"{size} nodes serving with leader {leader} after {time.monotonic() - started:.2f}s")
            # One client per node, each knowing only that node: followers forward writes and confirm reads.
            workloads = [Workload([cluster.endpoint(n)], clients=1, timeout=5.0) for n in cluster.ids]
            history = workloads[0].history
            for w in workloads[1:]:
                w.history = history
            for w in workloads:
                await w.__aenter__()
            try:
                for i, writer in enumerate(workloads):
                    node = cluster.ids[i]
                    op = await writer.put(f"from-{node}", who=f"n{node}")
                    assert op.error == "", f"put through node {node} failed: {op.describe()}"
                    # Read-your-write through every other node, linearizably.
                    for j, reader in enumerate(workloads):
                        got = await reader.get(f"from-{node}", who=f"n{cluster.ids[j]}")
                        assert got.result == op.value, f"node {cluster.ids[j]} read {got.describe()}"
                cas_ok = await workloads[-1].cas("from-1", history.ops[0].value, "swapped", who="cas")
                cas_stale = await workloads[0].cas("from-1", history.ops[0].value, "never", who="cas")
                assert cas_ok.result is True and cas_stale.result is False
                deleted = await workloads[1].delete("from-2", who="del")
                assert deleted.error == ""
                assert (await workloads[0].get("from-2", who="n1")).result is None
                # A little concurrent load from every node at once.
                load = Workload(cluster.endpoints(), history, clients=4, timeout=5.0, seed=size)
                async with load:
                    await load.writers(8, keys_of("k", 4), duration=2.0, max_ops=200, read_ratio=0.3)
                assert len(history.acked_writes()) > 20, history.summary()
            finally:
                for w in workloads:
                    await w.__aexit__()
            await verify(cluster, history)
            print(history.summary())
            # Peer traffic goes through the harness's proxies: every link to and from the leader carried some
            # (followers only talk to each other in elections).
            leader_links = [p for (i, j), p in cluster.net.links.items() if leader in (i, j)]
            idle = [p.name for p in leader_links if p.stats.bytes_up == 0]
            assert not idle, f"links that carried nothing (peer traffic bypasses the proxies?): {idle}"
            # Graceful stop: SIGTERM exits 0, and the node restarts on its data.
            follower = next(n for n in cluster.ids if n != leader)
            assert await cluster.stop(follower) == 0
            await cluster.restart(follower)
            await verify(cluster, history)

    run(main(), 120)
