"""``raft_core.validation``: untrusted data becomes raft-core values only if types and bounds hold.

Complements test_boundary_validation.py (round trips): here, every bound of every value type, the message
envelope's error cases, and the adapter's own contract.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import typing

import pytest
from pydantic import ValidationError

from raft_core import (
    MESSAGE_TYPES,
    AppendEntries,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    Membership,
    Snapshot,
    SnapshotMeta,
)
from raft_core.validation import (
    VALUE_TYPES,
    adapter,
    message_from_json,
    message_to_json,
    to_json,
    validate,
    validate_json,
)


def _valid_body(kind: type[object]) -> dict[str, object]:
    """The smallest valid dict for ``kind``: every required field set to a zero of its type."""
    body: dict[str, object] = {}
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue
        body[f.name] = {"meta": {}} if hints[f.name] is Snapshot else 0
    return body


def _bounded_fields() -> list[tuple[type[object], str]]:
    """(kind, field) for every integer field (terms, indexes, ids) of every value type."""
    found = []
    for kind in VALUE_TYPES:
        hints = typing.get_type_hints(kind)
        found += [(kind, f.name) for f in dataclasses.fields(kind) if hints[f.name] is int]
    return found


BOUNDED = _bounded_fields()


def test_every_message_kind_has_bounded_fields() -> None:
    kinds = {kind for kind, _ in BOUNDED}
    assert set(MESSAGE_TYPES) <= kinds
    assert {Entry, HardState, SnapshotMeta} <= kinds


@pytest.mark.parametrize(("kind", "name"), BOUNDED, ids=lambda x: getattr(x, "__name__", x))
def test_negative_numbers_are_rejected_with_the_field_named(kind: type[object], name: str) -> None:
    body = _valid_body(kind)
    assert validate(kind, body) is not None  # the baseline is valid
    body[name] = -1
    with pytest.raises(ValidationError) as excinfo:
        validate(kind, body)
    assert [err["loc"] for err in excinfo.value.errors()] == [(name,)]


@pytest.mark.parametrize("kind", MESSAGE_TYPES, ids=lambda k: k.__name__)
def test_missing_required_fields_are_named(kind: type[object]) -> None:
    required = set(_valid_body(kind))
    with pytest.raises(ValidationError) as excinfo:
        validate(kind, {})
    assert {err["loc"][0] for err in excinfo.value.errors()} == required


def test_fractional_numbers_are_rejected() -> None:
    with pytest.raises(ValidationError, match="index"):
        validate(Entry, {"term": 1, "index": 2.5})


def test_unknown_entry_kind_is_rejected() -> None:
    with pytest.raises(ValidationError, match="kind"):
        validate(Entry, {"term": 1, "index": 1, "kind": 7})
    assert validate(Entry, {"term": 1, "index": 1, "kind": 1}).kind is EntryKind.NOOP


def test_nested_values_are_validated_with_their_path() -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate(AppendEntries, {**_valid_body(AppendEntries), "entries": [{"term": 1, "index": -3}]})
    assert [err["loc"] for err in excinfo.value.errors()] == [("entries", 0, "index")]
    with pytest.raises(ValidationError) as excinfo:
        validate(Snapshot, {"meta": {"index": 1, "term": -1}})
    assert [err["loc"] for err in excinfo.value.errors()] == [("meta", "term")]


def test_membership_ids_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="positive"):
        validate(Membership, {"voters": [0, 1]})
    assert validate(Membership, {"voters": [1, 2], "learners": [3]}) == Membership(frozenset({1, 2}), frozenset({3}))


def test_an_invalid_instance_is_rechecked() -> None:
    # Dataclass construction does not check bounds (hot path); validate() promises to re-check an instance.
    with pytest.raises(ValidationError, match="term"):
        validate(Entry, Entry(term=-1, index=1))
    with pytest.raises(ValidationError, match="commit"):
        validate(HardState, HardState(term=1, commit=-2))


def test_a_valid_instance_passes_unchanged() -> None:
    entry = Entry(term=2, index=5, kind=EntryKind.NORMAL, data=b"\x00\xff")
    assert validate(Entry, entry) == entry


# -- JSON ------------------------------------------------------------------------------------------------


def test_bytes_travel_as_base64() -> None:
    # pydantic writes the URL-safe alphabet ("-" and "_") and reads either alphabet.
    entry = Entry(term=1, index=1, data=b"\xff\x00")
    raw = json.loads(to_json(entry))
    assert base64.urlsafe_b64decode(raw["data"]) == b"\xff\x00"
    assert validate_json(Entry, to_json(entry)) == entry
    assert validate_json(Entry, b'{"term": 1, "index": 1, "data": "/wA="}') == entry


def test_invalid_base64_is_rejected() -> None:
    with pytest.raises(ValidationError, match="data"):
        validate_json(Entry, b'{"term": 1, "index": 1, "data": "!!"}')


def test_malformed_json_is_rejected() -> None:
    with pytest.raises(ValidationError):
        validate_json(HardState, b'{"term": 1,')


def test_message_envelope_names_the_kind() -> None:
    message = Heartbeat(src=1, dst=2, term=3, commit=4, read_round=7)
    raw = json.loads(message_to_json(message))
    assert raw["kind"] == "Heartbeat"
    assert raw["body"]["commit"] == 4
    assert message_from_json(message_to_json(message)) == message


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"[1, 2]", "JSON object"),
        (b'{"kind": "Heartbeat"}', "JSON object"),
        (b'{"kind": "Heartbeat", "body": {}, "extra": 1}', "JSON object"),
        (b'{"kind": 3, "body": {}}', "unknown message kind"),
        (b'{"kind": "Nope", "body": {}}', "unknown message kind"),
        (b'{"kind": "HardState", "body": {}}', "unknown message kind"),  # a value type, but not a message
    ],
)
def test_malformed_envelopes_are_rejected(data: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        message_from_json(data)


def test_an_invalid_message_body_is_rejected_with_the_field_named() -> None:
    with pytest.raises(ValidationError, match="prev_term"):
        message_from_json(b'{"kind": "AppendEntries", "body": {"src": 1, "dst": 2, "term": 1, "prev_index": 0}}')


# -- the adapter -----------------------------------------------------------------------------------------


def test_adapters_are_cached() -> None:
    assert adapter(Entry) is adapter(Entry)


def test_only_raft_core_value_types_have_adapters() -> None:
    with pytest.raises(TypeError, match="not a raft-core value type"):
        adapter(int)
    with pytest.raises(TypeError):
        to_json(object())
