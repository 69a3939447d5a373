"""End-to-end chat benchmarks on a real local cluster (fsync on): send throughput, delivery latency, node memory.

Every run starts a fresh ``LocalCluster`` (5 nodes on 127.0.0.1 by default, ``unsafe_skip_fsync`` never set,
per-user rate limits raised for the benchmark, cheap password hashing so that setting up 265 accounts is quick)
and measures, through the Qt-free client library (``ChatClient(use_outbox=False)``), with every client in a
load-generating process of its own (``bench_chat.py --worker ...``; the parent only coordinates and reads
``/proc``):

1. **Send**: ``--senders`` closed-loop senders (64; each its own user, in one of 10 rooms) over ``--procs``
   processes for ``--duration`` seconds: acknowledged messages per second and the p50/p99 latency of
   ``ChatClient.send`` (call to acknowledgement, the library's retries included). Senders learn the leader
   from ``cluster_status`` the way the desktop app does (``--forward``: they stay on followers, which forward).
2. **Delivery**: ``--subscribers`` subscribers (200, 20 in each of the 10 rooms, spread evenly over every node)
   on ``ChatClient.subscribe()``, and one open-loop sender pacing ``--rate`` messages/s (200) over the rooms
   for ``--duration`` seconds. Each body carries ``time.time_ns()`` taken just before the send call; delivery
   latency is receipt minus that stamp (one clock: every process is on this machine), over every (message,
   subscriber) pair; the latency from the sender's acknowledgement to receipt, the issue's measure ("send
   acknowledged to received") and the one the target is checked on, is reported beside it.
3. **Memory**: more closed-loop sends until the history holds ``--history`` messages (20,000 then 60,000,
   each step bounded by ``--fill-timeout`` seconds); each node's VmRSS and peak VmHWM (``/proc/PID/status``)
   after setup and at each checkpoint, its data directory's size, the RSS ratio between the checkpoints and
   how much of a proportional growth showed (history lives in SQLite and snapshots, so RSS must not grow in
   proportion: 3x the history should be far from 3x the RSS above the baseline).

Beside the figures, each phase records where the CPU went (the leader's and followers' CPU, the client
processes', the rest of the machine from ``/proc/stat``) and the leader's own metrics (fsyncs, proposal and
RPC times, from its ``/metrics``), so a missed target can be explained. ``--profile DIR`` runs every node under
cProfile timed by the main thread's CPU (no server change: the node command is wrapped) and prints where the
leader's event loop spends its CPU (much slower, and deep pure-Python call trees are overcharged: for
diagnosis only, never for figures; ``--phases send`` narrows it to one phase plus setup).

Prints each run as it ends, then medians [min..max] over ``--runs`` runs (3) in a table, and writes every
figure to ``--json``. Exits non-zero only on errors (a failed send, a lost delivery, a worker or node that
failed), never on a missed target. Every wait is bounded; every process is stopped by its PID (the nodes by
``LocalCluster``); everything listens on loopback. ``--quick``: one short run with a small history, as a smoke
test of a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PASSWORD = "bench-password-1"
ROOMS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 120.0
"""Seconds a worker may take to log in its users (and open its streams) before it is given up."""
DRAIN_S = 15.0
"""Seconds subscribers get, after the paced sender is done, to receive everything."""
CALL_TIMEOUT_S = 10.0
"""The client library's overall deadline of one call, retries included."""
SETTLE_S = 3.0
"""Seconds between the subscribers being connected and the paced sender starting."""
MAX_IN_FLIGHT = 2000
"""Most paced sends waiting for their answers; the open loop skips (and counts) sends beyond it."""
SETTINGS: dict[str, Any] = {
    # The benchmark's senders are far above a person's rate: lift the per-user limits.
    "rate_limit_per_s": 1_000_000.0,
    "rate_limit_burst": 1_000_000,
    # Setting up hundreds of accounts should not measure Argon2: the cheapest valid cost.
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 1024,
    "log_level": "WARNING",
}


# -- small helpers ------------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank); NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max of ``values`` (NaN when empty)."""
    xs = [v for v in values if v == v]
    if not xs:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def proc_status_kib(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` value in KiB (``VmRSS``, ``VmHWM``...); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` (all threads) so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of process ``pid`` by thread name (threads of one name summed)."""
    out: dict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[name] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return dict(out)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK, sum(values[:8]) / CLK_TCK


def scrape(endpoint: str | None) -> dict[str, float]:
    """A node's ``/metrics`` as ``{"name{labels}": value}``; empty when metrics are off or unreachable."""
    if endpoint is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=2.0) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    """How much metric ``key`` grew between two scrapes."""
    return after.get(key, 0.0) - before.get(key, 0.0)


# -- worker processes (each a `bench_chat.py --worker KIND CONFIG` subprocess) ------------------------------


