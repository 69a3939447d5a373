"""Protocol features beyond the paper's §5: pre-vote, check-quorum, fast backtracking, batching, flow control,
ReadIndex, leadership transfer, proposal forwarding, the Ready contract, Overloaded and restarts.

Each test is named after the rule it enforces.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import (
    deliver_holding,
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
    tick_holding,
)

from raft_core import (
    AppendEntries,
    AppendEntriesResponse,
    Config,
    Entry,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Membership,
    MemoryStorage,
    Message,
    NotLeader,
    Overloaded,
    ProposalDropped,
    Propose,
    RaftNode,
    ReadIndex,
    ReadIndexResponse,
    ReadState,
    ReadyNotAdvanced,
    RequestPreVote,
    RequestPreVoteResponse,
    RequestVote,
    RequestVoteResponse,
    Role,
    TimeoutNow,
    TransferInProgress,
)
from raft_core.testing.network import Network


def progress_state(net: Network, leader: int, follower: int) -> str:
    return net[leader].node.status().progress[follower].state


def appends_to(messages: list[Message], node: int, *, with_entries: bool = True) -> list[AppendEntries]:
    return [m for m in of_type(messages, AppendEntries) if m.dst == node and (m.entries or not with_entries)]


# -- pre-vote ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "behind"),
    [({}, False), ({}, True), ({"check_quorum": False}, True)],
    ids=["prevote+checkquorum", "prevote+checkquorum-behind", "prevote-behind"],
)
def test_rejoining_partitioned_node_neither_bumps_the_term_nor_deposes_the_leader(
    config: dict[str, Any], behind: bool
) -> None:
    net = Network(3, **config)
    elect(net, 1)
    et = net[1].config.election_ticks
    net.isolate(3)
    if behind:
        net.propose(1, b"x")
    net.tick(3, 10 * et)  # node 3 times out again and again
    assert net[3].node.term == 1, "a pre-candidate never bumps its term"
    assert net[3].node.role is Role.PRE_CANDIDATE
    net.recover()
    mark = len(net.delivered)
    net.tick_all(5 * et)
    assert net.leader() == 1
    assert {net[n].node.term for n in net.ids} == {1}
    assert net[3].node.leader == 1
    assert not of_type(net.delivered[mark:], RequestVote)
    assert net[3].applied.entries == net[1].applied.entries


def test_without_pre_vote_a_rejoining_node_deposes_the_leader() -> None:
    # The counterpart of the test above: the scenario is one that pre-vote really is needed for.
    net = Network(3, pre_vote=False, check_quorum=False)
    elect(net, 1)
    net.isolate(3)
    net.propose(1, b"x")
    net.tick(3, 10 * net[3].config.election_ticks)
    assert net[3].node.term > 1
    net.recover()
    net.tick(3, 2 * net[3].config.election_ticks)
    assert net[1].node.term > 1, "node 3's higher term deposed the leader"
    assert net[3].node.status().role is not Role.LEADER, "node 3's log is behind: it cannot win"


def test_pre_vote_changes_neither_the_pre_candidate_term_nor_its_vote() -> None:
    mn = standalone(1)
    node = mn.node
    node.campaign()
    ready = node.ready()
    assert node.role is Role.PRE_CANDIDATE
    assert node.term == 0
    assert ready.hard_state is None, "nothing to persist for a pre-vote"
    requests = of_type(ready.messages, RequestPreVote)
    assert sorted(m.dst for m in requests) == [2, 3]
    assert all(m.term == 1 for m in requests), "the pre-vote asks about the next term"
    mn.persist(ready)
    node.advance(ready)
    assert mn.storage.hard_state.term == 0 and mn.storage.hard_state.vote == 0


def test_granting_a_pre_vote_changes_neither_the_voter_term_nor_its_vote() -> None:
    mn = standalone(2)
    out = hand_fed(mn, RequestPreVote(src=1, dst=2, term=1, last_index=0, last_term=0))
    assert of_type(out, RequestPreVoteResponse) == [RequestPreVoteResponse(src=2, dst=1, term=1)]
    assert (mn.node.term, mn.node.status().vote) == (0, 0)
    assert (mn.storage.hard_state.term, mn.storage.hard_state.vote) == (0, 0)


def test_pre_candidate_moves_to_the_next_term_only_after_winning_the_pre_vote() -> None:
    mn = standalone(1)
    mn.node.campaign()
    mn.handle_ready()
    out = hand_fed(mn, RequestPreVoteResponse(src=2, dst=1, term=1))
    assert mn.node.role is Role.CANDIDATE
    assert (mn.node.term, mn.node.status().vote) == (1, 1)
    assert (mn.storage.hard_state.term, mn.storage.hard_state.vote) == (1, 1)
    assert sorted(m.dst for m in of_type(out, RequestVote)) == [2, 3]


def test_pre_vote_reject_carries_the_higher_term_and_the_pre_candidate_adopts_it() -> None:
    voter = standalone(2)
    voter.storage.set_hard_state(HardState(term=5))
    voter.restart()
    out = hand_fed(voter, RequestPreVote(src=1, dst=2, term=2, last_index=0, last_term=0))
    assert of_type(out, RequestPreVoteResponse) == [RequestPreVoteResponse(src=2, dst=1, term=5, reject=True)]
    assert voter.node.term == 5
    pre = standalone(1)
    pre.storage.set_hard_state(HardState(term=1))
    pre.restart()
    pre.node.campaign()
    pre.handle_ready()
    hand_fed(pre, *out)
    assert pre.node.role is Role.FOLLOWER
    assert pre.node.term == 5


# -- check-quorum -----------------------------------------------------------------------------------------


def test_leader_that_hears_from_no_majority_within_an_election_timeout_steps_down() -> None:
    net = Network(3)
    elect(net, 1)
    et = net[1].config.election_ticks
    net.isolate(1)
    net.tick(1, 2 * et)
    assert net[1].node.role is Role.FOLLOWER
    assert net[1].node.term == 1, "stepping down does not change the term"
    assert net[1].node.leader == 0
    with pytest.raises(NotLeader):
        net[1].node.propose(b"x")


def test_leader_that_hears_from_a_majority_keeps_leading() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(3)
    net.tick(1, 20 * net[1].config.election_ticks)
    assert net[1].node.role is Role.LEADER
    assert net[1].node.term == 1


def test_follower_within_its_leader_lease_ignores_votes_and_pre_votes() -> None:
    net = Network(3)
    elect(net, 1)
    out = deliver_only(
        net,
        RequestPreVote(src=3, dst=2, term=2, last_index=5, last_term=1),
        RequestVote(src=3, dst=2, term=2, last_index=5, last_term=1),
        RequestVote(src=3, dst=1, term=2, last_index=5, last_term=1),
    )
    assert out == []
    assert (net[2].node.term, net[2].node.status().vote, net[2].node.leader) == (1, 1, 1)
    assert net[1].node.role is Role.LEADER and net[1].node.term == 1
    # Once the lease has run out, the same request is answered.
    net.isolate(2)
    expire_lease(net, 2)
    out = deliver_only(net, RequestVote(src=3, dst=2, term=2, last_index=5, last_term=1))
    assert of_type(out, RequestVoteResponse) == [RequestVoteResponse(src=2, dst=3, term=2)]


def test_pre_candidate_forgets_its_leader_so_others_can_win_its_vote() -> None:
    # etcd-io/etcd#8334: a pre-candidate that still believes in its leader's lease ignores the other
    # followers' pre-votes; two such followers can keep the cluster leaderless.
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    net.cut(2, 3)
    net.campaign(2)
    net.campaign(3)
    assert net[2].node.role is Role.PRE_CANDIDATE and net[2].node.leader == 0
    assert net[3].node.role is Role.PRE_CANDIDATE and net[3].node.leader == 0
    net.recover()
    net.isolate(1)
    net.campaign(3)
    assert net[3].node.status().role is Role.LEADER
    assert net[2].node.leader == 3


@pytest.mark.parametrize("seed", range(5))
def test_cluster_elects_a_new_leader_after_the_leader_crashes(seed: int) -> None:
    net = Network(3, seed=seed)
    elect(net, 1)
    net.isolate(1)
    et = net[2].config.election_ticks
    for _ in range(6 * et):
        net.tick(2)
        net.tick(3)
        if net[2].node.role is Role.LEADER or net[3].node.role is Role.LEADER:
            break
    assert Role.LEADER in (net[2].node.role, net[3].node.role)


def test_pre_vote_with_a_split_vote_still_elects_a_leader() -> None:
    # etcd TestPreVoteWithSplitVote: both followers win the pre-vote, then split the real vote.
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    net[2].node.campaign()
    net[3].node.campaign()
    net.send(*net[2].handle_ready(), *net[3].handle_ready())
    for n in (2, 3):
        assert net[n].node.role is Role.CANDIDATE
        assert net[n].node.term == 2
    net.campaign(2)
    assert net[2].node.role is Role.LEADER
    assert (net[3].node.role, net[3].node.term, net[3].node.leader) == (Role.FOLLOWER, 3, 2)


def test_stuck_higher_term_candidate_is_freed_with_check_quorum() -> None:
    # etcd TestFreeStuckCandidateWithCheckQuorum: without pre-vote, a partitioned node's term runs ahead;
    # the leader's followers ignore its votes (lease), so only the leader learning its term frees it.
    net = Network(3, pre_vote=False)
    elect(net, 1)
    net.isolate(1)
    net.campaign(3)
    net.campaign(3)
    assert net[3].node.role is Role.CANDIDATE and net[3].node.term == 3
    assert net[2].node.term == 1, "node 2 ignores node 3 within its leader's lease"
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert net[1].node.role is Role.FOLLOWER
    assert net[1].node.term == 3
    net.campaign(3)
    assert net[3].node.status().role is Role.LEADER


@pytest.mark.parametrize("check_quorum", [False, True])
def test_node_with_smaller_term_can_complete_an_election(check_quorum: bool) -> None:
    # etcd TestNodeWithSmallerTermCanCompleteElection: a node rejoins with a smaller term just as the
    # leader goes away; its pre-vote must not wedge the cluster.
    net = Network(3, check_quorum=check_quorum)
    net.cut(1, 3)
    net.cut(2, 3)
    elect(net, 1)
    net.campaign(3)
    assert (net[3].node.role, net[3].node.term) == (Role.PRE_CANDIDATE, 0)
    if check_quorum:
        net.isolate(1)  # let the leader step down, so that node 2 can take over
        net.tick(1, 2 * net[1].config.election_ticks)
        net.recover()
        net.cut(1, 3)
        net.cut(2, 3)
        expire_lease(net, 1)
    net.campaign(2)
    assert net[2].node.role is Role.LEADER and net[2].node.term == 2
    assert net[1].node.term == 2
    # Node 2 crashes just as node 3 rejoins.
    net.recover()
    net.isolate(2)
    net.campaign(3)
    net.campaign(1)
    assert Role.LEADER in (net[1].node.role, net[3].node.role)


def test_node_with_higher_term_but_shorter_log_does_not_leave_the_cluster_leaderless() -> None:
    net = Network(3)
    preset(net, 1, make_entries([1, 1, 1, 1, 1]), term=1, commit=1)
    preset(net, 2, make_entries([1]), term=5, commit=1)
    net.isolate(3)
    et = net[1].config.election_ticks
    for _ in range(10 * et):
        net.tick(1)
        net.tick(2)
        if net.leader() is not None:
            break
    assert net.leader() == 1, "node 2 cannot win (shorter log), so node 1 must catch up on its term and win"
    assert net[1].node.term == 6
    assert stored_terms(net[2]) == stored_terms(net[1])


# -- fast log backtracking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leader_terms", "follower_terms"),
    [
        ([1] * 5 + [2] * 30 + [4] * 30, [1] * 5 + [3] * 60),
        ([1] * 5 + [5] * 5, [1] * 5 + [2] * 20 + [3] * 20 + [4] * 20),
        ([1] * 5 + [2] * 30 + [4] * 25 + [5], [1] * 5 + [2] * 5 + [3] * 2),
        ([1] * 60, [1] * 5),
    ],
    ids=["longer-follower", "many-follower-terms", "short-follower", "lagging"],
)
def test_diverging_follower_is_repaired_in_a_few_round_trips(
    leader_terms: list[int], follower_terms: list[int]
) -> None:
    common = next(i for i, (a, b) in enumerate(zip([*leader_terms, 0], [*follower_terms, -1], strict=False)) if a != b)
    assert len(leader_terms) + len(follower_terms) - 2 * common >= 50, "the logs differ by at least 50 entries"
    net = Network(3)
    term = max(leader_terms + follower_terms)
    preset(net, 1, make_entries(leader_terms), term=term, commit=5)
    preset(net, 2, make_entries(follower_terms), term=term, commit=5)
    preset(net, 3, make_entries(leader_terms), term=term, commit=5)
    net.cut(1, 2)
    elect(net, 1)
    net.recover()
    mark = len(net.delivered)
    net.tick(1, net[1].config.heartbeat_ticks)
    rejected = [m for m in of_type(net.delivered[mark:], AppendEntriesResponse) if m.src == 2 and m.reject]
    assert stored(net[2]) == stored(net[1])
    assert 1 <= len(rejected) <= 5, f"{len(rejected)} rejections: backtracking one entry at a time?"


# -- batching ---------------------------------------------------------------------------------------------


def test_proposals_between_two_readies_go_out_as_one_append_per_follower() -> None:
    net = Network(3)
    elect(net, 1)
    node = net[1].node
    for n in range(100):
        node.propose(f"p{n}".encode())
    ready = node.ready()
    assert len(ready.entries) == 100, "the Ready persists all of them at once"
    for follower in (2, 3):
        appends = appends_to(list(ready.messages), follower, with_entries=False)
        assert len(appends) == 1, f"{len(appends)} AppendEntries to node {follower} for 100 proposals"
        assert [e.data for e in appends[0].entries] == [f"p{n}".encode() for n in range(100)]
    net[1].persist(ready)
    net[1].apply(ready)
    node.advance(ready)
    net.send(*ready.messages)
    net.flush(1)
    assert len(net[3].applied.entries) == 100


def test_a_commit_reaching_caught_up_followers_goes_as_a_commit_only_append_that_is_not_answered() -> None:
    net = Network(3)
    elect(net, 1)
    leader_sent = record_sent(net, 1)
    follower_sent = record_sent(net, 2)
    net.propose(1, b"x")
    commit_appends = {m.dst: m for m in of_type(leader_sent, AppendEntries) if not m.entries}
    # Node 2's answer made the commit: it holds the whole log, so its commit append is commit-only. Node 3's
    # entry was still unacknowledged then: it gets an ordinary empty append, which it answers.
    assert commit_appends[2].commit_only and commit_appends[2].prev_index == 2
    assert not commit_appends[3].commit_only
    answers = of_type(follower_sent, AppendEntriesResponse)
    assert [a.index for a in answers] == [2], "the entry is answered, the commit that follows it is not"
    assert net[2].node.status().commit == net[1].node.status().commit == 2
    assert net[1].node.status().progress[2].match == 2


def test_a_probing_follower_gets_an_ordinary_append_and_answers_it() -> None:
    net = Network(3)
    sent = record_sent(net, 1)
    net.cut(1, 2)
    elect(net, 1)
    assert progress_state(net, 1, 2) == "probe"
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)  # the heartbeat's answer makes the leader probe node 2 again
    first, *_ = appends_to(sent, 2, with_entries=False)  # the probe that finds where node 2's log stands
    assert not first.commit_only
    assert progress_state(net, 1, 2) == "replicate", "the probe was answered"


def test_a_commit_only_append_that_does_not_match_the_log_is_rejected_as_any_append() -> None:
    mn = standalone(2)
    out = hand_fed(mn, AppendEntries(src=1, dst=2, term=1, prev_index=5, prev_term=1, commit=5, commit_only=True))
    (answer,) = of_type(out, AppendEntriesResponse)
    assert answer.reject and answer.index == 5
    assert mn.node.status().commit == 0


# -- pipelining, flow control and progress states ---------------------------------------------------------


def test_follower_progress_starts_in_probe_and_moves_to_replicate_after_its_first_ack() -> None:
    net = Network(3)
    sent = record_sent(net, 1)
    net.cut(1, 2)
    elect(net, 1)
    assert progress_state(net, 1, 2) == "probe"
    assert progress_state(net, 1, 3) == "replicate"
    for n in range(3):
        net.propose(1, f"x{n}".encode())
    assert len(appends_to(sent, 2)) == 1, "in probe, one append is outstanding at a time"
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert progress_state(net, 1, 2) == "replicate"
    assert net[1].node.status().progress[2].match == net[1].node.status().last_index
    assert stored(net[2]) == stored(net[1])


def test_replicate_advances_next_optimistically_and_pipelines_appends() -> None:
    net = Network(3)
    elect(net, 1)
    sent = record_sent(net, 1)
    net.cut(1, 2)
    for n in range(3):
        net.propose(1, f"x{n}".encode())
    pr = net[1].node.status().progress[2]
    assert (pr.state, pr.match, pr.next, pr.inflight) == ("replicate", 1, 5, 3)
    assert [m.entries[0].index for m in appends_to(sent, 2)] == [2, 3, 4]


@pytest.mark.parametrize(
    ("config", "payload", "window"),
    [({"max_inflight_msgs": 3}, 10, 3), ({"max_inflight_bytes": 250}, 100, 3)],
    ids=["count", "bytes"],
)
def test_inflight_window_stops_appends_to_a_silent_follower_once_full(
    config: dict[str, Any], payload: int, window: int
) -> None:
    net = Network(3, **config)
    elect(net, 1)
    sent = record_sent(net, 1)
    net.cut(1, 2)
    for n in range(10):
        net.propose(1, bytes([n]) * payload)
    assert len(appends_to(sent, 2)) == window
    assert len(appends_to(sent, 3)) == 10
    assert net[1].node.status().progress[2].inflight == window
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert stored(net[2]) == stored(net[1])
    assert net[1].node.status().progress[2].inflight == 0


def test_rejection_in_replicate_goes_back_to_probe() -> None:
    net = Network(3)
    elect(net, 1)
    net.cut(1, 2)
    net.propose(1, b"x")
    net.propose(1, b"y")
    assert progress_state(net, 1, 2) == "replicate"
    stale = AppendEntriesResponse(src=2, dst=1, term=1, index=1, reject=True, reject_hint=1, log_term=1)
    deliver_only(net, stale)
    assert progress_state(net, 1, 2) == "replicate", "a rejection at or below match is stale"
    out = deliver_only(
        net, AppendEntriesResponse(src=2, dst=1, term=1, index=3, reject=True, reject_hint=1, log_term=1)
    )
    pr = net[1].node.status().progress[2]
    assert (pr.state, pr.match) == ("probe", 1)
    assert [(m.prev_index, len(m.entries)) for m in appends_to(out, 2)] == [(1, 2)]


def _snapshot_in_flight() -> tuple[Network, list[Message]]:
    """Node 3 misses entries that node 1 then compacts; node 1 sends it a snapshot, held in flight."""
    net = Network(3)
    elect(net, 1)
    net.isolate(3)
    for n in range(5):
        net.propose(1, f"s{n}".encode())
    snapshot = net[1].take_snapshot()
    assert snapshot is not None and snapshot.meta.index == 6
    assert net[1].storage.first_index() == 7
    net.propose(1, b"after")
    net.recover()
    held = tick_holding(net, 1, InstallSnapshot)
    assert [(m.dst, m.snapshot.meta.index) for m in of_type(held, InstallSnapshot)] == [(3, 6)]
    pr = net[1].node.status().progress[3]
    assert (pr.state, pr.match) == ("snapshot", 1)
    return net, held


def test_follower_needing_compacted_entries_is_sent_a_snapshot_and_catches_up() -> None:
    net, held = _snapshot_in_flight()
    sent = record_sent(net, 1)
    net.propose(1, b"paused")
    assert appends_to(sent, 3) == [], "nothing but the snapshot goes to a follower in snapshot state"
    net.send(*held)
    assert progress_state(net, 1, 3) == "replicate"
    assert net[3].storage.snapshot().meta.index == 6
    assert stored(net[3]) == stored(net[1])
    assert net[3].applied.entries == net[1].applied.entries
    assert [d for _, _, d in net[3].applied.entries][-2:] == [b"after", b"paused"]


def test_report_snapshot_failure_goes_back_to_probe_and_the_snapshot_is_sent_again() -> None:
    net, _ = _snapshot_in_flight()  # the held snapshot is lost
    net[1].node.report_snapshot(3, ok=False)
    assert progress_state(net, 1, 3) == "probe"
    net.tick(1, net[1].config.heartbeat_ticks)
    assert [m.dst for m in of_type(net.delivered, InstallSnapshot)] == [3]
    assert progress_state(net, 1, 3) == "replicate"
    assert net[3].applied.entries == net[1].applied.entries


def test_report_snapshot_ok_probes_from_after_the_snapshot() -> None:
    net, held = _snapshot_in_flight()
    acks = deliver_holding(net, AppendEntriesResponse, *held)  # installed; its ack is still on the way
    assert net[3].storage.snapshot().meta.index == 6
    net[1].node.report_snapshot(3, ok=True)
    pr = net[1].node.status().progress[3]
    assert (pr.state, pr.next) == ("probe", 7)
    net.send(*acks)
    assert progress_state(net, 1, 3) == "replicate"
    assert len(of_type(net.delivered, InstallSnapshot)) == 1, "no second snapshot"
    assert stored(net[3]) == stored(net[1])
    assert net[3].applied.entries == net[1].applied.entries


def test_report_snapshot_ok_for_a_lost_snapshot_is_repaired_by_the_next_probe() -> None:
    net, _ = _snapshot_in_flight()  # the held snapshot is lost, yet the driver reports success
    net[1].node.report_snapshot(3, ok=True)
    assert progress_state(net, 1, 3) == "probe"
    net.tick(1, net[1].config.heartbeat_ticks)
    assert [m.dst for m in of_type(net.delivered, InstallSnapshot)] == [3]
    assert progress_state(net, 1, 3) == "replicate"
    assert net[3].applied.entries == net[1].applied.entries


def test_network_that_drops_a_snapshot_reports_it_and_the_leader_retries() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(3)
    for n in range(5):
        net.propose(1, f"s{n}".encode())
    net[1].take_snapshot()
    net.recover()
    net.ignore(InstallSnapshot)
    net.tick(1, net[1].config.heartbeat_ticks)
    assert progress_state(net, 1, 3) == "probe", "a snapshot reported lost returns the follower to probe"
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert net[3].applied.entries == net[1].applied.entries
    assert progress_state(net, 1, 3) == "replicate"


def test_report_unreachable_moves_a_replicating_follower_to_probe() -> None:
    net = Network(3)
    elect(net, 1)
    net.cut(1, 2)
    net.propose(1, b"x")
    assert net[1].node.status().progress[2].next == 3
    net[1].node.report_unreachable(2)
    pr = net[1].node.status().progress[2]
    assert (pr.state, pr.next, pr.inflight) == ("probe", 2, 0)
    net[2].node.report_unreachable(1)  # a follower has no progress to change: no error
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert progress_state(net, 1, 2) == "replicate"
    assert stored(net[2]) == stored(net[1])


# -- ReadIndex --------------------------------------------------------------------------------------------


def test_read_index_on_the_leader_is_answered_only_after_a_majority_acks_a_heartbeat() -> None:
    net = Network(3)
    elect(net, 1)
    net.propose(1, b"x")
    mn = net[1]
    mn.node.read_index(b"r1")
    ready = mn.node.ready()
    assert ready.read_states == ()
    beats = of_type(ready.messages, Heartbeat)
    assert sorted(m.dst for m in beats) == [2, 3]
    assert all(m.read_round == 1 for m in beats), "the heartbeat names the read's round"
    mn.persist(ready)
    mn.apply(ready)
    mn.node.advance(ready)
    acks = deliver_only(net, *[m for m in beats if m.dst == 2])
    assert of_type(acks, HeartbeatResponse) == [HeartbeatResponse(src=2, dst=1, term=1, read_round=1)]
    assert mn.read_states == []
    deliver_only(net, *acks)
    assert mn.read_states == [ReadState(2, b"r1")]


def test_isolated_leader_does_not_answer_a_read() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    net[1].node.read_index(b"r")
    net.flush(1)
    net.tick(1, net[1].config.election_ticks - 1)
    assert net[1].read_states == []
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert net[1].read_states == [ReadState(1, b"r")]


def test_read_index_from_a_follower_is_forwarded_and_answered_to_the_follower() -> None:
    net = Network(3)
    elect(net, 1)
    net.propose(1, b"x")
    net[2].node.read_index(b"f")
    net.flush(2)
    assert [m.dst for m in of_type(net.delivered, ReadIndex)] == [1]
    assert of_type(net.delivered, ReadIndexResponse) == [ReadIndexResponse(src=1, dst=2, term=1, index=2, context=b"f")]
    assert net[2].read_states == [ReadState(2, b"f")]
    assert net[1].read_states == []


def test_read_index_waits_until_the_leader_commits_an_entry_of_its_term() -> None:
    net = Network(3)
    elect(net, 1)
    net.propose(1, b"x")
    net.isolate(1)
    expire_lease(net, 3)
    net.ignore(AppendEntries)  # node 2's no-op cannot replicate, so it cannot commit
    elect(net, 2)
    assert net[2].node.term == 2
    assert net[2].node.status().commit < net[2].node.status().last_index
    net[2].node.read_index(b"early")
    net.flush(2)
    net.tick(2, 3 * net[2].config.heartbeat_ticks)
    assert net[2].read_states == [], "no read before an entry of this term is committed"
    net.recover()
    net.isolate(1)
    net.tick(2, net[2].config.heartbeat_ticks)
    commit = net[2].node.status().commit
    assert commit == 3
    assert len(net[2].read_states) == 1
    assert net[2].read_states[0].context == b"early"
    assert net[2].read_states[0].index >= commit


def test_forwarded_read_waits_until_the_leader_commits_an_entry_of_its_term() -> None:
    net = Network(3)
    elect(net, 1)
    net.isolate(1)
    expire_lease(net, 3)
    net.ignore(AppendEntries)
    elect(net, 2)
    net.tick(2, net[2].config.heartbeat_ticks)  # node 3 learns who leads
    assert net[3].node.leader == 2
    net[3].node.read_index(b"fwd")
    net.flush(3)
    net.tick(2, 3 * net[2].config.heartbeat_ticks)
    assert net[3].read_states == []
    net.recover()
    net.isolate(1)
    net.tick(2, net[2].config.heartbeat_ticks)
    assert net[3].read_states == [ReadState(2, b"fwd")]


@pytest.mark.parametrize("config", [{}, {"check_quorum": False}], ids=["checkquorum", "no-checkquorum"])
def test_stale_partitioned_leader_never_answers_a_read(config: dict[str, Any]) -> None:
    net = Network(3, **config)
    elect(net, 1)
    net.isolate(1)
    expire_lease(net, 3)
    elect(net, 2)
    net.propose(2, b"newer")
    assert net[1].node.role is Role.LEADER, "node 1 does not know it was deposed"
    net[1].node.read_index(b"stale")
    net.flush(1)
    net.tick(1, 3 * net[1].config.heartbeat_ticks)
    assert net[1].read_states == []
    net.recover()
    net.tick_all(2)
    assert net[1].node.status().role is Role.FOLLOWER
    assert net[1].read_states == []


# -- leadership transfer ----------------------------------------------------------------------------------


def test_transfer_to_an_up_to_date_follower_makes_it_leader_in_the_next_term() -> None:
    net = Network(3)
    elect(net, 1)
    net.propose(1, b"x")
    net[1].node.transfer_leadership(2)
    net.flush(1)
    assert [m.dst for m in of_type(net.delivered, TimeoutNow)] == [2]
    assert net.leader() == 2
    assert {net[n].node.term for n in net.ids} == {2}
    assert net[1].node.leader == 2
    net.propose(2, b"y")
    assert [d for _, _, d in net[1].applied.entries] == [b"x", b"y"]


def test_transfer_requested_on_a_follower_is_forwarded_to_the_leader() -> None:
    net = Network(3)
    elect(net, 1)
    net[3].node.transfer_leadership(2)
    net.flush(3)
    assert net.leader() == 2


def test_transfer_to_a_lagging_follower_first_brings_it_up_to_date() -> None:
    net = Network(3)
    elect(net, 1)
    net.cut(1, 2)
    for n in range(3):
        net.propose(1, f"x{n}".encode())
    net.recover()
    mark = len(net.delivered)
    net[1].node.transfer_leadership(2)
    net.flush(1)
    after = net.delivered[mark:]
    timeout_at = next(i for i, m in enumerate(after) if isinstance(m, TimeoutNow))
    caught_up = [i for i, m in enumerate(after) if isinstance(m, AppendEntriesResponse) and m.src == 2 and m.index == 4]
    assert caught_up and caught_up[0] < timeout_at, "TimeoutNow only once the target holds the whole log"
    assert net.leader() == 2
    assert net[2].node.term == 2
    assert [d for _, _, d in net[2].applied.entries] == [b"x0", b"x1", b"x2"]


def _pending_transfer() -> Network:
    net = Network(3)
    elect(net, 1)
    net.cut(1, 2)
    net.propose(1, b"x")
    net[1].node.transfer_leadership(2)
    net.flush(1)
    assert net[1].node.status().lead_transferee == 2
    return net


def test_proposals_during_a_transfer_raise_transfer_in_progress() -> None:
    net = _pending_transfer()
    last = net[1].node.status().last_index
    with pytest.raises(TransferInProgress) as err:
        net[1].node.propose(b"y")
    assert err.value.target == 2
    assert net[1].node.status().last_index == last


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    net = _pending_transfer()
    net.tick(1, net[1].config.election_ticks)
    assert net[1].node.role is Role.LEADER
    assert net[1].node.status().lead_transferee == 0
    assert net.propose(1, b"y") is not None
    assert net[3].applied.entries[-1][2] == b"y"
    # Node 2 catching up later is no reason to hand over any more.
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert stored(net[2]) == stored(net[1])
    assert not of_type(net.delivered, TimeoutNow)
    assert net.leader() == 1


def test_interrupted_transfer_is_reset_by_a_role_change_and_proposals_work_after_reelection() -> None:
    # hashicorp/raft#696: a leader that lost leadership mid-transfer and was re-elected refused proposals.
    net = _pending_transfer()
    expire_lease(net, 2, 3)
    elect(net, 3)
    assert net[1].node.role is Role.FOLLOWER and net[1].node.leader == 3
    net[3].node.transfer_leadership(1)
    net.flush(3)
    assert net[1].node.status().role is Role.LEADER
    assert net[1].node.status().lead_transferee == 0
    index = net.propose(1, b"after")
    assert index is not None
    assert net[3].applied.entries[-1] == (index, net[1].node.term, b"after")


# -- proposals on non-leaders -----------------------------------------------------------------------------


def test_follower_forwards_proposals_to_the_leader() -> None:
    net = Network(3)
    elect(net, 1)
    assert net.propose(2, b"via-2") is None
    assert [m.dst for m in of_type(net.delivered, Propose)] == [1]
    for n in net.ids:
        assert net[n].applied.entries == [(2, 1, b"via-2")]


def test_follower_without_forwarding_raises_not_leader_naming_the_leader() -> None:
    net = Network(3, forward_proposals=False)
    elect(net, 1)
    with pytest.raises(NotLeader) as err:
        net[2].node.propose(b"x")
    assert err.value.leader == 1
    with pytest.raises(NotLeader):
        net[2].node.transfer_leadership(3)
    net.flush(2)
    assert net[1].node.status().last_index == 1


def test_proposal_with_no_known_leader_raises_not_leader_zero() -> None:
    net = Network(3)
    with pytest.raises(NotLeader) as err:
        net[1].node.propose(b"x")
    assert err.value.leader == 0
    with pytest.raises(NotLeader):
        net[1].node.read_index(b"r")


@pytest.mark.parametrize("pre_vote", [False, True])
def test_proposal_on_a_candidate_raises(pre_vote: bool) -> None:
    net = Network(3, pre_vote=pre_vote)
    elect(net, 1)
    net.isolate(2)
    expire_lease(net, 2)
    net.campaign(2)
    assert net[2].node.role is (Role.PRE_CANDIDATE if pre_vote else Role.CANDIDATE)
    with pytest.raises(ProposalDropped):
        net[2].node.propose(b"x")
    assert net[2].storage.last_index() == 1


# -- the Ready contract -----------------------------------------------------------------------------------


def test_vote_requests_come_with_the_persisted_self_vote_in_the_same_ready() -> None:
    mn = standalone(1, pre_vote=False)
    mn.node.campaign()
    ready = mn.node.ready()
    assert sorted(m.dst for m in of_type(ready.messages, RequestVote)) == [2, 3]
    assert ready.hard_state is not None and (ready.hard_state.term, ready.hard_state.vote) == (1, 1)
    assert ready.must_sync


def test_vote_won_after_pre_vote_comes_with_the_persisted_self_vote_in_the_same_ready() -> None:
    mn = standalone(1)
    mn.node.campaign()
    mn.handle_ready()
    mn.node.step(RequestPreVoteResponse(src=2, dst=1, term=1))
    ready = mn.node.ready()
    assert of_type(ready.messages, RequestVote)
    assert ready.hard_state is not None and (ready.hard_state.term, ready.hard_state.vote) == (1, 1)
    assert ready.must_sync


def test_vote_grant_comes_with_the_persisted_vote_in_the_same_ready() -> None:
    mn = standalone(2)
    mn.node.step(RequestVote(src=1, dst=2, term=3, last_index=0, last_term=0))
    ready = mn.node.ready()
    assert of_type(ready.messages, RequestVoteResponse) == [RequestVoteResponse(src=2, dst=1, term=3)]
    assert ready.hard_state is not None and (ready.hard_state.term, ready.hard_state.vote) == (3, 1)
    assert ready.must_sync


def test_append_ack_comes_with_the_entries_it_acknowledges_in_the_same_ready() -> None:
    mn = standalone(2)
    entries = tuple(make_entries([1, 1]))
    mn.node.step(AppendEntries(src=1, dst=2, term=1, prev_index=0, prev_term=0, entries=entries))
    ready = mn.node.ready()
    assert of_type(ready.messages, AppendEntriesResponse) == [AppendEntriesResponse(src=2, dst=1, term=1, index=2)]
    assert ready.entries == entries
    assert ready.must_sync


def test_node_refuses_input_until_the_last_ready_is_advanced() -> None:
    mn = standalone(1)
    node = mn.node
    node.campaign()
    ready = node.ready()
    with pytest.raises(ReadyNotAdvanced):
        node.ready()
    with pytest.raises(ReadyNotAdvanced):
        node.step(RequestPreVoteResponse(src=2, dst=1, term=1))
    with pytest.raises(ReadyNotAdvanced):
        node.tick()
    with pytest.raises(ReadyNotAdvanced):
        node.propose(b"x")
    with pytest.raises(ReadyNotAdvanced):
        node.campaign()
    stale = ready
    mn.persist(ready)
    node.advance(ready)
    node.step(RequestPreVoteResponse(src=2, dst=1, term=1))
    fresh = node.ready()
    with pytest.raises(ReadyNotAdvanced):
        node.advance(stale)
    node.advance(fresh)
    node.tick()


def test_single_node_cluster_commits_only_after_advance() -> None:
    mn = standalone(1, voters=(1,))
    node = mn.node
    node.campaign()
    assert node.role is Role.LEADER
    ready = node.ready()
    assert [e.index for e in ready.entries] == [1]
    assert ready.committed_entries == ()
    assert node.status().commit == 0, "its own entry counts only once persisted"
    mn.persist(ready)
    node.advance(ready)
    assert node.status().commit == 1
    ready = node.ready()
    assert [e.index for e in ready.committed_entries] == [1]
    assert ready.hard_state is not None and ready.hard_state.commit == 1
    mn.persist(ready)
    mn.apply(ready)
    node.advance(ready)
    assert node.propose(b"x") == 2
    ready = node.ready()
    assert [e.data for e in ready.entries] == [b"x"]
    assert ready.committed_entries == ()
    mn.persist(ready)
    node.advance(ready)
    ready = node.ready()
    assert [e.data for e in ready.committed_entries] == [b"x"]


# -- Overloaded -------------------------------------------------------------------------------------------


def test_leader_refuses_proposals_past_the_uncommitted_limit_until_they_commit() -> None:
    net = Network(3, max_uncommitted_size=100)
    elect(net, 1)
    net.isolate(1)
    net.propose(1, b"a" * 60)
    last = net[1].node.status().last_index
    with pytest.raises(Overloaded):
        net[1].node.propose(b"b" * 60)
    assert net[1].node.status().last_index == last
    net.propose(1, b"c" * 40)  # 100 bytes in all: still within the limit
    with pytest.raises(Overloaded):
        net[1].node.propose(b"d")
    net.recover()
    net.tick(1, net[1].config.heartbeat_ticks)
    assert net[1].node.status().commit == last + 1
    net.propose(1, b"b" * 60)
    assert [d for _, _, d in net[3].applied.entries] == [b"a" * 60, b"c" * 40, b"b" * 60]


# -- restart ----------------------------------------------------------------------------------------------


def test_restarted_node_keeps_its_term_vote_log_and_commit() -> None:
    net = Network(3)
    elect(net, 1)
    for n in range(3):
        net.propose(1, f"x{n}".encode())
    before = net[2].node.status()
    log = stored(net[2])
    applied = list(net[2].applied.entries)
    net[2].restart()
    after = net[2].node.status()
    assert (after.term, after.vote, after.commit, after.last_index) == (
        before.term,
        before.vote,
        before.commit,
        before.last_index,
    )
    assert after.role is Role.FOLLOWER
    assert stored(net[2]) == log
    net.flush(2)
    assert net[2].applied.entries == applied, "committed entries are applied again after the restart"


def test_restarted_node_never_votes_twice_in_a_term() -> None:
    net = Network(3, pre_vote=False, check_quorum=False)
    net.isolate(1)
    elect(net, 2)
    assert (net[3].node.term, net[3].node.status().vote) == (1, 2)
    net[3].restart()
    net.recover()
    net.cut(1, 2)
    net.campaign(1)  # node 1 is still at term 0: it asks for votes in term 1
    answers = [m for m in of_type(net.delivered, RequestVoteResponse) if m.dst == 1]
    assert [(m.src, m.reject) for m in answers] == [(3, True)]
    assert net[1].node.role is not Role.LEADER
    assert (net[3].storage.hard_state.term, net[3].storage.hard_state.vote) == (1, 2)


def test_a_late_heartbeat_answer_cannot_confirm_a_newer_read_with_a_reused_context() -> None:
    # Each read gets a round of its own; an answer to an older round proves nothing about a newer read.
    net = Network(3, check_quorum=False, pre_vote=False)
    net.campaign(1)
    n1 = net[1]
    n1.node.read_index(b"a")
    delayed: HeartbeatResponse | None = None
    for beat in of_type(n1.handle_ready(), Heartbeat):
        answers = of_type(deliver_only(net, beat), HeartbeatResponse)
        if beat.dst == 2:
            delayed = answers[0]
        else:
            net.send(*answers)
    assert n1.read_states == [ReadState(1, b"a")]
    assert delayed is not None
    net.isolate(1)
    net.campaign(2)
    net.propose(2, b"w")
    assert net[2].node.status().commit == 3
    n1.node.read_index(b"a")  # the old leader, cut off, reuses the context
    net.flush(1)
    n1.node.step(delayed)
    n1.handle_ready()
    assert n1.read_states == [ReadState(1, b"a")], "the deposed leader must not answer the second read"


def test_reads_with_an_empty_or_shared_context_are_all_answered() -> None:
    net = Network(3)
    elect(net, 1)
    net.propose(1, b"x")
    net[1].node.read_index(b"")
    net.flush(1)
    net[2].node.read_index(b"same")
    net.flush(2)
    net[3].node.read_index(b"same")
    net.flush(3)
    assert net[1].read_states == [ReadState(2, b"")]
    assert net[2].read_states == [ReadState(2, b"same")]
    assert net[3].read_states == [ReadState(2, b"same")]


def test_a_follower_whose_snapshot_was_outdated_by_further_compaction_gets_a_newer_one() -> None:
    net = Network(3, check_quorum=False, pre_vote=False)
    net.campaign(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"x%d" % i)
    net[1].take_snapshot()
    net.recover()
    held = tick_holding(net, 1, InstallSnapshot)
    assert [m.snapshot.meta.index for m in of_type(held, InstallSnapshot)] == [6]
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"y%d" % i)
    net[1].take_snapshot()  # compacts past the snapshot still in flight
    net.recover()
    net.send(*held)  # installed; the driver reports nothing
    net.tick_all(5)
    assert net[3].node.status().commit == 11
    assert net[1].node.status().progress[3].state == "replicate"


def test_a_node_restarts_when_its_state_machine_applied_past_the_stored_commit_index() -> None:
    # The commit index alone is persisted without an fsync, so it may lag what a durable state machine applied.
    storage = MemoryStorage(Membership.of(1, 2, 3))
    storage.append([Entry(1, i) for i in (1, 2, 3)])
    storage.set_hard_state(HardState(term=1, vote=1, commit=1))
    node = RaftNode(Config(id=1, applied=3), storage)
    assert (node.status().commit, node.status().applied) == (3, 3)


# -- malformed input from peers --------------------------------------------------------------------------


def test_leader_ignores_an_append_response_claiming_more_log_than_it_has() -> None:
    net = Network(3)
    elect(net, 1)
    leader = net[1].node
    before = leader.status().progress[2]
    last = leader.status().last_index
    leader.step(AppendEntriesResponse(src=2, dst=1, term=leader.term, index=last + 100))
    assert leader.role is Role.LEADER
    assert leader.status().progress[2].match == before.match


def test_a_peer_message_with_term_zero_is_ignored() -> None:
    net = Network(3)
    elect(net, 1)
    follower = net[2].node
    term, leader = follower.term, follower.leader
    follower.step(Heartbeat(src=3, dst=2, term=0, commit=99))
    follower.step(RequestVote(src=3, dst=2, term=0, last_index=99, last_term=99))
    assert (follower.term, follower.leader) == (term, leader)
    assert not follower.has_ready() or not follower.ready().messages
