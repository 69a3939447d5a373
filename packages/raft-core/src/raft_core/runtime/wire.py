"""What runtimes send each other: the core's messages plus the chunks of a snapshot being installed.

The core hands a whole snapshot to send in one ``InstallSnapshot`` message. The runtime never puts that on a
transport as is: it streams the snapshot's data as ``SnapshotChunk``s, each acknowledged by a
``SnapshotChunkAck`` (flow control), and the receiving runtime steps the reassembled ``InstallSnapshot`` into
its core. ``ProposalRefused`` tells a follower at once that the leader refused proposals it forwarded.
Transports carry ``WireMessage``s and know nothing else of Raft.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeAlias

from pydantic import Field

from raft_core.messages import Message
from raft_core.types import Id, Index, SnapshotMeta, Term


@dataclass(slots=True, frozen=True, kw_only=True)
class SnapshotChunk:
    """Bytes ``[offset, offset + len(data))`` of the snapshot ``meta`` (``size`` bytes, CRC32 ``checksum``).

    ``term`` is the sending leader's term; ``done`` marks the last chunk.
    """

    src: Id
    dst: Id
    term: Term
    meta: SnapshotMeta
    size: Annotated[int, Field(ge=0, lt=1 << 63)]
    checksum: Annotated[int, Field(ge=0, lt=1 << 32)]
    offset: Annotated[int, Field(ge=0, lt=1 << 63)]
    data: bytes
    done: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class SnapshotChunkAck:
    """The receiver has ``received`` bytes of snapshot ``index`` stored; ``ok`` is False when it gave up.

    A receiver gives up on a chunk it cannot place (it restarted, or a chunk was lost): the sender then stops
    and the leader's core retries the whole snapshot later.
    """

    src: Id
    dst: Id
    term: Term
    index: Index
    received: Annotated[int, Field(ge=0, lt=1 << 63)]
    ok: bool = True


@dataclass(slots=True, frozen=True, kw_only=True)
class ProposalRefused:
    """The leader refused proposals that ``dst`` forwarded: nothing of them was appended.

    ``requests`` are the refused commands' request numbers (from their envelopes); ``overloaded`` says
    whether the leader was overloaded (else it was handing leadership over, or is no longer leader).
    """

    src: Id
    dst: Id
    term: Term
    requests: tuple[int, ...]
    reason: str
    overloaded: bool = False


WireMessage: TypeAlias = Message | SnapshotChunk | SnapshotChunkAck | ProposalRefused
"""Anything a transport carries between two runtimes."""
