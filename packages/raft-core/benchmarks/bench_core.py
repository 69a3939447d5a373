"""Throughput and CPU cost of the raft-core protocol core: 3 and 5 nodes in one process, one core.

Each node is a ``RaftNode`` over a ``MemoryStorage``, driven by a lean loop (no ``MemoryNode``, no snapshots,
no serialization: messages are handed over as Python objects). One *round* of the loop is:

1. the client proposes a batch of ``B`` commands of 100 bytes on the leader (one ``propose_many`` call, or
   ``B`` ``propose`` calls with ``--api single``);
2. every node that has work takes one ``Ready``: persists its entries and hard state into its
   ``MemoryStorage``, queues its messages, applies its committed entries to a trivial state machine (a count
   and an xor of payload lengths, looped in C so that it costs next to nothing) and calls ``advance``;
3. every queued message is delivered (``step``) to its addressee.

Replication is thus pipelined: while one batch waits for acknowledgements the next is already on its way.
An entry counts as *committed* once the leader has applied it. A run stops after ``--max-entries``
committed entries or ``--max-seconds`` of wall time, whichever comes first; each configuration is run
``--repeats`` times and the median (with min and max) is printed.

Figures: *entries/s* is committed entries per wall-clock second; *µs/entry* is the process CPU time
(``time.process_time``) per committed entry, i.e. the work of the whole cluster (leader, followers and the
driver) for one entry, on one core. The issue's target, at least 100,000 committed entries/s on 3 nodes on
one core, is printed next to the figures as PASS or BELOW; it is reported, never asserted.

``--profile`` runs the 3-node batched configuration once under cProfile and prints the hot spots.

Run: ``python packages/raft-core/benchmarks/bench_core.py [--quick] [--profile]`` (``--help`` for more).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from operator import attrgetter, xor
from types import CodeType
from typing import Any

from raft_core import Config, Membership, RaftNode, Role
from raft_core.messages import Message
from raft_core.storage.memory import MemoryStorage
from raft_core.types import EntryKind, NodeId

TARGET_ENTRIES_PER_S = 100_000
"""The issue's target: committed entries per second on 3 nodes, on one core."""

PAYLOAD_SIZE = 100
"""Bytes per proposed command."""

PAYLOAD_POOL = 4096
"""Distinct payloads proposed in turn (built once, outside the timed section)."""

_KIND = attrgetter("kind")
_DATA = attrgetter("data")
_IS_NORMAL = EntryKind.NORMAL.__eq__


@dataclass(slots=True, frozen=True)
class RunResult:
    """What one run measured."""

    committed: int
    """Commands the leader applied during the timed section."""
    wall_s: float
    """Wall-clock seconds (``time.perf_counter``)."""
    cpu_s: float
    """Process CPU seconds (``time.process_time``)."""
    rounds: int
    """Driver rounds (propose, one Ready per node, delivery)."""
    messages: int
    """Messages delivered."""

    @property
    def entries_per_s(self) -> float:
        """Committed entries per wall-clock second."""
        return self.committed / self.wall_s if self.wall_s else 0.0

    @property
    def us_per_entry(self) -> float:
        """CPU microseconds per committed entry (the whole cluster's work)."""
        return self.cpu_s * 1e6 / self.committed if self.committed else float("inf")


