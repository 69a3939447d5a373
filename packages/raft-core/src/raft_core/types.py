"""Value types of the Raft core: log entries, hard and soft state, membership and snapshot metadata.

Entries and states are frozen, slotted dataclasses: they are built on the hot path (one per proposal, per
node) where a pydantic model costs several times more per construction. They are validated by pydantic at
the boundaries instead (see ``raft_core.validation``), where bytes from disk or the wire become values.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Annotated

from pydantic import Field

NodeId = int
"""A node's id: a positive integer. ``NONE`` (0) means "no node"."""

Term = Annotated[int, Field(ge=0)]
"""A term number (0 before the first election). The bound is checked where pydantic validates values."""

Index = Annotated[int, Field(ge=0)]
"""A log index (0 stands for "before the first entry")."""

Id = Annotated[int, Field(ge=0)]
"""A node id in a message or state (0 stands for "none")."""

NONE: NodeId = 0
"""The id that stands for "no node" (no vote cast, no leader known)."""


class EntryKind(enum.IntEnum):
    """What a log entry carries."""

    NORMAL = 0
    """An application command: ``data`` is opaque to the core and applied by the state machine."""
    NOOP = 1
    """The empty entry a new leader appends to commit entries of earlier terms (Raft §5.4.2)."""
    MEMBERSHIP = 2
    """A membership change: ``data`` is an encoded ``Membership`` (reserved: changes are not yet proposed)."""


@dataclass(slots=True, frozen=True)
class Entry:
    """One log entry: its position (``index``), the ``term`` that created it, its kind and its payload."""

    term: Term
    index: Index
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def size(self) -> int:
        """The entry's size for flow-control budgets: its payload plus a fixed per-entry overhead."""
        return len(self.data) + ENTRY_OVERHEAD


ENTRY_OVERHEAD = 16
"""Bytes added to each entry's payload when sizing batches (term, index and kind on the wire)."""

_DATA = attrgetter("data")


def payload_size(entries: Sequence[Entry]) -> int:
    """The total payload bytes of ``entries`` (summed in C: no Python-level loop)."""
    return sum(map(len, map(_DATA, entries)))


def entries_size(entries: Sequence[Entry]) -> int:
    """The total ``Entry.size()`` of ``entries``: their payloads plus ``ENTRY_OVERHEAD`` each."""
    return sum(map(len, map(_DATA, entries))) + ENTRY_OVERHEAD * len(entries)


def limit_size(entries: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``entries`` whose total size stays within ``max_size`` (at least one entry)."""
    if entries_size(entries) <= max_size:
        return entries  # the common case: everything fits (summed in C, no per-entry Python call)
    total = 0
    for n, entry in enumerate(entries):
        total += entry.size()
        if total > max_size and n > 0:
            return entries[:n]
    return entries


@dataclass(slots=True, frozen=True)
class HardState:
    """The state a node must persist before it sends any message that depends on it.

    ``term`` and ``vote`` make a vote durable (a node never votes twice in one term, even across restarts);
    ``commit`` lets a restarted node re-apply committed entries without asking the leader.
    """

    term: Term = 0
    vote: Id = NONE
    commit: Index = 0


class Role(enum.Enum):
    """The role a node plays in its current term."""

    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state worth reporting when it changes (never persisted): who leads, and this node's role."""

    leader: NodeId = NONE
    role: Role = Role.FOLLOWER


@dataclass(slots=True, frozen=True)
class Membership:
    """The cluster configuration: the voting members, and learners that replicate without voting."""

    voters: frozenset[NodeId] = field(default_factory=frozenset)
    learners: frozenset[NodeId] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        """Reject ids that are not positive and nodes that are both voter and learner."""
        for node in self.voters | self.learners:
            if node <= NONE:
                raise ValueError(f"node ids must be positive integers, got {node!r}")
        if self.voters & self.learners:
            both = sorted(self.voters & self.learners)
            raise ValueError(f"nodes {both} cannot be both voters and learners")

    @classmethod
    def of(cls, *voters: NodeId) -> Membership:
        """A membership of the given voters and no learners."""
        return cls(voters=frozenset(voters))

    def members(self) -> frozenset[NodeId]:
        """Every node that receives the log: voters and learners."""
        return self.voters | self.learners


@dataclass(slots=True, frozen=True)
class SnapshotMeta:
    """What a snapshot covers: every entry up to ``index`` (whose term was ``term``) and the membership then."""

    index: Index = 0
    term: Term = 0
    membership: Membership = field(default_factory=Membership)


@dataclass(slots=True, frozen=True)
class Snapshot:
    """A state machine snapshot: its metadata and the state machine's own serialized ``data``."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    def is_empty(self) -> bool:
        """Whether this stands for "no snapshot" (index 0)."""
        return self.meta.index == 0


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read is safe to serve once this node has applied up to ``index``.

    ``context`` is the caller's request id, given to ``RaftNode.read_index``.
    """

    index: int
    context: bytes
