"""A writer process for ``test_crash_kill.py``: appends deterministic batches to ``DiskStorage`` until killed.

Usage: ``python crash_writer.py DIRECTORY SEED``. After each ``persist(sync=True)`` returns it prints the last
durable index and flushes, so the parent knows exactly what was acknowledged. Now and then it takes a snapshot
and compacts, so kills also land in snapshot saves and segment deletions.
"""

from __future__ import annotations

import random
import sys

from raft_core.storage import DiskStorage
from raft_core.types import Entry, HardState, Membership

MEMBERSHIP = Membership.of(1, 2, 3)
SEGMENT_BYTES = 16 * 1024
MAX_BATCH = 64
LIMIT = 200_000


def entry(index: int) -> Entry:
    """The deterministic entry at ``index``."""
    return Entry(term=1 + index // 700, index=index, data=b"%08d;" % index * (1 + index % 13))


def snapshot_data(index: int) -> bytes:
    """The deterministic state machine snapshot as of ``index``."""
    return b"state@%d" % index * 20


def main() -> None:
    directory, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    storage = DiskStorage.open(directory, membership=MEMBERSHIP, segment_bytes=SEGMENT_BYTES, cache_entries=256)
    nxt = storage.last_index() + 1
    while nxt < LIMIT:
        n = rng.choice([1, 1, 2, 5, 16, MAX_BATCH])
        batch = [entry(i) for i in range(nxt, nxt + n)]
        hs = HardState(term=batch[-1].term, vote=1, commit=nxt - 1)
        storage.persist(hard_state=hs, entries=batch, snapshot=None, sync=True)
        nxt += n
        print(nxt - 1, flush=True)
        if rng.random() < 0.05 and nxt > 300:
            index = nxt - 1 - rng.randint(0, 200)
            if index > storage.snapshot().meta.index:
                storage.create_snapshot(index, snapshot_data(index))
                storage.compact(index)
    storage.close()


if __name__ == "__main__":
    main()
