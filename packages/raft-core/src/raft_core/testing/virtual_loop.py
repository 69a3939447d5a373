"""``VirtualLoop``: an asyncio event loop with virtual time, and ``run_virtual`` to run a coroutine on it.

The loop's ``time()`` is a virtual clock. When nothing is ready to run, the loop does not sleep until its next
timer: it jumps the clock there at once, so ``asyncio.sleep(5)`` costs no wall time and a run of timers,
Tasks, Futures, ``asyncio.wait_for`` and ``asyncio.timeout`` is deterministic. Real I/O still works (the loop
polls its selector without blocking), but nothing may wait on a thread or a socket: a loop with no ready
callback, no timer and nothing readable would wait forever, and raises ``VirtualDeadlock`` instead.

Runtime nodes run here with ``NodeOptions(persist_in_thread=False)`` and ``clock=loop.clock_ms``, and an
``rng`` drawn from the seed, so that a whole run is a pure function of its seed.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

START_TIME = 1_000_000.0
"""Where the virtual clock starts (seconds): far from zero, so log times in ms are plainly positive."""


class VirtualDeadlock(RuntimeError):
    """The virtual loop has nothing to run and no timer to wait for: it would wait forever."""


class _VirtualSelector(selectors.DefaultSelector):
    """A selector that never blocks: an empty poll moves the loop's virtual clock by the wait instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if events or timeout == 0 or self.loop is None:
            return events
        if timeout is None:
            raise VirtualDeadlock("the virtual event loop has nothing to run and no timer: it would wait forever")
        self.loop.advance(timeout)
        return events


class VirtualLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock is virtual and jumps to the next timer when the loop is idle.

    ``rng`` is a ``random.Random`` seeded from ``seed``, for code that needs seeded randomness on this loop.
    ``idle_jumps`` counts how often the clock jumped (a measure of how much waiting was skipped).
    """

    def __init__(self, *, seed: int = 0, start: float = START_TIME) -> None:
        """A loop at virtual time ``start`` (seconds)."""
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = start
        self.seed = seed
        self.rng = random.Random(seed)
        self.idle_jumps = 0

    def time(self) -> float:
        """The virtual time in seconds."""
        return self._now

    def clock_ms(self) -> int:
        """The virtual time in whole milliseconds: a ``clock`` for ``raft_core.runtime.Node``."""
        return int(self._now * 1000)

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward by ``seconds`` (never back)."""
        if seconds > 0:
            self._now += seconds
            self.idle_jumps += 1


def new_virtual_loop(seed: int = 0) -> VirtualLoop:
    """A fresh ``VirtualLoop`` (not set as the current loop)."""
    return VirtualLoop(seed=seed)


def run_virtual(coro: Coroutine[Any, Any, T], *, seed: int = 0, debug: bool = False) -> T:
    """Run ``coro`` to completion on a new ``VirtualLoop``, like ``asyncio.run``, and return its result.

    Tasks still pending at the end are cancelled (as ``asyncio.run`` does); the loop is closed.
    """
    loop = VirtualLoop(seed=seed)
    loop.set_debug(debug)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(coro)


def current_virtual_loop() -> VirtualLoop:
    """The running loop, which must be a ``VirtualLoop``."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualLoop):
        raise RuntimeError("not running on a VirtualLoop (use run_virtual)")
    return loop
