"""KvStateMachine: command encoding, deterministic apply, results, snapshot round trip, malformed input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raft_core.runtime import Command
from raft_grpc.kv.state_machine import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    KvCommandError,
    KvStateMachine,
    decode,
    encode_cas,
    encode_delete,
    encode_put,
)


def apply(sm, data, index=1):
    return sm.apply(Command(index=index, term=1, data=data, time=0))


keys = st.binary(min_size=1, max_size=8)
values = st.binary(max_size=16)
commands = st.one_of(
    st.builds(encode_put, keys, values),
    st.builds(encode_delete, keys),
    st.builds(encode_cas, keys, st.one_of(st.none(), values), values),
)


@given(st.lists(commands, max_size=60))
def test_the_same_commands_give_the_same_state_and_results(cmds):
    a, b = KvStateMachine(), KvStateMachine()
    results_a = [apply(a, c, i) for i, c in enumerate(cmds, 1)]
    results_b = [apply(b, c, i) for i, c in enumerate(cmds, 1)]
    assert results_a == results_b
    assert a.snapshot() == b.snapshot()


@given(st.lists(commands, max_size=60))
def test_snapshot_round_trips(cmds):
    sm = KvStateMachine()
    for i, c in enumerate(cmds, 1):
        apply(sm, c, i)
    restored = KvStateMachine()
    restored.restore(sm.snapshot())
    assert restored.data == sm.data
    assert restored.revision == sm.revision
    assert restored.snapshot() == sm.snapshot()


def test_results_of_each_command():
    sm = KvStateMachine()
    assert apply(sm, encode_put(b"k", b"v1")) == {"rev": 1}
    assert sm.get(b"k") == (b"v1", 1)
    assert apply(sm, encode_cas(b"k", b"nope", b"v2")) == {"ok": False, "value": b"v1", "rev": 1}
    assert apply(sm, encode_cas(b"k", b"v1", b"v2")) == {"ok": True, "value": None, "rev": 2}
    assert apply(sm, encode_cas(b"k", None, b"v3")) == {"ok": False, "value": b"v2", "rev": 2}
    assert apply(sm, encode_cas(b"new", None, b"")) == {"ok": True, "value": None, "rev": 3}
    assert sm.get(b"new") == (b"", 3)  # an empty value is a value, not absence
    assert apply(sm, encode_delete(b"k")) == {"existed": True, "rev": 4}
    assert apply(sm, encode_delete(b"k")) == {"existed": False, "rev": 4}
    assert sm.get(b"k") == (None, 4)


def test_limits_are_enforced_when_encoding():
    with pytest.raises(KvCommandError, match="empty"):
        encode_put(b"", b"v")
    with pytest.raises(KvCommandError, match="limit is 1024"):
        encode_put(b"k" * (MAX_KEY_BYTES + 1), b"v")
    with pytest.raises(KvCommandError, match="value is"):
        encode_put(b"k", b"v" * (MAX_VALUE_BYTES + 1))
    with pytest.raises(KvCommandError, match="expected_value"):
        encode_cas(b"k", b"v" * (MAX_VALUE_BYTES + 1), b"")
    encode_put(b"k" * MAX_KEY_BYTES, b"v" * MAX_VALUE_BYTES)  # exactly at the limits is fine


def test_malformed_commands_are_refused_and_change_nothing():
    rng = random.Random(7)
    good = [encode_put(b"key", b"value"), encode_delete(b"key"), encode_cas(b"key", b"a", b"b")]
    sm = KvStateMachine()
    apply(sm, encode_put(b"x", b"1"))
    before = sm.snapshot()
    bad = [b"", b"P", b"Z\x01\x00k", b"D\x01\x00kextra", b"C\x01\x00k\x07", b"C\x01\x00k\x01\xff\x00\x00\x00"]
    bad += [g[: rng.randrange(1, 3)] for g in good]
    for data in bad:
        with pytest.raises(KvCommandError):
            apply(sm, data)
    assert sm.snapshot() == before


def test_decode_inverts_encode():
    assert decode(encode_put(b"k", b"v")).value == b"v"
    assert decode(encode_cas(b"k", None, b"n")).expected is None
    assert decode(encode_cas(b"k", b"", b"n")).expected == b""
    assert decode(encode_delete(b"k")).op == "delete"