class BenchNode:
    """One node and its storage, with the driver's side of the ``Ready`` contract and a trivial state machine."""

    __slots__ = ("applied_count", "applied_xor", "node", "storage")

    def __init__(self, config: Config, membership: Membership) -> None:
        """A fresh node of ``membership`` with an empty in-memory log."""
        self.storage = MemoryStorage(membership)
        self.node = RaftNode(config, self.storage, random.Random(config.id))
        self.applied_count = 0
        """Commands applied (no-ops are not counted)."""
        self.applied_xor = 0
        """Xor of the lengths of the applied commands: the state machine's "state"."""

    def handle_ready(self, outbox: list[Message]) -> None:
        """Take one Ready if there is work: persist, queue its messages into ``outbox``, apply, advance."""
        node = self.node
        if not node.has_ready():
            return
        ready = node.ready()
        storage = self.storage
        if ready.snapshot is not None:
            storage.apply_snapshot(ready.snapshot)
        if ready.entries:
            storage.append(ready.entries)
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        outbox.extend(ready.messages)
        committed = ready.committed_entries
        if committed:
            # The state machine, kept near-free (loops in C) so that the figures are the core's cost. No-ops
            # carry no payload, so they leave the xor alone; they are not counted as commands.
            self.applied_count += sum(map(_IS_NORMAL, map(_KIND, committed)))
            self.applied_xor = reduce(xor, map(len, map(_DATA, committed)), self.applied_xor)
        node.advance(ready)


class Cluster:
    """``n`` nodes on a perfect in-memory network, with node 1 elected leader."""

    def __init__(self, n: int) -> None:
        """Build the nodes and elect node 1 (outside any timed section)."""
        ids = list(range(1, n + 1))
        membership = Membership.of(*ids)
        self.nodes: dict[NodeId, BenchNode] = {i: BenchNode(Config.build(id=i), membership) for i in ids}
        self.order = [self.nodes[i] for i in ids]
        self.leader = self.nodes[1]
        self.delivered = 0
        self.leader.node.campaign()
        for _ in range(100):
            if self.leader.node.role is Role.LEADER and not any(b.node.has_ready() for b in self.order):
                break
            self.round()
        if self.leader.node.role is not Role.LEADER:
            raise RuntimeError("node 1 failed to become leader")

    def round(self) -> None:
        """Every node takes one Ready, then every message it produced is delivered."""
        outbox: list[Message] = []
        for bench_node in self.order:
            bench_node.handle_ready(outbox)
        nodes = self.nodes
        for m in outbox:
            nodes[m.dst].node.step(m)
        self.delivered += len(outbox)

    def drain(self, max_rounds: int = 1000) -> None:
        """Run rounds until no node has work left."""
        for _ in range(max_rounds):
            if not any(b.node.has_ready() for b in self.order):
                return
            self.round()
        raise RuntimeError("the cluster did not quiesce")


def make_payloads(seed: int = 0) -> list[bytes]:
    """The pool of distinct 100-byte payloads that proposals cycle through."""
    rng = random.Random(seed)
    return [rng.randbytes(PAYLOAD_SIZE) for _ in range(PAYLOAD_POOL)]


