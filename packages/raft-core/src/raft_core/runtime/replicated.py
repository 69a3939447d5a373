"""``ReplicatedObject`` with ``@replicated`` and ``@query``: a replicated state machine without writing one.

Subclass ``ReplicatedObject``, keep the state in public instance attributes (JSON values), mark the methods
that change it with ``@replicated`` and those that read it with ``@query``. Once the object is given to a
``Node`` (``Node(..., state_machine=obj, ...)`` then ``obj.attach(node)``), calling a ``@replicated`` method
proposes the call and returns its result after it is applied (exactly once, through a client session the
object keeps), and calling a ``@query`` method is a linearizable read. Both are awaited::

    class Counter(ReplicatedObject):
        def __init__(self) -> None:
            self.value = 0

        @replicated
        def add(self, n: int) -> int:
            self.value += n
            return self.value

        @query
        def get(self) -> int:
            return self.value


    total = await counter.add(5)

Calls are encoded as JSON ``{"m": name, "a": args, "k": kwargs}``; arguments and results must be JSON values.
Snapshots are the JSON of the public attributes; override ``snapshot``/``restore`` for anything else.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from raft_core.errors import CommitUnknown, SessionError
from raft_core.runtime.node import Node
from raft_core.runtime.state_machine import Command

P = ParamSpec("P")
R = TypeVar("R")
Obj = TypeVar("Obj", bound="ReplicatedObject")

_REPLICATED = "__raft_replicated__"


class NotAttached(RuntimeError):
    """A replicated method was called before ``attach(node)``."""


class ReplicatedObject:
    """Base class of objects whose ``@replicated`` methods run on every node of a cluster, in one order."""

    _node: Node | None = None
    _client: str = ""
    _seq: int = 0
    _retries: int = 3

    def attach(self, node: Node, *, retries: int = 3) -> None:
        """Send this object's calls through ``node``; a timed-out call is retried ``retries`` times.

        The object opens its own exactly-once session on first use, so a retried call is applied once.
        """
        self._node = node
        self._client = ""
        self._seq = 0
        self._retries = retries
        self._outstanding: set[int] = set()
        self._opening = asyncio.Lock()

    # -- the StateMachine protocol ----------------------------------------------------------------------------

    def apply(self, command: Command) -> object:
        """Run the ``@replicated`` method the command names (on every node, in log order)."""
        call = json.loads(command.data)
        method = getattr(type(self), call["m"], None)
        target = getattr(method, _REPLICATED, None)
        if target is None:
            raise AttributeError(f"{type(self).__name__} has no replicated method {call['m']!r}")
        return target(self, *call["a"], **call["k"])

    def snapshot(self) -> bytes:
        """The public attributes as JSON.

        Raises TypeError naming the attribute when one would not come back unchanged from JSON (a tuple, a
        set, a dict with non-string keys): a node restored from such a snapshot would differ from the others.
        """
        state = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        data = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        restored = json.loads(data)
        for key, value in state.items():
            if restored[key] != value:  # a tuple, or a dict with non-string keys, compares unequal
                raise TypeError(
                    f"{type(self).__name__}.{key} does not survive a JSON snapshot unchanged; keep public "
                    "attributes to JSON values (str dict keys, lists, no tuples or sets) or override snapshot/restore"
                )
        return data

    def restore(self, data: bytes) -> None:
        """Replace the public attributes with a snapshot's."""
        for key in [k for k in vars(self) if not k.startswith("_")]:
            delattr(self, key)
        vars(self).update(json.loads(data))

    # -- what the decorators call -----------------------------------------------------------------------------

    async def _propose(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        node = self._require_node()
        data = json.dumps({"m": name, "a": args, "k": kwargs}, separators=(",", ":")).encode()
        retries = self._retries
        maybe_applied = False  # set once an attempt timed out: it may have been applied
        while True:
            client = await self._session(node)
            self._seq += 1
            seq = self._seq
            self._outstanding.add(seq)
            try:
                while True:
                    try:
                        return await node.propose(data, client=client, seq=seq, floor=min(self._outstanding))
                    except CommitUnknown:
                        maybe_applied = True
                        if retries == 0:
                            raise
                        retries -= 1
            except SessionError:
                # The session expired. A new session may call again only if no attempt may have been applied.
                if self._client == client:
                    self._client = ""
                if maybe_applied or retries == 0:
                    raise
                retries -= 1
            finally:
                self._outstanding.discard(seq)

    async def _session(self, node: Node) -> str:
        async with self._opening:
            if not self._client:
                self._client = await node.open_session()  # numbers go on rising: floors stay below them
            return self._client

    def _require_node(self) -> Node:
        if self._node is None:
            raise NotAttached(f"call attach(node) on this {type(self).__name__} before using it")
        return self._node


def replicated(method: Callable[Concatenate[Obj, P], R]) -> Callable[Concatenate[Obj, P], Awaitable[R]]:
    """Make ``method`` a replicated command: calling it proposes the call; awaiting gives the result."""

    async def propose(self: Obj, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await self._propose(method.__name__, args, kwargs)
        return result

    functools.update_wrapper(propose, method)
    setattr(propose, _REPLICATED, method)
    return propose


def query(method: Callable[Concatenate[Obj, P], R]) -> Callable[Concatenate[Obj, P], Awaitable[R]]:
    """Make ``method`` a linearizable read: awaiting it runs it once this node is up to date."""

    async def read(self: Obj, /, *args: P.args, **kwargs: P.kwargs) -> R:
        node = self._require_node()
        return await node.read(lambda _sm: method(self, *args, **kwargs))

    functools.update_wrapper(read, method)
    return read
