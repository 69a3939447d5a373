"""Crash tests of the whole runtime in real processes: SIGKILL a writing node, restart it, compare.

A one-node cluster (``runtime_crash_writer.py``) on ``DiskStorage`` proposes numbered commands and prints each
one ``propose`` acknowledged. The test kills it with SIGKILL at a seeded random moment, restarts it from the
same directory (over and over: the log, snapshots and compaction survive several crashes), and checks that
every acknowledged command is applied exactly once and nothing was applied that was never proposed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

WRITER = Path(__file__).with_name("runtime_crash_writer.py")
RUNS = 12
DEADLINE_S = 30.0


def run_writer_until_killed(directory: Path, run: int, delay: float) -> set[str]:
    """Start a writer, SIGKILL it ``delay`` seconds after it is ready; the commands it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory), "write", str(run)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    acked: set[str] = set()
    try:
        deadline = time.monotonic() + DEADLINE_S
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"writer did not start: {line!r}"
        kill_at = time.monotonic() + delay
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < kill_at:
            assert time.monotonic() < deadline
            for line in proc.stdout:
                if line.startswith("acked "):
                    acked.add(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for line in proc.stdout:  # what it printed before it died was acknowledged too
            if line.startswith("acked ") and line.endswith("\n"):
                acked.add(line.split()[1])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()
    return acked


def applied_after_restart(directory: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(WRITER), str(directory), "check"],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=True,
    )
    applied: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return applied


def test_sigkilled_node_keeps_every_acknowledged_command_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(3)
    acked_total: set[str] = set()
    previous: list[str] = []
    for run in range(RUNS):
        acked_total |= run_writer_until_killed(tmp_path, run, rng.uniform(0.05, 0.6))
        applied = applied_after_restart(tmp_path)
        assert applied[: len(previous)] == previous, f"run {run}: the applied history changed after a restart"
        assert len(applied) == len(set(applied)), f"run {run}: a command was applied twice"
        assert acked_total <= set(applied), f"run {run}: lost {sorted(acked_total - set(applied))[:10]}"
        for item in applied:  # nothing appears that no writer proposed
            r, _, n = item.partition(":")
            assert r.isdigit() and int(r) <= run and n.isdigit(), f"run {run}: unexpected command {item!r}"
        previous = applied
    assert len(acked_total) > RUNS * 10  # the writers really wrote