def run_once(n: int, batch: int, *, api: str, max_entries: int, max_seconds: float, payloads: list[bytes]) -> RunResult:
    """Build an ``n``-node cluster and propose batches of ``batch`` commands until a limit is reached."""
    cluster = Cluster(n)
    leader = cluster.leader
    node = leader.node
    batches = [tuple(payloads[i : i + batch]) for i in range(0, len(payloads) - batch + 1, batch)] or [
        tuple((payloads * (batch // len(payloads) + 1))[:batch])
    ]
    n_batches = len(batches)
    start_applied = leader.applied_count
    start_delivered = cluster.delivered
    rounds = 0
    round_ = cluster.round
    perf_counter = time.perf_counter
    propose_many = node.propose_many
    propose = node.propose
    single = api == "single"

    wall0 = perf_counter()
    cpu0 = time.process_time()
    deadline = wall0 + max_seconds
    target = start_applied + max_entries
    while leader.applied_count < target:
        data = batches[rounds % n_batches]
        if single:
            for d in data:
                propose(d)
        else:
            propose_many(data)
        round_()
        rounds += 1
        if perf_counter() >= deadline:
            break
    cpu1 = time.process_time()
    wall1 = perf_counter()

    # Untimed: let the pipeline finish and check every node applied the same commands.
    cluster.drain()
    counts = {(b.applied_count, b.applied_xor) for b in cluster.order}
    if len(counts) != 1:
        raise RuntimeError(f"nodes disagree on the applied state: {counts}")
    return RunResult(
        committed=leader.applied_count - start_applied,
        wall_s=wall1 - wall0,
        cpu_s=cpu1 - cpu0,
        rounds=rounds,
        messages=cluster.delivered - start_delivered,
    )


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def run_sweep(args: argparse.Namespace) -> dict[tuple[int, int], list[RunResult]]:
    """Run every (cluster size, batch size) configuration ``args.repeats`` times and print a table."""
    payloads = make_payloads()
    results: dict[tuple[int, int], list[RunResult]] = {}
    print(
        f"{'nodes':>5} {'batch':>5} | {'entries/s (wall), median [min..max]':>38} | "
        f"{'CPU µs/entry, median [min..max]':>32} | {'msgs/entry':>10} | target"
    )
    print("-" * 112)
    for n in args.nodes:
        for batch in args.batches:
            runs = [
                run_once(
                    n,
                    batch,
                    api=args.api,
                    max_entries=args.max_entries,
                    max_seconds=args.max_seconds,
                    payloads=payloads,
                )
                for _ in range(args.repeats)
            ]
            results[(n, batch)] = runs
            rates = [r.entries_per_s for r in runs]
            costs = [r.us_per_entry for r in runs]
            msgs = statistics.median(r.messages / r.committed for r in runs if r.committed)
            rate_text = f"{_fmt_rate(statistics.median(rates))} [{_fmt_rate(min(rates))}..{_fmt_rate(max(rates))}]"
            cost_text = f"{statistics.median(costs):.2f} [{min(costs):.2f}..{max(costs):.2f}]"
            verdict = ""
            if n == 3:
                verdict = "PASS" if statistics.median(rates) >= TARGET_ENTRIES_PER_S else "BELOW"
            print(f"{n:>5} {batch:>5} | {rate_text:>38} | {cost_text:>32} | {msgs:>10.3f} | {verdict}", flush=True)
    return results


def print_verdict(results: dict[tuple[int, int], list[RunResult]]) -> None:
    """Compare the 3-node figures with the issue's target (reported, never asserted)."""
    three = {batch: runs for (n, batch), runs in results.items() if n == 3}
    if not three:
        return
    medians = {batch: statistics.median(r.entries_per_s for r in runs) for batch, runs in three.items()}
    cpu_rates = {
        batch: statistics.median(r.committed / r.cpu_s for r in runs if r.cpu_s) for batch, runs in three.items()
    }
    best = max(medians, key=lambda b: medians[b])
    print()
    print(f"Target: >= {TARGET_ENTRIES_PER_S:,} committed entries/s on 3 nodes, one core (reported, not asserted).")
    for batch in sorted(medians):
        verdict = "PASS" if medians[batch] >= TARGET_ENTRIES_PER_S else "BELOW"
        label = " (one proposal per round)" if batch == 1 else ""
        print(
            f"  3 nodes, batch {batch:>4}{label}: {_fmt_rate(medians[batch])} entries/s wall, "
            f"{_fmt_rate(cpu_rates[batch])} entries per CPU-second -> {verdict}"
        )
    print(
        f"  Best: batch {best}, {_fmt_rate(medians[best])} entries/s -> "
        f"{'PASS' if medians[best] >= TARGET_ENTRIES_PER_S else 'BELOW'}"
    )


def run_profile(args: argparse.Namespace, top: int) -> None:
    """Profile one 3-node run at the largest batch size and print the hot spots by own time.

    Rows are per code object, not per ``file:line(name)`` as ``pstats`` keys them: every ``__init__`` that
    ``dataclasses`` generates is ``<string>:2(__init__)``, and ``pstats`` keeps only one of them, which would
    hide what building entries and messages costs. Those rows are named after their class here.
    """
    batch = max(args.batches)
    payloads = make_payloads()
    profiler = cProfile.Profile()
    profiler.enable()
    result = run_once(
        3, batch, api=args.api, max_entries=args.max_entries, max_seconds=args.max_seconds, payloads=payloads
    )
    profiler.disable()
    rows: list[Any] = profiler.getstats()
    total = sum(row.inlinetime for row in rows) or 1.0
    labels = _generated_code_labels()
    print()
    print(
        f"cProfile, 3 nodes, batch {batch}, api {args.api}: {result.committed:,} entries "
        f"(profiled, so slower: {_fmt_rate(result.entries_per_s)} entries/s); top {top} by own time"
    )
    print("(cProfile adds a fixed cost to every Python call: small functions called per entry look costlier)")
    print(f"{'own %':>6} {'own s':>7} {'cum %':>6} {'calls':>10} {'calls/entry':>11}  function")
    for row in sorted(rows, key=lambda r: r.inlinetime, reverse=True)[:top]:
        print(
            f"{100 * row.inlinetime / total:>5.1f}% {row.inlinetime:>7.3f} {100 * row.totaltime / total:>5.1f}% "
            f"{row.callcount:>10,} {row.callcount / max(result.committed, 1):>11.3f}  {_label(row.code, labels)}"
        )


def _generated_code_labels() -> dict[CodeType, str]:
    """Names for the methods that ``dataclasses`` generates on raft-core's classes, by code object."""
    labels: dict[CodeType, str] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("raft_core"):
            continue
        for obj in vars(module).values():
            if not (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module_name):
                continue
            for attr in ("__init__", "__eq__", "__repr__", "__hash__", "__setattr__"):
                code = getattr(getattr(obj, attr, None), "__code__", None)
                if isinstance(code, CodeType) and code.co_filename == "<string>":
                    labels[code] = f"{obj.__name__}.{attr} (generated by dataclasses)"
    return labels


def _label(code: CodeType | str, labels: dict[CodeType, str]) -> str:
    if isinstance(code, str):
        return code  # a built-in function
    if code in labels:
        return labels[code]
    return f"{_short_path(code.co_filename)}:{code.co_firstlineno}({code.co_qualname})"


def _short_path(filename: str) -> str:
    marker = f"raft_core{os.sep}"
    if marker in filename:
        return "raft_core/" + filename.split(marker, 1)[1]
    return os.path.basename(filename)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds in all: runs of 10000 entries or 0.1 s")
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5], help="cluster sizes (default: 3 5)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512], help="batch sizes (default: 1 64 512)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per configuration (default: 5)")
    parser.add_argument("--max-entries", type=int, default=None, help="entries per run (default 200000; quick 10000)")
    parser.add_argument("--max-seconds", type=float, default=None, help="wall seconds per run (default 2; quick 0.1)")
    parser.add_argument(
        "--api",
        choices=("many", "single"),
        default="many",
        help="propose a batch with one propose_many() call (default) or with one propose() call per command",
    )
    parser.add_argument("--profile", action="store_true", help="also profile the 3-node run at the largest batch")
    parser.add_argument("--profile-only", action="store_true", help="only profile (skip the sweep)")
    parser.add_argument("--top", type=int, default=20, help="profile rows to print (default 20)")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5
    if args.max_entries is None:
        args.max_entries = 10_000 if args.quick else 200_000
    if args.max_seconds is None:
        args.max_seconds = 0.1 if args.quick else 2.0
    if min(args.batches) < 1 or min(args.nodes) < 1 or args.repeats < 1:
        parser.error("batch sizes, cluster sizes and repeats must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep (and the profile if asked); always exits 0, whatever the figures."""
    args = parse_args(argv)
    print(
        f"raft-core bench: {PAYLOAD_SIZE}-byte commands, api={args.api}, {args.repeats} runs per configuration, "
        f"each up to {args.max_entries:,} entries or {args.max_seconds:g} s; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs (single-threaded: one core)"
    )
    if not args.profile_only:
        results = run_sweep(args)
        print_verdict(results)
    if args.profile or args.profile_only:
        run_profile(args, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
