"""End-to-end chat benchmark: a real 5-node cluster (fsync on), load from client processes through the library.

Measures, on this machine: messages sent per second with 64 concurrent senders and their send latency
(call to acknowledgement); delivery latency (acknowledged send to receipt) with 200 subscribers spread over
all nodes in 10 rooms at an offered 200 messages/s; and the node processes' memory (RSS) as history grows.
Every loop is bounded in count and time; the cluster's processes are stopped by PID. Run with ``--quick`` for
a short smoke run. Prints medians over ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chat_client_qt.client import ChatClient, api
from chat_server.cluster import LocalCluster

PASSWORD = "bench-password-1"
ROOMS = 10


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- worker processes -------------------------------------------------------------------------------------------


async def _senders(endpoints: list[str], users: list[tuple[str, str]], duration: float) -> dict[str, Any]:
    """Closed-loop senders, one per (user, room); returns latencies of acknowledged sends."""
    latencies: list[float] = []
    errors = 0
    clients = [ChatClient(endpoints[i % len(endpoints) :] + endpoints[: i % len(endpoints)], use_outbox=False)
               for i in range(len(users))]  # fmt: skip
    for client, (name, _) in zip(clients, users, strict=True):
        await client.__aenter__()
        await client.login(name, PASSWORD)
    deadline = time.monotonic() + duration

    async def one(client: ChatClient, room: str) -> None:
        nonlocal errors
        k = 0
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                await client.send(room, f"load {k} {time.time_ns()}")
                latencies.append(time.perf_counter() - start)
            except Exception:
                errors += 1
            k += 1

    start = time.monotonic()
    await asyncio.gather(*(one(c, room) for c, (_, room) in zip(clients, users, strict=True)))
    elapsed = time.monotonic() - start
    for client in clients:
        await client.__aexit__(None, None, None)
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def sender_worker(endpoints: list[str], users: list[tuple[str, str]], duration: float) -> dict[str, Any]:
    """Process entry point of a sender."""
    return asyncio.run(_senders(endpoints, users, duration))


async def _subscribers(
    endpoints: list[str], users: list[str], first_node: int, duration: float, ready: Any, expected: int
) -> dict[str, Any]:
    """Subscribers, each on its own node first; returns delivery delays of the paced messages."""
    delays: list[float] = []
    clients = []
    for i, name in enumerate(users):
        k = (first_node + i) % len(endpoints)
        client = ChatClient(endpoints[k:] + endpoints[:k], use_outbox=False)
        await client.__aenter__()
        await client.login(name, PASSWORD)
        clients.append(client)
    got = 0

    async def watch(client: ChatClient) -> None:
        nonlocal got
        async with client.subscribe() as stream:
            async for item in stream:
                if isinstance(item, api.Event) and item.body.startswith("paced "):
                    sent_ns = int(item.body.split()[2])
                    delays.append((time.time_ns() - sent_ns) / 1e9)
                    got += 1

    tasks = [asyncio.create_task(watch(c)) for c in clients]
    await asyncio.sleep(2.0)  # streams open (the paced sender starts after every worker said ready)
    ready.set()
    deadline = time.monotonic() + duration + 10
    while got < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(TimeoutError):  # the measurement is taken: cleanup may not hold it hostage
        async with asyncio.timeout(15):
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.__aexit__(None, None, None)
    return {"delays": list(delays)}


def subscriber_worker(
    endpoints: list[str], users: list[str], first_node: int, duration: float, ready: Any, expected: int
) -> dict[str, Any]:
    """Process entry point of a group of subscribers."""
    return asyncio.run(_subscribers(endpoints, users, first_node, duration, ready, expected))


async def _paced(endpoints: list[str], name: str, rooms: list[str], rate: float, duration: float) -> dict[str, Any]:
    """An open-loop sender at ``rate`` messages/s over ``rooms`` (each send in its own task)."""
    async with ChatClient(endpoints, use_outbox=False) as client:
        await client.login(name, PASSWORD)
        tasks = []
        start = time.monotonic()
        n = int(rate * duration)
        for k in range(n):
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            room = rooms[k % len(rooms)]
            tasks.append(asyncio.create_task(client.send(room, f"paced {k} {time.time_ns()}")))
        results = await asyncio.gather(*tasks, return_exceptions=True)
    return {"sent": n, "errors": sum(isinstance(r, BaseException) for r in results)}


def paced_worker(endpoints: list[str], name: str, rooms: list[str], rate: float, duration: float) -> dict[str, Any]:
    """Process entry point of the paced sender."""
    return asyncio.run(_paced(endpoints, name, rooms, rate, duration))


# -- setup and phases -------------------------------------------------------------------------------------------


async def setup(endpoints: list[str], senders: int, subscribers: int) -> dict[str, Any]:
    """Users and rooms: senders snd0.. and subscribers sub0.. (room i holds the users with index % ROOMS == i)."""
    names = [f"snd{i}" for i in range(senders)] + [f"sub{i}" for i in range(subscribers)] + ["pacer"]
    async with ChatClient(endpoints, use_outbox=False) as admin:
        sem = asyncio.Semaphore(16)

        async def register(name: str) -> None:
            async with sem:
                await admin.register(name, PASSWORD)

        await asyncio.gather(*(register(n) for n in names))
        await admin.login("pacer", PASSWORD)
        rooms = []
        for r in range(ROOMS):
            members = [n for n in names[:-1] if int(n[3:]) % ROOMS == r]
            room = await admin.create_room(f"bench-{r}", members=members[:100])
            rooms.append(room.id)
    return {"rooms": rooms}


def send_phase(ctx: Any, endpoints: list[str], rooms: list[str], senders: int, procs: int, duration: float) -> dict:
    """Closed-loop senders in ``procs`` processes for ``duration`` s: throughput and send latency."""
    users = [(f"snd{i}", rooms[i % ROOMS]) for i in range(senders)]
    groups = [users[p::procs] for p in range(procs)]
    with ctx.Pool(procs) as pool:
        results = pool.starmap(sender_worker, [(endpoints, g, duration) for g in groups])
    latencies = [x for r in results for x in r["latencies"]]
    elapsed = max(r["elapsed"] for r in results)
    return {
        "sent": len(latencies),
        "errors": sum(r["errors"] for r in results),
        "per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
    }


def delivery_phase(
    ctx: Any, endpoints: list[str], rooms: list[str], subscribers: int, procs: int, rate: float, duration: float
) -> dict:
    """Subscribers in ``procs`` processes, one paced sender: delivery delay (send to receipt) of each event."""
    manager = ctx.Manager()
    events = [manager.Event() for _ in range(procs)]
    names = [f"sub{i}" for i in range(subscribers)]
    groups = [names[p::procs] for p in range(procs)]
    with ctx.Pool(procs + 1) as pool:
        subs = []
        for p, g in enumerate(groups):
            expected = int(rate * duration * len(g) / ROOMS)  # each subscriber is in one of the ROOMS rooms
            subs.append(pool.apply_async(subscriber_worker, (endpoints, g, p, duration, events[p], expected)))
        for e in events:
            e.wait(60)
        sender = pool.apply_async(paced_worker, (endpoints, "pacer", rooms, rate, duration))
        sent = sender.get(duration + 120)
        delays = [x for s in subs for x in s.get(duration + 120)["delays"]]
    return {
        "offered_per_s": rate,
        "sent": sent["sent"],
        "send_errors": sent["errors"],
        "deliveries": len(delays),
        "p50_ms": pct(delays, 0.5) * 1e3,
        "p99_ms": pct(delays, 0.99) * 1e3,
    }


def main() -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short run of each phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, help="seconds per run (default 8; 3 with --quick)")
    parser.add_argument("--procs", type=int, default=3, help="client processes per phase")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    duration = args.duration or (3.0 if args.quick else 8.0)
    ctx = mp.get_context("spawn")

    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        cluster = LocalCluster(
            Path(tmp) / "cluster",
            nodes=args.nodes,
            base_client_port=0,
            base_peer_port=0,
            settings={"rate_limit_per_s": 100000.0, "rate_limit_burst": 100000, "password_hash_time_cost": 1,
                      "password_hash_memory_kib": 1024, "log_level": "WARNING"},
        )  # fmt: skip
        cluster.start()
        try:
            cluster.wait_ready(60)
            endpoints = cluster.client_endpoints()
            leader = cluster.leader_id(30)
            endpoints = [cluster.client_endpoint(leader)] + [
                e for e in endpoints if e != cluster.client_endpoint(leader)
            ]
            info = asyncio.run(setup(endpoints, args.senders, args.subscribers))
            rooms = info["rooms"]
            rss_before = {n: rss_kib(cluster.pid(n) or 0) for n in cluster.node_ids}
            sends = []
            for run in range(runs):
                result = send_phase(ctx, endpoints, rooms, args.senders, args.procs, duration)
                sends.append(result)
                line = f"send run {run + 1}: {result['per_s']:,.0f} msg/s  p50 {result['p50_ms']:.1f} ms  "
                print(line + f"p99 {result['p99_ms']:.1f} ms  ({result['sent']} sent, {result['errors']} errors)")
            history = sum(r["sent"] for r in sends)
            rss_mid = {n: rss_kib(cluster.pid(n) or 0) for n in cluster.node_ids}
            deliveries = []
            for run in range(runs):
                result = delivery_phase(ctx, endpoints, rooms, args.subscribers, args.procs, args.rate, duration)
                deliveries.append(result)
                print(f"delivery run {run + 1}: {result['deliveries']} deliveries of {result['sent']} messages  "
                      f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms", flush=True)  # fmt: skip
            extra = send_phase(ctx, endpoints, rooms, args.senders, args.procs, duration * 2)
            history_end = history + extra["sent"] + sum(d["sent"] for d in deliveries)
            rss_end = {n: rss_kib(cluster.pid(n) or 0) for n in cluster.node_ids}
        finally:
            cluster.stop()

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {
        "nodes": args.nodes,
        "runs": runs,
        "send": {k: med(sends, k) for k in ("per_s", "p50_ms", "p99_ms")},
        "delivery": {k: med(deliveries, k) for k in ("p50_ms", "p99_ms", "deliveries")},
        "rss_kib": {
            "after_setup": statistics.median(rss_before.values()),
            f"after_{history}_messages": statistics.median(rss_mid.values()),
            f"after_{history_end}_messages": statistics.median(rss_end.values()),
        },
        "raw": {"send": sends, "delivery": deliveries},
    }
    s, d, r = summary["send"], summary["delivery"], summary["rss_kib"]
    print()
    print(f"{args.nodes} nodes, fsync on, medians of {runs} run(s):")
    line = f"  send, {args.senders} senders:   {s['per_s']:,.0f} msg/s   p50 {s['p50_ms']:.1f} ms"
    print(line + f"   p99 {s['p99_ms']:.1f} ms   (target >= 2,000/s, p99 < 100 ms)")
    print(f"  delivery, {args.subscribers} subscribers at {args.rate:.0f}/s:   p50 {d['p50_ms']:.1f} ms   "
          f"p99 {d['p99_ms']:.1f} ms   (target p99 < 150 ms)")  # fmt: skip
    print("  node RSS (median of nodes): " + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in r.items()))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
