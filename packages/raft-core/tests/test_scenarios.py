"""Scripted fault scenarios after the MIT 6.824 Raft tests, run on the simulated cluster with every invariant on.

Each test drives a ``SimCluster`` (logical ticks, no sleeps, no wall clock) through one scenario; the
cluster's invariant checker raises ``InvariantFailure`` the moment any Raft safety property breaks, and the
test asserts what the scenario is about (a leader, a commit, no commit, few round trips, ...). The random
scenarios (Figure 8, churn, unreliable agreement) run the simulator's own fault phases for one plan.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from raft_core.log import RaftLog
from raft_core.messages import AppendEntries, AppendEntriesResponse, InstallSnapshot, Message
from raft_core.testing.sim import InvariantFailure, NetParams, Phase, Plan, Runner, SimCluster
from raft_core.types import NodeId, Role

ET = 10
"""Election ticks (the Config default)."""
LOSSY = NetParams(drop=0.1, dup=0.02, max_delay=3, long_delay=0.05, long_delay_max=30)
"""MIT's unreliable network, in ticks: delays, 10% loss, a few long reorderings."""


def make(n: int, seed: int = 1, **config: object) -> SimCluster:
    """A cluster of ``n`` fresh nodes on a reliable network."""
    return SimCluster(n, random.Random(seed), config)


def run_until(c: SimCluster, cond: Callable[[], bool], limit: int = 300, what: str = "condition") -> None:
    """Tick until ``cond()`` holds; fail after ``limit`` ticks."""
    for _ in range(limit):
        if cond():
            return
        c.tick()
    assert cond(), f"{what} not reached within {limit} ticks"


def leader_of(c: SimCluster, group: Iterable[NodeId]) -> NodeId | None:
    """The up node of ``group`` leading the highest term, if any."""
    leaders = [n for n in group if c.up[n] and c.nodes[n].node.role is Role.LEADER]
    return max(leaders, key=lambda n: c.nodes[n].node.term) if leaders else None


def wait_leader(c: SimCluster, group: Iterable[NodeId] | None = None, limit: int = 300) -> NodeId:
    """Tick until every node of ``group`` (default: all) follows one leader in one term; return it."""
    members = list(c.ids if group is None else group)
    found: list[NodeId] = []

    def agreed() -> bool:
        lead = c.stable_leader(members)
        if lead is not None:
            found.append(lead)
        return lead is not None

    run_until(c, agreed, limit, f"a leader of {members}")
    return found[-1]


def applied_by(c: SimCluster, index: int, data: bytes) -> int:
    """How many nodes applied ``data`` at ``index`` (the invariants ensure no node applied anything else)."""
    got = c.invariants.applied.get(index)
    if got is None or got[1] != data:
        return 0
    return sum(1 for n in c.ids if c.applied_index(n) >= index)


def one(c: SimCluster, data: bytes, expected: int, group: Iterable[NodeId] | None = None, limit: int = 300) -> int:
    """MIT ``one()``: propose ``data`` to the group's leader until ``expected`` nodes applied it; its index."""
    members = list(c.ids if group is None else group)
    deadline = c.now + limit
    while c.now < deadline:
        lead = leader_of(c, members)
        index = c.propose(lead, data) if lead is not None else None
        if index is not None:
            for _ in range(2 * ET):
                c.tick()
                if applied_by(c, index, data) >= expected:
                    return index
        c.tick()
    raise AssertionError(f"{data!r} was not applied by {expected} nodes within {limit} ticks")


def run_plan(size: int, seed: int, *phases: Phase, **config: object) -> None:
    """Run the simulator's fault phases on one plan, then its liveness check; fail with its report."""
    plan = Plan(seed=seed, size=size, config=dict(config), phases=phases, snapshot_every=60, runtime_seed=seed)
    result = Runner(plan).run()
    assert result.ok, result.report


# -- elections (MIT 3A) ---------------------------------------------------------------------------------


