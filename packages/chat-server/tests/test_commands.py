"""The replicated chat commands: encoding, decoding, field validation and dedup keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chat_server import commands as c

H = "0123456789abcdef" * 4

SAMPLES: list[c.ChatCommand] = [
    c.Register(request_id="r1", username="alice", password_hash="$argon2id$x", display_name="Alice A."),
    c.Register(request_id="r1", username="bob.b_2-x", password_hash="h"),
    c.Login(request_id="r2", username="alice", token_hash=H, device="laptop", expires_at_ms=10**13),
    c.Logout(request_id="r3", token_hash=H),
    c.SetDisplayName(request_id="r4", actor="alice", display_name="Al"),
    c.Presence(actor="alice", online=True, expires_at_ms=5),
    c.OpenDirect(request_id="r5", actor="bob", peer="alice", conversation_id="dm:alice:bob"),
    c.CreateRoom(
        request_id="r6", actor="alice", conversation_id="r:1", name="Ops", topic="t", public=True, members=["bob"]
    ),
    c.Invite(request_id="r7", actor="alice", conversation_id="r:1", usernames=["bob", "carol"]),
    c.Join(request_id="r8", actor="bob", conversation_id="r:1"),
    c.Leave(request_id="r9", actor="bob", conversation_id="r:1"),
    c.Send(request_id="r10", actor="alice", conversation_id="r:1", body="héllo\nwörld 🎉"),
    c.Edit(request_id="r11", actor="alice", conversation_id="r:1", seq=4, body="x"),
    c.Delete(request_id="r12", actor="alice", conversation_id="r:1", seq=4),
    c.MarkRead(actor="alice", conversation_id="r:1", seq=0),
    c.Typing(actor="alice", conversation_id="r:1", typing=True, expires_at_ms=9),
    c.KvPut(request_id="k1", key=b"\x00key\xff", value=b""),
    c.KvDelete(request_id="k2", key=b"k"),
    c.KvCas(request_id="k3", key=b"k", expected_value=b"old", new_value=b"new"),
    c.KvCas(request_id="k4", key=b"k", expect_absent=True, new_value=b"\x00" * 10),
]


@pytest.mark.parametrize("cmd", SAMPLES, ids=lambda cmd: cmd.op)
def test_round_trip(cmd: c.ChatCommand) -> None:
    data = c.encode(cmd)
    assert isinstance(data, bytes)
    assert c.decode(data) == cmd
    assert json.loads(data)["op"] == cmd.op
    assert b": " not in data and b", " not in data  # compact


def test_every_op_has_a_sample() -> None:
    assert {cmd.op for cmd in SAMPLES} == c._OPS


def test_kv_bytes_are_base64_in_json() -> None:
    data = json.loads(c.encode(c.KvPut(request_id="k", key=b"\x00\xff", value=b"hi")))
    assert data == {"op": "kv_put", "request_id": "k", "key": "AP8=", "value": "aGk="}


def test_commands_are_frozen() -> None:
    cmd = c.Register(request_id="r1", username="alice", password_hash="h")
    with pytest.raises(ValidationError):
        cmd.request_id = "other"  # type: ignore[misc]


@given(body=st.text(min_size=1, max_size=300).filter(lambda s: len(s.encode("utf-8", "surrogatepass")) <= 4096))
def test_any_text_body_round_trips(body: str) -> None:
    try:
        body.encode()
    except UnicodeEncodeError:
        with pytest.raises(ValidationError, match="UTF-8"):
            c.Send(request_id="r", actor="alice", conversation_id="r:1", body=body)
        return
    cmd = c.Send(request_id="r", actor="alice", conversation_id="r:1", body=body)
    assert c.decode(c.encode(cmd)) == cmd


@given(data=st.binary(max_size=200))
def test_random_bytes_never_decode_to_something_else(data: bytes) -> None:
    try:
        cmd = c.decode(data)
    except c.CommandDecodeError as exc:
        assert str(exc).startswith("not a chat command")
    else:
        assert c.decode(c.encode(cmd)) == cmd


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a chat command"),
        (b"\xff\xfe garbage", "not a chat command"),
        (b"[1, 2]", "not a chat command"),
        (b'{"op": "nope"}', "does not match any of the expected tags"),
        (b'{"request_id": "x"}', "op"),
        (b'{"op": "send", "request_id": "r", "actor": "alice", "conversation_id": "r:1"}', "body: Field required"),
        (b'{"op": "logout", "request_id": "r", "token_hash": "' + H.encode() + b'", "x": 1}', "x: Extra inputs"),
        (b'{"op": "mark_read", "actor": "alice", "conversation_id": "r:1", "seq": "many"}', "seq"),
        (b'{"op": "kv_put", "request_id": "r", "key": "%%%", "value": ""}', "key: is not valid base64"),
    ],
)
def test_garbage_is_a_clear_decode_error(data: bytes, match: str) -> None:
    with pytest.raises(c.CommandDecodeError, match=match):
        c.decode(data)


def _invalid(build: object, **fields: object) -> str:
    assert callable(build)
    with pytest.raises(ValidationError) as info:
        build(**fields)
    return c.explain(info.value)


@pytest.mark.parametrize("name", ["al", "Alice", "1abc", "a" * 33, "al ice", "al:ice", "", "ålice"])
def test_bad_usernames(name: str) -> None:
    text = _invalid(c.Register, request_id="r", username=name, password_hash="h")
    assert text.startswith("username: ") and "3 to 32 characters" in text


@pytest.mark.parametrize("name", ["abc", "a" * 32, "a.b_c-d9"])
def test_good_usernames(name: str) -> None:
    assert c.Register(request_id="r", username=name, password_hash="h").username == name


def test_request_id_length() -> None:
    assert "request_id: must be 1 to 64" in _invalid(c.Join, request_id="", actor="alice", conversation_id="r:1")
    assert "request_id" in _invalid(c.Join, request_id="x" * 65, actor="alice", conversation_id="r:1")
    assert c.Join(request_id="x" * 64, actor="alice", conversation_id="r:1")


def test_body_is_measured_in_utf8_bytes() -> None:
    ok: dict[str, Any] = {"request_id": "r", "actor": "alice", "conversation_id": "r:1"}
    assert c.Send(**ok, body="x" * 4096)
    assert c.Send(**ok, body="é" * 2048)  # 4096 bytes
    assert "4096 bytes" in _invalid(c.Send, **ok, body="x" * 4097)
    assert "(got 4098)" in _invalid(c.Send, **ok, body="é" * 2049)
    assert "(got 0)" in _invalid(c.Send, **ok, body="")
    assert "UTF-8" in _invalid(c.Send, **ok, body="\ud800")


def test_names_and_topics() -> None:
    base: dict[str, Any] = {"request_id": "r", "actor": "alice", "conversation_id": "r:1"}
    assert "name: must be 1 to 64" in _invalid(c.CreateRoom, **base, name="")
    assert "not blank" in _invalid(c.CreateRoom, **base, name="   ")
    assert "name" in _invalid(c.CreateRoom, **base, name="x" * 65)
    assert "control characters" in _invalid(c.CreateRoom, **base, name="a\nb")
    assert "topic: must be at most 256" in _invalid(c.CreateRoom, **base, name="n", topic="t" * 257)
    assert c.CreateRoom(**base, name="x" * 64, topic="t" * 256)
    assert "display_name" in _invalid(c.SetDisplayName, request_id="r", actor="alice", display_name="")
    assert c.Register(request_id="r", username="alice", password_hash="h").display_name == ""


def test_member_lists() -> None:
    base: dict[str, Any] = {"request_id": "r", "actor": "alice", "conversation_id": "r:1"}
    many = [f"user{i}" for i in range(101)]
    assert "at most 100 usernames" in _invalid(c.CreateRoom, **base, name="n", members=many)
    assert c.CreateRoom(**base, name="n", members=many[:100])
    assert "usernames" in _invalid(c.Invite, **base, usernames=[])
    assert "usernames.1" in _invalid(c.Invite, **base, usernames=["bob", "B"])


def test_direct_conversation_ids() -> None:
    assert c.direct_id("bob", "alice") == c.direct_id("alice", "bob") == "dm:alice:bob"
    text = _invalid(c.OpenDirect, request_id="r", actor="alice", peer="alice", conversation_id="dm:alice:alice")
    assert "yourself" in text
    text = _invalid(c.OpenDirect, request_id="r", actor="alice", peer="bob", conversation_id="dm:bob:alice")
    assert "must be 'dm:alice:bob'" in text
    assert "must not start with 'dm:'" in _invalid(
        c.CreateRoom, request_id="r", actor="alice", conversation_id="dm:x", name="n"
    )


def test_tokens_times_and_kv_sizes() -> None:
    assert "SHA-256" in _invalid(c.Logout, request_id="r", token_hash="ABC")
    assert "SHA-256" in _invalid(c.Logout, request_id="r", token_hash=H.upper())
    assert "expires_at_ms" in _invalid(c.Login, request_id="r", username="alice", token_hash=H, expires_at_ms=-1)
    assert "seq" in _invalid(c.Edit, request_id="r", actor="alice", conversation_id="r:1", seq=0, body="b")
    assert "device" in _invalid(
        c.Login, request_id="r", username="alice", token_hash=H, device="d" * 65, expires_at_ms=1
    )
    assert "key: must be 1 to 1024 bytes" in _invalid(c.KvDelete, request_id="r", key=b"")
    assert "key" in _invalid(c.KvDelete, request_id="r", key=b"k" * 1025)
    assert "value: must be at most" in _invalid(c.KvPut, request_id="r", key=b"k", value=b"v" * ((1 << 20) + 1))
    assert c.KvPut(request_id="r", key=b"k" * 1024, value=b"v" * (1 << 20))


def test_conversation_id_shape() -> None:
    assert "conversation_id" in _invalid(c.Join, request_id="r", actor="alice", conversation_id="")
    assert "conversation_id" in _invalid(c.Join, request_id="r", actor="alice", conversation_id="r:\n")
    assert "conversation_id" in _invalid(c.Join, request_id="r", actor="alice", conversation_id="x" * 129)


def test_dedup_keys() -> None:
    by_op = {cmd.op: c.dedup_key(cmd) for cmd in SAMPLES}
    assert by_op["register"] == ("bob.b_2-x", "r1")
    assert by_op["login"] == ("alice", "r2")
    assert by_op["logout"] == (f"@session:{H}", "r3")
    assert by_op["send"] == ("alice", "r10")
    assert by_op["kv_cas"] == (c.ADMIN, "k4")
    assert by_op["mark_read"] is None and by_op["typing"] is None and by_op["presence"] is None


def test_explain_strips_the_op_of_union_errors() -> None:
    with pytest.raises(c.CommandDecodeError) as info:
        c.decode(b'{"op": "typing", "actor": "alice", "conversation_id": "r:1", "typing": "maybe"}')
    assert "typing: Input should be a valid boolean" in str(info.value)
    assert "typing.typing" not in str(info.value)
