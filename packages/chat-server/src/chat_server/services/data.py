"""``DataHandlers``: the admin ``chat.v1.DataService`` — the replicated key-value operations, admin token only."""

from __future__ import annotations

import uuid

import grpc

from chat_server import api, commands
from chat_server.auth import bearer_token, same_secret
from chat_server.errors import ChatError
from chat_server.services.context import ServiceContext
from chat_server.services.messages import build

MAX_KEY, MAX_VALUE = 1024, 1 << 20


class DataHandlers:
    """Key-value reads and writes for administrators (the token from the server configuration)."""

    def __init__(self, ctx: ServiceContext, admin_token: str | None) -> None:
        self.ctx = ctx
        self._admin_token = admin_token

    def _require_admin(self, context: grpc.aio.ServicerContext) -> None:
        token = bearer_token(context.invocation_metadata())
        if token is None:
            raise ChatError.unauthenticated("the DataService needs the administrator token (Bearer <admin token>)")
        if self._admin_token is None:
            raise ChatError(
                grpc.StatusCode.PERMISSION_DENIED, "the DataService is disabled: no admin token is configured"
            )
        if not same_secret(token, self._admin_token):
            raise ChatError(grpc.StatusCode.PERMISSION_DENIED, "the DataService is for administrators only")

    @staticmethod
    def _key(key: bytes) -> bytes:
        if not 1 <= len(key) <= MAX_KEY:
            raise ChatError.invalid("key", f"1 to {MAX_KEY} bytes")
        return key

    @staticmethod
    def _value(field: str, value: bytes) -> bytes:
        if len(value) > MAX_VALUE:
            raise ChatError.invalid(field, f"at most {MAX_VALUE} bytes")
        return value

    def _request_id(self, value: str) -> str:
        return self.ctx.request_id(value) if value else uuid.uuid4().hex

    async def get(self, request: api.KvGetRequest, context: grpc.aio.ServicerContext) -> api.KvGetResponse:
        """Read one key (linearizable unless ``stale``)."""
        self._require_admin(context)
        key = self._key(request.key)
        if not request.stale:
            await self.ctx.linearizable(context)
        value = self.ctx.queries.kv_get(key)
        return api.KvGetResponse(found=value is not None, value=value or b"")

    async def put(self, request: api.KvPutRequest, context: grpc.aio.ServicerContext) -> api.KvPutResponse:
        """Set a key."""
        self._require_admin(context)
        command = build(
            commands.KvPut,
            request_id=self._request_id(request.request_id),
            key=self._key(request.key),
            value=self._value("value", request.value),
        )
        await self.ctx.propose(command, context)
        return api.KvPutResponse()

    async def delete(self, request: api.KvDeleteRequest, context: grpc.aio.ServicerContext) -> api.KvDeleteResponse:
        """Remove a key."""
        self._require_admin(context)
        command = build(commands.KvDelete, request_id=self._request_id(request.request_id), key=self._key(request.key))
        result = await self.ctx.propose(command, context)
        return api.KvDeleteResponse(existed=bool(result.get("existed")) if isinstance(result, dict) else False)

    async def compare_and_set(
        self, request: api.KvCompareAndSetRequest, context: grpc.aio.ServicerContext
    ) -> api.KvCompareAndSetResponse:
        """Set a key only if it holds the expected value (or is absent)."""
        self._require_admin(context)
        command = build(
            commands.KvCas,
            request_id=self._request_id(request.request_id),
            key=self._key(request.key),
            expected_value=self._value("expected_value", request.expected_value),
            expect_absent=request.expect_absent,
            new_value=self._value("new_value", request.new_value),
        )
        result = await self.ctx.propose(command, context)
        if not isinstance(result, dict):  # pragma: no cover - the state machine always answers a dict
            raise ChatError(grpc.StatusCode.INTERNAL, "unexpected answer from the store")
        current = result.get("current_value")
        return api.KvCompareAndSetResponse(
            succeeded=bool(result.get("succeeded")),
            found=bool(result.get("found")),
            current_value=current if isinstance(current, bytes) else b"",
        )
