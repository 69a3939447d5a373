"""Presence renewals: at once when a stream opens, then spread out, and never letting the lease lapse."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from chat_server import commands
from chat_server.services import messages
from chat_server.services.messages import PRESENCE_LEASE_S, PRESENCE_RENEW_S, MessageHandlers
from chat_server.store import UserRow
from raft_core.testing.virtual_loop import run_virtual

USERS = 50


class FakeQueries:
    def __init__(self) -> None:
        self.rows: dict[str, UserRow] = {}

    def user(self, username: str) -> UserRow | None:
        return self.rows.get(username)


class FakeNode:
    """Applies Presence commands at once, recording (user, virtual time) of each renewal."""

    def __init__(self, ctx: FakeContext) -> None:
        self.ctx = ctx
        self.renewals: list[tuple[str, float]] = []

    async def propose(self, data: bytes, **kwargs: Any) -> None:
        cmd = commands.decode(data)
        assert isinstance(cmd, commands.Presence) and cmd.online
        self.renewals.append((cmd.actor, asyncio.get_running_loop().time()))
        self.ctx.queries.rows[cmd.actor] = UserRow(cmd.actor, cmd.actor, 0, self.ctx.now_ms(), cmd.expires_at_ms)


class FakeContext:
    def __init__(self) -> None:
        self.queries = FakeQueries()
        self.node = FakeNode(self)

    def now_ms(self) -> int:
        return int(asyncio.get_running_loop().time() * 1000)


def test_renewals_of_streams_opened_together_are_spread_and_leases_never_lapse(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = FakeContext()
    handlers = MessageHandlers(ctx, fanout=None, passwords=None, token_ttl_s=60)  # type: ignore[arg-type]
    monkeypatch.setattr(messages.random, "uniform", random.Random(5).uniform)

    async def main() -> float:
        start = asyncio.get_running_loop().time()
        tasks = [asyncio.ensure_future(handlers._keep_present(f"user{i}")) for i in range(USERS)]
        await asyncio.sleep(10 * PRESENCE_RENEW_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return start

    start = run_virtual(main())
    times: dict[str, list[float]] = {}
    for user, at in ctx.node.renewals:
        times.setdefault(user, []).append(at - start)
    assert len(times) == USERS
    assert all(t[0] == 0 for t in times.values())  # online at once
    second = sorted(t[1] for t in times.values())
    assert second[-1] - second[0] > PRESENCE_RENEW_S / 2, "the second renewals are spread over the period"
    for t in times.values():
        assert len(t) >= 5
        assert all(b - a < PRESENCE_LEASE_S for a, b in itertools.pairwise(t)), "a lease lapsed"
        assert 10 * PRESENCE_RENEW_S - t[-1] < PRESENCE_LEASE_S
