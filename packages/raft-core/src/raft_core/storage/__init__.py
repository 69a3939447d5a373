"""Storage: the ``LogStorage`` and ``Storage`` protocols and their implementations (memory, disk)."""

from raft_core.storage.disk import DiskStorage
from raft_core.storage.memory import MemoryStorage
from raft_core.storage.protocol import InitialState, LogStorage, Storage
from raft_core.storage.snapshot_store import (
    CorruptSnapshotError,
    IncomingSnapshot,
    SnapshotStore,
    SnapshotTransferError,
    snapshot_checksum,
)
from raft_core.storage.wal import WriteAheadLog

__all__ = [
    "CorruptSnapshotError",
    "DiskStorage",
    "IncomingSnapshot",
    "InitialState",
    "LogStorage",
    "MemoryStorage",
    "SnapshotStore",
    "SnapshotTransferError",
    "Storage",
    "WriteAheadLog",
    "snapshot_checksum",
]
