"""Command line of the simulation: run many seeds (in parallel with ``--jobs``) or replay one verbosely.

    python -m raft_core.testing.sim --seeds 2000 --jobs 2
    python -m raft_core.testing.sim --seed 1234 -v

The last line is always ``N passed, M failed``; the exit code is 1 when any seed failed. Results do not
depend on ``--jobs``: every worker runs whole seeds, and each seed is deterministic.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from functools import partial

from raft_core.testing.sim.runner import SeedResult, run_seed, trace_of
from raft_core.testing.sim.schedule import make_plan


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m raft_core.testing.sim", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000, help="how many seeds to run (default 2000)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="run only this seed (a replay)")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default: 2, or 1 on 1 CPU)"
    )
    parser.add_argument("--nodes", default="3,5,7", help="cluster sizes, cycled by seed (default 3,5,7)")
    parser.add_argument("--ticks", type=int, default=2000, help="fault-phase ticks per seed (default 2000)")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing seed")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each seed's plan and full trace")
    args = parser.parse_args(argv)
    args.sizes = tuple(int(n) for n in args.nodes.split(","))
    if any(n < 1 for n in args.sizes) or args.seeds < 0 or args.jobs < 1 or args.ticks < 1:
        parser.error("--nodes, --seeds, --jobs and --ticks must be positive")
    return args


def results(seeds: list[int], sizes: tuple[int, ...], ticks: int, jobs: int) -> Iterator[SeedResult]:
    """Run ``seeds`` (on ``jobs`` worker processes) and yield their results in seed order."""
    run = partial(run_seed, sizes=sizes, ticks=ticks)
    if jobs == 1 or len(seeds) == 1:
        yield from map(run, seeds)
        return
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        yield from pool.imap(run, seeds, chunksize=4)


def _verbose(seed: int, sizes: tuple[int, ...], ticks: int) -> SeedResult:
    for line in make_plan(seed, sizes, ticks).describe():
        print(line)
    result, trace = trace_of(seed, sizes=sizes, ticks=ticks)
    for line in trace.lines():
        print(line)
    print(f"seed {seed}: {result.stats} trace digest {trace.digest()[:16]}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the seeds, print failures as they come and a summary; returns the exit code."""
    args = parse_args(argv)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    started = time.perf_counter()
    passed = failed = 0
    sizes_seen: dict[int, int] = {}
    if args.verbose:
        outcomes: Iterator[SeedResult] = (_verbose(s, args.sizes, args.ticks) for s in seeds)
    else:
        outcomes = results(seeds, args.sizes, args.ticks, args.jobs)
    for result in outcomes:
        sizes_seen[result.size] = sizes_seen.get(result.size, 0) + 1
        if result.ok:
            passed += 1
        else:
            failed += 1
            print(result.report, flush=True)
            print(flush=True)
            if args.fail_fast:
                break
    elapsed = time.perf_counter() - started
    per_size = ", ".join(f"{count} x {size} nodes" for size, count in sorted(sizes_seen.items()))
    print(f"ran {passed + failed} seeds ({per_size}) in {elapsed:.1f}s", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
