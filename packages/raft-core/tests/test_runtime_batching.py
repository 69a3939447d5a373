"""A ``BatchingStateMachine`` gets each Ready's committed commands between ``begin_batch`` and ``end_batch``."""

from __future__ import annotations

import asyncio

import pytest

from raft_core.errors import NodeStopped
from raft_core.runtime import BatchingStateMachine, Command, MemoryNetwork, Node, NodeOptions
from raft_core.storage.memory import MemoryStorage
from raft_core.types import Membership


class BatchRecorder:
    """Records the calls it gets, as ("begin", 0), ("apply", index), ("end", 0)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.open = False
        self.fail_end = False
        self.values: list[str] = []

    def begin_batch(self) -> None:
        assert not self.open, "a batch began inside a batch"
        self.open = True
        self.calls.append(("begin", 0))

    def apply(self, command: Command) -> object:
        assert self.open, "apply outside a batch"
        self.calls.append(("apply", command.index))
        self.values.append(command.data.decode())
        return len(self.values)

    def end_batch(self) -> None:
        assert self.open
        self.open = False
        self.calls.append(("end", 0))
        if self.fail_end:
            raise OSError("disk full")

    def snapshot(self) -> bytes:
        return "\n".join(self.values).encode()

    def restore(self, data: bytes) -> None:
        self.values = data.decode().split("\n") if data else []


def options() -> NodeOptions:
    return NodeOptions(tick_interval=0.01, election_ticks=5, heartbeat_ticks=1)


def test_the_protocol_is_recognised_at_runtime() -> None:
    assert isinstance(BatchRecorder(), BatchingStateMachine)


def test_concurrent_proposals_are_applied_in_batches_and_answered_after_the_batch_ends() -> None:
    async def main() -> None:
        machine = BatchRecorder()
        node = Node(1, machine, MemoryStorage(Membership.of(1)), MemoryNetwork().transport(1), options())
        await node.start()
        await node.wait_for_leader(timeout=5)
        ended_before_answer: list[bool] = []

        async def one(i: int) -> object:
            answer = await node.propose(f"v{i}".encode(), timeout=5)
            ended_before_answer.append(not machine.open)
            return answer

        answers = await asyncio.gather(*(one(i) for i in range(40)))
        await node.stop()
        assert sorted(answers) == list(range(1, 41))  # type: ignore[type-var]
        assert all(ended_before_answer)
        applies = [call[1] for call in machine.calls if call[0] == "apply"]
        assert applies == sorted(applies) and len(applies) == 40
        batches, size = [], 0
        for call in machine.calls:
            if call[0] == "apply":
                size += 1
            elif call[0] == "end":
                batches.append(size)
                size = 0
        assert sum(batches) == 40 and len(batches) < 40  # several commands shared a batch
        assert machine.calls[-1] == ("end", 0)

    asyncio.run(main())


def test_a_failing_end_batch_stops_the_node() -> None:
    async def main() -> None:
        machine = BatchRecorder()
        node = Node(1, machine, MemoryStorage(Membership.of(1)), MemoryNetwork().transport(1), options())
        await node.start()
        await node.wait_for_leader(timeout=5)
        assert await node.propose(b"first", timeout=5) == 1
        machine.fail_end = True
        # Committed in the log: its caller gets the answer, which a restarted state machine computes again.
        assert await node.propose(b"second", timeout=5) == 2
        with pytest.raises(NodeStopped, match="disk full"):
            await node.propose(b"third", timeout=5)
        await node.stop()

    asyncio.run(main())
