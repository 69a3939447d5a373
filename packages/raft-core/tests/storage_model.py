"""Random storage operations and a comparison against ``MemoryStorage``, shared by the durable-storage tests."""

from __future__ import annotations

import random
from dataclasses import dataclass

from raft_core.errors import StorageError
from raft_core.storage import MemoryStorage, Storage
from raft_core.types import Entry, EntryKind, HardState, Membership, Snapshot, SnapshotMeta

BOOT = Membership.of(1, 2, 3)


@dataclass(frozen=True)
class Persist:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    sync: bool = True


@dataclass(frozen=True)
class Create:
    index: int
    data: bytes
    membership: Membership | None


@dataclass(frozen=True)
class Compact:
    index: int


Op = Persist | Create | Compact


def random_entries(rng: random.Random, first: int, n: int, term: int) -> tuple[Entry, ...]:
    kinds = list(EntryKind)
    return tuple(
        Entry(term=term, index=first + i, kind=rng.choice(kinds), data=rng.randbytes(rng.randrange(0, 40)))
        for i in range(n)
    )


def next_op(rng: random.Random, mem: MemoryStorage, *, snapshots: bool = True) -> Op:
    """A plausible next operation for a storage whose state ``mem`` mirrors (occasionally an invalid one)."""
    first, last = mem.first_index(), mem.last_index()
    top_term = max(mem.hard_state.term, mem.term(last), 1)
    roll = rng.random()
    if snapshots and roll < 0.06 and last > mem.snapshot().meta.index:
        index = rng.randint(mem.snapshot().meta.index + 1, last)
        membership = rng.choice([None, Membership.of(1, 2), Membership(frozenset({1}), frozenset({4}))])
        return Create(index, rng.randbytes(rng.randrange(0, 64)), membership)
    if snapshots and roll < 0.12:
        return Compact(rng.randint(max(0, first - 2), mem.snapshot().meta.index + (1 if rng.random() < 0.1 else 0)))
    snapshot = None
    if snapshots and roll < 0.16:
        index = rng.randint(mem.snapshot().meta.index, last + 5)
        term = mem.snapshot().meta.term if index == mem.snapshot().meta.index else top_term + rng.randint(0, 1)
        meta = SnapshotMeta(index, term, Membership.of(*rng.sample(range(1, 6), 3)))
        snapshot = Snapshot(meta, rng.randbytes(rng.randrange(0, 100)))
        first, last = index + 1, index
    hs = None
    if rng.random() < 0.4:
        hs = HardState(term=top_term + rng.randint(0, 1), vote=rng.randint(0, 3), commit=rng.randint(0, last))
    n = rng.choice([0, 1, 1, 2, 3, 5, 8, 17])
    if rng.random() < 0.3:  # overwrite a suffix (sometimes reaching below the first index)
        start = rng.randint(max(0, first - 2), last + 1)
        covered = mem.snapshot().meta.index  # entries a snapshot covers are committed: never overwritten
        if start <= covered and covered != first - 1:
            start = covered + 1
    else:
        start = last + 1
    entries = random_entries(rng, start, n, top_term + rng.randint(0, 1)) if n else ()
    return Persist(hs, entries, snapshot, sync=rng.random() < 0.8)


def apply_op(storage: Storage, op: Op) -> str | None:
    """Apply ``op``; returns the name of the storage error it raised, if any (to compare implementations)."""
    try:
        if isinstance(op, Persist):
            storage.persist(hard_state=op.hard_state, entries=op.entries, snapshot=op.snapshot, sync=op.sync)
        elif isinstance(op, Create):
            storage.create_snapshot(op.index, op.data, op.membership)
        else:
            storage.compact(op.index)
    except StorageError as exc:
        return type(exc).__name__
    except Exception as exc:
        return type(exc).__name__
    return None


def state_of(storage: Storage) -> dict[str, object]:
    """Everything a reader can observe, as plain values."""
    s = storage
    first, last = s.first_index(), s.last_index()
    return {
        "first": first,
        "last": last,
        "terms": [s.term(i) for i in range(first - 1, last + 1)],
        "entries": s.entries(first, last + 1),
        "initial": s.initial_state(),
        "snapshot": s.snapshot(),
    }


def assert_same(disk: Storage, mem: MemoryStorage) -> None:
    got, want = state_of(disk), state_of(mem)
    for key in want:
        assert got[key] == want[key], f"{key}: disk {got[key]!r} != memory {want[key]!r}"
