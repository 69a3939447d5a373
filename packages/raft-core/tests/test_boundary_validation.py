"""Values that cross a boundary are validated by pydantic and round-trip through JSON unchanged."""

from __future__ import annotations

import dataclasses
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from raft_core import MESSAGE_TYPES, Entry, EntryKind, HardState, Membership, Snapshot, SnapshotMeta
from raft_core.validation import message_from_json, message_to_json, to_json, validate, validate_json

ints = st.integers(min_value=0, max_value=2**40)
entries = st.builds(Entry, term=ints, index=ints, kind=st.sampled_from(EntryKind), data=st.binary(max_size=64))
memberships = st.builds(
    lambda voters, learners: Membership(frozenset(voters), frozenset(learners - voters)),
    st.sets(st.integers(1, 9), max_size=5),
    st.sets(st.integers(1, 9), max_size=3),
)
snapshots = st.builds(Snapshot, st.builds(SnapshotMeta, ints, ints, memberships), st.binary(max_size=64))


def _strategy_for(annotation: object) -> st.SearchStrategy[object]:
    text = str(annotation)
    if "Entry" in text:
        return st.lists(entries, max_size=4).map(tuple)
    if "Snapshot" in text:
        return snapshots
    if "tuple[bytes" in text:
        return st.lists(st.binary(max_size=16), max_size=3).map(tuple)
    if "bool" in text:
        return st.booleans()
    if "bytes" in text:
        return st.binary(max_size=32)
    return ints


def _messages() -> st.SearchStrategy[object]:
    options = []
    for kind in MESSAGE_TYPES:
        hints = typing.get_type_hints(kind)
        fields = {f.name: _strategy_for(hints[f.name]) for f in dataclasses.fields(kind)}
        options.append(st.builds(kind, **fields))
    return st.one_of(options)


@given(_messages())
def test_every_message_kind_round_trips_through_json(message: object) -> None:
    assert message_from_json(message_to_json(message)) == message  # type: ignore[arg-type]


@given(snapshots)
def test_snapshots_round_trip_with_binary_data(snapshot: Snapshot) -> None:
    assert validate_json(Snapshot, to_json(snapshot)) == snapshot


def test_negative_term_is_rejected_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="term"):
        validate(Entry, {"term": -1, "index": 3})


def test_hard_state_rejects_non_integers() -> None:
    with pytest.raises(ValidationError, match="vote"):
        validate(HardState, {"term": 1, "vote": "two", "commit": 0})


def test_unknown_message_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown message kind"):
        message_from_json(b'{"kind": "Entry", "body": {"term": 1, "index": 1}}')


def test_membership_rejects_a_node_that_is_both_voter_and_learner() -> None:
    with pytest.raises(ValidationError, match="both voters and learners"):
        validate(Membership, {"voters": [1, 2], "learners": [2]})
