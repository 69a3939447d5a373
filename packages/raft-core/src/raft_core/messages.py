"""Raft messages: one frozen, slotted type per message kind, and the ``Message`` union of them all.

Every message names its sender (``src``), its addressee (``dst``) and the sender's ``term``. Messages that a
client hands to a node and that a follower may forward to its leader (``Propose``, ``ReadIndex``,
``TransferLeader``) carry term 0: they are not part of any term's conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from raft_core.types import Entry, Id, Index, Snapshot, Term


@dataclass(slots=True, frozen=True, kw_only=True)
class RequestVote:
    """A candidate asks for a vote in ``term``; its log ends at ``last_index``/``last_term`` (Raft §5.2, §5.4.1).

    ``transfer`` is set when a leadership transfer caused the election: voters then ignore their leader
    lease, since the current leader itself asked for the election.
    """

    src: Id
    dst: Id
    term: Term
    last_index: Index
    last_term: Term
    transfer: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class RequestVoteResponse:
    """A voter's answer to ``RequestVote``: granted unless ``reject``."""

    src: Id
    dst: Id
    term: Term
    reject: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class RequestPreVote:
    """A pre-candidate asks whether it *would* win an election at ``term`` (dissertation §9.6).

    ``term`` is the term the sender would campaign at; the sender's own term is one less and does not change.
    """

    src: Id
    dst: Id
    term: Term
    last_index: Index
    last_term: Term


@dataclass(slots=True, frozen=True, kw_only=True)
class RequestPreVoteResponse:
    """A voter's answer to ``RequestPreVote``; a granted answer echoes the requested term."""

    src: Id
    dst: Id
    term: Term
    reject: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class AppendEntries:
    """The leader replicates ``entries``, which follow the entry at ``prev_index``/``prev_term`` (Raft §5.3).

    ``commit_only``: an empty append to a follower the leader knows holds its whole log (``prev_index`` is the
    leader's last index and the follower's match), sent only to carry a new commit index. A follower whose log
    matches takes the commit and does not answer: the answer would tell the leader nothing it does not know,
    and it is a message per follower per commit. (If the logs do not match after all, it answers with a
    rejection as for any append; if the append is lost, the next heartbeat carries the commit.)
    """

    src: Id
    dst: Id
    term: Term
    prev_index: Index
    prev_term: Term
    entries: tuple[Entry, ...] = ()
    commit: Index = 0
    commit_only: bool = False


@dataclass(slots=True, frozen=True, kw_only=True)
class AppendEntriesResponse:
    """A follower's answer to ``AppendEntries`` or ``InstallSnapshot``.

    On success ``index`` is the last index the follower now has in common with the leader. On ``reject``,
    ``index`` is the rejected ``prev_index`` and (``reject_hint``, ``log_term``) is the follower's best guess of
    where the logs last agree: its last entry at or below ``reject_hint`` whose term is at most the leader's
    ``prev_term``. The leader uses it to skip a whole divergent term per round trip.
    """

    src: Id
    dst: Id
    term: Term
    index: Index
    reject: bool = False
    reject_hint: Index = 0
    log_term: Term = 0


@dataclass(slots=True, frozen=True, kw_only=True)
class Heartbeat:
    """The leader asserts its leadership and tells how far the follower may commit.

    ``commit`` never exceeds what the follower is known to hold. ``read_round`` is the newest pending
    ReadIndex round (0 if none): answering confirms this leader for every read of that round or older.
    """

    src: Id
    dst: Id
    term: Term
    commit: Index = 0
    read_round: Index = 0


@dataclass(slots=True, frozen=True, kw_only=True)
class HeartbeatResponse:
    """A follower's answer to ``Heartbeat``, echoing its ``read_round``."""

    src: Id
    dst: Id
    term: Term
    read_round: Index = 0


@dataclass(slots=True, frozen=True, kw_only=True)
class InstallSnapshot:
    """The leader sends a snapshot to a follower whose next entry it no longer has (Raft §7)."""

    src: Id
    dst: Id
    term: Term
    snapshot: Snapshot


@dataclass(slots=True, frozen=True, kw_only=True)
class TimeoutNow:
    """The leader tells an up-to-date follower to start an election at once (leadership transfer, §3.10)."""

    src: Id
    dst: Id
    term: Term


@dataclass(slots=True, frozen=True, kw_only=True)
class Propose:
    """Commands to append to the log; sent to a node by its driver, or forwarded by a follower to its leader."""

    src: Id
    dst: Id
    term: Term = 0
    data: tuple[bytes, ...] = ()


@dataclass(slots=True, frozen=True, kw_only=True)
class ReadIndex:
    """A linearizable read request identified by ``context``; followers forward it to their leader (§6.4)."""

    src: Id
    dst: Id
    term: Term = 0
    context: bytes = b""


@dataclass(slots=True, frozen=True, kw_only=True)
class ReadIndexResponse:
    """The leader's answer to a forwarded ``ReadIndex``: the read may be served once ``index`` is applied."""

    src: Id
    dst: Id
    term: Term
    index: Index
    context: bytes = b""


@dataclass(slots=True, frozen=True, kw_only=True)
class TransferLeader:
    """A request that leadership move to ``target``; a follower forwards it to its leader."""

    src: Id
    dst: Id
    term: Term = 0
    target: Id = 0


Message: TypeAlias = (
    RequestVote
    | RequestVoteResponse
    | RequestPreVote
    | RequestPreVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | TimeoutNow
    | Propose
    | ReadIndex
    | ReadIndexResponse
    | TransferLeader
)
"""Any message a node can receive or send."""

MESSAGE_TYPES: tuple[type[Message], ...] = (
    RequestVote,
    RequestVoteResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    TimeoutNow,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    TransferLeader,
)
"""Every message kind, in a stable order (wire layers may use the position as a tag)."""

CLIENT_MESSAGE_TYPES: tuple[type[Message], ...] = (Propose, ReadIndex, TransferLeader)
"""The kinds that clients originate and that carry no term of their own."""