class Control:
    """The worker's side of the protocol: ``ready``/``complete``/``done`` lines out, ``go``/``stop`` lines in."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def read() -> None:
            for line in sys.stdin:
                word = line.strip()
                if word == "go":
                    loop.call_soon_threadsafe(self.go.set)
                elif word == "stop":
                    loop.call_soon_threadsafe(self.stop.set)
            loop.call_soon_threadsafe(self.stop.set)  # the parent went away: stop too
            loop.call_soon_threadsafe(self.go.set)

        threading.Thread(target=read, daemon=True).start()

    @staticmethod
    def say(word: str) -> None:
        """Tell the parent ``word``."""
        print(word, flush=True)


def rotated(endpoints: list[str], first: int) -> list[str]:
    """``endpoints`` starting at index ``first`` (the node a connection uses first)."""
    k = first % len(endpoints)
    return endpoints[k:] + endpoints[:k]


async def login_all(clients: list[Any], names: list[str]) -> None:
    """Log each client in as its user, 8 at a time."""
    slots = asyncio.Semaphore(8)

    async def one(client: Any, name: str) -> None:
        async with slots:
            await client.login(name, PASSWORD)

    await asyncio.gather(*(one(c, n) for c, n in zip(clients, names, strict=True)))


def settle_heap() -> None:
    """Keep what set-up made (clients, channels, generated types) out of the cyclic GC (``gc.freeze``).

    A long-running app does the same after start-up (the desktop app does); full collections over it
    stalled a worker for 60-200 ms.
    """
    gc.collect()
    gc.freeze()


async def send_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop senders sharing one connection: until ``duration`` s pass or ``count`` sends were made."""
    from chat_client_qt.client import ChatClient, Connection

    control = Control()
    conn = Connection(rotated(config["endpoints"], config["first_node"]), timeout=CALL_TIMEOUT_S)
    users: list[list[str]] = config["users"]  # [name, room]
    clients = [ChatClient([], connection=conn, use_outbox=False, timeout=CALL_TIMEOUT_S) for _ in users]
    await login_all(clients, [name for name, _ in users])
    if config["learn_leader"]:
        await clients[0].cluster_status(timeout=5.0)  # as the app does: writes then go to the leader
    settle_heap()
    control.say("ready")
    await control.go.wait()
    latencies: list[float] = []
    errors: dict[str, int] = defaultdict(int)
    left = config["count"] or -1
    cpu0, start = time.process_time(), time.time()
    deadline = time.monotonic() + config["duration"]

    async def sender(client: Any, room: str) -> None:
        nonlocal left
        k = 0
        while time.monotonic() < deadline and left != 0 and not control.stop.is_set():
            left -= 1
            t0 = time.perf_counter()
            try:
                await client.send(room, f"load {k} {time.time_ns()}")
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:
                errors[type(exc).__name__] += 1
            k += 1

    await asyncio.gather(*(sender(c, room) for c, (_, room) in zip(clients, users, strict=True)))
    end, cpu = time.time(), time.process_time() - cpu0
    control.say("finished")
    await conn.close()
    return {"latencies": latencies, "errors": dict(errors), "start": start, "end": end, "cpu_s": cpu}


async def subscribe_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Subscribers (each on its own node first, connections shared per node) recording paced events."""
    from chat_client_qt.client import ChatClient, Connection, StreamStatus, api

    control = Control()
    endpoints: list[str] = config["endpoints"]
    subs: list[list[Any]] = config["subscribers"]  # [index, name, room, node]
    conns = {node: Connection(rotated(endpoints, node), timeout=CALL_TIMEOUT_S) for node in {s[3] for s in subs}}
    clients = [ChatClient([], connection=conns[s[3]], use_outbox=False, timeout=CALL_TIMEOUT_S) for s in subs]
    await login_all(clients, [s[1] for s in subs])
    expected: dict[str, int] = config["expected_per_room"]
    deliveries: list[list[int]] = []  # [subscriber index, k, delay from the body's stamp in us, receipt ns]
    got = [0] * len(subs)
    complete = [False] * len(subs)
    connected = [asyncio.Event() for _ in subs]
    reconnects = 0
    all_complete = asyncio.Event()

    async def watch(i: int) -> None:
        nonlocal reconnects
        index, _, room, _ = subs[i]
        async with clients[i].subscribe(include_status=True) as stream:
            async for item in stream:
                if isinstance(item, api.Event):
                    if item.body.startswith("p "):
                        now = time.time_ns()
                        _, k, stamp = item.body.split()
                        deliveries.append([index, int(k), (now - int(stamp)) // 1000, now])
                        got[i] += 1
                        if got[i] >= expected[room] and not complete[i]:
                            complete[i] = True
                            if all(complete):
                                all_complete.set()
                elif isinstance(item, StreamStatus) and item.connected:
                    if connected[i].is_set():
                        reconnects += 1
                    connected[i].set()

    tasks = [asyncio.create_task(watch(i)) for i in range(len(subs))]
    async with asyncio.timeout(READY_TIMEOUT_S):
        await asyncio.gather(*(e.wait() for e in connected))
    settle_heap()
    control.say("ready")
    cpu0 = time.process_time()
    await control.go.wait()
    waits = [asyncio.create_task(all_complete.wait()), asyncio.create_task(control.stop.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if all_complete.is_set():
        control.say("complete")
        await control.stop.wait()
    cpu = time.process_time() - cpu0
    for task in [*tasks, *waits]:
        task.cancel()
    with contextlib.suppress(TimeoutError):  # the figures are taken: closing may not hold them hostage
        async with asyncio.timeout(10):
            await asyncio.gather(*tasks, *waits, return_exceptions=True)
            for conn in conns.values():
                await conn.close()
    return {"deliveries": deliveries, "reconnects": reconnects, "cpu_s": cpu}


async def pace_worker(config: dict[str, Any]) -> dict[str, Any]:
    """One sender pacing ``rate`` messages/s over the rooms, open loop (each send its own task)."""
    from chat_client_qt.client import ChatClient

    control = Control()
    rooms: list[str] = config["rooms"]
    rate: float = config["rate"]
    n = int(rate * config["duration"])
    async with ChatClient(config["endpoints"], use_outbox=False, timeout=CALL_TIMEOUT_S) as client:
        await client.login(config["user"], PASSWORD)
        await client.cluster_status(timeout=5.0)
        settle_heap()
        control.say("ready")
        await control.go.wait()
        acks: dict[int, list[int]] = {}  # k: [stamp ns, acknowledgement ns]
        errors: dict[str, int] = defaultdict(int)
        pending: set[asyncio.Task[None]] = set()
        skipped = late = 0

        async def one(k: int) -> None:
            stamp = time.time_ns()
            try:
                await client.send(rooms[k % len(rooms)], f"p {k} {stamp}")
                acks[k] = [stamp, time.time_ns()]
            except Exception as exc:
                errors[type(exc).__name__] += 1

        cpu0, start = time.process_time(), time.monotonic()
        for k in range(n):
            wait = start + k / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.01:
                late += 1  # this process could not keep the pace (CPU starved): counted, not hidden
            if len(pending) >= MAX_IN_FLIGHT:
                skipped += 1
                continue
            task = asyncio.create_task(one(k))
            pending.add(task)
            task.add_done_callback(pending.discard)
        async with asyncio.timeout(CALL_TIMEOUT_S + 5):
            await asyncio.gather(*pending, return_exceptions=True)
        cpu = time.process_time() - cpu0
    return {"planned": n, "acks": acks, "errors": dict(errors), "skipped": skipped, "late": late, "cpu_s": cpu}


WORKERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "send": send_worker,
    "subscribe": subscribe_worker,
    "pace": pace_worker,
}


def worker_main(kind: str, config_path: str) -> None:
    """Run one worker: its result goes to the file named in its config, then ``done`` is printed."""
    config = json.loads(Path(config_path).read_text())
    result = asyncio.run(WORKERS[kind](config))
    Path(config["result"]).write_text(json.dumps(result))
    print("done", flush=True)


# -- the parent's side of a worker ----------------------------------------------------------------------------


class Worker:
    """A worker subprocess: its stdout lines are collected by a thread; commands go to its stdin."""

    def __init__(self, kind: str, config: dict[str, Any], workdir: Path, name: str) -> None:
        self.name = name
        self.result_path = workdir / f"{name}.result.json"
        self.result_path.unlink(missing_ok=True)
        config_path = workdir / f"{name}.config.json"
        config_path.write_text(json.dumps({**config, "result": str(self.result_path)}))
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def has(self, word: str) -> bool:
        """Whether the worker printed the line ``word``."""
        with self._changed:
            return word in self.lines

    def wait_for(self, word: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the line ``word``; False on timeout; raises if the worker died first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while word not in self.lines:
                if not self._reader.is_alive():
                    raise RuntimeError(f"worker {self.name} ended before {word!r}:\n" + "\n".join(self.lines[-30:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def tell(self, word: str) -> None:
        """Send ``word`` to the worker's stdin (ignored if it has exited)."""
        assert self.popen.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            self.popen.stdin.write(word + "\n")
            self.popen.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        """The worker's result once it has printed ``done`` (within ``timeout`` s); then it is reaped."""
        if not self.wait_for("done", timeout):
            raise RuntimeError(f"worker {self.name} gave no result in {timeout:.0f}s:\n" + "\n".join(self.lines[-30:]))
        self.popen.wait(30)
        result: dict[str, Any] = json.loads(self.result_path.read_text())
        return result

    def kill(self) -> None:
        """Stop the worker by its PID if it still runs (SIGTERM, then SIGKILL)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@contextlib.contextmanager
def workers_stopped(workers: list[Worker]) -> Any:
    """Make sure every worker in ``workers`` (also ones appended later) is stopped at the end."""
    try:
        yield workers
    finally:
        for w in workers:
            w.kill()


def ready_all(workers: list[Worker]) -> None:
    """Wait until every worker is ready (logged in, streams open)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for w in workers:
        if not w.wait_for("ready", max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"worker {w.name} not ready in {READY_TIMEOUT_S:.0f}s:\n" + "\n".join(w.lines[-30:]))


