"""``HeldAppends``: a leader's empty AppendEntries held back briefly, and dropped when a later append replaces them.

An AppendEntries with no entries carries only the leader's commit index (or, to a follower being probed,
asks where the logs match). At low load every commit sends one to each follower, and each is a stream
write on both sides (tens of microseconds of CPU each over gRPC) at the very moment the leader answers
its client. Held for ``delay`` seconds, most of them are never sent: the next proposal's append to the same
follower carries a commit index at least as new, and answers at least as much.

Holding is safe: it is the network delaying (or losing) a message, which Raft tolerates. Order is kept:
a held append is sent before any later append to its follower, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from raft_core.messages import AppendEntries, InstallSnapshot
from raft_core.types import NodeId

M = TypeVar("M")


class Cancellable(Protocol):
    """What ``call_later`` returns (an ``asyncio.TimerHandle``, or a test's fake timer)."""

    def cancel(self) -> None:
        """Do not run the callback."""
        ...


class HeldAppends:
    """Empty AppendEntries waiting up to ``delay`` seconds for a later append to the same follower."""

    def __init__(
        self,
        send: Callable[[Sequence[AppendEntries]], None],
        call_later: Callable[[float, Callable[[], None]], Cancellable],
        delay: float,
    ) -> None:
        """Send with ``send``; ``call_later(delay, callback)`` schedules the release of what is held."""
        self._send = send
        self._call_later = call_later
        self.delay = delay
        self._held: dict[NodeId, AppendEntries] = {}
        self._timer: Cancellable | None = None

    def filter(self, messages: Sequence[M]) -> list[M]:
        """The messages to send now: empty appends are held, and a held one a later message replaces is dropped."""
        if self.delay <= 0:
            return list(messages)
        held = self._held
        now: list[M] = []
        for m in messages:
            if isinstance(m, AppendEntries) and not m.entries:
                held[m.dst] = m  # a newer empty append replaces an older one
                continue
            if held and isinstance(m, AppendEntries | InstallSnapshot):
                # Carries a commit index at least as new (a leader's commit only grows) and gets an answer.
                held.pop(m.dst, None)
            now.append(m)
        if held and self._timer is None:
            self._timer = self._call_later(self.delay, self.release)
        return now

    def release(self) -> None:
        """Send everything held now."""
        self._timer = None
        held, self._held = self._held, {}
        if held:
            self._send(list(held.values()))

    def drop(self) -> None:
        """Forget everything held (the node is no longer leader, or stops)."""
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
