"""``Ready``: everything a node asks its driver to do, and the order the driver must do it in."""

from __future__ import annotations

from dataclasses import dataclass

from raft_core.messages import Message
from raft_core.types import Entry, HardState, ReadState, Snapshot, SoftState


@dataclass(slots=True, frozen=True)
class Ready:
    """One batch of work for the driver, to be handled in exactly the order below.

    1. **Persist**: if ``snapshot`` is set, store it (it replaces every entry it covers); append ``entries``
       to durable storage, first dropping any stored entries at or after ``entries[0].index`` (a new leader
       may overwrite an uncommitted suffix); store ``hard_state`` if set. If ``must_sync``, make all of it
       durable (fsync) before step 2. Persist one Ready as one batch: one sync for all of it.
    2. **Send** ``messages``. They may promise what step 1 stored (a vote, an acknowledged append), so they
       must never leave before it is durable.
    3. **Apply**: if ``snapshot`` is set, first restore the state machine from it; then apply
       ``committed_entries`` in order. They are durable (on this node, and on a majority) once step 1 is
       done. Serve ``read_states`` once the state machine has applied up to their index.
    4. Call ``RaftNode.advance(ready)``. Until then the node accepts no other call.

    The driver also reports what only it can see: ``RaftNode.report_snapshot(id, ok=...)`` once a snapshot
    sent to ``id`` (an ``InstallSnapshot`` message) was delivered or given up, and
    ``RaftNode.report_unreachable(id)`` when a message to ``id`` could not be delivered.

    ``soft_state`` is informational (role or leader changed) and needs no persistence.
    """

    soft_state: SoftState | None
    """The new role and leader, when either changed since the last Ready."""
    hard_state: HardState | None
    """Term, vote and commit to persist, when any changed since the last Ready."""
    entries: tuple[Entry, ...]
    """Entries to append to durable storage (may overwrite a conflicting stored suffix)."""
    snapshot: Snapshot | None
    """A snapshot received from the leader, to persist and to restore the state machine from."""
    committed_entries: tuple[Entry, ...]
    """Entries to apply to the state machine, in index order."""
    messages: tuple[Message, ...]
    """Messages to send after persisting."""
    read_states: tuple[ReadState, ...]
    """Linearizable reads that may be served once the state machine has applied up to their index."""
    must_sync: bool
    """Whether persisting needs an fsync: true when entries, a snapshot, the term or the vote changed."""

    def is_empty(self) -> bool:
        """Whether the driver has nothing at all to do for this Ready."""
        return (
            self.soft_state is None
            and self.hard_state is None
            and not self.entries
            and self.snapshot is None
            and not self.committed_entries
            and not self.messages
            and not self.read_states
        )
