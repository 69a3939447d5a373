"""Real crashes: a writer process is SIGKILLed at random moments; every entry it reported durable survives.

The writer (``crash_writer.py``) prints the last durable index after each ``persist(sync=True)`` returns. After
the kill, the parent reopens the storage and checks that every reported entry is present, in order, with its
exact deterministic content, and that nothing else appears (entries past the last report may only be the
writer's next deterministic entries, from the batch in flight).
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from crash_writer import MAX_BATCH, MEMBERSHIP, entry, snapshot_data

from raft_core.storage import DiskStorage

WRITER = Path(__file__).with_name("crash_writer.py")
RUNS = 50
STARTUP_DEADLINE_S = 30.0


def run_and_kill(directory: Path, seed: int, delay: float) -> int:
    """Start the writer, SIGKILL it ``delay`` seconds after its first report; returns the last index it reported."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(directory), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    out = bytearray()
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + STARTUP_DEADLINE_S
            started = False
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not started:
                        raise AssertionError(f"the writer reported nothing within {STARTUP_DEADLINE_S} s")
                    break
                if not sel.select(timeout=remaining):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"the writer exited early: {proc.wait()} {proc.stderr.read()!r}")  # type: ignore[union-attr]
                out += chunk
                if not started and b"\n" in out:
                    started = True
                    deadline = time.monotonic() + delay
    finally:
        proc.send_signal(signal.SIGKILL)  # only the process this test started
        rest, _ = proc.communicate()
        out += rest
    assert proc.returncode == -signal.SIGKILL
    lines = bytes(out).split(b"\n")[:-1]  # the text after the last newline may be a torn print
    return int(lines[-1])


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_entries_reported_durable_survive_sigkill(tmp_path):
    rng = random.Random(20261126)
    delays = [rng.uniform(0.0, 0.25) for _ in range(RUNS)]
    # Two writers at a time (each one's wait is in select/read, so threads suffice): the 50 runs take half as long.
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda run: run_and_kill(tmp_path / f"run{run}", run, delays[run]), range(RUNS)))
    for run, reported in enumerate(reports):
        directory = tmp_path / f"run{run}"
        storage = DiskStorage.open(directory, membership=MEMBERSHIP)
        try:
            first, last = storage.first_index(), storage.last_index()
            context = f"run {run}: reported {reported}, recovered [{first}, {last}]"
            assert reported <= last <= reported + MAX_BATCH, context
            assert storage.entries(first, last + 1) == [entry(i) for i in range(first, last + 1)], context
            snapshot = storage.snapshot()
            assert snapshot.meta.index >= first - 1, context
            if snapshot.meta.index:
                assert snapshot.data == snapshot_data(snapshot.meta.index), context
                assert snapshot.meta.term == entry(snapshot.meta.index).term, context
            hs = storage.initial_state().hard_state
            assert hs.vote == 1 and hs.term == entry(last).term and hs.commit < last, context
        finally:
            storage.close()