# -- the cluster and what is watched on it -------------------------------------------------------------------


def make_cluster(directory: Path, nodes: int, profile_dir: Path | None) -> Any:
    """A ``LocalCluster`` with free ports, metrics on, fsync on; under cProfile when ``profile_dir`` is given."""
    from chat_server.cluster import LocalCluster

    class BenchCluster(LocalCluster):
        def command(self, node_id: int) -> list[str]:
            argv = super().command(node_id)
            if profile_dir is None:
                return argv
            out = profile_dir / f"node-{node_id}.prof"
            return [argv[0], str(Path(__file__).absolute()), "--profiled-node", str(out), *argv[1:]]

    return BenchCluster(
        directory,
        nodes=nodes,
        base_client_port=0,
        base_peer_port=0,
        base_metrics_port=0,
        settings=SETTINGS,
        unsafe_skip_fsync=False,
    )


@dataclass
class Sample:
    """The nodes' CPU, the leader's threads and metrics, and the machine's CPU at one moment."""

    node_cpu: dict[int, float]
    leader_threads: dict[str, float]
    metrics: dict[str, float]
    machine: tuple[float, float]
    wall: float

    @classmethod
    def take(cls, cluster: Any, leader: int) -> Sample:
        """Read everything now."""
        return cls(
            node_cpu={n: cpu_seconds(cluster.pid(n) or 0) for n in cluster.node_ids},
            leader_threads=thread_cpu(cluster.pid(leader) or 0),
            metrics=scrape(cluster.metrics_endpoint(leader)),
            machine=machine_cpu(),
            wall=time.monotonic(),
        )


@dataclass
class Watch:
    """What the nodes and the machine used over a phase's measured window: ``start``, ``finish``, ``report``."""

    cluster: Any
    leader: int
    first: Sample | None = None
    last: Sample | None = None
    leader_after: int = 0

    def start(self) -> Watch:
        """Open the window (just before the load starts)."""
        self.first = Sample.take(self.cluster, self.leader)
        return self

    def finish(self) -> None:
        """Close the window (as soon as the load is over, before the clients shut down)."""
        self.last = Sample.take(self.cluster, self.leader)
        with contextlib.suppress(Exception):
            self.leader_after = self.cluster.leader_id(5)

    def report(self, clients_cpu_s: float, messages: int) -> dict[str, Any]:
        """Cores used (CPU s / wall s) by the leader, followers, clients and the rest, and the leader's metrics."""
        if self.first is None:
            raise RuntimeError("Watch.report before start")
        if self.last is None:
            self.finish()
        a, b = self.first, self.last
        assert b is not None
        wall = max(1e-9, b.wall - a.wall)
        node_cpu = {n: b.node_cpu.get(n, 0.0) - c for n, c in a.node_cpu.items()}
        threads = {k: v - a.leader_threads.get(k, 0.0) for k, v in b.leader_threads.items()}
        ncpu = os.cpu_count() or 1
        machine_cores = (b.machine[0] - a.machine[0]) / max(1e-9, b.machine[1] - a.machine[1]) * ncpu
        m0, m1 = a.metrics, b.metrics
        fsyncs = delta(m1, m0, "chat_fsync_duration_seconds_count")
        send_key = 'chat_proposal_duration_seconds_{}{{op="send"}}'
        rpc_key = 'chat_rpc_duration_seconds_{}{{code="OK",method="SendMessage"}}'
        proposals = delta(m1, m0, send_key.format("count"))
        rpcs = delta(m1, m0, rpc_key.format("count"))
        followers = [c / wall for n, c in node_cpu.items() if n != self.leader]
        nodes_cores = sum(node_cpu.values()) / wall
        clients_cores = clients_cpu_s / wall
        nan = float("nan")
        return {
            "wall_s": wall,
            "leader": self.leader,
            "leader_after": self.leader_after,
            "leader_cores": node_cpu[self.leader] / wall,
            "follower_cores_mean": statistics.fmean(followers) if followers else 0.0,
            "nodes_cores": nodes_cores,
            "clients_cores": clients_cores,
            "machine_cores": machine_cores,
            "other_cores": max(0.0, machine_cores - nodes_cores - clients_cores),
            "leader_threads_cores": {
                k: v / wall for k, v in sorted(threads.items(), key=lambda kv: -kv[1])[:6] if v > 0
            },
            "fsyncs_per_s": fsyncs / wall,
            "fsync_mean_ms": delta(m1, m0, "chat_fsync_duration_seconds_sum") / fsyncs * 1e3 if fsyncs else nan,
            "messages_per_fsync": messages / fsyncs if fsyncs else nan,
            "leader_proposal_mean_ms": delta(m1, m0, send_key.format("sum")) / proposals * 1e3 if proposals else nan,
            "leader_send_rpc_mean_ms": delta(m1, m0, rpc_key.format("sum")) / rpcs * 1e3 if rpcs else nan,
            "leader_send_rpcs": rpcs,
        }


