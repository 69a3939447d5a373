"""TransportOptions and TlsConfig validation, and PeerAuth tokens: who is accepted, and that secrets stay hidden."""

from __future__ import annotations

import pytest

from raft_grpc import GrpcTransport, PeerAuth, TlsConfig, TransportOptions
from raft_grpc.auth import AUTH, DST, LANE, SRC

SECRET = b"s" * 16


def test_default_options_are_valid_and_render_matching_grpc_arguments():
    options = TransportOptions()
    client, server = dict(options.channel_options()), dict(options.server_options())
    assert client["grpc.max_send_message_length"] == server["grpc.max_receive_message_length"]
    assert server["grpc.http2.min_recv_ping_interval_without_data_ms"] <= client["grpc.keepalive_time_ms"]


@pytest.mark.parametrize(
    "values",
    [
        {"control_queue_messages": 0},
        {"bulk_queue_bytes": -1},
        {"connect_timeout": 0.0},
        {"initial_backoff": 3.0, "max_backoff": 1.0},
        {"max_message_bytes": 64 << 20, "bulk_queue_bytes": 32 << 20},
    ],
)
def test_invalid_options_are_refused(values):
    with pytest.raises(ValueError, match="TransportOptions"):
        TransportOptions(**values)


def test_tls_config_needs_every_part_and_hides_the_key():
    with pytest.raises(ValueError, match="private_key"):
        TlsConfig(b"ca", b"cert", b"")
    assert "KEY" not in repr(TlsConfig(b"ca", b"cert", b"-----BEGIN PRIVATE KEY-----"))


def test_a_member_is_authenticated_only_towards_its_addressee():
    auth = PeerAuth(SECRET, [1, 2, 3])
    metadata = auth.metadata(2, 1, "bulk")
    assert dict(metadata)[LANE] == "bulk"
    assert auth.authenticate(metadata, me=1) == 2
    assert auth.authenticate(metadata, me=3) is None
    assert auth.authenticate(PeerAuth(SECRET, [2, 9]).metadata(9, 1, "control"), me=1) is None  # not a member
    assert auth.authenticate(PeerAuth(b"t" * 16, [1, 2]).metadata(2, 1, "control"), me=1) is None
    forged = {**dict(metadata), SRC: "3"}  # 2's token with another sender
    assert auth.authenticate(forged.items(), me=1) is None
    assert auth.authenticate([(SRC, "2"), (DST, "1"), (AUTH, "é")], me=1) is None
    assert auth.authenticate(None, me=1) is None


def test_secrets_are_long_enough_and_never_shown():
    with pytest.raises(ValueError, match="16 bytes"):
        PeerAuth(b"short", [1, 2])
    auth = PeerAuth(b"very-secret-value", [1, 2])
    assert "very-secret-value" not in repr(auth)
    with pytest.raises(ValueError, match="no address"):
        GrpcTransport(4, {1: "a:1"}, secret=SECRET)
    with pytest.raises(ValueError, match="positive"):
        GrpcTransport(1, {1: "a:1", 0: "b:1"}, secret=SECRET)
