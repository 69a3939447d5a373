"""Status codes and rich details become typed ChatErrors; non-retryable errors surface at once."""

from __future__ import annotations

import grpc
import pytest
from chat_fakes import TOKEN, Failure, FakeCluster, not_leader, retry_info, rich_abort_metadata, run
from google.rpc import error_details_pb2

from chat_client_qt.client import (
    AlreadyExists,
    ChatClient,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
)
from chat_client_qt.client.errors import error_class, from_rpc_error, parse_retry_after

CASES = [
    (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
    (grpc.StatusCode.NOT_FOUND, NotFound),
    (grpc.StatusCode.ALREADY_EXISTS, AlreadyExists),
    (grpc.StatusCode.INVALID_ARGUMENT, InvalidInput),
    (grpc.StatusCode.FAILED_PRECONDITION, FailedPrecondition),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, RateLimited),
    (grpc.StatusCode.INTERNAL, ServerError),
    (grpc.StatusCode.UNIMPLEMENTED, ServerError),
    (grpc.StatusCode.UNAVAILABLE, Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, OutcomeUnknown),
]


@pytest.mark.parametrize(("code", "cls"), CASES, ids=[c.name for c, _ in CASES])
def test_error_class_per_code(code, cls):
    assert error_class(code) is cls
    assert cls.retryable == (code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))


def test_parse_retry_after():
    assert parse_retry_after("rate limited: retry after 1.5s") == 1.5
    assert parse_retry_after("slow down, try again in 250 ms") == 0.25
    assert parse_retry_after("retry after 2 seconds") == 2.0
    assert parse_retry_after("too many requests") is None


def test_non_retryable_errors_surface_at_once_with_the_server_message(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            cluster.state.room("r1", "alice")
            first = cluster.nodes[0]
            fail = [
                ("SearchUsers", grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
                ("SearchUsers", grpc.StatusCode.NOT_FOUND, NotFound),
                ("SearchUsers", grpc.StatusCode.INVALID_ARGUMENT, InvalidInput),
                ("SearchUsers", grpc.StatusCode.INTERNAL, ServerError),
            ]
            async with ChatClient(cluster.endpoints, data_dir=tmp_path, timeout=5.0) as client:
                await client.use_session("alice", TOKEN)
                for method, code, cls in fail:
                    first.fail(method, Failure(code, f"the server says {code.name}"))
                    before = len(cluster.state.calls)
                    with pytest.raises(cls) as info:
                        await client.search_users("a")
                    assert info.value.message == f"the server says {code.name}"
                    assert str(info.value) == info.value.message
                    assert info.value.code is code
                    assert info.value.endpoint == first.address
                    assert len(cluster.state.calls) == before + 1, "a non-retryable error must not be retried"
                # Real server-side validation, through the same path.
                with pytest.raises(AlreadyExists, match="taken"):
                    await client.register("bob", "long-enough-password")
                with pytest.raises(InvalidInput, match="query"):
                    await client.search_users("")

    run(main())


def test_unauthenticated_without_a_session_and_with_a_bad_token(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster, ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
            with pytest.raises(Unauthenticated, match="not logged in"):
                await client.me()
            assert cluster.state.calls == []
            await client.use_session("alice", "forged")
            with pytest.raises(Unauthenticated, match="unknown token"):
                await client.me()
            with pytest.raises(Unauthenticated, match="wrong username or password"):
                await client.login("alice", "nope-nope-nope")

    run(main())


def test_rate_limited_carries_retry_after_from_retry_info_or_message(tmp_path):
    async def main() -> None:
        async with FakeCluster(1) as cluster, ChatClient(cluster.endpoints, data_dir=tmp_path) as client:
            await client.use_session("alice", TOKEN)
            node = cluster.nodes[0]
            node.fail("GetMe", Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", (retry_info(1.25),)))
            with pytest.raises(RateLimited) as info:
                await client.me()
            assert info.value.retry_after == pytest.approx(1.25)
            node.fail("GetMe", Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limited; retry after 300ms"))
            with pytest.raises(RateLimited) as info:
                await client.me()
            assert info.value.retry_after == pytest.approx(0.3)

    run(main())


def aio_error(code, message, trailer=()):
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailer), message, None)


def test_not_leader_details_are_parsed():
    trailer = rich_abort_metadata(grpc.StatusCode.UNAVAILABLE, "not the leader", not_leader("10.0.0.3:7001"))
    error = from_rpc_error(aio_error(grpc.StatusCode.UNAVAILABLE, "not the leader", trailer), endpoint="n1")
    assert isinstance(error, Unavailable) and error.retryable
    assert error.leader == "10.0.0.3:7001"
    assert error.details.reason == "NOT_LEADER" and error.details.domain == "chat.v1"
    assert error.endpoint == "n1" and error.message == "not the leader"
    # A Status whose message differs from the call's is still read (leniently).
    trailer = rich_abort_metadata(grpc.StatusCode.UNAVAILABLE, "other text", not_leader("10.0.0.4:7001"))
    assert from_rpc_error(aio_error(grpc.StatusCode.UNAVAILABLE, "no leader", trailer)).leader == "10.0.0.4:7001"
    # No details, or garbage details: no leader, no crash.
    assert from_rpc_error(aio_error(grpc.StatusCode.UNAVAILABLE, "down")).leader is None
    garbage = (("grpc-status-details-bin", b"\xff\x00garbage"),)
    assert from_rpc_error(aio_error(grpc.StatusCode.UNAVAILABLE, "down", garbage)).leader is None
    # ErrorInfo with another reason is not a leader hint.
    other = error_details_pb2.ErrorInfo(reason="NO_QUORUM", metadata={"leader": "x:1"})
    trailer = rich_abort_metadata(grpc.StatusCode.UNAVAILABLE, "no quorum", other)
    assert from_rpc_error(aio_error(grpc.StatusCode.UNAVAILABLE, "no quorum", trailer)).leader is None


def test_a_not_leader_redirect_reaches_a_leader_outside_the_configured_endpoints(tmp_path):
    async def main() -> None:
        async with FakeCluster(2) as cluster:
            a, b = cluster.nodes
            a.fail("GetMe", Failure(grpc.StatusCode.UNAVAILABLE, "not leader", (not_leader(b.address),)))
            async with ChatClient([a.address], data_dir=tmp_path) as client:
                await client.use_session("alice", TOKEN)
                me = await client.me()
                assert b.address in client.connection.endpoints
            assert me.username == "alice"
            assert cluster.state.nodes_called("GetMe") == [a.address, b.address]

    run(main())
