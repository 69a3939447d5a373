"""``Config``: defaults, and validation that names the offending field."""

from __future__ import annotations

import pydantic
import pytest

from raft_core.config import Config
from raft_core.errors import ConfigError, RaftError


def test_defaults() -> None:
    config = Config.build(id=1)
    assert config.id == 1
    assert config.election_ticks == 10
    assert config.heartbeat_ticks == 1
    assert config.pre_vote is True
    assert config.check_quorum is True
    assert config.forward_proposals is True
    assert config.max_size_per_msg == 1 << 20
    assert config.max_inflight_msgs == 256
    assert config.max_inflight_bytes == 32 << 20
    assert config.max_committed_size_per_ready == 64 << 20
    assert config.max_uncommitted_size == 0
    assert config.applied == 0


def test_build_accepts_overrides() -> None:
    config = Config.build(id=3, election_ticks=20, heartbeat_ticks=4, pre_vote=False, check_quorum=False)
    assert (config.id, config.election_ticks, config.heartbeat_ticks) == (3, 20, 4)
    assert not config.pre_vote
    assert not config.check_quorum


def test_config_is_frozen() -> None:
    config = Config.build(id=1)
    with pytest.raises(pydantic.ValidationError):
        config.election_ticks = 5  # type: ignore[misc]


def test_config_error_is_a_value_error_and_a_raft_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, RaftError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", 0),
        ("id", -1),
        ("election_ticks", 1),
        ("election_ticks", 0),
        ("heartbeat_ticks", 0),
        ("max_size_per_msg", 0),
        ("max_inflight_msgs", 0),
        ("max_inflight_bytes", 0),
        ("max_committed_size_per_ready", 0),
        ("max_uncommitted_size", -1),
        ("applied", -1),
        ("election_ticks", "ten"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    values: dict[str, object] = {"id": 1, field: value}
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        Config.build(**values)


def test_missing_id_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\bid\b"):
        Config.build()


def test_unknown_field_is_named() -> None:
    with pytest.raises(ConfigError, match="election_timeout"):
        Config.build(id=1, election_timeout=10)


@pytest.mark.parametrize(("heartbeat", "election"), [(10, 10), (11, 10), (5, 5)])
def test_heartbeat_must_be_shorter_than_the_election_timeout(heartbeat: int, election: int) -> None:
    with pytest.raises(ConfigError, match="heartbeat_ticks") as excinfo:
        Config.build(id=1, heartbeat_ticks=heartbeat, election_ticks=election)
    assert "election_ticks" in str(excinfo.value)


def test_heartbeat_just_below_the_election_timeout_is_accepted() -> None:
    config = Config.build(id=1, heartbeat_ticks=9, election_ticks=10)
    assert config.heartbeat_ticks == 9


def test_every_problem_is_listed() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.build(id=0, election_ticks=1, max_inflight_msgs=0)
    message = str(excinfo.value)
    for field in ("id", "election_ticks", "max_inflight_msgs"):
        assert field in message


def test_config_error_hides_the_pydantic_traceback() -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.build(id=0)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


def test_direct_construction_still_validates() -> None:
    # Config(...) bypasses build(): pydantic's own ValidationError (also a ValueError) is raised.
    with pytest.raises(ValueError, match="id"):
        Config(id=0)
