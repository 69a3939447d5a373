"""Runs the randomized simulation of real runtime nodes (``raft_core.testing.runtime_sim``) over a batch of seeds.

The batch must exercise snapshot installs and session duplicates, so it cannot pass vacuously; a planted
bug (sessions that never deduplicate) must be caught, with a replay command printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from raft_core.runtime import Node
from raft_core.runtime.sessions import SessionTable, Verdict
from raft_core.testing import runtime_sim
from raft_core.testing.runtime_sim import SeedResult, run_seed

SEEDS = range(30)


@pytest.fixture(scope="module")
def batch() -> list[SeedResult]:
    return [run_seed(seed, duration=30.0) for seed in SEEDS]


def test_every_seed_keeps_every_invariant(batch: list[SeedResult]):
    failed = [f"seed {r.seed}: {r.error}" for r in batch if not r.ok]
    assert not failed, "\n".join(failed)


def test_the_batch_exercises_faults_snapshots_and_duplicates(batch: list[SeedResult]):
    stats = [r.stats for r in batch]
    assert sum(s.snapshot_installs for s in stats) > 0
    assert sum(s.chunks for s in stats) > sum(s.snapshot_installs for s in stats)  # transfers took many chunks
    assert sum(s.duplicates for s in stats) > 0
    assert sum(s.crashes for s in stats) > 0 and sum(s.partitions for s in stats) > 0
    assert sum(s.retries for s in stats) > 0 and sum(s.resends for s in stats) > 0
    assert sum(s.reads for s in stats) > 0 and sum(s.failed_commands for s in stats) > 0
    assert {s.nodes for s in stats} == {3, 5}
    assert all(s.acked > 0 for s in stats)


def test_a_seed_replays_identically():
    first, again = run_seed(7, duration=15.0), run_seed(7, duration=15.0)
    assert first.events == again.events
    assert str(first.stats) == str(again.stats)


def test_a_planted_duplicate_apply_is_caught(monkeypatch: pytest.MonkeyPatch):
    check = SessionTable.check

    def never_duplicate(self: SessionTable, client: str, seq: int) -> tuple[Verdict, object]:
        verdict, recorded = check(self, client, seq)
        return (Verdict.APPLY, None) if verdict is Verdict.DUPLICATE else (verdict, recorded)

    monkeypatch.setattr(SessionTable, "check", never_duplicate)
    result = run_seed(1, duration=10.0)
    assert not result.ok
    assert result.error is not None and ("applied twice" in result.error or "retry answered" in result.error)


def test_a_planted_stale_read_is_caught(monkeypatch: pytest.MonkeyPatch):
    async def local_read(self: Node, query: Callable[[Any], object] | None = None, *, timeout: object = None) -> object:
        return query(self.state_machine) if query is not None else None  # no ReadIndex: may be stale

    monkeypatch.setattr(Node, "read", local_read)
    result = run_seed(6, duration=20.0)
    assert result.error is not None and "stale read" in result.error


def test_the_command_line_prints_a_replay_command_for_a_failing_seed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    assert runtime_sim.main(["--seeds", "2", "--duration", "5"]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out

    def always_apply(self: SessionTable, client: str, seq: int) -> tuple[Verdict, object]:
        return Verdict.APPLY, None

    monkeypatch.setattr(SessionTable, "check", always_apply)
    assert runtime_sim.main(["--seed", "1", "--duration", "10"]) == 1
    out = capsys.readouterr().out
    assert "seed 1 FAILED" in out
    assert "python -m raft_core.testing.runtime_sim --seed 1 " in out
    assert "0 passed, 1 failed" in out
