"""Durable storage benchmark: DiskStorage.persist(sync=True) against the raw write+fdatasync floor, and reopen.

With fsync on, in a temporary directory (``--dir``, default the system temp dir: put it on the disk you care
about), for batches of 1, 16 and 256 entries of 100 bytes: appends per second and p50/p99 latency per batch
through ``DiskStorage.persist(sync=True)``, side by side with a plain loop of ``os.write`` + ``os.fdatasync`` of
the same payload bytes measured in the same run (interleaved repetitions; medians printed). Then the time to
reopen a log of 1,000,000 entries of 100 bytes (built with ``unsafe_skip_fsync``) and the RSS growth of the
reopen, in a fresh subprocess. Targets are reported (PASS / BELOW), never asserted; exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from raft_core.storage import DiskStorage
from raft_core.types import Entry, HardState, Membership

PAYLOAD = 100
MEMBERSHIP = Membership.of(1, 2, 3)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_storage(directory: Path, batch: int, batches: int) -> tuple[float, list[float]]:
    """Seconds for ``batches`` synced persists, and each persist's latency."""
    storage = DiskStorage.open(directory, membership=MEMBERSHIP)
    data = b"x" * PAYLOAD
    prepared = [[Entry(1, i, data=data) for i in range(b * batch + 1, (b + 1) * batch + 1)] for b in range(batches)]
    lat = []
    start = time.perf_counter()
    for b, entries in enumerate(prepared):
        t0 = time.perf_counter()
        storage.persist(hard_state=HardState(1, 1, b * batch), entries=entries, snapshot=None, sync=True)
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    storage.close()
    return total, lat


def run_raw(directory: Path, batch: int, batches: int) -> tuple[float, list[float]]:
    """The floor: a plain loop of write + fdatasync of the same payload bytes to one file."""
    fd = os.open(directory / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    data = b"x" * (PAYLOAD * batch)
    lat = []
    start = time.perf_counter()
    for _ in range(batches):
        t0 = time.perf_counter()
        os.write(fd, data)
        os.fdatasync(fd)
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    os.close(fd)
    return total, lat


def bench_appends(root: Path, batch_sizes: Sequence[int], repeats: int, seconds: float) -> None:
    """Print the persist-vs-floor table, about ``seconds`` of syncs per repetition and batch size."""
    print(f"persist(sync=True) vs raw write+fdatasync, entries of {PAYLOAD} B, in {root} (medians of {repeats})")
    header = (
        f"{'batch':>5} | {'storage ent/s':>13} {'MB/s':>6} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'raw ent/s':>10} {'MB/s':>6} {'p50 ms':>7} {'p99 ms':>7} | {'bytes/s vs raw':>14} {'p50 vs raw':>10}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for batch in batch_sizes:
        # Calibrate: about ``seconds`` of raw syncs per repetition.
        probe_total, _ = run_raw(Path(tempfile.mkdtemp(dir=root)), batch, 20)
        batches = max(20, min(3000, int(seconds / (probe_total / 20))))
        s_rate, r_rate, s_p50, s_p99, r_p50, r_p99 = [], [], [], [], [], []
        for _ in range(repeats):
            for kind in ("raw", "storage"):
                d = Path(tempfile.mkdtemp(dir=root))
                total, lat = (run_raw if kind == "raw" else run_storage)(d, batch, batches)
                rate = batch * batches / total
                if kind == "raw":
                    r_rate.append(rate)
                    r_p50.append(percentile(lat, 0.5))
                    r_p99.append(percentile(lat, 0.99))
                else:
                    s_rate.append(rate)
                    s_p50.append(percentile(lat, 0.5))
                    s_p99.append(percentile(lat, 0.99))
        sr, rr = statistics.median(s_rate), statistics.median(r_rate)
        sp50, rp50 = statistics.median(s_p50), statistics.median(r_p50)
        ratio, lat_ratio = sr / rr, sp50 / rp50
        print(
            f"{batch:>5} | {sr:>13,.0f} {sr * PAYLOAD / 1e6:>6.2f} {sp50 * 1e3:>7.3f} "
            f"{statistics.median(s_p99) * 1e3:>7.3f} | {rr:>10,.0f} {rr * PAYLOAD / 1e6:>6.2f} {rp50 * 1e3:>7.3f} "
            f"{statistics.median(r_p99) * 1e3:>7.3f} | {ratio:>13.0%} {lat_ratio:>9.2f}x"
        )
        if batch == 256:
            verdict = "PASS" if ratio >= 0.5 else "BELOW"
            verdicts.append(f"batch 256 bytes/s vs raw: {ratio:.0%} (target >= 50%): {verdict}")
        if batch == 1:
            verdict = "PASS" if lat_ratio <= 1.5 else "BELOW"
            verdicts.append(f"batch 1 p50 latency vs raw: {lat_ratio:.2f}x (target <= 1.5x): {verdict}")
    for v in verdicts:
        print(v)


_REOPEN_CHILD = """
import json, os, sys, time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
from raft_core.storage import DiskStorage
from raft_core.types import Membership
before = rss()
t0 = time.perf_counter()
s = DiskStorage.open(sys.argv[1], membership=Membership.of(1, 2, 3))
took = time.perf_counter() - t0
after = rss()
e = s.entries(s.last_index() // 2, s.last_index() // 2 + 100)
print(json.dumps({"seconds": took, "rss_before": before, "rss_after": after, "last": s.last_index()}))
"""


def bench_reopen(root: Path, entries: int, batch: int) -> None:
    """Build a log of ``entries`` (unsafe_skip_fsync), then time its reopen and RSS growth in a fresh process."""
    directory = Path(tempfile.mkdtemp(dir=root))
    storage = DiskStorage.open(directory, membership=MEMBERSHIP, unsafe_skip_fsync=True)
    data = b"x" * PAYLOAD
    t0 = time.perf_counter()
    for first in range(1, entries + 1, batch):
        ents = [Entry(1, i, data=data) for i in range(first, min(first + batch, entries + 1))]
        storage.persist(hard_state=HardState(1, 1, first - 1), entries=ents, snapshot=None, sync=False)
    storage.close()
    built = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in (directory / "wal").iterdir())
    out = subprocess.run(
        [sys.executable, "-c", _REOPEN_CHILD, str(directory)], check=True, capture_output=True, text=True
    ).stdout
    r = json.loads(out)
    grew = r["rss_after"] - r["rss_before"]
    print(
        f"reopen {entries:,} entries of {PAYLOAD} B written in batches of {batch} ({size / 1e6:.0f} MB of WAL, "
        f"built in {built:.1f} s): {r['seconds']:.2f} s (target < 5 s: {'PASS' if r['seconds'] < 5 else 'BELOW'}); "
        f"RSS +{grew / 1e6:.1f} MB = {grew / entries:.1f} B/entry"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds: fewer syncs, a 100,000-entry reopen")
    parser.add_argument("--dir", default=None, help="where to put the temporary files (default: system temp dir)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per batch size (default 5; quick 2)")
    parser.add_argument("--reopen-entries", type=int, default=None, help="entries in the reopen test (1,000,000)")
    args, _ = parser.parse_known_args(argv)  # bench_core.py's options, passed through nox, are ignored here
    repeats = args.repeats or (2 if args.quick else 5)
    reopen_entries = args.reopen_entries or (100_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_storage_") as d:
        root = Path(d)
        bench_appends(root, [1, 16, 256], repeats, 0.3 if args.quick else 1.5)
        print()
        bench_reopen(root, reopen_entries, 256)
        bench_reopen(root, reopen_entries, 1)  # the worst case: one record per entry


if __name__ == "__main__":
    main()