def test_initial_election_elects_one_leader() -> None:
    c = make(3)
    lead = wait_leader(c, limit=5 * ET)
    term = c.nodes[lead].node.term
    assert term >= 1
    c.run(5 * ET)
    assert c.stable_leader(c.ids) == lead, "the leader changed although nothing failed"
    assert {c.nodes[n].node.term for n in c.ids} == {term}


def test_reelection_after_leader_disconnect() -> None:
    c = make(3)
    old = wait_leader(c)
    c.isolate(old)
    rest = [n for n in c.ids if n != old]
    new = wait_leader(c, rest)
    assert new != old
    # The old leader rejoins: it must not disturb the new one.
    c.reconnect(old)
    assert wait_leader(c) == new
    # Without a quorum no leader may be elected.
    follower = next(n for n in c.ids if n != new)
    alone = next(n for n in c.ids if n not in (new, follower))
    c.partition()  # everyone cut off from everyone
    c.run(4 * ET)
    assert leader_of(c, [alone]) is None
    # A quorum returns: a leader again; then everyone.
    c.partition([alone, follower])
    wait_leader(c, [alone, follower])
    c.heal()
    wait_leader(c)


def test_many_elections_keep_a_leader_whenever_a_majority_is_connected() -> None:
    c = make(7, seed=3)
    wait_leader(c)
    rng = random.Random(7)
    for _ in range(10):
        out = rng.sample(c.ids, 3)
        for n in out:
            c.isolate(n)
        wait_leader(c, [n for n in c.ids if n not in out])
        c.heal()
    wait_leader(c)


# -- agreement (MIT 3B) ---------------------------------------------------------------------------------


def test_basic_agree_commits_consecutive_indexes() -> None:
    c = make(3)
    wait_leader(c)
    indexes = [one(c, b"cmd%d" % i, 3) for i in range(3)]
    assert indexes == list(range(indexes[0], indexes[0] + 3))


def test_follower_failure_commits_with_a_majority_and_not_without() -> None:
    c = make(3)
    lead = wait_leader(c)
    one(c, b"a", 3)
    f1, f2 = (n for n in c.ids if n != lead)
    c.isolate(f1)
    one(c, b"b", 2)
    c.isolate(f2)
    index = c.propose(lead, b"c")
    assert index is not None
    c.run(4 * ET)
    assert applied_by(c, index, b"c") == 0
    assert c.invariants.max_commit < index


def test_leader_failure_new_leader_commits_and_nothing_commits_without_a_majority() -> None:
    c = make(3)
    first = wait_leader(c)
    one(c, b"a", 3)
    c.crash(first)
    rest = [n for n in c.ids if n != first]
    second = wait_leader(c, rest)
    one(c, b"b", 2, rest)
    c.crash(second)
    for n in c.running():
        c.propose(n, b"c")
    c.run(6 * ET)
    assert all(data != b"c" for _, data in c.invariants.applied.values())


def test_fail_agree_rejoined_follower_catches_up() -> None:
    c = make(3)
    lead = wait_leader(c)
    one(c, b"x0", 3)
    follower = next(n for n in c.ids if n != lead)
    c.isolate(follower)
    for i in range(4):
        one(c, b"x%d" % (i + 1), 2)
    c.reconnect(follower)
    last = one(c, b"after", 3)
    assert c.applied_index(follower) >= last


def test_fail_no_agree_without_majority() -> None:
    c = make(5)
    lead = wait_leader(c)
    one(c, b"first", 5)
    followers = [n for n in c.ids if n != lead]
    for n in followers[:3]:
        c.isolate(n)
    index = c.propose(lead, b"lonely")
    assert index is not None
    c.run(4 * ET)
    assert applied_by(c, index, b"lonely") == 0, "committed without a majority"
    c.heal()
    later = one(c, b"later", 5)
    assert later >= index  # the uncommitted slot may be reused by a new leader, never skipped backwards


