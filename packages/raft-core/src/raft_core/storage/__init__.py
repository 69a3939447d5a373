"""Storage seams of the core: the read-only ``LogStorage`` protocol and the in-memory ``MemoryStorage``."""

from raft_core.storage.memory import MemoryStorage
from raft_core.storage.protocol import InitialState, LogStorage

__all__ = ["InitialState", "LogStorage", "MemoryStorage"]
