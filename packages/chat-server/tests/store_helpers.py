"""Test helpers for the chat store: a state machine driven with increasing log indices and times."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from chat_server import commands as c
from chat_server.store import ChatQueries, ChatStateMachine, Notice
from raft_core.runtime import Command

T0 = 1_700_000_000_000
HOUR_MS = 3600 * 1000
TOKEN = "ab" * 32


def token(n: int) -> str:
    """A distinct valid token hash."""
    return f"{n:064x}"


class Store:
    """A ``ChatStateMachine`` on a file, fed commands with index + 1 and time + ``step_ms`` each."""

    def __init__(self, path: Path, *, step_ms: int = 1, **sm_options: Any) -> None:
        self.path = path
        self.notices: list[Notice] = []
        self.sm = ChatStateMachine(path, on_notice=self.notices.append, **sm_options)
        self.q = ChatQueries(self.sm)
        self.index, self.time = self.sm.durable_position()
        self.time = max(self.time, T0)
        self.step_ms = step_ms
        self._ids = itertools.count(1)

    def rid(self) -> str:
        return f"req-{next(self._ids)}"

    def raw(self, data: bytes, *, at: int | None = None) -> object:
        self.index += 1
        self.time = at if at is not None else self.time + self.step_ms
        return self.sm.apply(Command(self.index, 1, data, self.time))

    def apply(self, cmd: c.ChatCommand, *, at: int | None = None) -> object:
        return self.raw(c.encode(cmd), at=at)

    def dump(self, *, meta: bool = True) -> list[str]:
        lines = list(self.sm.connection.iterdump())
        if not meta:
            lines = [line for line in lines if not line.startswith('INSERT INTO "meta"')]
        return lines

    def refuse(self, cmd: c.ChatCommand, kind: type[Exception], match: str | None = None) -> str:
        """Apply ``cmd``, expect the refusal ``kind``, and check it changed nothing but the applied index."""
        before = self.dump(meta=False)
        notices = len(self.notices)
        with pytest.raises(kind, match=match) as info:
            self.apply(cmd)
        assert type(info.value) is kind
        assert self.dump(meta=False) == before
        assert len(self.notices) == notices
        assert self.sm.durable_position() == (self.index, self.time)
        return str(info.value)

    def reopen(self) -> None:
        self.sm.close()
        self.sm = ChatStateMachine(self.path, on_notice=self.notices.append)
        self.q = ChatQueries(self.sm)

    def close(self) -> None:
        self.sm.close()

    # -- builders ---------------------------------------------------------------------------------------------

    def register(self, *names: str) -> None:
        for name in names:
            self.apply(c.Register(request_id=self.rid(), username=name, password_hash=f"hash-of-{name}"))

    def direct(self, actor: str, peer: str) -> str:
        cid = c.direct_id(actor, peer)
        self.apply(c.OpenDirect(request_id=self.rid(), actor=actor, peer=peer, conversation_id=cid))
        return cid

    def room(self, actor: str, name: str = "Room", members: tuple[str, ...] = (), *, public: bool = False) -> str:
        cid = f"r:{name.lower()}-{next(self._ids)}"
        self.apply(
            c.CreateRoom(
                request_id=self.rid(), actor=actor, conversation_id=cid, name=name, public=public, members=list(members)
            )
        )
        return cid

    def send(self, actor: str, cid: str, body: str = "hello") -> int:
        result = self.apply(c.Send(request_id=self.rid(), actor=actor, conversation_id=cid, body=body))
        assert isinstance(result, dict)
        return int(result["event"].seq)

    def edit(self, actor: str, cid: str, seq: int, body: str) -> object:
        return self.apply(c.Edit(request_id=self.rid(), actor=actor, conversation_id=cid, seq=seq, body=body))

    def delete(self, actor: str, cid: str, seq: int) -> object:
        return self.apply(c.Delete(request_id=self.rid(), actor=actor, conversation_id=cid, seq=seq))

    def leave(self, actor: str, cid: str) -> object:
        return self.apply(c.Leave(request_id=self.rid(), actor=actor, conversation_id=cid))

    def join(self, actor: str, cid: str) -> object:
        return self.apply(c.Join(request_id=self.rid(), actor=actor, conversation_id=cid))

    def mark_read(self, actor: str, cid: str, seq: int) -> object:
        return self.apply(c.MarkRead(actor=actor, conversation_id=cid, seq=seq))
