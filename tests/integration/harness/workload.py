"""Client load for the scenarios: every call recorded in a ``History`` with its outcome.

``Workload`` owns a few ``raft_grpc.kv.client.KvClient``s (each its own exactly-once session) shared by
writer and reader tasks. Every loop is bounded in both operation count and wall time, every call in time (the
client's own deadline plus a margin enforced here), so a scenario can never hang on its load.

Outcomes: an answer is OK; any error of a write is UNKNOWN (it may have been applied: the client retried
with the same session and sequence number, or the reply was lost), never FAIL; an error of a read is
UNKNOWN and the checker ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .history import History, Op

MARGIN_S = 2.0


def _encode(text: str) -> bytes:
    return text.encode()


def _decode(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    return str(value)


class Workload:
    """Clients against a set of endpoints, and the recorded history of everything they did."""

    def __init__(
        self,
        endpoints: Sequence[str],
        history: History | None = None,
        *,
        clients: int = 4,
        timeout: float = 3.0,
        seed: int | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.history = history if history is not None else History()
        self.timeout = timeout
        self.n_clients = clients
        self.clients: list[Any] = []
        self.random = random.Random(seed)
        self._values = itertools.count(1)

    async def __aenter__(self) -> Workload:
        from raft_grpc.kv.client import KvClient

        for _ in range(self.n_clients):
            client = KvClient(self.endpoints, timeout=self.timeout)
            opener = getattr(client, "__aenter__", None)
            if opener is not None:
                await opener()
            self.clients.append(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients:
            closer = getattr(client, "__aexit__", None)
            with contextlib.suppress(Exception):
                if closer is not None:
                    await closer(None, None, None)
                elif hasattr(client, "close"):
                    await client.close()
        self.clients.clear()

    def client(self, index: int) -> Any:
        """Client number ``index`` (modulo the number of clients)."""
        return self.clients[index % len(self.clients)]

    def unique_value(self, who: str) -> str:
        """A value no other call of this test writes."""
        return f"{who}-{next(self._values)}"

    # -- single calls (recorded) ------------------------------------------------------------------------------

    async def _call(self, op: Op, coro: Any, *, convert: Any = None) -> Op:
        try:
            async with asyncio.timeout(self.timeout + MARGIN_S):
                result = await coro
        except asyncio.CancelledError:
            self.history.unknown(op, "cancelled")
            raise
        except Exception as exc:  # every failure is an outcome to record
            self.history.unknown(op, exc)
            return op
        self.history.ok(op, convert(result) if convert else None)
        return op

    async def put(self, key: str, value: str | None = None, *, client: int = 0, who: str = "c") -> Op:
        """Put ``value`` (default: a fresh unique one) and record it."""
        value = value if value is not None else self.unique_value(who)
        op = self.history.invoke(who, "put", key, value)
        return await self._call(op, self.client(client).put(_encode(key), _encode(value)))

    async def delete(self, key: str, *, client: int = 0, who: str = "c") -> Op:
        """Delete ``key`` and record it."""
        op = self.history.invoke(who, "delete", key)
        return await self._call(op, self.client(client).delete(_encode(key)))

    async def get(self, key: str, *, client: int = 0, who: str = "c") -> Op:
        """Linearizable read of ``key``, recorded."""
        op = self.history.invoke(who, "get", key)
        return await self._call(op, self.client(client).get(_encode(key)), convert=_decode)

    async def cas(self, key: str, expected: str | None, value: str, *, client: int = 0, who: str = "c") -> Op:
        """Compare-and-set, recorded (result: whether it succeeded)."""
        op = self.history.invoke(who, "cas", key, value, expected)
        exp = None if expected is None else _encode(expected)
        return await self._call(
            op, self.client(client).compare_and_set(_encode(key), exp, _encode(value)), convert=_cas_succeeded
        )

    # -- load loops -------------------------------------------------------------------------------------------

    async def writers(
        self,
        count: int,
        keys: Sequence[str],
        *,
        duration: float,
        max_ops: int = 10_000,
        stop: asyncio.Event | None = None,
        read_ratio: float = 0.0,
        pause_after_error: float = 0.05,
    ) -> None:
        """Run ``count`` concurrent writer tasks for at most ``duration`` seconds and ``max_ops`` ops each.

        Each op is a put of a unique value to a random key of ``keys`` (or, with probability ``read_ratio``, a
        linearizable get). Ends early when ``stop`` is set.
        """
        deadline = time.monotonic() + duration
        await asyncio.gather(
            *(self._writer(w, keys, deadline, max_ops, stop, read_ratio, pause_after_error) for w in range(count))
        )

    async def _writer(
        self,
        w: int,
        keys: Sequence[str],
        deadline: float,
        max_ops: int,
        stop: asyncio.Event | None,
        read_ratio: float,
        pause_after_error: float,
    ) -> None:
        who = f"w{w}"
        rng = random.Random(self.random.random())
        for _ in range(max_ops):
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return
            key = rng.choice(keys)
            if rng.random() < read_ratio:
                op = await self.get(key, client=w, who=who)
            else:
                op = await self.put(key, client=w, who=who)
            if op.error:
                await asyncio.sleep(pause_after_error)

    def acked_puts(self) -> list[Op]:
        """Acknowledged writes so far."""
        return self.history.acked_writes()


def _cas_succeeded(result: Any) -> bool:
    if isinstance(result, bool):
        return result
    for name in ("succeeded", "ok", "success"):
        if hasattr(result, name):
            return bool(getattr(result, name))
    if isinstance(result, tuple) and result and isinstance(result[0], bool):
        return result[0]
    raise TypeError(f"cannot tell whether CAS succeeded from {result!r}")


def keys_of(prefix: str, count: int) -> list[str]:
    """``prefix0 .. prefix<count-1>``."""
    return [f"{prefix}{i}" for i in range(count)]


def all_keys(ops: Iterable[Op]) -> set[str]:
    """Keys touched by ``ops``."""
    return {op.key for op in ops}
