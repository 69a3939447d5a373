"""The rules of the Raft paper (§5), each test named after the rule it enforces.

Most tests run a small ``Network`` of ``MemoryNode``s; a few drive one node by hand with crafted messages
where the rule is about a single node's reaction. ``PAPER`` turns off pre-vote and check-quorum for the
tests that exercise the bare §5 election (the extensions are tested in test_raft_features.py).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from conftest import (
    assert_log_matching,
    deliver_only,
    elect,
    expire_lease,
    hand_fed,
    make_entries,
    of_type,
    preset,
    record_sent,
    standalone,
    stored,
    stored_terms,
)

from raft_core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    Message,
    RequestPreVote,
    RequestPreVoteResponse,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from raft_core.testing.harness import MemoryNode
from raft_core.testing.network import Network

PAPER: dict[str, Any] = {"pre_vote": False, "check_quorum": False}


def restarted_with(
    entries: list[Entry], *, term: int, vote: int = 0, commit: int = 0, node: int = 1, **config: Any
) -> MemoryNode:
    """A standalone node whose storage holds ``entries`` and the given hard state."""
    mn = standalone(node, **config)
    mn.storage.append(entries)
    mn.storage.set_hard_state(HardState(term, vote, commit))
    mn.restart()
    return mn


# -- §5.1 terms -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_any_node_that_sees_a_higher_term_adopts_it_and_becomes_follower(role: Role) -> None:
    mn = standalone(1, **PAPER)
    if role is not Role.FOLLOWER:
        mn.node.campaign()
        mn.handle_ready()
    if role is Role.LEADER:
        hand_fed(mn, RequestVoteResponse(src=2, dst=1, term=1))
    assert mn.node.role is role
    hand_fed(mn, AppendEntries(src=3, dst=1, term=7, prev_index=0, prev_term=0))
    assert mn.node.role is Role.FOLLOWER
    assert mn.node.term == 7
    assert mn.node.leader == 3
    assert mn.storage.hard_state.term == 7


def test_message_from_a_stale_term_is_ignored_and_answered_with_the_current_term() -> None:
    mn = restarted_with(make_entries([1, 2]), term=5, commit=1)
    out = hand_fed(
        mn,
        AppendEntries(src=2, dst=1, term=3, prev_index=2, prev_term=2, entries=(Entry(3, 3, data=b"stale"),), commit=3),
        RequestVote(src=3, dst=1, term=4, last_index=9, last_term=4),
    )
    assert stored_terms(mn) == [1, 2], "an append from a stale leader must not change the log"
    assert mn.node.term == 5
    assert mn.node.status().vote == 0, "no vote for a candidate of a stale term"
    assert mn.node.status().commit == 1
    # The stale leader learns the newer term from the answer; the stale candidate gets no vote.
    assert [(type(m), m.dst, m.term) for m in out] == [(AppendEntriesResponse, 2, 5)]


@pytest.mark.parametrize("config", [PAPER, {}], ids=["paper", "prevote+checkquorum"])
def test_stale_leader_steps_down_when_it_learns_the_newer_term(config: dict[str, Any]) -> None:
    net = Network(3, **config)
    elect(net, 1)
    net.isolate(1)
    expire_lease(net, 3)
    elect(net, 2)
    assert net[1].node.role is Role.LEADER and net[1].node.term == 1
    net.recover()
    if config is not PAPER:
        # With pre-vote or check-quorum on, the stale leader's own heartbeat is answered with the new term.
        net.tick(1, net[1].config.heartbeat_ticks)
    else:
        # Otherwise it learns the new term from the new leader's heartbeat.
        net.tick(2, net[2].config.heartbeat_ticks)
    assert net[1].node.status().role is Role.FOLLOWER
    assert net[1].node.term == net[2].node.term == 2
    assert net.leader() == 2


# -- §5.2 leader election ---------------------------------------------------------------------------------


def test_follower_campaigns_after_its_election_timeout_and_becomes_leader() -> None:
    net = Network(3)
    et = net[1].config.election_ticks
    net.tick(1, et - 1)
    assert net[1].node.role is Role.FOLLOWER and net[1].node.term == 0, "no election before election_ticks"
    net.tick(1, et)  # the randomized timeout lies in [et, 2 * et)
    assert net.leader() == 1
    assert {net[n].node.term for n in net.ids} == {1}
    assert {net[n].node.leader for n in net.ids} == {1}


def test_followers_hearing_heartbeats_never_start_an_election() -> None:
    net = Network(3, **PAPER)
    elect(net, 1)
    net.tick_all(20 * net[1].config.election_ticks)
    assert net.leader() == 1
    assert {net[n].node.term for n in net.ids} == {1}
    assert not of_type(net.delivered, RequestVote)[2:], "only the first election's two vote requests"


def test_election_timeout_is_randomized_between_election_ticks_and_twice_that() -> None:
    mn = standalone(1, **PAPER)
    et = mn.config.election_ticks
    started: list[int] = []
    term = mn.node.term
    for tick in range(1, 60 * et):
        mn.node.tick()
        mn.handle_ready()
        if mn.node.term != term:
            term = mn.node.term
            started.append(tick)
    gaps = [b - a for a, b in zip([0, *started], started, strict=False)]
    assert len(gaps) >= 30
    assert all(et <= g < 2 * et for g in gaps), gaps
    assert len(set(gaps)) >= 5, f"timeouts are not randomized: {sorted(set(gaps))}"


def test_nodes_draw_different_election_timeouts() -> None:
    firsts = []
    for node in (1, 2, 3, 4, 5):
        mn = standalone(node, voters=(1, 2, 3, 4, 5), **PAPER)
        ticks = 0
        while mn.node.term == 0:
            mn.node.tick()
            mn.handle_ready()
            ticks += 1
        firsts.append(ticks)
    assert len(set(firsts)) > 1, firsts


@pytest.mark.parametrize(
    ("voters", "granted", "rejected", "role"),
    [
        ((1,), (), (), Role.LEADER),
        ((1, 2, 3), (2,), (), Role.LEADER),
        ((1, 2, 3), (), (2,), Role.CANDIDATE),
        ((1, 2, 3), (), (2, 3), Role.FOLLOWER),
        ((1, 2, 3, 4, 5), (2,), (), Role.CANDIDATE),
        ((1, 2, 3, 4, 5), (2, 3), (4,), Role.LEADER),
        ((1, 2, 3, 4, 5), (2,), (3, 4), Role.CANDIDATE),
        ((1, 2, 3, 4, 5), (2,), (3, 4, 5), Role.FOLLOWER),
    ],
)
def test_candidate_wins_only_with_votes_from_a_majority(
    voters: tuple[int, ...], granted: tuple[int, ...], rejected: tuple[int, ...], role: Role
) -> None:
    mn = standalone(1, voters=voters, **PAPER)
    mn.node.campaign()
    mn.handle_ready()
    answers = [RequestVoteResponse(src=v, dst=1, term=1) for v in granted]
    answers += [RequestVoteResponse(src=v, dst=1, term=1, reject=True) for v in rejected]
    hand_fed(mn, *answers)
    assert mn.node.role is role
    assert mn.node.term == 1


def test_candidate_counts_each_voter_once() -> None:
    mn = standalone(1, voters=(1, 2, 3, 4, 5), **PAPER)
    mn.node.campaign()
    mn.handle_ready()
    hand_fed(mn, *[RequestVoteResponse(src=2, dst=1, term=1)] * 3)
    assert mn.node.role is Role.CANDIDATE


def test_candidate_yields_to_a_leader_of_its_own_term() -> None:
    mn = standalone(1, **PAPER)
    mn.node.campaign()
    mn.handle_ready()
    hand_fed(mn, AppendEntries(src=2, dst=1, term=1, prev_index=0, prev_term=0))
    assert mn.node.role is Role.FOLLOWER
    assert mn.node.leader == 2
    assert mn.node.term == 1


def test_voter_grants_at_most_one_vote_per_term() -> None:
    mn = standalone(1, **PAPER)
    out = hand_fed(
        mn,
        RequestVote(src=2, dst=1, term=1, last_index=0, last_term=0),
        RequestVote(src=3, dst=1, term=1, last_index=0, last_term=0),
        RequestVote(src=2, dst=1, term=1, last_index=0, last_term=0),  # a retry of the same request
    )
    answers = of_type(out, RequestVoteResponse)
    assert [(m.dst, m.reject) for m in answers] == [(2, False), (3, True), (2, False)]
    assert mn.storage.hard_state.vote == 2
    # A new term frees the vote.
    out = hand_fed(mn, RequestVote(src=3, dst=1, term=2, last_index=0, last_term=0))
    assert [(m.dst, m.reject, m.term) for m in of_type(out, RequestVoteResponse)] == [(3, False, 2)]


def test_vote_is_persisted_in_the_same_ready_as_the_grant() -> None:
    mn = standalone(1, **PAPER)
    node = mn.node
    node.step(RequestVote(src=2, dst=1, term=4, last_index=0, last_term=0))
    ready = node.ready()
    assert of_type(ready.messages, RequestVoteResponse) == [RequestVoteResponse(src=1, dst=2, term=4)]
    assert ready.hard_state is not None
    assert (ready.hard_state.term, ready.hard_state.vote) == (4, 2)
    assert ready.must_sync


def test_vote_survives_a_restart_so_a_node_never_votes_twice_in_a_term() -> None:
    mn = standalone(1, **PAPER)
    hand_fed(mn, RequestVote(src=2, dst=1, term=3, last_index=0, last_term=0))
    mn.restart()
    out = hand_fed(mn, RequestVote(src=3, dst=1, term=3, last_index=0, last_term=0))
    assert [(m.dst, m.reject) for m in of_type(out, RequestVoteResponse)] == [(3, True)]
    assert (mn.node.term, mn.node.status().vote) == (3, 2)


@pytest.mark.parametrize("config", [PAPER, {}], ids=["paper", "prevote+checkquorum"])
@pytest.mark.parametrize("seed", range(6))
def test_at_most_one_leader_per_term_under_random_partitions(config: dict[str, Any], seed: int) -> None:
    net = Network(5, seed=seed, **config)
    rng = random.Random(seed)
    leaders: dict[int, set[int]] = {}
    proposed = 0
    for step in range(600):
        if step % 30 == 0:
            net.recover()
            for a in net.ids:
                for b in net.ids:
                    if a < b and rng.random() < 0.2:
                        net.cut(a, b)
            leader = net.leader()
            if leader is not None and rng.random() < 0.5:
                net.isolate(leader)
        net.tick_all()
        for n in net.ids:
            if net[n].node.role is Role.LEADER:
                leaders.setdefault(net[n].node.term, set()).add(n)
                if rng.random() < 0.2:
                    proposed += 1
                    net.propose(n, f"{seed}-{proposed}".encode())
    assert len(leaders) >= 3, "the run should see several elections"
    assert all(len(nodes) == 1 for nodes in leaders.values()), leaders
    assert_log_matching(net)
    # State Machine Safety: every node applied a prefix of the same sequence.
    applied = sorted((net[n].applied.entries for n in net.ids), key=len)
    for shorter, longer in itertools.pairwise(applied):
        assert longer[: len(shorter)] == shorter


# -- §5.3 log replication ---------------------------------------------------------------------------------


def test_leader_commits_an_entry_once_a_majority_stores_it() -> None:
    net = Network(3)
    elect(net, 1)
    net.cut(1, 3)
    index = net.propose(1, b"x")
    assert index == 2
    for n in (1, 2):
        assert net[n].applied.entries == [(2, 1, b"x")]
        assert net[n].node.status().commit == 2
    assert net[3].applied.entries == []
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert net[3].applied.entries == [(2, 1, b"x")]


def test_leader_does_not_commit_without_a_majority() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    net.propose(1, b"x")
    assert net[1].node.status().commit == 1
    assert net[1].node.status().last_index == 2
    assert net[1].applied.entries == []


def test_follower_rejects_an_append_whose_previous_entry_does_not_match() -> None:
    mn = restarted_with(make_entries([1, 1, 2]), term=2)
    out = hand_fed(
        mn,
        AppendEntries(src=2, dst=1, term=3, prev_index=3, prev_term=3, entries=(Entry(3, 4),), commit=3),
        AppendEntries(src=2, dst=1, term=3, prev_index=5, prev_term=3, entries=(Entry(3, 6),), commit=3),
    )
    answers = of_type(out, AppendEntriesResponse)
    assert [(m.reject, m.index) for m in answers] == [(True, 3), (True, 5)]
    assert stored_terms(mn) == [1, 1, 2]
    assert mn.node.status().commit == 0


def test_follower_truncates_the_conflicting_suffix_and_keeps_the_matching_prefix() -> None:
    mn = restarted_with(make_entries([1, 1, 2, 2, 2]), term=2, commit=1)
    new = (Entry(3, 3, data=b"a"), Entry(3, 4, data=b"b"))
    out = hand_fed(mn, AppendEntries(src=2, dst=1, term=3, prev_index=2, prev_term=1, entries=new, commit=1))
    assert [(m.reject, m.index) for m in of_type(out, AppendEntriesResponse)] == [(False, 4)]
    assert stored_terms(mn) == [1, 1, 3, 3]
    assert stored(mn)[:2] == make_entries([1, 1])
    assert stored(mn)[2:] == list(new)


def test_follower_keeps_entries_beyond_an_append_it_already_holds() -> None:
    # A delayed, shorter append from the current leader must not truncate entries it sent later.
    mn = restarted_with(make_entries([1, 1, 1, 1]), term=1, commit=1)
    held = make_entries([1, 1, 1, 1])
    out = hand_fed(mn, AppendEntries(src=2, dst=1, term=1, prev_index=1, prev_term=1, entries=(held[1],), commit=1))
    assert [(m.reject, m.index) for m in of_type(out, AppendEntriesResponse)] == [(False, 2)]
    assert stored(mn) == held


def test_follower_commit_is_the_minimum_of_leader_commit_and_its_last_new_entry() -> None:
    mn = standalone(1)
    hand_fed(
        mn,
        AppendEntries(src=2, dst=1, term=1, prev_index=0, prev_term=0, entries=tuple(make_entries([1, 1])), commit=5),
    )
    assert mn.node.status().commit == 2
    assert [e[0] for e in mn.applied.entries] == [1, 2]
    # Entries it holds but that this append did not vouch for stay uncommitted.
    mn2 = restarted_with(make_entries([1, 1, 1]), term=1)
    hand_fed(mn2, AppendEntries(src=2, dst=1, term=1, prev_index=0, prev_term=0, entries=(), commit=3))
    assert mn2.node.status().commit == 0


def test_followers_learn_the_commit_index_and_apply_committed_entries() -> None:
    net = Network(3)
    elect(net, 1)
    for n in range(5):
        net.propose(1, f"v{n}".encode())
    expected = [(i, 1, f"v{i - 2}".encode()) for i in range(2, 7)]
    for n in net.ids:
        assert net[n].node.status().commit == 6
        assert net[n].applied.entries == expected


def test_heartbeat_never_carries_a_commit_beyond_what_the_follower_holds() -> None:
    net = Network(3)
    elect(net, 1)
    net.cut(1, 3)
    net.propose(1, b"x")
    sent = record_sent(net, 1)
    net.recover()
    net.ignore(AppendEntries)  # 3 cannot catch up: only heartbeats reach it
    net.tick(1, net[1].config.heartbeat_ticks)
    to_3 = [m for m in of_type(sent, Heartbeat) if m.dst == 3]
    assert to_3
    assert all(m.commit <= 1 for m in to_3)
    assert net[3].node.status().commit == 1


def test_follower_with_conflicting_entries_converges_to_the_leader_log() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    for n in range(3):
        net.propose(1, f"lost{n}".encode())  # uncommitted: only node 1 holds them
    expire_lease(net, 3)
    elect(net, 2)
    net.propose(2, b"kept")
    net.recover()
    net.tick(2, net[2].config.heartbeat_ticks)
    assert stored(net[1]) == stored(net[2]) == stored(net[3])
    assert [d for _, _, d in net[1].applied.entries] == [b"kept"]
    assert_log_matching(net)


# -- §5.4.1 election restriction --------------------------------------------------------------------------


@pytest.mark.parametrize("pre", [False, True], ids=["vote", "pre-vote"])
@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (3, 3, True),  # same last term, same length
        (4, 3, True),  # same last term, longer
        (2, 3, False),  # same last term, shorter
        (1, 4, True),  # newer last term wins even when shorter
        (9, 2, False),  # older last term loses even when longer
    ],
)
def test_vote_goes_only_to_a_candidate_whose_log_is_at_least_as_up_to_date(
    pre: bool, last_index: int, last_term: int, granted: bool
) -> None:
    mn = restarted_with(make_entries([1, 2, 3]), term=3, **PAPER)
    request: Message
    if pre:
        request = RequestPreVote(src=2, dst=1, term=5, last_index=last_index, last_term=last_term)
    else:
        request = RequestVote(src=2, dst=1, term=5, last_index=last_index, last_term=last_term)
    out = hand_fed(mn, request)
    kind = RequestPreVoteResponse if pre else RequestVoteResponse
    answers = [m for m in out if isinstance(m, kind)]
    assert len(answers) == 1
    assert answers[0].reject is not granted
    assert mn.storage.hard_state.vote == (2 if granted and not pre else 0)


def test_node_missing_committed_entries_cannot_become_leader() -> None:
    net = Network(3, **PAPER)
    elect(net, 1)
    net.isolate(3)
    net.propose(1, b"committed")
    net.recover()
    net.ignore(AppendEntries)  # node 3 stays behind
    net.campaign(3)
    assert net[3].node.role is not Role.LEADER
    assert all(m.reject for m in of_type(net.delivered, RequestVoteResponse) if m.dst == 3)
    net.recover()
    net.campaign(2)
    assert net.leader() == 2
    assert all((2, 1, b"committed") in net[n].applied.entries for n in net.ids)


# -- §5.4.2 committing entries from previous terms ---------------------------------------------------------


def test_new_leader_appends_a_noop_of_its_term_when_elected() -> None:
    net = Network(3)
    elect(net, 1)
    net.propose(1, b"x")
    net.isolate(1)
    expire_lease(net, 3)
    elect(net, 2)
    term = net[2].node.term
    last = stored(net[2])[-1]
    assert (last.index, last.term, last.kind, last.data) == (3, term, EntryKind.NOOP, b"")
    assert net[3].node.status().commit == 3, "the no-op commits at once with a majority"


def test_leader_never_commits_an_old_term_entry_by_counting_replicas() -> None:
    # Figure 8 (c): node 1 leads term 4 with an entry of term 2 at index 2 that a majority then stores.
    net = Network(5, **PAPER)
    common = make_entries([1])
    old = Entry(2, 2, EntryKind.NORMAL, b"term-2")
    preset(net, 1, [*common, old], term=3, commit=1)
    preset(net, 2, [*common, old], term=2, commit=1)
    preset(net, 3, common, term=3, commit=1)
    preset(net, 4, common, term=3, commit=1)
    preset(net, 5, [*common, Entry(3, 2, EntryKind.NORMAL, b"term-3")], term=3, commit=1)
    net.isolate(5)
    net.ignore(AppendEntries)
    elect(net, 1)
    assert net[1].node.term == 4
    net.recover()
    net.isolate(5)
    # Node 1 sends index 2 alone to nodes 2 and 3, which acknowledge it: nodes 1, 2, 3 hold it.
    for follower in (2, 3):
        append = AppendEntries(src=1, dst=follower, term=4, prev_index=1, prev_term=1, entries=(old,), commit=1)
        acks = deliver_only(net, append)
        assert of_type(acks, AppendEntriesResponse) == acks
        assert [(m.reject, m.index) for m in of_type(acks, AppendEntriesResponse)] == [(False, 2)]
        deliver_only(net, *acks)  # what node 1 sends in return is lost
    assert net[1].node.status().progress[3].match == 2
    assert net[1].node.status().commit == 1, "an entry of term 2 must not commit by counting replicas in term 4"
    assert all(net[n].node.status().commit == 1 for n in net.ids)
    # Figure 8 (d): node 1 crashes; node 5 (last term 3) wins and overwrites index 2 everywhere.
    net.recover()
    net.isolate(1)
    net.campaign(5)
    assert net[5].node.role is Role.FOLLOWER, "term 4: nodes 2, 3 and 4 already voted for node 1"
    net.campaign(5)
    assert net[5].node.status().role is Role.LEADER
    assert net[5].node.term == 5
    net.recover()
    net.tick(5, net[5].config.heartbeat_ticks)
    for n in net.ids:
        assert stored(net[n])[1].data == b"term-3"
        assert [d for _, _, d in net[n].applied.entries] == [b"1/1", b"term-3"]
    assert_log_matching(net)


def test_noop_of_the_new_term_commits_entries_of_previous_terms() -> None:
    net = Network(3)
    old = Entry(1, 2, EntryKind.NORMAL, b"term-1")
    preset(net, 1, [*make_entries([1]), old], term=1, commit=1)
    preset(net, 2, make_entries([1]), term=1, commit=1)
    preset(net, 3, make_entries([1]), term=1, commit=1)
    elect(net, 1)
    assert net[1].node.term == 2
    noop = stored(net[1])[-1]
    assert (noop.index, noop.term, noop.kind) == (3, 2, EntryKind.NOOP)
    for n in net.ids:
        assert net[n].node.status().commit == 3
        assert net[n].applied.entries == [(1, 1, b"1/1"), (2, 1, b"term-1")]
