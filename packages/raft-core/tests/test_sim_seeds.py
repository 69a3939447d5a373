"""The deterministic simulation in the default test run: a few hundred random seeds, replay, and bug detection.

``nox -s sim`` runs thousands of seeds; here 200 (all three cluster sizes, 2,000+ ticks each) keep every
pull request honest. The other tests check that a seed replays bit for bit, that the results do not depend
on ``--jobs``, that the command line reports as documented, and that deliberately broken cores are caught.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

import pytest

from raft_core.log import RaftLog
from raft_core.testing.sim import make_plan, run_seed, trace_of
from raft_core.testing.sim.__main__ import main, results
from raft_core.testing.sim.schedule import KINDS
from raft_core.types import Entry

SEEDS = 300
JOBS = max(1, min(2, os.cpu_count() or 1))


def test_random_seeds_pass() -> None:
    seeds = list(range(SEEDS))
    if JOBS > 1:
        with multiprocessing.get_context("spawn").Pool(JOBS) as pool:
            outcomes = pool.map(run_seed, seeds, chunksize=5)
    else:
        outcomes = [run_seed(s) for s in seeds]
    failures = [r for r in outcomes if not r.ok]
    assert not failures, f"{len(failures)} seeds failed; the first:\n{failures[0].report}"
    assert {r.size for r in outcomes} == {3, 5, 7}
    assert min(r.ticks for r in outcomes) >= 2000


def test_plans_cover_every_size_fault_kind_and_config_variant() -> None:
    plans = [make_plan(seed) for seed in range(SEEDS)]
    assert {p.size for p in plans} == {3, 5, 7}
    assert {ph.kind for p in plans for ph in p.phases} == set(KINDS)
    assert all(p.ticks >= 2000 for p in plans)
    assert any(p.config.get("pre_vote") is False for p in plans)
    assert any(p.config.get("check_quorum") is False for p in plans)
    assert any("max_size_per_msg" in p.config for p in plans)
    assert any("max_inflight_msgs" in p.config for p in plans)
    assert make_plan(7) == make_plan(7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_seed_replays_bit_for_bit(seed: int) -> None:
    first, trace1 = trace_of(seed)
    second, trace2 = trace_of(seed)
    assert first.ok, first.report
    assert len(trace1) > 5_000
    assert trace1.digest() == trace2.digest()
    assert first.fingerprint == second.fingerprint
    assert run_seed(seed).fingerprint == first.fingerprint, "keeping the full trace changed the run"


def test_results_do_not_depend_on_jobs() -> None:
    seeds = list(range(6))
    serial = [(r.seed, r.ok, r.fingerprint) for r in results(seeds, (3, 5, 7), 300, 1)]
    parallel = [(r.seed, r.ok, r.fingerprint) for r in results(seeds, (3, 5, 7), 300, 2)]
    assert serial == parallel


def test_cli_ends_with_the_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--start", "10", "--ticks", "200"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "3 passed, 0 failed"


def vote_without_up_to_date_check(self: RaftLog, last_index: int, last_term: int) -> bool:
    """Deliberate bug: every candidate's log counts as up to date, so stale nodes can win elections."""
    return True


def append_without_truncating(
    self: RaftLog, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
) -> int | None:
    """Deliberate bug: a follower keeps a conflicting suffix and only appends entries beyond its last index."""
    if not self.match_term(prev_index, prev_term):
        return None
    new = [e for e in entries if e.index > self.last_index()]
    if new:
        self.append(new)
    last_new = prev_index + len(entries)
    self.commit_to(min(commit, last_new, self.last_index()))
    return last_new


@pytest.mark.parametrize(
    ("method", "broken"),
    [("is_up_to_date", vote_without_up_to_date_check), ("maybe_append", append_without_truncating)],
)
def test_the_simulation_catches_a_broken_core(monkeypatch: pytest.MonkeyPatch, method: str, broken: object) -> None:
    monkeypatch.setattr(RaftLog, method, broken)
    for seed in range(20):
        result = run_seed(seed)
        if not result.ok:
            break
    else:
        pytest.fail(f"20 seeds did not catch the broken {method}")
    assert f"FAILED seed {seed}" in result.report
    assert result.invariant in result.report
    assert "last 60 events:" in result.report
    assert f"replay: nox -s sim -- --seed {seed}" in result.report


def test_a_failing_seed_prints_its_report_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(RaftLog, "is_up_to_date", vote_without_up_to_date_check)
    assert main(["--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAILED seed 0" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"
