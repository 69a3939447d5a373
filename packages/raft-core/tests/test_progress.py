"""Follower progress as the leader sees it: the probe/replicate/snapshot machine and its update rules."""

from __future__ import annotations

import pytest

from raft_core.inflights import Inflights
from raft_core.progress import Progress, ProgressState


def make(
    state: ProgressState = ProgressState.PROBE,
    *,
    match: int = 0,
    next_index: int = 1,
    pending_snapshot: int = 0,
    max_inflight: int = 256,
) -> Progress:
    pr = Progress(next_index, Inflights(max_inflight, 1 << 30))
    if state is ProgressState.REPLICATE:
        pr.become_replicate()
    elif state is ProgressState.SNAPSHOT:
        pr.become_snapshot(pending_snapshot)
    pr.match = match
    pr.next = next_index
    return pr


def test_new_progress_probes_from_the_given_index() -> None:
    pr = Progress(6, Inflights(4, 100))
    assert pr.state is ProgressState.PROBE
    assert (pr.match, pr.next) == (0, 6)
    assert not pr.probe_sent
    assert not pr.recent_active
    assert not pr.is_learner
    assert not pr.is_paused()


# -- transitions ----------------------------------------------------------------------------------------


def test_become_replicate_streams_from_after_match() -> None:
    pr = make(match=4, next_index=9)
    pr.probe_sent = True
    pr.become_replicate()
    assert pr.state is ProgressState.REPLICATE
    assert (pr.match, pr.next) == (4, 5)
    assert not pr.probe_sent


def test_become_probe_from_replicate_backs_up_to_after_match() -> None:
    pr = make(ProgressState.REPLICATE, match=4, next_index=5)
    pr.sent_entries(8, 100)
    assert pr.inflights.count() == 1
    pr.become_probe()
    assert pr.state is ProgressState.PROBE
    assert (pr.match, pr.next) == (4, 5)
    assert pr.inflights.count() == 0  # whatever was in flight is forgotten


@pytest.mark.parametrize(
    ("match", "pending", "expected_next"),
    [
        (1, 5, 6),  # probe from after the snapshot the follower is presumed to hold now
        (7, 5, 8),  # the follower already acked past the snapshot: after match
    ],
)
def test_become_probe_from_snapshot(match: int, pending: int, expected_next: int) -> None:
    pr = make(ProgressState.SNAPSHOT, match=match, next_index=match + 1, pending_snapshot=pending)
    pr.become_probe()
    assert pr.state is ProgressState.PROBE
    assert pr.next == expected_next
    assert pr.pending_snapshot == 0


def test_become_probe_after_a_failed_snapshot_probes_from_after_match() -> None:
    # RaftNode.report_snapshot(ok=False) clears pending_snapshot before probing.
    pr = make(ProgressState.SNAPSHOT, match=2, next_index=3, pending_snapshot=10)
    pr.pending_snapshot = 0
    pr.become_probe()
    assert pr.next == 3


def test_become_snapshot_records_the_snapshot_and_clears_the_window() -> None:
    pr = make(ProgressState.REPLICATE, match=3, next_index=4)
    pr.sent_entries(6, 10)
    pr.become_snapshot(20)
    assert pr.state is ProgressState.SNAPSHOT
    assert pr.pending_snapshot == 20
    assert pr.inflights.count() == 0


# -- sending --------------------------------------------------------------------------------------------


def test_sent_entries_in_replicate_advances_next_optimistically() -> None:
    pr = make(ProgressState.REPLICATE, match=3, next_index=4)
    pr.sent_entries(6, 30)
    assert pr.next == 7
    pr.sent_entries(9, 30)
    assert pr.next == 10
    assert pr.inflights.count() == 2
    assert pr.inflights.bytes == 60
    assert pr.match == 3


def test_sent_entries_in_probe_pauses_until_the_answer() -> None:
    pr = make(match=3, next_index=4)
    assert not pr.is_paused()
    pr.sent_entries(6, 30)
    assert pr.next == 4  # probing never moves next ahead of an answer
    assert pr.probe_sent
    assert pr.is_paused()
    assert pr.inflights.count() == 0


# -- maybe_update ---------------------------------------------------------------------------------------


def test_maybe_update_moves_match_and_next() -> None:
    pr = make(ProgressState.REPLICATE, match=3, next_index=4)
    assert pr.maybe_update(5)
    assert (pr.match, pr.next) == (5, 6)


def test_maybe_update_keeps_an_optimistic_next() -> None:
    pr = make(ProgressState.REPLICATE, match=3, next_index=4)
    pr.sent_entries(9, 10)
    assert pr.maybe_update(5)
    assert (pr.match, pr.next) == (5, 10)


@pytest.mark.parametrize("index", [0, 2, 3])
def test_maybe_update_with_a_stale_ack_reports_nothing_new(index: int) -> None:
    pr = make(ProgressState.REPLICATE, match=3, next_index=7)
    assert not pr.maybe_update(index)
    assert (pr.match, pr.next) == (3, 7)


