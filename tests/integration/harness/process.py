"""``NodeProcess``: one node as a real OS process, with its log file, started and signalled by the harness.

Invariant owned here: the harness only ever signals process ids it started itself (``Popen.pid`` of a
process that has not been reaped), never a name or a group it did not create.

Output (stdout and stderr) goes to one log file per node, appended across restarts with a header line per
start, so nothing blocks on a full pipe and the whole history is there to print when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class ProcessFailed(AssertionError):
    """A node process did not start or stop as expected (its log tail is in the message)."""


class NodeProcess:
    """One node's process: start, wait until serving, SIGKILL / SIGTERM / SIGSTOP / SIGCONT, restart."""

    def __init__(
        self,
        node_id: int,
        argv: Sequence[str],
        log_path: Path,
        *,
        ready_marker: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.node_id = node_id
        self.argv = list(argv)
        self.log_path = log_path
        self.ready_marker = ready_marker
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"NodeProcess({self.node_id}, pid={self.pid}, {self.state})"

    @property
    def pid(self) -> int | None:
        """The running process's id, or None."""
        return self.popen.pid if self.popen is not None else None

    @property
    def alive(self) -> bool:
        """Whether the process runs (possibly paused)."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``exited(rc)`` or ``never started``."""
        if self.popen is None:
            return "never started"
        rc = self.popen.poll()
        if rc is not None:
            return f"exited({rc})"
        return "paused" if self.paused else "running"

    def spawn(self) -> None:
        """Start the process (it must not be running); output appends to the log file."""
        if self.alive:
            raise RuntimeError(f"node {self.node_id} is already running")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(
                f"==== harness: start #{self.starts} at {time.strftime('%H:%M:%S')}: {self._command()}\n".encode()
            )
            out.flush()
            self._log_offset = out.tell()
            env = dict(os.environ if self.env is None else self.env)
            env.setdefault("PYTHONUNBUFFERED", "1")
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,  # a Ctrl-C at the terminal reaches pytest, which then cleans up
            )
        self.paused = False

    def _command(self) -> str:
        return " ".join(self.argv)

    def output_since_start(self) -> str:
        """What this start of the process has written so far."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Wait until this start printed the ready line; return it. Fails if the process exits or is late."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output_since_start().splitlines():
                if self.ready_marker in line:
                    return line
            if not self.alive:
                raise ProcessFailed(f"node {self.node_id} exited ({self.state}) before serving:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"node {self.node_id} not serving after {timeout}s:\n{self.log_tail()}")
            await asyncio.sleep(0.02)

    async def start(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Spawn and wait until serving."""
        self.spawn()
        return await self.wait_ready(timeout)

    def _signal(self, sig: signal.Signals) -> bool:
        if not self.alive:
            return False
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, sig)
        return True

    async def wait_exit(self, timeout: float) -> int:
        """Wait (polling) until the process exits; return its code. Fails after ``timeout``."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while (rc := self.popen.poll()) is None:
            if time.monotonic() > deadline:
                raise ProcessFailed(f"node {self.node_id} still running {timeout}s after a stop:\n{self.log_tail()}")
            await asyncio.sleep(0.01)
        return rc

    async def kill(self) -> None:
        """SIGKILL (a crash: nothing flushed that was not fsynced) and reap."""
        if self._signal(signal.SIGKILL):
            await self.wait_exit(STOP_TIMEOUT_S)
        self.paused = False

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful) and wait; returns the exit code (0 expected)."""
        if self.paused:
            self.resume()
        if self.popen is None:
            return 0
        self._signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a GC pause, a VM freeze)."""
        if self._signal(signal.SIGSTOP):
            self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        if self._signal(signal.SIGCONT):
            self.paused = False

    async def restart(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        """Start again after a kill or stop (same arguments, same data directory)."""
        if self.alive:
            raise RuntimeError(f"node {self.node_id} is still running; kill or stop it first")
        return await self.start(timeout)

    def force_cleanup(self) -> None:
        """Synchronous last resort (fixture finalizer): SIGKILL our own process if it still runs, and reap."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(5)
