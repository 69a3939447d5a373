"""``MemoryNode``: a ``RaftNode`` with in-memory durable storage and a recording state machine.

It is the reference driver: it handles each ``Ready`` exactly as the contract says (persist, then hand out
messages, then apply, then advance). A crash is modelled by ``restart()``: whatever the storage holds
survives, everything else (unstable entries, unsent messages, the applied state) is lost.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from raft_core.config import Config
from raft_core.messages import Message
from raft_core.node import RaftNode
from raft_core.ready import Ready
from raft_core.storage.memory import MemoryStorage
from raft_core.types import Entry, EntryKind, Membership, NodeId, ReadState, Snapshot


@dataclass(slots=True)
class AppliedLog:
    """The recording state machine: every applied command as (index, term, data), in order."""

    entries: list[tuple[int, int, bytes]] = field(default_factory=list)
    last_index: int = 0

    def apply(self, entry: Entry) -> None:
        """Record a command (no-ops advance the index only)."""
        if entry.index != self.last_index + 1:
            raise AssertionError(f"applied {entry.index} after {self.last_index}: a gap or a repeat")
        self.last_index = entry.index
        if entry.kind is EntryKind.NORMAL:
            self.entries.append((entry.index, entry.term, entry.data))

    def snapshot_data(self) -> bytes:
        """Serialize the applied commands."""
        return json.dumps({"last": self.last_index, "entries": [[i, t, d.hex()] for i, t, d in self.entries]}).encode()

    @classmethod
    def from_snapshot(cls, data: bytes) -> AppliedLog:
        """Rebuild from ``snapshot_data`` output (an empty snapshot gives an empty log)."""
        if not data:
            return cls()
        raw = json.loads(data)
        entries = [(int(i), int(t), bytes.fromhex(d)) for i, t, d in raw["entries"]]
        return cls(entries, int(raw["last"]))


class MemoryNode:
    """A node, its storage and its applied state, driven synchronously by tests and the simulator."""

    def __init__(
        self,
        config: Config,
        membership: Membership,
        rng: random.Random | None = None,
        storage: MemoryStorage | None = None,
    ) -> None:
        """A fresh node (or, given ``storage``, one restarting from it)."""
        self.config = config
        self.storage = storage if storage is not None else MemoryStorage(membership)
        self.rng = rng if rng is not None else random.Random(config.id)
        self.read_states: list[ReadState] = []
        self.on_persist: Callable[[MemoryNode, Ready], None] | None = None
        self.on_apply: Callable[[MemoryNode, Entry], None] | None = None
        self._boot()

    def _boot(self) -> None:
        snapshot = self.storage.snapshot()
        self.applied = AppliedLog.from_snapshot(snapshot.data)
        config = self.config.model_copy(update={"applied": self.applied.last_index})
        self.node = RaftNode(config, self.storage, self.rng)

    @property
    def id(self) -> NodeId:
        """The node's id."""
        return self.config.id

    def restart(self) -> None:
        """Crash and restart: keep only what was persisted."""
        self.read_states = []
        self._boot()

    def handle_ready(self) -> list[Message]:
        """Handle every pending Ready in contract order; returns the messages to deliver."""
        out: list[Message] = []
        node = self.node
        while node.has_ready():
            ready = node.ready()
            self.persist(ready)
            out.extend(ready.messages)
            self.apply(ready)
            node.advance(ready)
        return out

    def persist(self, ready: Ready) -> None:
        """Step 1 of the contract: snapshot, entries, hard state."""
        storage = self.storage
        if ready.snapshot is not None:
            storage.apply_snapshot(ready.snapshot)
        if ready.entries:
            storage.append(ready.entries)
        if ready.hard_state is not None:
            storage.set_hard_state(ready.hard_state)
        if self.on_persist is not None:
            self.on_persist(self, ready)

    def apply(self, ready: Ready) -> None:
        """Step 3 of the contract: restore from a received snapshot, apply committed entries."""
        if ready.snapshot is not None:
            self.applied = AppliedLog.from_snapshot(ready.snapshot.data)
        for entry in ready.committed_entries:
            if entry.index <= self.applied.last_index:
                continue
            self.applied.apply(entry)
            if self.on_apply is not None:
                self.on_apply(self, entry)
        self.read_states.extend(ready.read_states)

    def take_snapshot(self, keep: int = 0) -> Snapshot | None:
        """Snapshot the applied state and compact the log, keeping ``keep`` entries before the snapshot."""
        index = self.applied.last_index
        if index <= self.storage.snapshot().meta.index:
            return None
        snapshot = self.storage.create_snapshot(index, self.applied.snapshot_data())
        self.storage.compact(max(index - keep, self.storage.first_index() - 1))
        return snapshot
