"""The asyncio runtime of raft-core: ``Node`` drives the sans-IO core over a ``Transport`` and a ``Storage``.

This package holds the only concurrent code in raft-core. Plug points are small protocols: ``Transport``
(``MemoryNetwork`` ships for tests and examples), ``StateMachine`` and ``Storage``.
"""

from raft_core.runtime.held_appends import Cancellable
from raft_core.runtime.memory_transport import MemoryNetwork, MemoryTransport
from raft_core.runtime.node import LeaderChange, Node
from raft_core.runtime.options import NodeOptions
from raft_core.runtime.replicated import NotAttached, ReplicatedObject, query, replicated
from raft_core.runtime.state_machine import BatchingStateMachine, Command, DurableStateMachine, StateMachine
from raft_core.runtime.tcp_transport import TcpTransport
from raft_core.runtime.transport import Receiver, Transport
from raft_core.runtime.wire import SnapshotChunk, SnapshotChunkAck, WireMessage

__all__ = [
    "BatchingStateMachine",
    "Cancellable",
    "Command",
    "DurableStateMachine",
    "LeaderChange",
    "MemoryNetwork",
    "MemoryTransport",
    "Node",
    "NodeOptions",
    "NotAttached",
    "Receiver",
    "ReplicatedObject",
    "SnapshotChunk",
    "SnapshotChunkAck",
    "StateMachine",
    "TcpTransport",
    "Transport",
    "WireMessage",
    "query",
    "replicated",
]