def test_concurrent_proposals_commit_in_one_term() -> None:
    c = make(3)
    lead = wait_leader(c)
    term = c.nodes[lead].node.term
    indexes = [c.propose(lead, b"c%d" % i) for i in range(5)]
    run_until(c, lambda: all(applied_by(c, i, b"c%d" % n) == 3 for n, i in enumerate(indexes) if i), 5 * ET)
    assert all(i is not None for i in indexes)
    assert {c.invariants.applied[i][0] for i in indexes if i} == {term}


def test_rejoin_of_stale_leader_discards_its_uncommitted_entries() -> None:
    c = make(3)
    leader1 = wait_leader(c)
    one(c, b"101", 3)
    c.isolate(leader1)
    stale = [c.propose(leader1, b"stale%d" % i) for i in range(3)]
    rest = [n for n in c.ids if n != leader1]
    leader2 = wait_leader(c, rest)
    one(c, b"103", 2, rest)
    c.partition([n for n in c.ids if n != leader2])  # leader2 cut off, leader1 back with the third node
    one(c, b"104", 2, [n for n in c.ids if n != leader2])
    c.heal()
    one(c, b"105", 3)
    applied = {data for _, data in c.invariants.applied.values()}
    assert not any(b"stale%d" % i in applied for i in range(3)), f"uncommitted entries at {stale} applied"


def test_backup_repairs_long_divergent_logs_in_few_round_trips() -> None:
    c = make(5, seed=2)
    rejects: list[AppendEntriesResponse] = []

    def count(m: Message) -> None:
        if isinstance(m, AppendEntriesResponse) and m.reject:
            rejects.append(m)

    c.observe = count
    leader1 = wait_leader(c)
    one(c, b"start", 5)
    ids = sorted(c.ids, key=lambda n: (n - leader1) % 5)  # leader1 first, then the others in ring order
    # leader1 and one follower are cut off and take 50 entries that will never commit.
    c.partition(ids[:2], ids[2:])
    for i in range(50):
        c.propose(leader1, b"lost%d" % i)
    # The other three commit 60 entries over three terms (two leadership transfers).
    for term_round in range(3):
        lead = wait_leader(c, ids[2:])
        for i in range(20):
            one(c, b"won%d-%d" % (term_round, i), 3, ids[2:])
        c.transfer(lead, next(n for n in ids[2:] if n != lead))
        run_until(c, lambda: leader_of(c, ids[2:]) not in (None, lead), what="a leadership transfer")  # noqa: B023
    terms = {c.invariants.applied[i][0] for i in c.invariants.applied if c.invariants.applied[i][1].startswith(b"won")}
    assert len(terms) == 3
    # Swap: leader1's side rejoins one node of the majority, which must repair both divergent logs.
    leader2 = wait_leader(c, ids[2:])
    other = next(n for n in ids[2:] if n != leader2)
    rejects.clear()
    c.partition([*ids[:2], other], [n for n in ids[2:] if n != other])
    one(c, b"repaired", 3, [*ids[:2], other])
    assert len(rejects) < 10, f"{len(rejects)} rejected appends to repair a 50-entry divergence over 3 terms"
    rejects.clear()
    c.heal()
    one(c, b"everyone", 5)
    assert len(rejects) < 10


# -- persistence and crashes (MIT 3C) -------------------------------------------------------------------


