"""``Trace``: a cheap record of what happened in a simulated run, formatted into readable lines on demand.

Events are stored raw (the tick, a kind, a node and the message or Ready itself) in a bounded ring buffer, so
recording costs a tuple per event; text is built only when a failure is printed, ``-v`` asks for it, or a
test hashes the full trace to check that a seed replays bit for bit.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable

from raft_core.describe import (
    describe_entries,
    describe_hard_state,
    describe_message,
    describe_snapshot,
    describe_soft_state,
)
from raft_core.messages import Message
from raft_core.ready import Ready

DELIVER = "deliver"
DROP = "drop"
READY = "ready"
FAULT = "fault"
CLIENT = "client"
NOTE = "note"

Event = tuple[int, str, int, object]
"""(tick, kind, node, payload): payload is a Message, a Ready or a preformatted string."""


class Trace:
    """The events of one run: the last ``keep`` always, every one of them when ``full``."""

    def __init__(self, keep: int = 400, *, full: bool = False) -> None:
        """Keep the last ``keep`` events, or all of them when ``full`` (for replay hashes and ``-v``)."""
        self.full = full
        self._events: deque[Event] = deque(maxlen=None if full else keep)
        self.add = self._events.append
        """Record one event tuple (bound directly to the buffer's ``append``: it is called per message)."""

    def deliver(self, tick: int, message: Message) -> None:
        """A message reached its addressee."""
        self.add((tick, DELIVER, message.dst, message))

    def drop(self, tick: int, message: Message, why: str) -> None:
        """A message was lost (``why``: loss, cut, down)."""
        self.add((tick, DROP, message.dst, (why, message)))

    def fault(self, tick: int, node: int, text: str) -> None:
        """The nemesis did something: a crash, a restart, a partition, a network change."""
        self.add((tick, FAULT, node, text))

    def client(self, tick: int, node: int, text: str) -> None:
        """A client asked something of a node (a proposal, a read, a transfer, a snapshot)."""
        self.add((tick, CLIENT, node, text))

    def note(self, tick: int, text: str) -> None:
        """A remark by the runner (a phase starting, a liveness stage)."""
        self.add((tick, NOTE, 0, text))

    def __len__(self) -> int:
        """How many events are held."""
        return len(self._events)

    def lines(self, last: int | None = None) -> list[str]:
        """The held events (only the last ``last`` of them, if given) as readable lines."""
        events: Iterable[Event] = self._events
        if last is not None and last < len(self._events):
            events = list(self._events)[-last:]
        out: list[str] = []
        for event in events:
            out.extend(format_event(event))
        return out

    def digest(self) -> str:
        """A SHA-256 of every held event's text: equal digests mean the runs were the same."""
        h = hashlib.sha256()
        for line in self.lines():
            h.update(line.encode())
            h.update(b"\n")
        return h.hexdigest()


def format_event(event: Event) -> list[str]:
    """One event as one line (a Ready may take a few, indented under its first)."""
    tick, kind, node, payload = event
    head = f"t={tick:<5d}"
    if kind == DELIVER and isinstance(payload, Message):
        return [f"{head} deliver {describe_message(payload)}"]
    if kind == DROP and isinstance(payload, tuple):
        why, message = payload
        return [f"{head} DROP({why}) {describe_message(message)}"]
    if kind == READY and isinstance(payload, Ready):
        return [f"{head} n{node} ready: {describe_ready_line(payload)}"]
    if kind == FAULT:
        return [f"{head} *** n{node} {payload}" if node else f"{head} *** {payload}"]
    if kind == CLIENT:
        return [f"{head} client -> n{node}: {payload}"]
    return [f"{head} -- {payload}"]


def describe_ready_line(ready: Ready) -> str:
    """A Ready's state changes on one line (its messages are traced as they are delivered)."""
    parts: list[str] = []
    if ready.soft_state is not None:
        parts.append(describe_soft_state(ready.soft_state))
    if ready.hard_state is not None:
        parts.append(describe_hard_state(ready.hard_state))
    if ready.snapshot is not None:
        parts.append("install " + describe_snapshot(ready.snapshot))
    if ready.entries:
        parts.append("persist " + describe_entries(ready.entries))
    if ready.committed_entries:
        parts.append("apply " + describe_entries(ready.committed_entries))
    if ready.read_states:
        reads = (f"{rs.context.decode(errors='replace')}@{rs.index}" for rs in ready.read_states)
        parts.append("reads " + ", ".join(reads))
    return " | ".join(parts)
