"""The end-of-scenario verdict shared by every scenario: heal, converge, then check the history."""

from __future__ import annotations

from .cluster import Cluster
from .history import History, check_final_state, check_linearizable


async def verify(
    cluster: Cluster, history: History, *, timeout: float = 30.0, linearizable: bool = True
) -> dict[str, str | None]:
    """Heal the network, resume paused nodes, wait for a leader and convergence of every live node, then check
    that no acknowledged write is lost, nothing unwritten appears, the history is linearizable (per key) and no
    two leaders were ever seen in one term. Returns the converged state.
    """
    cluster.heal()
    for n, proc in cluster.nodes.items():
        if proc.paused:
            cluster.resume(n)
    await cluster.leader(timeout=timeout)
    state = await cluster.wait_converged(history.written_keys(), timeout=timeout)
    check_final_state(history, state)
    if linearizable:
        check_linearizable(history)
    await cluster.monitor.sample()
    cluster.monitor.check_election_safety()
    return state