def test_maybe_update_unpauses_a_probe() -> None:
    pr = make(match=0, next_index=4)
    pr.sent_entries(5, 10)
    assert pr.is_paused()
    assert pr.maybe_update(5)
    assert not pr.probe_sent
    assert not pr.is_paused()
    assert (pr.match, pr.next) == (5, 6)


def test_maybe_update_can_raise_next_without_news() -> None:
    # Same match (nothing new to report) but next was somehow behind: it is still pulled up past match.
    pr = make(match=5, next_index=6)
    pr.next = 3
    assert not pr.maybe_update(5)
    assert pr.next == 6


# -- maybe_decr_to --------------------------------------------------------------------------------------


def test_maybe_decr_to_in_replicate_falls_back_to_after_match() -> None:
    pr = make(ProgressState.REPLICATE, match=5, next_index=6)
    pr.sent_entries(10, 10)
    assert pr.maybe_decr_to(rejected=9, match_hint=7)
    assert pr.next == 6  # the hint is ignored: replicate knows match exactly


@pytest.mark.parametrize("rejected", [0, 3, 5])
def test_maybe_decr_to_in_replicate_ignores_stale_rejections(rejected: int) -> None:
    pr = make(ProgressState.REPLICATE, match=5, next_index=6)
    pr.sent_entries(10, 10)
    assert not pr.maybe_decr_to(rejected=rejected, match_hint=0)
    assert pr.next == 11


@pytest.mark.parametrize(
    ("match", "next_index", "rejected", "hint", "expected_next"),
    [
        (0, 10, 9, 9, 9),  # the entry at 9 does not match, whatever the hint says: next is at most 9
        (0, 10, 9, 4, 5),  # follower's log is shorter: jump back to after its hint
        (0, 10, 9, 0, 1),  # follower has nothing: start from the first entry
        (3, 10, 9, 1, 4),  # never back up to or below match
        (0, 2, 1, 0, 1),
    ],
)
def test_maybe_decr_to_in_probe(match: int, next_index: int, rejected: int, hint: int, expected_next: int) -> None:
    pr = make(match=match, next_index=next_index)
    pr.sent_entries(next_index, 10)
    assert pr.probe_sent
    assert pr.maybe_decr_to(rejected, hint)
    assert pr.next == expected_next
    assert not pr.probe_sent  # free to probe again at once


@pytest.mark.parametrize("rejected", [5, 8, 10])
def test_maybe_decr_to_in_probe_ignores_rejections_of_other_probes(rejected: int) -> None:
    # Only the rejection of the probe at next - 1 is current; any other is about an older probe.
    pr = make(match=0, next_index=10)
    pr.sent_entries(10, 10)
    assert not pr.maybe_decr_to(rejected, 0)
    assert pr.next == 10
    assert pr.probe_sent


def test_maybe_decr_to_keeps_match_below_next() -> None:
    pr = make(match=7, next_index=9)
    assert pr.maybe_decr_to(8, 2)
    assert pr.match < pr.next
    assert pr.next == 8


def test_maybe_decr_to_in_snapshot_state_ignores_rejections_of_older_appends() -> None:
    pr = make(ProgressState.SNAPSHOT, match=2, next_index=3, pending_snapshot=20)
    assert not pr.maybe_decr_to(5, 1)
    assert pr.state is ProgressState.SNAPSHOT
    assert pr.next == 3


# -- is_paused ------------------------------------------------------------------------------------------


def test_replicate_pauses_when_the_window_is_full() -> None:
    pr = make(ProgressState.REPLICATE, match=0, next_index=1, max_inflight=2)
    assert not pr.is_paused()
    pr.sent_entries(1, 10)
    assert not pr.is_paused()
    pr.sent_entries(2, 10)
    assert pr.is_paused()
    pr.inflights.free_le(1)
    assert not pr.is_paused()


def test_snapshot_state_is_always_paused() -> None:
    pr = make(ProgressState.SNAPSHOT, pending_snapshot=5)
    assert pr.is_paused()
    pr.probe_sent = False
    assert pr.is_paused()


def test_probe_ignores_the_window() -> None:
    pr = make(max_inflight=1)
    pr.inflights.add(1, 1)
    assert pr.inflights.full()
    assert not pr.is_paused()


def test_repr_is_one_line() -> None:
    pr = make(ProgressState.REPLICATE, match=5, next_index=6)
    pr.sent_entries(8, 10)
    assert repr(pr) == "replicate match=5 next=9 inflight=1"
    probe = make(match=1, next_index=2)
    probe.sent_entries(2, 1)
    assert repr(probe) == "probe match=1 next=2 paused"
    snap = make(ProgressState.SNAPSHOT, match=1, next_index=2, pending_snapshot=9)
    assert repr(snap) == "snapshot match=1 next=2 pending_snapshot=9"
