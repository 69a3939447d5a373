"""``NodeOptions``: how a runtime node runs (timing, limits, snapshots, sessions), validated when built."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raft_core.config import Config
from raft_core.errors import ConfigError


class NodeOptions(BaseModel):
    """Settings of one runtime node. Times are in seconds; defaults suit Python nodes on a LAN.

    With the defaults a leader sends heartbeats every 100 ms and followers campaign after 1 to 2 s of
    silence. Invalid values raise ``ConfigError`` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tick_interval: float = Field(default=0.05, gt=0, le=10, description="Seconds per core tick.")
    election_ticks: int = Field(default=20, ge=2, description="Ticks of silence before a follower campaigns.")
    heartbeat_ticks: int = Field(default=2, ge=1, description="Ticks between a leader's heartbeats.")
    pre_vote: bool = Field(default=True, description="Run pre-votes (a rejoining node cannot depose a leader).")
    check_quorum: bool = Field(default=True, description="A leader cut off from a majority steps down.")
    forward_proposals: bool = Field(
        default=True,
        description="A follower forwards proposals to the leader; when False, propose() raises NotLeader "
        "with the leader's id and address.",
    )
    proposal_timeout: float = Field(default=10.0, gt=0, description="Default deadline of propose().")
    read_timeout: float = Field(default=10.0, gt=0, description="Default deadline of read().")
    max_pending_proposals: int = Field(
        default=4096,
        ge=1,
        description="Proposals this node may have waiting to be applied; more are refused with Overloaded.",
    )
    max_uncommitted_bytes: int = Field(
        default=8 << 20,
        ge=1,
        description="Entry bytes a leader holds uncommitted before it refuses proposals with Overloaded.",
    )
    max_command_bytes: int = Field(
        default=4 << 20,
        ge=1,
        le=16 << 20,
        description="Largest command propose() accepts (bytes, before its envelope); at most 16 MiB, so that "
        "every transport can carry it.",
    )
    max_pending_reads: int = Field(
        default=4096, ge=1, description="Reads this node may have waiting; more are refused with Overloaded."
    )
    max_entries_per_append: int = Field(
        default=1 << 20, ge=1, description="Largest entry payload total (bytes) in one AppendEntries."
    )
    max_inflight_appends: int = Field(
        default=256,
        ge=1,
        description="AppendEntries a leader may have unacknowledged per follower. Entries proposed while the "
        "window is full wait and leave together in one larger append: over a transport whose messages cost more "
        "than the entries they carry (gRPC: tens of microseconds of CPU per stream write on each side) a small "
        "window (2) sends fewer, fuller appends.",
    )
    snapshot_entries: int = Field(
        default=10_000, ge=1, description="Take a snapshot after this many entries applied since the last."
    )
    snapshot_bytes: int = Field(
        default=64 << 20, ge=1, description="... or after this many payload bytes applied since the last."
    )
    compact_keep_entries: int = Field(
        default=1_000,
        ge=0,
        description="Entries kept below a new snapshot, so slightly slow followers catch up from the log.",
    )
    snapshot_chunk_bytes: int = Field(
        default=1 << 20, ge=1, le=16 << 20, description="Bytes per snapshot chunk sent (at most 16 MiB)."
    )
    snapshot_window: int = Field(default=4, ge=1, description="Snapshot chunks in flight per follower.")
    snapshot_chunk_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a chunk's acknowledgement before giving up."
    )
    session_ttl: float = Field(
        default=3600.0,
        ge=0.001,
        le=10 * 365 * 86400.0,
        description="A session opened by this node expires once unused for this long in log time. Log time is "
        "the proposing node's clock, written into each command; the TTL is written into the session's opening "
        "entry. Both travel in the log, so every node expires sessions identically.",
    )
    max_sessions: int = Field(
        default=100_000,
        ge=1,
        le=(1 << 32) - 1,
        description="Most sessions the cluster keeps (the idlest go first), written into each opening entry.",
    )
    max_inbox_messages: int = Field(
        default=65_536,
        ge=1,
        description="Received messages waiting for the Ready loop; past it more are dropped (Raft resends).",
    )
    empty_append_delay: float = Field(
        default=0.002,
        ge=0,
        description="Seconds a leader holds an AppendEntries without entries (it carries a new commit index, or "
        "probes) before sending it; an append to the same follower meanwhile replaces it. At low load most are "
        "never sent: the next proposal's append carries the commit. Followers learn a commit up to this much "
        "later when nothing else is proposed; 0 sends at once.",
    )
    persist_in_thread: bool = Field(
        default=True,
        description="Persist each Ready in a worker thread, so the event loop keeps receiving during fsync.",
    )

    @model_validator(mode="after")
    def _check_ticks(self) -> NodeOptions:
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError("heartbeat_ticks must be smaller than election_ticks")
        return self

    def __init__(self, **values: Any) -> None:
        """Validate ``values``; raises ``ConfigError`` listing every problem."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid node options: {problems}") from None

    def core_config(self, node_id: int, applied: int) -> Config:
        """The core's ``Config`` for node ``node_id`` restarting with ``applied`` entries applied."""
        return Config(
            id=node_id,
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            forward_proposals=self.forward_proposals,
            max_uncommitted_size=self.max_uncommitted_bytes,
            max_size_per_msg=self.max_entries_per_append,
            max_inflight_msgs=self.max_inflight_appends,
            applied=applied,
        )
