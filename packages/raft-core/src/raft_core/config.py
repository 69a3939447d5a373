"""``Config``: the settings of one Raft node, validated when built."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from raft_core.errors import ConfigError


class Config(BaseModel):
    """How one node behaves. Times are in ticks; the driver decides how long a tick lasts.

    Build it with keyword arguments; invalid values raise ``ConfigError`` naming the field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(gt=0, description="This node's id (a positive integer).")
    election_ticks: int = Field(
        default=10,
        ge=2,
        description="Ticks without word from a leader before a follower campaigns. The actual timeout is "
        "drawn at random from [election_ticks, 2 * election_ticks) each time it is reset.",
    )
    heartbeat_ticks: int = Field(default=1, ge=1, description="Ticks between a leader's heartbeats.")
    pre_vote: bool = Field(
        default=True,
        description="Run a pre-vote before a real election, so a node that was cut off cannot disrupt a "
        "working leader by bumping the term (dissertation §9.6).",
    )
    check_quorum: bool = Field(
        default=True,
        description="A leader that has not heard from a majority within an election timeout steps down; "
        "followers that heard from a leader within an election timeout refuse (pre-)votes.",
    )
    max_size_per_msg: int = Field(
        default=1 << 20, ge=1, description="Largest entry payload (bytes) in one AppendEntries."
    )
    max_inflight_msgs: int = Field(
        default=256, ge=1, description="AppendEntries a leader may have unacknowledged per follower."
    )
    max_inflight_bytes: int = Field(
        default=32 << 20, ge=1, description="Entry bytes a leader may have unacknowledged per follower."
    )
    max_committed_size_per_ready: int = Field(
        default=64 << 20, ge=1, description="Largest total of committed entries handed out in one Ready."
    )
    max_uncommitted_size: int = Field(
        default=0,
        ge=0,
        description="Largest total of entry bytes a leader holds uncommitted before it drops proposals (0: no limit).",
    )
    forward_proposals: bool = Field(
        default=True,
        description="A follower forwards proposals and transfer requests to the leader it knows; "
        "when False it raises NotLeader naming that leader instead.",
    )
    applied: int = Field(
        default=0,
        ge=0,
        description="The last index the state machine had applied before a restart (0: replay from the "
        "snapshot or the log's start).",
    )

    @model_validator(mode="after")
    def _check_ticks(self) -> Config:
        if self.heartbeat_ticks >= self.election_ticks:
            raise ValueError(
                f"heartbeat_ticks ({self.heartbeat_ticks}) must be smaller than election_ticks "
                f"({self.election_ticks}), or followers campaign between two heartbeats"
            )
        return self

    def __init__(self, **values: Any) -> None:
        """Validate ``values``; raises ``ConfigError`` (a ``ValueError``) listing every problem."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid Raft config: {problems}") from None

    @classmethod
    def build(cls, **values: Any) -> Config:
        """Build a Config from keyword values (the same as calling ``Config(**values)``)."""
        return cls(**values)