# -- setup and phases ------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Who is who: users, rooms, and which subscriber watches from which node."""

    endpoints: list[str]
    rooms: list[str]
    senders: list[list[str]]  # [name, room]
    subscribers: list[list[Any]]  # [index, name, room, node]


async def setup(endpoints: list[str], senders: int, subscribers: int) -> Plan:
    """Register the users and make 10 rooms: sender i and subscriber i are in room i % 10; ``pacer`` in all."""
    from chat_client_qt.client import ChatClient

    snd = [f"snd{i}" for i in range(senders)]
    sub = [f"sub{i}" for i in range(subscribers)]
    async with ChatClient(endpoints, use_outbox=False, timeout=30.0) as admin:
        slots = asyncio.Semaphore(16)

        async def register(name: str) -> None:
            async with slots:
                await admin.register(name, PASSWORD)

        await asyncio.gather(*(register(n) for n in [*snd, *sub, "pacer"]))
        await admin.login("pacer", PASSWORD)
        rooms = []
        for r in range(ROOMS):
            members = [n for i, n in enumerate(snd) if i % ROOMS == r] + [
                n for i, n in enumerate(sub) if i % ROOMS == r
            ]
            room = await admin.create_room(f"bench-{r}", members=members[:100])
            for k in range(100, len(members), 100):
                await admin.invite(room.id, members[k : k + 100])
            rooms.append(room.id)
    n = len(endpoints)
    return Plan(
        endpoints=endpoints,
        rooms=rooms,
        senders=[[name, rooms[i % ROOMS]] for i, name in enumerate(snd)],
        # subscriber i watches from node (i // ROOMS) % n: each room's 20 are spread evenly over the nodes
        subscribers=[[i, name, rooms[i % ROOMS], (i // ROOMS) % n] for i, name in enumerate(sub)],
    )


def run_senders(
    plan: Plan, workdir: Path, procs: int, duration: float, count: int, learn_leader: bool, tag: str, watch: Watch
) -> dict[str, Any]:
    """Closed-loop senders in ``procs`` processes; merged latencies, counts, timing and ``watch``'s report.

    The watch's window runs from the moment every worker is logged in and told to go until every one has
    stopped sending (before they close their connections).
    """
    procs = max(1, min(procs, len(plan.senders)))
    groups = [plan.senders[p::procs] for p in range(procs)]
    counts = [count // procs + (1 if p < count % procs else 0) for p in range(procs)] if count else [0] * procs
    with workers_stopped([]) as workers:
        for p, group in enumerate(groups):
            config = {
                "endpoints": plan.endpoints,
                "users": group,
                "first_node": p,
                "duration": duration,
                "count": counts[p],
                "learn_leader": learn_leader,
            }
            workers.append(Worker("send", config, workdir, f"{tag}-send{p}"))
        ready_all(workers)
        watch.start()
        for w in workers:
            w.tell("go")
        deadline = time.monotonic() + duration + 2 * CALL_TIMEOUT_S + 30
        for w in workers:
            w.wait_for("finished", max(0.0, deadline - time.monotonic()))
        watch.finish()
        results = [w.result(max(30.0, deadline - time.monotonic())) for w in workers]
    latencies = [x for r in results for x in r["latencies"]]
    errors: dict[str, int] = defaultdict(int)
    for r in results:
        for name, n in r["errors"].items():
            errors[name] += n
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "cpu": watch.report(sum(r["cpu_s"] for r in results), len(latencies)),
        "sent": len(latencies),
        "errors": dict(errors),
        "elapsed_s": elapsed,
        "per_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
    }


def send_phase(cluster: Any, leader: int, plan: Plan, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Phase 1: throughput and send latency of the closed-loop senders."""
    watch = Watch(cluster, leader)
    return run_senders(plan, workdir, args.procs, args.duration, 0, not args.forward, "phase1", watch)


def delivery_phase(cluster: Any, leader: int, plan: Plan, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Phase 2: subscribers on every node, one paced open-loop sender; delivery latency of each pair."""
    n = int(args.rate * args.duration)
    per_room = {room: len(range(r, n, ROOMS)) for r, room in enumerate(plan.rooms)}
    procs = max(1, min(args.procs, len(plan.subscribers)))
    with workers_stopped([]) as workers:
        for p in range(procs):
            config = {
                "endpoints": plan.endpoints,
                "subscribers": plan.subscribers[p::procs],
                "expected_per_room": per_room,
            }
            workers.append(Worker("subscribe", config, workdir, f"phase2-sub{p}"))
        pacer = Worker(
            "pace",
            {
                "endpoints": plan.endpoints,
                "user": "pacer",
                "rooms": plan.rooms,
                "rate": args.rate,
                "duration": args.duration,
            },
            workdir,
            "phase2-pace",
        )
        workers.append(pacer)
        ready_all(workers)
        time.sleep(SETTLE_S)  # each new stream made its user present: let that burst of commits pass
        watch = Watch(cluster, leader).start()
        for w in workers:
            w.tell("go")
        paced = pacer.result(args.duration + 2 * CALL_TIMEOUT_S + 30)
        subscribers = [w for w in workers if w is not pacer]
        deadline = time.monotonic() + DRAIN_S
        for w in subscribers:
            w.wait_for("complete", max(0.0, deadline - time.monotonic()))
        watch.finish()
        for w in subscribers:
            w.tell("stop")
        results = [w.result(60) for w in subscribers]
    acks = {int(k): v for k, v in paced["acks"].items()}
    subs_per_room: dict[str, int] = defaultdict(int)
    for s in plan.subscribers:
        subs_per_room[s[2]] += 1
    expected = sum(subs_per_room[plan.rooms[k % ROOMS]] for k in acks)
    seen: set[tuple[int, int]] = set()
    from_send: list[float] = []
    from_ack: list[float] = []
    duplicates = 0
    for r in results:
        for index, k, delay_us, recv_ns in r["deliveries"]:
            if (index, k) in seen:
                duplicates += 1
                continue
            seen.add((index, k))
            from_send.append(delay_us / 1e3)
            if k in acks:
                from_ack.append((recv_ns - acks[k][1]) / 1e6)
    send_latencies = [(ack - stamp) / 1e6 for stamp, ack in acks.values()]
    clients_cpu = paced["cpu_s"] + sum(r["cpu_s"] for r in results)
    return {
        "offered_per_s": args.rate,
        "planned": paced["planned"],
        "acked": len(acks),
        "send_errors": paced["errors"],
        "skipped": paced["skipped"],
        "late_sends": paced["late"],
        "paced_send_p50_ms": pct(send_latencies, 0.5),
        "paced_send_p99_ms": pct(send_latencies, 0.99),
        "expected": expected,
        "delivered": len(seen),
        "lost": max(0, expected - len([1 for (_, k) in seen if k in acks])),
        "duplicates": duplicates,
        "reconnects": sum(r["reconnects"] for r in results),
        "p50_ms": pct(from_send, 0.5),
        "p99_ms": pct(from_send, 0.99),
        "max_ms": max(from_send, default=float("nan")),
        "from_ack_p50_ms": pct(from_ack, 0.5),
        "from_ack_p99_ms": pct(from_ack, 0.99),
        "cpu": watch.report(clients_cpu, len(acks)),
    }


def dir_kib(path: Path) -> int:
    """The size of the files under ``path`` in KiB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1024


def node_memory(cluster: Any) -> dict[str, dict[int, int]]:
    """Every node's VmRSS and VmHWM (peak) and the size of its data directory (SQLite, Raft log, snapshots), KiB."""
    pids = {n: cluster.pid(n) or 0 for n in cluster.node_ids}
    out = {key: {n: proc_status_kib(pid, key) for n, pid in pids.items()} for key in ("VmRSS", "VmHWM")}
    out["disk"] = {n: dir_kib(cluster.node_dir(n) / "data") for n in cluster.node_ids}
    out["chat_db"] = {
        n: sum(f.stat().st_size for f in (cluster.node_dir(n) / "data").glob("chat.db*")) // 1024
        for n in cluster.node_ids
    }
    return out


def memory_phase(
    cluster: Any, leader: int, plan: Plan, workdir: Path, args: argparse.Namespace, history: int, base: dict[int, int]
) -> dict[str, Any]:
    """Phase 3: send until the history reaches each checkpoint; the nodes' memory at each.

    Besides the ratio of RSS between the first and last checkpoints, ``proportional_share`` says how much of
    the growth that proportional memory would show did show: RSS above the after-setup ``base`` scaled with the
    history would grow by ``(RSS1 - base) * (N2 / N1 - 1)``; 0 is flat, 1 is proportional.
    """
    points = []
    for target in args.history:
        need = max(0, target - history)
        fill: dict[str, Any] = {"sent": 0, "per_s": float("nan"), "errors": {}}
        if need:
            watch = Watch(cluster, leader)
            tag = f"fill{target}"
            fill = run_senders(plan, workdir, args.procs, args.fill_timeout, need, not args.forward, tag, watch)
        history += fill["sent"]
        time.sleep(1.0)  # let the last applies and any snapshot settle
        memory = node_memory(cluster)
        points.append({"target": target, "history": history, "fill": fill, **memory})
        how = f"filled at {fill['per_s']:,.0f} msg/s" if need else "written by the earlier phases"
        print(
            f"    history {history:>7,} messages ({how}): node RSS "
            + " ".join(f"{kib / 1024:.0f}" for kib in memory["VmRSS"].values())
            + " MiB; data on disk "
            + " ".join(f"{kib / 1024:.0f}" for kib in memory["disk"].values())
            + " MiB, of which chat.db "
            + " ".join(f"{kib / 1024:.0f}" for kib in memory["chat_db"].values())
            + " MiB",
            flush=True,
        )
    first, last = points[0], points[-1]
    ratios = {n: last["VmRSS"][n] / first["VmRSS"][n] for n in first["VmRSS"] if first["VmRSS"][n]}
    growth = {
        n: (last["VmRSS"][n] - first["VmRSS"][n]) / max(1, last["history"] - first["history"]) * 1024
        for n in first["VmRSS"]
    }
    scale = last["history"] / max(1, first["history"]) - 1
    share = {
        n: (last["VmRSS"][n] - first["VmRSS"][n]) / max(1.0, (first["VmRSS"][n] - base.get(n, 0)) * scale)
        for n in first["VmRSS"]
    }
    return {"points": points, "ratio": ratios, "growth_bytes_per_message": growth, "proportional_share": share}


# -- one run, all of it ----------------------------------------------------------------------------------------


def one_run(run: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """A fresh cluster, the setup, and the chosen phases; returns the run's figures."""
    directory = root / f"run{run}"
    workdir = directory / "workers"
    workdir.mkdir(parents=True)
    profile_dir = args.profile / f"run{run}" if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    cluster = make_cluster(directory / "cluster", args.nodes, profile_dir)
    out: dict[str, Any] = {"run": run}
    try:
        cluster.start()
        cluster.wait_ready(60)
        leader = cluster.leader_id(30)
        first = cluster.node_ids.index(leader)
        endpoints = rotated(cluster.client_endpoints(), first)  # setup writes go straight to the leader
        t0 = time.monotonic()
        plan = asyncio.run(setup(endpoints, args.senders, args.subscribers))
        plan.endpoints = cluster.client_endpoints()
        out["setup_s"] = time.monotonic() - t0
        out["leader"] = leader
        out["memory_after_setup"] = node_memory(cluster)
        out["leader_changes"] = []
        history = 0

        def follow_leader(phase: str, current: int) -> int:
            """The leader now; a change (an election during ``phase``: nodes starved of CPU) is recorded."""
            now = int(cluster.leader_id(30))
            if now != current:
                out["leader_changes"].append({"during": phase, "from": current, "to": now})
                print(f"  run {run}: leader changed from node {current} to node {now} during {phase}", flush=True)
            return now

        if "send" in args.phases:
            out["send"] = s = send_phase(cluster, leader, plan, workdir, args)
            history += s["sent"]
            print(
                f"  run {run} send: {s['per_s']:,.0f} msg/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms "
                f"({s['sent']:,} sent, errors {s['errors'] or 'none'}; leader {s['cpu']['leader_cores']:.2f} cores, "
                f"machine {s['cpu']['machine_cores']:.2f})",
                flush=True,
            )
            leader = follow_leader("send", leader)
        if "delivery" in args.phases:
            out["delivery"] = d = delivery_phase(cluster, leader, plan, workdir, args)
            history += d["acked"]
            print(
                f"  run {run} delivery: {d['delivered']:,}/{d['expected']:,} deliveries, p50 {d['p50_ms']:.1f} ms, "
                f"p99 {d['p99_ms']:.1f} ms (from ack: p99 {d['from_ack_p99_ms']:.1f} ms; {d['acked']}/"
                f"{d['planned']} sent, machine {d['cpu']['machine_cores']:.2f} cores)",
                flush=True,
            )
            leader = follow_leader("delivery", leader)
        if "memory" in args.phases:
            base = out["memory_after_setup"]["VmRSS"]
            out["memory"] = memory_phase(cluster, leader, plan, workdir, args, history, base)
            leader = follow_leader("memory", leader)
    finally:
        codes = cluster.stop()
        out["exit_codes"] = codes
    if profile_dir is not None:
        out["profile"] = profile_summary(profile_dir / f"node-{out.get('leader', 1)}.prof")  # the first leader
    return out


# -- profiles ----------------------------------------------------------------------------------------------


def owner_of(filename: str, name: str) -> str:
    """A coarse owner of a profiled function: its package, a stdlib module, or the C function itself."""
    if filename == "~":  # a C function: "<method 'execute' of 'sqlite3.Connection' objects>", "<built-in method x>"
        match = re.fullmatch(r"<method '(\w+)' of '([\w.]+)' objects>", name)
        if match:
            return f"C {match.group(2)}.{match.group(1)}"
        return "C " + name.removeprefix("<built-in method ").rstrip(">")
    parts = Path(filename).parts
    for marker in ("site-packages", "src"):
        if marker in parts:
            i = parts.index(marker)
            if i + 1 < len(parts):
                return parts[i + 1].removesuffix(".py")
    if "lib" in parts:
        i = len(parts) - 1 - parts[::-1].index("lib")
        if i + 2 < len(parts):
            return "stdlib " + parts[i + 2].removesuffix(".py")
    return Path(filename).name


def profile_summary(path: Path, top: int = 25) -> dict[str, Any]:
    """A node's cProfile (main-thread CPU): own time by owner, top functions, and this repo's costliest calls."""
    if not path.exists():
        return {"error": f"no profile at {path}"}
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_owner: dict[str, float] = defaultdict(float)
    rows = []
    ours = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        by_owner[owner_of(filename, name)] += tottime
        label = f"{Path(filename).name}:{line}({name})"
        rows.append((tottime, cumtime, calls, label))
        if "/packages/" in filename and "/_gen/" not in filename:
            ours.append((cumtime, tottime, calls, label))
    total = sum(by_owner.values()) or 1.0
    rows.sort(reverse=True)
    ours.sort(reverse=True)
    return {
        "total_s": total,
        "by_owner": {k: v for k, v in sorted(by_owner.items(), key=lambda kv: -kv[1])[:top]},
        "top_functions": [{"tottime_s": t, "cumtime_s": c, "calls": n, "function": f} for t, c, n, f in rows[:top]],
        "top_cumulative_in_repo": [
            {"cumtime_s": c, "tottime_s": t, "calls": n, "function": f} for c, t, n, f in ours[: top * 2]
        ],
    }


# -- the report --------------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 1) -> str:
    """A number for the table ("-" for NaN)."""
    return "-" if value != value else f"{value:,.{digits}f}"


def dig(run: dict[str, Any], path: Sequence[str | int]) -> Any:
    """The value at ``path`` (keys and list indexes) in a run's figures."""
    value: Any = run
    for key in path:
        value = value[key]
    return value


def summarize(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Median, min and max of each figure over the runs (for per-node figures: of the median or largest node)."""

    def over(*path: str | int, nodes: Callable[[Iterable[float]], float] | None = None, scale: float = 1.0) -> Any:
        values = []
        for r in runs:
            with contextlib.suppress(KeyError, IndexError):
                value = dig(r, path)
                values.append((nodes(value.values()) if nodes is not None else value) * scale)
        return spread(values)

    out: dict[str, Any] = {}
    if any("send" in r for r in runs):
        out["send"] = {k: over("send", k) for k in ("per_s", "p50_ms", "p99_ms", "max_ms", "sent")}
        out["send"].update({f"cpu.{k}": over("send", "cpu", k) for k in CPU_KEYS})
    if any("delivery" in r for r in runs):
        keys = (
            *("p50_ms", "p99_ms", "max_ms", "from_ack_p50_ms", "from_ack_p99_ms", "delivered", "expected", "lost"),
            *("paced_send_p50_ms", "paced_send_p99_ms", "late_sends"),
        )
        out["delivery"] = {k: over("delivery", k) for k in keys}
        out["delivery"].update({f"cpu.{k}": over("delivery", "cpu", k) for k in CPU_KEYS})
    if any("memory" in r for r in runs):
        mib = 1 / 1024
        mem: dict[str, Any] = {
            "after_setup_mib": over("memory_after_setup", "VmRSS", nodes=statistics.median, scale=mib)
        }
        for i, target in enumerate(args.history):
            point = ("memory", "points", i)
            mem[f"at_{target}"] = {
                "history": over(*point, "history"),
                "rss_mib_median_node": over(*point, "VmRSS", nodes=statistics.median, scale=mib),
                "rss_mib_max_node": over(*point, "VmRSS", nodes=max, scale=mib),
                "hwm_mib_max_node": over(*point, "VmHWM", nodes=max, scale=mib),
                "disk_mib_median_node": over(*point, "disk", nodes=statistics.median, scale=mib),
                "chat_db_mib_median_node": over(*point, "chat_db", nodes=statistics.median, scale=mib),
                "fill_per_s": over(*point, "fill", "per_s"),
            }
        mem["ratio_median_node"] = over("memory", "ratio", nodes=statistics.median)
        mem["ratio_max_node"] = over("memory", "ratio", nodes=max)
        mem["growth_bytes_per_message_max_node"] = over("memory", "growth_bytes_per_message", nodes=max)
        mem["proportional_share_median_node"] = over("memory", "proportional_share", nodes=statistics.median)
        mem["proportional_share_max_node"] = over("memory", "proportional_share", nodes=max)
        out["memory"] = mem
    return out


CPU_KEYS = (
    "leader_cores",
    "follower_cores_mean",
    "clients_cores",
    "other_cores",
    "machine_cores",
    "fsyncs_per_s",
    "fsync_mean_ms",
    "messages_per_fsync",
    "leader_proposal_mean_ms",
    "leader_send_rpc_mean_ms",
)


def print_report(summary: dict[str, Any], runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The table of medians [min..max], with the targets."""
    n = len(runs)
    print()
    print(f"chat end to end: {args.nodes} nodes on loopback, fsync on, medians [min..max] of {n} run(s)")
    rows: list[tuple[str, dict[str, float], int, str]] = []
    if "send" in summary:
        s = summary["send"]
        label = f"send, {args.senders} senders in {args.procs} procs"
        rows += [
            (f"{label}: msg/s", s["per_s"], 0, ">= 2,000" + check(s["per_s"]["median"] >= 2000)),
            ("  send latency p50 (ms)", s["p50_ms"], 1, ""),
            ("  send latency p99 (ms)", s["p99_ms"], 1, "< 100" + check(s["p99_ms"]["median"] < 100)),
        ]
    if "delivery" in summary:
        d = summary["delivery"]
        label = f"delivery, {args.subscribers} subs / {ROOMS} rooms / {args.nodes} nodes at {args.rate:.0f} msg/s"
        rows += [
            (label + ": deliveries", d["delivered"], 0, f"of {fmt(d['expected']['median'], 0)} expected"),
            ("  delivery p50, send to receipt (ms)", d["p50_ms"], 1, ""),
            ("  delivery p99, send to receipt (ms)", d["p99_ms"], 1, "(stricter than the target's measure)"),
            ("  delivery p50, ack to receipt (ms)", d["from_ack_p50_ms"], 1, ""),
            (
                "  delivery p99, ack to receipt (ms)",
                d["from_ack_p99_ms"],
                1,
                "< 150" + check(d["from_ack_p99_ms"]["median"] < 150),
            ),
            ("  paced send latency p50 (ms)", d["paced_send_p50_ms"], 1, ""),
            ("  paced send latency p99 (ms)", d["paced_send_p99_ms"], 1, ""),
        ]
    if "memory" in summary:
        m = summary["memory"]
        rows.append(("node RSS after setup (MiB, median node)", m["after_setup_mib"], 0, ""))
        for target in args.history:
            p = m[f"at_{target}"]
            rows.append((f"node RSS at {target:,} messages (MiB, median node)", p["rss_mib_median_node"], 0, ""))
            rows.append(("  largest node (MiB)", p["rss_mib_max_node"], 0, ""))
            rows.append(("  largest node's peak VmHWM (MiB)", p["hwm_mib_max_node"], 0, ""))
            rows.append(("  data on disk (MiB, median node)", p["disk_mib_median_node"], 0, ""))
            rows.append(("  of which the SQLite database (MiB)", p["chat_db_mib_median_node"], 0, ""))
            rows.append(("  fill throughput (msg/s)", p["fill_per_s"], 0, ""))
        first, last = args.history[0], args.history[-1]
        share = m["proportional_share_median_node"]
        rows += [
            (f"RSS ratio {last:,} / {first:,} messages (median node)", m["ratio_median_node"], 2, ""),
            ("  largest ratio of a node", m["ratio_max_node"], 2, ""),
            ("  RSS growth per message (bytes, worst node)", m["growth_bytes_per_message_max_node"], 0, ""),
            (
                "RSS growth / proportional growth (median node)",
                share,
                2,
                "0 flat, 1 proportional; < 0.5" + check(share["median"] < 0.5),
            ),
            ("  worst node", m["proportional_share_max_node"], 2, ""),
        ]
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'':<{width}}{'median':>10} {'[min..max]':>22}   target")
    for label, v, digits, target in rows:
        span = f"[{fmt(v['min'], digits)}..{fmt(v['max'], digits)}]"
        print(f"{label:<{width}}{fmt(v['median'], digits):>10} {span:>22}   {target}")
    for phase in ("send", "delivery"):
        if phase not in summary:
            continue
        c = {k: summary[phase][f"cpu.{k}"]["median"] for k in CPU_KEYS}
        print(
            f"where the CPU went during {phase} (cores, medians; {os.cpu_count()} on this machine): "
            f"leader {c['leader_cores']:.2f}, each follower {c['follower_cores_mean']:.2f}, "
            f"clients {c['clients_cores']:.2f}, other processes {c['other_cores']:.2f}, "
            f"machine busy {c['machine_cores']:.2f}"
        )
        print(
            f"  leader: {fmt(c['fsyncs_per_s'], 0)} fsyncs/s of {fmt(c['fsync_mean_ms'], 2)} ms, "
            f"{fmt(c['messages_per_fsync'], 1)} messages per fsync, proposal (propose to applied) "
            f"{fmt(c['leader_proposal_mean_ms'], 1)} ms mean, SendMessage RPC {fmt(c['leader_send_rpc_mean_ms'], 1)} "
            "ms mean"
        )
        threads = [r[phase]["cpu"]["leader_threads_cores"] for r in runs if phase in r]
        if threads:
            names = ", ".join(f"{k} {v:.2f}" for k, v in threads[len(threads) // 2].items())
            print(f"  leader threads (cores, middle run): {names}")
    changes = [
        f"run {r['run']}: {c['from']} -> {c['to']} during {c['during']}" for r in runs for c in r["leader_changes"]
    ]
    print("leader changes (elections: a node starved of CPU missed heartbeats): " + ("; ".join(changes) or "none"))
    for r in runs:
        prof = r.get("profile")
        if prof and "by_owner" in prof:
            total = prof["total_s"]
            print(f"cProfile of the leader's main thread (CPU time), run {r['run']}: {total:.1f} s")
            owners = ", ".join(f"{k} {v / total:.0%}" for k, v in list(prof["by_owner"].items())[:14])
            print(f"  own time by owner: {owners}")
            print("  most own time:")
            for row in prof["top_functions"][:12]:
                print(f"    {row['tottime_s']:7.2f} s {row['calls']:>9} calls  {row['function']}")
            print("  this repo's functions by time including callees:")
            for row in prof["top_cumulative_in_repo"][:25]:
                print(f"    {row['cumtime_s']:7.2f} s {row['calls']:>9} calls  {row['function']}")


def check(ok: bool) -> str:
    """A mark for a target met or missed."""
    return "  (met)" if ok else "  (MISSED)"


def errors_of(runs: list[dict[str, Any]]) -> list[str]:
    """What went wrong in the runs (failed sends, lost deliveries, nodes that did not stop cleanly)."""
    problems = []
    for r in runs:
        for phase in ("send",):
            if phase in r and r[phase]["errors"]:
                problems.append(f"run {r['run']}: failed sends {r[phase]['errors']}")
        if "delivery" in r:
            d = r["delivery"]
            if d["send_errors"]:
                problems.append(f"run {r['run']}: failed paced sends {d['send_errors']}")
            if d["lost"]:
                problems.append(f"run {r['run']}: {d['lost']} deliveries not received within {DRAIN_S:.0f}s")
            if d["duplicates"]:
                problems.append(f"run {r['run']}: {d['duplicates']} duplicate deliveries")
        if "memory" in r:
            for p in r["memory"]["points"]:
                if p["fill"]["errors"]:
                    problems.append(f"run {r['run']}: failed sends while filling {p['fill']['errors']}")
        bad = {n: c for n, c in r.get("exit_codes", {}).items() if c not in (0, None)}
        if bad:
            problems.append(f"run {r['run']}: nodes exited with {bad}")
    return problems


def no_nan(value: Any) -> Any:
    """``value`` with every NaN replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def main() -> int:
    """Run the benchmark; returns the exit code (1 on errors, not on missed targets)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of 4 s phases, history 12,000 then 24,000")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh cluster (default 3)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--senders", type=int, default=64, help="closed-loop senders, each its own user")
    parser.add_argument("--subscribers", type=int, default=200, help="subscribers, each its own user")
    parser.add_argument("--rate", type=float, default=200.0, help="offered messages/s in the delivery phase")
    parser.add_argument("--duration", type=float, help="seconds of each send and delivery phase (default 10)")
    parser.add_argument("--procs", type=int, default=4, help="client processes per phase (default 4)")
    parser.add_argument("--history", type=int, nargs="+", help="memory checkpoints in messages (default 20000 60000)")
    parser.add_argument("--fill-timeout", type=float, default=240.0, help="seconds allowed to reach a checkpoint")
    parser.add_argument("--phases", default="send,delivery,memory", help="comma-separated subset to run")
    parser.add_argument("--forward", action="store_true", help="senders stay on followers (writes forwarded)")
    parser.add_argument("--profile", type=Path, help="run the nodes under cProfile, profiles in this directory")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args, ignored = parser.parse_known_args()  # `nox -s bench -- ...` passes the other benchmarks' options too
    if ignored:
        print(f"(options for the other benchmarks, ignored here: {' '.join(ignored)})")
    if args.quick:
        args.runs = 1
        args.duration = args.duration or 4.0
        args.history = args.history or [12_000, 24_000]
    args.duration = args.duration or 10.0
    args.history = sorted(args.history or [20_000, 60_000])
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    for name in ("runs", "nodes", "senders", "subscribers", "procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.rate <= 0 or args.duration <= 0 or args.fill_timeout <= 0 or min(args.history) < 1:
        parser.error("--rate, --duration, --fill-timeout and --history must be positive")
    unknown = args.phases - {"send", "delivery", "memory"}
    if unknown or not args.phases:
        parser.error(f"--phases: unknown {sorted(unknown)}; choose from send, delivery, memory")
    if args.profile:
        args.profile = args.profile.absolute()

    print(
        f"chat benchmark: {args.nodes} nodes, fsync on, {args.runs} run(s) of {args.duration:.0f} s phases, "
        f"{args.senders} senders, {args.subscribers} subscribers at {args.rate:.0f} msg/s, memory at "
        f"{', '.join(f'{h:,}' for h in args.history)} messages; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as tmp:
        for run in range(1, args.runs + 1):
            try:
                runs.append(one_run(run, args, Path(tmp)))
            except Exception as exc:
                failure = f"run {run} failed: {type(exc).__name__}: {exc}"
                print(failure, file=sys.stderr, flush=True)
                break
    problems = errors_of(runs) + ([failure] if failure else [])
    summary = summarize(runs, args) if runs else {}
    if runs:
        print_report(summary, runs, args)
    if args.json:
        config = {
            k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        }
        args.json.write_text(
            json.dumps(
                no_nan({"config": config, "summary": summary, "runs": runs, "errors": problems}),
                indent=1,
                allow_nan=False,
            )
        )
    for r in runs:
        for p in r.get("memory", {}).get("points", []):
            if p["history"] < p["target"]:
                print(
                    f"warning: run {r['run']}: the history reached {p['history']:,} of {p['target']:,} messages "
                    f"within --fill-timeout ({args.fill_timeout:.0f} s); memory is reported at {p['history']:,}"
                )
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


def profiled_node(out: str, argv: list[str]) -> None:
    """Run ``python -m MODULE ARGS`` (``argv``) in this process under cProfile timed by the main thread's CPU.

    CPU time, not wall time: on a loaded machine wall time would charge preemption to whatever ran at the
    moment. Only the main thread (the node's event loop) is profiled. The profile is written when the node
    exits (it does on SIGTERM).
    """
    import cProfile
    import runpy

    if argv[:1] != ["-m"] or len(argv) < 2:
        raise SystemExit("--profiled-node OUT -m MODULE [ARGS...]")
    sys.argv = [argv[1], *argv[2:]]
    profiler = cProfile.Profile(time.thread_time)
    try:
        profiler.enable()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 3 and sys.argv[1] == "--profiled-node":
        profiled_node(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(main())
