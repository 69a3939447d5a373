"""The README's example: a replicated counter in three real processes over TCP, with disk storage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "replicated_counter.py"
DEADLINE_S = 60.0


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Proc:
    def __init__(self, node: int, cluster: str, data: Path, adds: int, expect: int) -> None:
        cmd = [sys.executable, str(EXAMPLE), "--id", str(node), "--cluster", cluster, "--data", str(data / str(node))]
        cmd += ["--adds", str(adds), "--expect", str(expect)]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, deadline: float) -> None:
        with self._changed:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"never saw {text!r}; output:\n{''.join(self.lines)}")
                self._changed.wait(min(left, 1.0))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait(10)
        self._reader.join(10)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop(signal.SIGKILL)


def test_three_processes_count_every_add_once_and_a_killed_node_recovers(tmp_path: Path, procs: list[Proc]) -> None:
    ports = free_ports(3)
    cluster = ",".join(f"{i}=127.0.0.1:{port}" for i, port in enumerate(ports, start=1))
    procs += [Proc(node, cluster, tmp_path, adds=10, expect=30) for node in (1, 2, 3)]
    deadline = time.monotonic() + DEADLINE_S
    for proc in procs:
        proc.wait_for("reads: counter = 30", deadline)
    results = sorted(int(line.rsplit("=", 1)[1]) for p in procs for line in p.lines if "added 1" in line)
    assert results == list(range(1, 31))  # every add applied exactly once, each saw its own new value

    # SIGKILL node 3; restart node 1 (its state comes back from disk) and add 5 more with nodes 1 and 2;
    # then restart node 3 from its data directory: it catches up with what it missed.
    procs[2].stop(signal.SIGKILL)
    procs[0].stop()
    procs[0] = Proc(1, cluster, tmp_path, adds=5, expect=35)
    procs[0].wait_for("reads: counter = 35", time.monotonic() + DEADLINE_S)
    procs[2] = Proc(3, cluster, tmp_path, adds=0, expect=35)
    procs[2].wait_for("reads: counter = 35", time.monotonic() + DEADLINE_S)
