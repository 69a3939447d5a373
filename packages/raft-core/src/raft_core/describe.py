"""Stable one-line text forms of entries, messages, states and Readys, for logs and golden tests.

The format is part of the test contract: change it only together with the golden files.
"""

from __future__ import annotations

from raft_core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    Propose,
    ReadIndex,
    ReadIndexResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    TransferLeader,
)
from raft_core.ready import Ready
from raft_core.types import Entry, EntryKind, HardState, Snapshot, SoftState


def describe_entry(entry: Entry) -> str:
    """``term/index`` and, when not a plain command, the kind; then the payload, e.g. ``2/7 NOOP``."""
    text = f"{entry.term}/{entry.index}"
    if entry.kind is not EntryKind.NORMAL:
        text += f" {entry.kind.name}"
    if entry.data:
        text += f" {_payload(entry.data)}"
    return text


def describe_entries(entries: tuple[Entry, ...] | list[Entry]) -> str:
    """Entries as ``[1/1 NOOP, 1/2 "x"]``."""
    return "[" + ", ".join(describe_entry(e) for e in entries) + "]"


def describe_snapshot(snapshot: Snapshot) -> str:
    """``snapshot 5/2 voters=[1,2,3]``."""
    meta = snapshot.meta
    voters = ",".join(str(v) for v in sorted(meta.membership.voters))
    text = f"snapshot {meta.index}/{meta.term} voters=[{voters}]"
    if meta.membership.learners:
        text += " learners=[" + ",".join(str(v) for v in sorted(meta.membership.learners)) + "]"
    return text


def describe_message(m: Message) -> str:
    """``1->2 AppendEntries term=3 prev=5/2 commit=4 entries=[3/6 "x"]``."""
    head = f"{m.src}->{m.dst} {type(m).__name__} term={m.term}"
    return f"{head} {_fields(m)}".rstrip()


def _fields(m: Message) -> str:
    match m:
        case RequestVote():
            return f"log={m.last_term}/{m.last_index}" + (" transfer" if m.transfer else "")
        case RequestPreVote():
            return f"log={m.last_term}/{m.last_index}"
        case RequestVoteResponse() | RequestPreVoteResponse():
            return "rejected" if m.reject else "granted"
        case AppendEntries():
            text = f"prev={m.prev_term}/{m.prev_index} commit={m.commit}"
            if m.commit_only:
                return text + " commit-only"
            return text + (f" entries={describe_entries(m.entries)}" if m.entries else "")
        case AppendEntriesResponse():
            if m.reject:
                return f"rejected index={m.index} hint={m.log_term}/{m.reject_hint}"
            return f"index={m.index}"
        case Heartbeat():
            return f"commit={m.commit}" + (f" read_round={m.read_round}" if m.read_round else "")
        case HeartbeatResponse():
            return f"read_round={m.read_round}" if m.read_round else ""
        case InstallSnapshot():
            return describe_snapshot(m.snapshot)
        case TimeoutNow():
            return ""
        case Propose():
            return "data=[" + ", ".join(_payload(d) for d in m.data) + "]"
        case ReadIndex():
            return f"context={_payload(m.context)}"
        case ReadIndexResponse():
            return f"index={m.index} context={_payload(m.context)}"
        case TransferLeader():
            return f"target={m.target}"
    raise TypeError(f"not a Raft message: {m!r}")


def describe_hard_state(hard: HardState) -> str:
    """``term=2 vote=1 commit=5``."""
    return f"term={hard.term} vote={hard.vote} commit={hard.commit}"


def describe_soft_state(soft: SoftState) -> str:
    """``leader=1 role=leader``."""
    return f"leader={soft.leader} role={soft.role.value}"


def describe_ready(ready: Ready) -> str:
    """A Ready as indented lines, one section per non-empty field, in the order the driver handles them."""
    lines = ["Ready MustSync=" + str(ready.must_sync).lower() + ":"]
    if ready.soft_state is not None:
        lines.append(f"  SoftState {describe_soft_state(ready.soft_state)}")
    if ready.hard_state is not None:
        lines.append(f"  HardState {describe_hard_state(ready.hard_state)}")
    if ready.snapshot is not None:
        lines.append(f"  Snapshot {describe_snapshot(ready.snapshot)}")
    if ready.entries:
        lines.append("  Entries:")
        lines.extend(f"    {describe_entry(e)}" for e in ready.entries)
    if ready.messages:
        lines.append("  Messages:")
        lines.extend(f"    {describe_message(m)}" for m in ready.messages)
    if ready.committed_entries:
        lines.append("  CommittedEntries:")
        lines.extend(f"    {describe_entry(e)}" for e in ready.committed_entries)
    if ready.read_states:
        lines.append("  ReadStates:")
        lines.extend(f"    index={rs.index} context={_payload(rs.context)}" for rs in ready.read_states)
    return "\n".join(lines)


def _payload(data: bytes) -> str:
    """Short printable bytes: ``"text"`` when ASCII-printable, else ``<N bytes>``."""
    if len(data) <= 32 and all(32 <= b < 127 and b != 34 for b in data):
        return '"' + data.decode("ascii") + '"'
    return f"<{len(data)} bytes>"
