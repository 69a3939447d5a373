"""Follower progress as the leader tracks it: a small state machine per follower (probe/replicate/snapshot).

- ``PROBE``: the leader does not know where the follower's log matches its own. It sends one append at a time
  (at most one per heartbeat) and backs up on each rejection.
- ``REPLICATE``: the follower is known to match up to ``match``. The leader streams appends optimistically,
  advancing ``next`` as it sends, within the in-flight window.
- ``SNAPSHOT``: the follower needs entries the leader has compacted; a snapshot is on its way and nothing else
  is sent until the follower acknowledges it or the driver reports it failed.

Invariant: ``match < next``.
"""

from __future__ import annotations

import enum

from raft_core.inflights import Inflights


class ProgressState(enum.Enum):
    """How the leader replicates to one follower."""

    PROBE = "probe"
    """Looking for the point where the logs match: one append per heartbeat interval."""
    REPLICATE = "replicate"
    """Streaming appends, pipelined within the in-flight window."""
    SNAPSHOT = "snapshot"
    """Waiting for a snapshot to be installed; no appends are sent."""


class Progress:
    """What the leader knows of one follower's log."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "state",
    )

    def __init__(self, next_index: int, inflights: Inflights, *, is_learner: bool = False) -> None:
        """A follower about which nothing is known yet: probe from ``next_index``."""
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.recent_active = False
        self.probe_sent = False
        self.inflights = inflights
        self.is_learner = is_learner

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        """Go back to probing from just after ``match`` (or after a snapshot that was being sent)."""
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Start streaming from just after ``match``."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """Wait for the snapshot at ``snapshot_index`` to be installed."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, last_index: int, size: int) -> None:
        """Record an append carrying entries up to ``last_index`` (``size`` bytes) sent to this follower."""
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflights.add(last_index, size)
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged ``index``; returns whether that told us anything new."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append after ``rejected``; back ``next`` up toward ``match_hint + 1``.

        Returns False for a stale rejection (one about an append already superseded).
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        """Whether the leader must hold further appends to this follower for now."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def __repr__(self) -> str:
        """A one-line description, e.g. ``replicate match=5 next=9 inflight=2``."""
        text = f"{self.state.value} match={self.match} next={self.next}"
        if self.is_learner:
            text += " learner"
        if self.state is ProgressState.SNAPSHOT:
            text += f" pending_snapshot={self.pending_snapshot}"
        if self.inflights.count():
            text += f" inflight={self.inflights.count()}"
        if self.probe_sent:
            text += " paused"
        return text
