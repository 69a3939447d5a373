"""A ``DurableStateMachine`` resumes from its own applied index: no replay of what it already holds."""

from __future__ import annotations

import asyncio

import pytest

from raft_core.errors import SessionsUnavailable, StorageError
from raft_core.runtime import Command, DurableStateMachine, MemoryNetwork, Node, NodeOptions
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.runtime_sim import Cluster, command
from raft_core.testing.virtual_loop import run_virtual
from raft_core.types import Membership


class DiskLikeMachine:
    """A durable state machine whose 'disk' (``disk``) outlives the object, as a database file would."""

    def __init__(self, disk: dict[str, object]) -> None:
        self.disk = disk
        disk.setdefault("values", [])
        disk.setdefault("position", (0, 0))
        self.applied: list[int] = []  # the indexes this object was given (replays would show up here)
        self.restored = 0

    def apply(self, command: Command) -> object:
        self.applied.append(command.index)
        values = list(self.disk["values"])  # type: ignore[call-overload]
        values.append(command.data.decode())
        self.disk["values"], self.disk["position"] = values, (command.index, command.time)  # "one transaction"
        return len(values)

    def snapshot(self) -> bytes:
        return "\n".join(self.disk["values"]).encode()  # type: ignore[arg-type]

    def restore(self, data: bytes) -> None:
        self.restored += 1
        self.disk["values"] = data.decode().split("\n") if data else []

    def durable_position(self) -> tuple[int, int]:
        return self.disk["position"]  # type: ignore[return-value]


def options(**overrides: object) -> NodeOptions:
    base: dict[str, object] = {"tick_interval": 0.01, "election_ticks": 5, "heartbeat_ticks": 1}
    base.update(overrides)
    return NodeOptions(**base)


async def start_single(storage: MemoryStorage, machine: DiskLikeMachine, **opts: object) -> Node:
    network = MemoryNetwork()
    node = Node(1, machine, storage, network.transport(1), options(**opts))
    await node.start()
    await node.wait_for_leader(timeout=5)
    return node


def test_the_protocol_is_recognised_at_runtime():
    assert isinstance(DiskLikeMachine({}), DurableStateMachine)


def test_a_restart_resumes_after_the_durable_index_without_replaying():
    async def main() -> None:
        storage, disk = MemoryStorage(Membership.of(1)), dict[str, object]()
        first = DiskLikeMachine(disk)
        node = await start_single(storage, first)
        for i in range(5):
            assert await node.propose(f"v{i}".encode(), timeout=5) == i + 1
        await node.stop()
        second = DiskLikeMachine(disk)
        node = await start_single(storage, second)
        assert await node.propose(b"after", timeout=5) == 6
        await node.stop()
        assert second.applied == [max(first.applied) + 2]  # only the new command (after the new leader's no-op)
        assert second.restored == 0
        assert disk["values"] == ["v0", "v1", "v2", "v3", "v4", "after"]

    asyncio.run(main())


def test_a_state_machine_behind_the_snapshot_is_restored_from_it():
    async def main() -> None:
        storage, disk = MemoryStorage(Membership.of(1)), dict[str, object]()
        node = await start_single(storage, DiskLikeMachine(disk), snapshot_entries=3, compact_keep_entries=0)
        for i in range(8):
            await node.propose(f"v{i}".encode(), timeout=5)
        await node.stop()
        assert storage.snapshot().meta.index >= 3
        wiped: dict[str, object] = {}  # the database was lost; the log and snapshot were not
        machine = DiskLikeMachine(wiped)
        node = await start_single(storage, machine)
        await node.propose(b"after", timeout=5)
        await node.stop()
        assert machine.restored == 1
        assert wiped["values"] == [f"v{i}" for i in range(8)] + ["after"]

    asyncio.run(main())


def test_a_state_machine_ahead_of_the_log_is_refused_at_start():
    async def main() -> None:
        disk: dict[str, object] = {"values": ["x"], "position": (50, 1)}
        node = Node(1, DiskLikeMachine(disk), MemoryStorage(Membership.of(1)), MemoryNetwork().transport(1), options())
        with pytest.raises(StorageError, match="applied up to 50 but the log ends at 0"):
            await node.start()

    asyncio.run(main())


def test_client_sessions_are_refused_on_a_durable_node():
    async def main() -> None:
        node = await start_single(MemoryStorage(Membership.of(1)), DiskLikeMachine({}))
        with pytest.raises(SessionsUnavailable):
            await node.open_session(timeout=1)
        with pytest.raises(SessionsUnavailable):
            await node.propose(b"x", client="7", seq=1, timeout=1)
        await node.stop()

    asyncio.run(main())


def test_wait_applied_returns_once_the_index_is_applied_and_times_out_otherwise():
    async def main() -> None:
        node = await start_single(MemoryStorage(Membership.of(1)), DiskLikeMachine({}))
        target = node.applied_index + 1
        waiter = asyncio.ensure_future(node.wait_applied(target, timeout=5))
        await asyncio.sleep(0)
        assert not waiter.done()
        await node.propose(b"x", timeout=5)
        assert await waiter >= target
        assert await node.wait_applied(1, timeout=0) >= 1  # already applied: no wait at all
        with pytest.raises(TimeoutError):
            await node.wait_applied(node.applied_index + 100, timeout=0.05)
        await node.stop()

    asyncio.run(main())


def test_an_idempotent_proposal_forwarded_to_a_leader_that_dies_is_forwarded_again_to_the_next():
    async def main() -> None:
        c = Cluster(3, seed=71)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(i for i in c.ids if i != lead.id)
        c.net.isolate(lead.id, c.ids)  # the leader hears nothing more: the forwarded proposal dies with it
        pending = asyncio.ensure_future(c.nodes[follower].propose(command("x", 1), timeout=30, idempotent=True))
        result = await pending  # answered by the next leader, well before the 30 s timeout
        assert isinstance(result, dict) and result["seq"] == 1
        assert c.nodes[follower].leader not in (0, lead.id)
        c.net.heal()
        await c.stop_all()

    run_virtual(main())