def test_persist1_restart_all_keeps_committed_entries() -> None:
    c = make(3)
    wait_leader(c)
    one(c, b"11", 3)
    for n in c.ids:
        c.restart(n)
    one(c, b"12", 3)
    lead = wait_leader(c)
    c.restart(lead)
    one(c, b"13", 3)
    for n in c.ids:
        c.crash(n)
        c.run(ET // 2)
        c.restart(n)
        one(c, b"after-%d" % n, 3)
    assert all(c.applied_index(n) == c.invariants.max_commit for n in c.ids)


def test_persist2_staggered_crashes_make_progress_with_any_majority() -> None:
    c = make(5, seed=4)
    wait_leader(c)
    index = 0
    for round_ in range(5):
        one(c, b"r%d" % round_, 5)
        lead = wait_leader(c)
        a, b = (lead + 1) % 5 + 1, (lead + 2) % 5 + 1
        c.crash(a)
        c.crash(b)
        one(c, b"r%d-3" % round_, 3, [n for n in c.ids if n not in (a, b)])
        others = [n for n in c.ids if n not in (a, b)]
        for n in others:
            c.crash(n)
        c.restart(a)
        c.restart(b)
        c.restart(others[0])
        index = one(c, b"r%d-back" % round_, 3, [a, b, others[0]])
        for n in others[1:]:
            c.restart(n)
    assert index > 0
    one(c, b"last", 5)


def test_persist3_partitioned_follower_then_crashes() -> None:
    c = make(3)
    lead = wait_leader(c)
    one(c, b"101", 3)
    lagging = next(n for n in c.ids if n != lead)
    c.isolate(lagging)
    one(c, b"102", 2)
    for n in c.ids:
        if n != lagging:
            c.crash(n)
    c.reconnect(lagging)
    c.restart(lead)
    one(c, b"103", 2, [lead, lagging])
    for n in c.down():
        c.restart(n)
    one(c, b"104", 3)


def test_crash_in_the_middle_of_a_ready_keeps_what_was_persisted() -> None:
    c = make(5, seed=5, pre_vote=False)
    lead = wait_leader(c)
    one(c, b"before", 5)
    # Every node crashes right after persisting its next Ready (a vote, an append, a commit), unsent.
    for n in c.ids:
        c.crash(n, mid_ready=True)
    c.campaign(next(n for n in c.ids if n != lead))
    c.run(3 * ET)
    for n in c.ids:
        c.restart(n)
    assert one(c, b"after", 5) > 0
    assert c.invariants.leaders, "no leader recorded"


# -- Figure 8 ---------------------------------------------------------------------------------------------


def win(c: SimCluster, node: NodeId) -> None:
    """Make ``node`` campaign (again, at a higher term, if a first try does not win) until it leads."""
    for _ in range(3):
        c.campaign(node)
        c.run(2)
        if c.nodes[node].node.role is Role.LEADER:
            return
    raise AssertionError(f"node {node} did not win: {c.nodes[node].node.status()}")


def figure8_paper(c: SimCluster, *, check_commit: bool = True) -> tuple[int, int]:
    """Paper Figure 8 on five nodes; returns (the contested index, the term of its uncommitted old entry).

    (a) S1 leads and replicates ``x`` at index i to S2 only; (b) S1 crashes, S5 wins with S3 and S4 and
    appends its own entry at i, then crashes; (c) S1 returns, wins, and replicates its old ``x`` to S3 and
    S4 but none of its own term's entries: a majority now holds ``x``, but it is not of S1's term and must
    not be committed by counting replicas; (d) S1 crashes, S5 returns and wins (its entry at i has the newer
    term) and overwrites ``x`` everywhere.
    """
    win(c, 1)
    one(c, b"base", 5)
    c.partition([1, 2], [3, 4, 5])
    index = c.propose(1, b"x")
    assert index is not None
    old_term = c.nodes[1].node.term
    c.run(1)
    c.crash(1)
    c.drop_if = lambda m: isinstance(m, AppendEntries) and m.src == 5  # S5's entry stays on S5
    win(c, 5)
    c.crash(5)
    c.heal()
    c.restart(1)

    def holds_x(n: NodeId) -> bool:
        storage = c.storages[n]
        return storage.last_index() >= index and storage.term(index) == old_term

    # S1 may send x (one entry per message), but nothing after it to a node that already holds x.
    c.drop_if = lambda m: isinstance(m, AppendEntries) and any(e.index > index for e in m.entries) and holds_x(m.dst)
    win(c, 1)
    c.run(3)
    holders = [n for n in c.ids if holds_x(n)]
    assert len(holders) >= 3, f"the scenario needs x on a majority, it is on {holders}"
    if check_commit:
        assert c.nodes[1].node.status().commit < index, "an old-term entry was committed by counting replicas"
    c.crash(1)
    c.drop_if = None
    c.restart(5)
    win(c, 5)
    return index, old_term


def test_figure8_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    c = make(5, pre_vote=False, check_quorum=False, max_size_per_msg=1)
    index, old_term = figure8_paper(c)
    c.restart(1)
    one(c, b"final", 5)
    assert c.invariants.applied[index][0] != old_term, "the old entry x survived though it was overwritten"


def test_figure8_scenario_catches_commit_by_counting_old_term_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deliberate Figure 8 bug: commit whatever a majority holds, whatever its term. It must be caught."""

    def broken_maybe_commit(self: RaftLog, index: int, term: int) -> bool:
        if index > self.committed:
            self.commit_to(index)
            return True
        return False

    monkeypatch.setattr(RaftLog, "maybe_commit", broken_maybe_commit)
    c = make(5, pre_vote=False, check_quorum=False, max_size_per_msg=1)
    with pytest.raises(InvariantFailure) as failure:
        figure8_paper(c, check_commit=False)
        c.restart(1)
        one(c, b"final", 5)
    assert failure.value.invariant in ("leader completeness", "no committed entry lost", "state machine safety")


def test_figure8_with_leader_crashes() -> None:
    run_plan(5, 8, Phase("figure8", 1000, NetParams(max_delay=1), propose_rate=0.0, period=3, mid_ready=0.3))


def test_figure8_unreliable() -> None:
    run_plan(5, 9, Phase("figure8_unreliable", 1000, LOSSY, propose_rate=0.2, period=4), max_size_per_msg=8)


def test_unreliable_agree() -> None:
    run_plan(5, 10, Phase("lossy", 600, LOSSY, propose_rate=0.8))


def test_reliable_churn() -> None:
    run_plan(5, 11, Phase("churn", 600, NetParams(max_delay=1), propose_rate=0.4, period=7, max_down=5))


def test_unreliable_churn() -> None:
    run_plan(5, 12, Phase("churn", 600, LOSSY, propose_rate=0.4, period=7, max_down=5, mid_ready=0.3))


# -- snapshots (MIT 3D) ---------------------------------------------------------------------------------


def test_snapshot_install_brings_a_lagging_follower_up_to_date() -> None:
    c = make(3)
    sent: list[InstallSnapshot] = []
    c.observe = lambda m: sent.append(m) if isinstance(m, InstallSnapshot) else None
    lead = wait_leader(c)
    victim = next(n for n in c.ids if n != lead)
    c.isolate(victim)
    for i in range(30):
        one(c, b"s%d" % i, 2)
    for n in c.ids:
        if n != victim:
            c.snapshot(n, keep=0)
    c.reconnect(victim)
    last = one(c, b"after", 3)
    assert sent, "the lagging follower was not sent a snapshot"
    assert c.applied_index(victim) >= last
    assert c.nodes[victim].applied.entries == c.nodes[lead].applied.entries


def test_snapshot_all_crash_never_loses_an_index() -> None:
    c = make(3, seed=6)
    c.set_net(LOSSY)
    wait_leader(c, limit=600)
    highest = 0
    for round_ in range(5):
        for i in range(10):
            one(c, b"%d-%d" % (round_, i), 1, limit=600)
        for n in c.ids:
            c.snapshot(n, keep=1)
            c.restart(n)
        index = one(c, b"after-%d" % round_, 1, limit=600)
        assert index > highest, "an index was reused after a whole-cluster restart"
        highest = index


def test_read_index_reflects_every_commit_before_it() -> None:
    c = make(3)
    lead = wait_leader(c)
    index = one(c, b"w", 3)
    follower = next(n for n in c.ids if n != lead)
    c.read_index(follower, b"read-1")
    c.read_index(lead, b"read-2")
    c.run(3)
    states = [rs for n in (follower, lead) for rs in c.nodes[n].read_states]
    assert sorted(rs.context for rs in states) == [b"read-1", b"read-2"]
    assert all(rs.index >= index for rs in states)
