"""Tests of the asyncio ``Node``: elections, proposals, forwarding, reads, transfers, backpressure, stop, restart.

Everything runs on the virtual loop (``run_virtual``), so timeouts cost no wall time and each run is
deterministic; waits poll with a deadline or await events, never sleep and hope.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from raft_core.errors import (
    CommandFailed,
    CommitUnknown,
    ConfigError,
    NodeStopped,
    NotLeader,
    Overloaded,
    ProposalDropped,
    ReadTimeout,
    TransferFailed,
)
from raft_core.messages import AppendEntries, Heartbeat
from raft_core.runtime import (
    LeaderChange,
    MemoryNetwork,
    Node,
    NodeOptions,
    NotAttached,
    ReplicatedObject,
    WireMessage,
    query,
    replicated,
)
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.runtime_sim import Cluster, SimMachine, command, sim_options
from raft_core.testing.virtual_loop import current_virtual_loop, run_virtual
from raft_core.types import Membership, Role


def result_of(answer: object) -> dict[str, Any]:
    """A ``SimMachine`` answer, checked to be one."""
    assert isinstance(answer, dict), answer
    return answer


def test_three_nodes_elect_a_leader_and_apply_a_proposal():
    async def main() -> None:
        c = Cluster(3, seed=1)
        await c.start_all()
        lead = await c.wait_leader()
        assert sum(n.is_leader for n in c.live()) == 1
        answer = result_of(await lead.propose(command("", 0, 5)))
        assert answer["total"] == 5
        await c.wait_converged()
        assert {c.machine(i).total for i in c.ids} == {5}
        status = lead.status()
        assert status.role is Role.LEADER and status.leader == lead.id
        assert status.applied == status.commit == answer["index"]
        assert set(status.progress) == set(c.ids)
        await c.stop_all()

    run_virtual(main())


def test_a_follower_forwards_a_proposal_and_returns_the_result_applied_on_itself():
    async def main() -> None:
        c = Cluster(3, seed=2)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        answers = [result_of(await follower.propose(command("", 0, k))) for k in (1, 2, 3)]
        assert [a["total"] for a in answers] == [1, 3, 6]
        assert follower.applied_index >= answers[-1]["index"]
        assert c.machine(follower.id).total == 6
        await c.stop_all()

    run_virtual(main())


def test_without_forwarding_a_follower_names_the_leader_and_its_address():
    async def main() -> None:
        c = Cluster(3, seed=3, options=sim_options(forward_proposals=False))
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(NotLeader) as info:
            await follower.propose(command("", 0))
        assert info.value.leader == lead.id
        assert info.value.address == f"memory://{lead.id}"
        assert f"memory://{lead.id}" in str(info.value)
        assert follower.leader_address() == f"memory://{lead.id}"
        assert c.machine(lead.id).applies == 0
        await c.stop_all()

    run_virtual(main())


def test_without_forwarding_and_without_a_leader_not_leader_has_no_address():
    async def main() -> None:
        c = Cluster(3, seed=4, options=sim_options(forward_proposals=False))
        await c.start_all()
        c.net.isolate(1, c.ids)  # node 1 never hears of a leader
        node = c.nodes[1]
        with pytest.raises(NotLeader) as info:
            await node.propose(command("", 0))
        assert info.value.leader == 0
        assert node.leader_address() is None
        # No leader is known, so there is no address to try (not "memory://0").
        assert info.value.address is None
        await c.stop_all()

    run_virtual(main())


def test_a_read_on_a_follower_sees_every_write_acknowledged_before_it_began():
    async def main() -> None:
        c = Cluster(3, seed=5)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)

        def slow_replication(m: WireMessage) -> float:
            # Entries and commit indexes reach the follower late; ReadIndex answers do not.
            late = isinstance(m, AppendEntries | Heartbeat) and m.dst == follower.id
            return 0.2 if late else 0.0

        c.net.delay = slow_replication
        behind = 0
        for k in range(1, 21):
            answer = result_of(await lead.propose(command("w", k)))
            if follower.applied_index < answer["index"]:
                behind += 1  # the read must wait for the follower to catch up
            seen = await follower.read(lambda sm: sm.last_ok.get("w", 0))
            assert seen is not None and seen >= k
        assert behind > 0, "the follower was never behind: the test proved nothing"
        await c.stop_all()

    run_virtual(main())


def test_a_read_without_a_quorum_times_out():
    async def main() -> None:
        c = Cluster(3, seed=6)
        await c.start_all()
        await c.wait_leader()
        c.net.isolate(1, c.ids)
        with pytest.raises(ReadTimeout):
            await c.nodes[1].read(timeout=2.0)
        await c.stop_all()

    run_virtual(main())


def test_transfer_leadership_moves_the_leader_and_every_node_follows():
    async def main() -> None:
        c = Cluster(3, seed=7)
        await c.start_all()
        lead = await c.wait_leader()
        target = next(i for i in c.ids if i != lead.id)
        term = lead.status().term
        await lead.transfer_leadership(target, timeout=10)
        assert lead.leader == target and not lead.is_leader
        new = await c.wait_leader()
        assert new.id == target and new.status().term > term
        result_of(await lead.propose(command("", 0)))  # the old leader now forwards
        await c.stop_all()

    run_virtual(main())


def test_observers_see_leader_changes_until_unsubscribed():
    async def main() -> None:
        c = Cluster(3, seed=8)
        seen: dict[int, list[LeaderChange]] = {i: [] for i in c.ids}
        for i in c.ids:
            n = c.build(i)
            n.add_observer(seen[i].append)
            c.nodes[i] = n
        for i in c.ids:
            await c.nodes[i].start()
            c.down.discard(i)
        lead = await c.wait_leader()
        for i in c.ids:
            assert seen[i] and seen[i][-1].leader == lead.id and seen[i][-1].node == i
        assert seen[lead.id][-1].role is Role.LEADER
        target = next(i for i in c.ids if i != lead.id)
        unsubscribe = c.nodes[target].add_observer(lambda change: None)
        unsubscribe()
        await lead.transfer_leadership(target, timeout=10)
        await c.wait_leader(among=[target])
        for i in c.ids:
            assert seen[i][-1].leader == target
        assert seen[target][-1].role is Role.LEADER
        assert seen[lead.id][-1].role is Role.FOLLOWER
        await c.stop_all()

    run_virtual(main())


def test_proposals_past_max_pending_are_refused_at_once_with_overloaded():
    async def main() -> None:
        c = Cluster(3, seed=9, options=sim_options(max_pending_proposals=50))
        await c.start_all()
        lead = await c.wait_leader()
        loop = c.loop
        tasks = [loop.create_task(lead.propose(command("", 0))) for _ in range(80)]
        await asyncio.sleep(0)  # every task runs to its first await
        refused_at = loop.time()
        done, _ = await asyncio.wait(tasks, timeout=0)
        refused = [t for t in done if isinstance(t.exception(), Overloaded)]
        assert len(refused) == 30 and loop.time() == refused_at
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, dict) for r in results) == 50
        result_of(await lead.propose(command("", 0)))  # accepted again once the queue drained
        await c.stop_all()

    run_virtual(main())


def test_a_leader_keeps_its_leadership_under_a_burst_of_thousands_of_proposals():
    async def main() -> None:
        c = Cluster(3, seed=10, options=sim_options(max_pending_proposals=3000, snapshot_entries=1000))
        await c.start_all()
        lead = await c.wait_leader()
        term = lead.status().term
        tasks = [c.loop.create_task(lead.propose(command("", 0))) for _ in range(5000)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, Overloaded) for r in results) == 2000
        assert sum(isinstance(r, dict) for r in results) == 3000
        assert lead.is_leader and lead.status().term == term
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {3000}
        await c.stop_all()

    run_virtual(main())


def test_a_leader_keeps_its_leadership_under_a_real_time_burst():
    """10,000 proposals at once on a real event loop and clock, persisting in worker threads: ticks and
    heartbeats must not starve, so no follower campaigns and the leader keeps its term."""

    async def main() -> tuple[int, int, int, bool]:
        net = MemoryNetwork()
        options = NodeOptions(tick_interval=0.05, election_ticks=20, max_pending_proposals=20_000)
        storages = {i: MemoryStorage(Membership.of(1, 2, 3)) for i in (1, 2, 3)}
        nodes = [Node(i, SimMachine(), storages[i], net.transport(i), options) for i in (1, 2, 3)]
        for n in nodes:
            await n.start()
        try:
            leader_id = await nodes[0].wait_for_leader(timeout=20)
            lead = nodes[leader_id - 1]
            await lead.propose(command("", 0))
            term = lead.status().term
            results = await asyncio.gather(*(lead.propose(command("", 0), timeout=120) for _ in range(10_000)))
            return len(results), term, lead.status().term, lead.is_leader
        finally:
            for n in nodes:
                await n.stop()

    count, term, term_after, still_leader = asyncio.run(main())
    assert count == 10_000
    assert still_leader and term_after == term


def test_proposals_past_the_uncommitted_byte_limit_are_refused_with_overloaded():
    async def main() -> None:
        c = Cluster(3, seed=18, options=sim_options(max_uncommitted_bytes=4000))
        await c.start_all()
        lead = await c.wait_leader()
        for i in c.ids:
            c.net.isolate(i, c.ids)  # nothing commits: every proposal stays uncommitted
        loop = c.loop
        began = loop.time()
        tasks = [loop.create_task(lead.propose(command("", 0, 1) + b" " * 200, timeout=5)) for _ in range(40)]
        await asyncio.wait(tasks, timeout=0.01)
        refused = [t for t in tasks if t.done() and isinstance(t.exception(), Overloaded)]
        assert refused and loop.time() - began < 0.02  # at once, not after the 5 s deadline
        assert not all(t.done() for t in tasks)  # the first ones were taken
        await asyncio.gather(*tasks, return_exceptions=True)
        await c.stop_all()

    run_virtual(main())


def test_a_follower_is_told_at_once_when_the_leader_refuses_its_forwarded_proposals():
    """Backpressure reaches followers too: a proposal forwarded to a leader past its uncommitted byte limit is
    refused at once with ``Overloaded``, not left to run into its deadline (``CommitUnknown``)."""

    async def main() -> None:
        c = Cluster(5, seed=24, options=sim_options(max_uncommitted_bytes=3000, election_ticks=60))
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(i for i in c.ids if i != lead.id)
        for other in c.ids:
            if other not in (lead.id, follower):
                c.net.isolate(other, c.ids)  # the leader still leads, but commits nothing
        loop = c.loop
        began = loop.time()
        tasks = [
            loop.create_task(c.nodes[follower].propose(command("", 0) + b" " * 200, timeout=2.0)) for _ in range(40)
        ]
        await asyncio.wait(tasks, timeout=0.5)
        assert lead.is_leader and loop.time() - began < 1.0
        overloaded = [t for t in tasks if t.done() and isinstance(t.exception(), Overloaded)]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        kinds = sorted({type(r).__name__ for r in results})
        assert overloaded, f"no forwarded proposal was refused at once; outcomes after the deadline: {kinds}"
        await c.stop_all()

    run_virtual(main())


def test_a_proposal_overwritten_by_a_new_leader_is_reported_as_dropped():
    async def main() -> None:
        c = Cluster(3, seed=19)
        await c.start_all()
        old = await c.wait_leader()
        c.net.isolate(old.id, c.ids)
        pending = c.loop.create_task(old.propose(command("lost", 1), timeout=60))
        others = [i for i in c.ids if i != old.id]
        await c.wait_until(lambda: any(c.nodes[i].is_leader for i in others))
        new = next(c.nodes[i] for i in others if c.nodes[i].is_leader)
        await new.propose(command("won", 1))
        c.net.heal()
        with pytest.raises(ProposalDropped) as info:
            await pending
        assert not isinstance(info.value, Overloaded)
        await c.wait_converged()
        assert "lost#1" not in c.machine(old.id).seen
        await c.stop_all()

    run_virtual(main())


def test_a_transfer_to_a_node_outside_the_cluster_fails_and_the_leader_stays():
    async def main() -> None:
        c = Cluster(3, seed=20)
        await c.start_all()
        lead = await c.wait_leader()
        with pytest.raises(TransferFailed):
            await lead.transfer_leadership(99, timeout=2)
        assert lead.is_leader
        result_of(await lead.propose(command("", 0)))
        await c.stop_all()

    run_virtual(main())


def test_a_failing_command_raises_command_failed_and_stays_applied():
    async def main() -> None:
        c = Cluster(3, seed=11)
        await c.start_all()
        lead = await c.wait_leader()
        with pytest.raises(CommandFailed) as info:
            await lead.propose(command("", 0, fail=True))
        assert info.value.kind == "ValueError" and "refused" in info.value.detail
        answer = result_of(await lead.propose(command("", 0, 2)))
        assert answer["total"] == 2
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {2}
        await c.stop_all()

    run_virtual(main())


def test_stop_fails_waiting_proposals_reads_and_leader_waits_with_node_stopped():
    async def main() -> None:
        c = Cluster(3, seed=12)
        await c.start_all()
        lead = await c.wait_leader()
        c.net.isolate(lead.id, c.ids)  # nothing it proposes can commit now
        loop = c.loop
        proposal = loop.create_task(lead.propose(command("", 0), timeout=100))
        read = loop.create_task(lead.read(timeout=100))
        other = c.nodes[next(i for i in c.ids if i != lead.id)]
        c.net.isolate(other.id, c.ids)
        leader_wait = loop.create_task(other.wait_for_leader(lambda leader: leader == 99, timeout=100))
        await asyncio.sleep(1.0)
        assert not proposal.done() and not read.done() and not leader_wait.done()
        stopped_at = loop.time()
        await c.stop(lead.id)
        await c.stop(other.id)
        for task in (proposal, read, leader_wait):
            with pytest.raises(NodeStopped):
                await task
        assert loop.time() - stopped_at < 0.5
        with pytest.raises(NodeStopped):
            await lead.propose(command("", 0))
        with pytest.raises(NodeStopped):
            await lead.read()
        await c.stop_all()

    run_virtual(main())


def test_a_proposal_without_quorum_ends_in_commit_unknown():
    async def main() -> None:
        c = Cluster(3, seed=13)
        await c.start_all()
        lead = await c.wait_leader()
        c.net.isolate(lead.id, c.ids)
        with pytest.raises(CommitUnknown):
            await lead.propose(command("", 0), timeout=2.0)
        await c.stop_all()

    run_virtual(main())


def test_a_restarted_cluster_replays_committed_entries_from_storage():
    async def main() -> None:
        c = Cluster(3, seed=14, options=sim_options(snapshot_entries=1000), lose_unsynced=False)
        await c.start_all()
        lead = await c.wait_leader()
        for k in range(1, 31):
            await lead.propose(command("r", k, k))
        await c.wait_converged()
        before = {i: c.machine(i).snapshot() for i in c.ids}
        applied = {i: c.nodes[i].applied_index for i in c.ids}
        await c.stop_all()
        for i in c.ids:
            c.net.isolate(i, c.ids)  # what they apply now can only come from their own storage
        await c.start_all()  # fresh state machines over the same storages
        await c.wait_until(lambda: all(c.nodes[i].applied_index == applied[i] for i in c.ids))
        assert {i: c.machine(i).snapshot() for i in c.ids} == before
        assert all(not n.is_leader for n in c.live())
        c.net.heal()
        await c.wait_leader()
        await c.wait_converged()
        after = {i: c.machine(i).snapshot() for i in c.ids}
        assert after == before
        assert c.machine(1).total == sum(range(1, 31)) and c.machine(1).dup_applies == 0
        await c.stop_all()

    run_virtual(main())


def test_a_restarted_follower_catches_up_and_matches_the_others():
    async def main() -> None:
        c = Cluster(3, seed=15)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(i for i in c.ids if i != lead.id)
        await c.stop(follower)
        for k in range(1, 11):
            await lead.propose(command("a", k))
        await c.start(follower)
        for k in range(11, 21):
            await lead.propose(command("a", k))
        await c.wait_converged()
        assert len({c.machine(i).snapshot() for i in c.ids}) == 1
        assert c.machine(follower).last_ok["a"] == 20
        await c.stop_all()

    run_virtual(main())


def test_an_oversized_command_is_refused():
    async def main() -> None:
        c = Cluster(1, seed=16, options=sim_options(max_command_bytes=10))
        await c.start_all()
        await c.wait_leader()
        with pytest.raises(ValueError, match="max_command_bytes"):
            await c.nodes[1].propose(b"x" * 11)
        await c.stop_all()

    run_virtual(main())


def test_a_node_cannot_be_started_twice_and_refuses_work_before_start():
    async def main() -> None:
        c = Cluster(1, seed=17)
        node = c.build(1)
        with pytest.raises(NodeStopped):
            await node.propose(b"x")
        with pytest.raises(NodeStopped):
            node.status()
        await node.start()
        with pytest.raises(RuntimeError):
            await node.start()
        await node.stop()

    run_virtual(main())


def test_a_failing_observer_does_not_hurt_the_node_or_other_observers():
    async def main() -> None:
        c = Cluster(1, seed=25)
        node = c.build(1)
        seen: list[LeaderChange] = []

        def broken(change: LeaderChange) -> None:
            raise RuntimeError("observer bug")

        node.add_observer(broken)
        node.add_observer(seen.append)
        c.nodes[1] = node
        await node.start()
        c.down.discard(1)
        await c.wait_leader()
        assert seen and seen[-1].role is Role.LEADER
        result_of(await node.propose(command("", 0)))
        await c.stop_all()

    run_virtual(main())


def test_a_node_runs_as_an_async_context_manager_and_stops_twice_quietly():
    async def main() -> None:
        c = Cluster(1, seed=26)
        async with c.build(1) as node:
            await node.wait_for_leader(timeout=10)
            result_of(await node.propose(command("", 0)))
        with pytest.raises(NodeStopped):
            await node.propose(command("", 0))
        await node.stop()  # already stopped: nothing happens

    run_virtual(main())


class _Counter(ReplicatedObject):
    def __init__(self) -> None:
        self.value = 0
        self.log: list[int] = []

    @replicated
    def add(self, n: int) -> int:
        self.value += n
        self.log.append(n)
        return self.value

    @replicated
    def fail(self) -> None:
        raise ValueError("no")

    @query
    def get(self) -> int:
        return self.value


def test_a_replicated_object_proposes_its_calls_and_reads_linearizably_on_every_node():
    async def main() -> None:
        loop = current_virtual_loop()
        net = MemoryNetwork()
        options = sim_options(snapshot_entries=5, compact_keep_entries=1)
        counters = {i: _Counter() for i in (1, 2, 3)}
        nodes = {
            i: Node(
                i,
                counters[i],
                MemoryStorage(Membership.of(1, 2, 3)),
                net.transport(i),
                options,
                rng=random.Random(i),
                clock=loop.clock_ms,
            )
            for i in (1, 2, 3)
        }
        with pytest.raises(NotAttached):
            await counters[1].add(1)
        for i in (1, 2, 3):
            counters[i].attach(nodes[i])
            await nodes[i].start()
        await nodes[1].wait_for_leader(timeout=10)
        assert await counters[1].add(2) == 2
        assert await counters[2].add(3) == 5
        assert await counters[3].get() == 5
        with pytest.raises(CommandFailed):
            await counters[3].fail()
        for k in range(10):  # past the snapshot threshold: state goes through snapshot() and restore()
            await counters[1 + k % 3].add(1)
        for i in (1, 2, 3):
            assert await counters[i].get() == 15
        assert counters[1].log == counters[2].log == counters[3].log
        for n in nodes.values():
            await n.stop()

    run_virtual(main())


def test_the_inflight_window_reaches_the_core_and_is_validated() -> None:
    assert NodeOptions().core_config(1, 0).max_inflight_msgs == 256
    assert NodeOptions(max_inflight_appends=2).core_config(1, 0).max_inflight_msgs == 2
    with pytest.raises(ConfigError, match="max_inflight_appends"):
        NodeOptions(max_inflight_appends=0)
