"""Tests of the runtime fixes from review: fresh request numbers after a restart, synced-only persists with the
commit index flushed on a clean stop, no leaked parked proposals and bounded reads, a failed start that undoes
itself, malformed snapshot chunks, ReplicatedObject state that would not survive a snapshot, and the 16 MiB caps.

Everything runs on the virtual loop; waits poll with a deadline or await events, never sleep and hope.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from raft_core.errors import CommitUnknown, ConfigError, NodeStopped, Overloaded, ReadTimeout
from raft_core.runtime import (
    MemoryNetwork,
    MemoryTransport,
    Node,
    NodeOptions,
    Receiver,
    ReplicatedObject,
    SnapshotChunk,
    SnapshotChunkAck,
    WireMessage,
    codec,
    envelope,
    query,
    replicated,
)
from raft_core.runtime.snapshot_transfer import SnapshotReceiver
from raft_core.storage.disk import DiskStorage
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.runtime_sim import Cluster, CrashStorage, SimMachine, command, sim_options
from raft_core.testing.virtual_loop import current_virtual_loop, run_virtual
from raft_core.types import Entry, HardState, Membership, NodeId, Snapshot, SnapshotMeta


def result_of(answer: object) -> dict[str, Any]:
    """A ``SimMachine`` answer, checked to be one."""
    assert isinstance(answer, dict), answer
    return answer


class RecordingStorage(CrashStorage):
    """A ``CrashStorage`` that records the ``sync`` flag of every persist call and counts ``close`` calls."""

    def __init__(self, membership: Membership) -> None:
        super().__init__(membership)
        self.syncs: list[bool] = []
        self.closed = 0

    def persist(
        self, *, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None, sync: bool
    ) -> None:
        self.syncs.append(sync)
        super().persist(hard_state=hard_state, entries=entries, snapshot=snapshot, sync=sync)

    def close(self) -> None:
        self.closed += 1


def stored_commit(storage: CrashStorage) -> int:
    """The commit index ``storage`` would give a restarted node."""
    return storage.initial_state().hard_state.commit


# -- 3: request numbers never come from the injected rng -----------------------------------------------------


def test_a_node_restarted_with_the_same_seeded_rng_draws_fresh_request_numbers():
    """A restarted node replays its own old entries (here: after losing its commit index, as a crash may) while
    its new commands wait; with the old request numbers, an old entry would answer a new command."""

    async def main() -> None:
        c = Cluster(3, seed=50)
        await c.start_all()
        lead = await c.wait_leader()
        fid = next(i for i in c.ids if i != lead.id)

        async def incarnation() -> Node:
            # Built by hand, not by Cluster.build (which draws request numbers from the seed for determinism).
            n = Node(
                fid, SimMachine(), c.storages[fid], c.net.transport(fid), c.options, rng=random.Random(7), clock=c.clock
            )
            await n.start()
            c.nodes[fid] = n
            c.down.discard(fid)
            return n

        twin_a = Node(fid, SimMachine(), MemoryStorage(), c.net.transport(fid), rng=random.Random(7))
        twin_b = Node(fid, SimMachine(), MemoryStorage(), c.net.transport(fid), rng=random.Random(7))
        assert next(twin_a._requests) != next(twin_b._requests)

        await c.stop(fid)
        first = await incarnation()
        await c.wait_leader()
        old = [result_of(await first.propose(command("", 0, 1))) for _ in range(4)]
        await c.wait_converged()
        await c.stop(fid)
        storage = c.storages[fid]
        before = old[0]["index"] - 1  # the commit index is lost: the old commands are applied again after start
        for part in (storage.live, storage.durable):
            part.set_hard_state(dataclasses.replace(part.initial_state().hard_state, commit=before))
        second = await incarnation()
        new = [
            result_of(answer)
            for answer in await asyncio.gather(*(second.propose(command("", 0, 10)) for _ in range(4)))
        ]
        assert all(answer["index"] > old[-1]["index"] for answer in new), f"an old entry answered a new command: {new}"
        assert sorted(answer["total"] for answer in new) == [old[-1]["total"] + 10 * k for k in (1, 2, 3, 4)]
        await c.wait_converged()
        # The two incarnations' entries carry disjoint request numbers.
        entries = storage.entries(old[0]["index"], new[-1]["index"] + 1)
        by_index = {e.index: envelope.decode(e.data) for e in entries if e.data}
        requests_old = {by_index[a["index"]].request for a in old}
        requests_new = {by_index[a["index"]].request for a in new}
        assert not requests_old & requests_new
        assert {c.machine(i).total for i in c.ids} == {old[-1]["total"] + 40}
        await c.stop_all()

    run_virtual(main())


def test_cluster_build_still_draws_request_numbers_from_the_seed():
    async def main() -> None:
        a, b = Cluster(3, seed=51), Cluster(3, seed=51)
        assert next(a.build(1)._requests) == next(b.build(1)._requests)

    run_virtual(main())


# -- 4: only synced persists; the commit index is flushed on a clean stop -------------------------------------


def test_the_node_never_persists_without_sync_and_a_clean_stop_keeps_the_commit_index():
    async def main() -> None:
        c = Cluster(3, seed=52)  # lose_unsynced: whatever was persisted without sync is lost at a stop
        storages = {i: RecordingStorage(Membership.of(*c.ids)) for i in c.ids}
        c.storages.update(storages)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        for k in range(1, 9):
            await (lead if k % 2 else follower).propose(command("", 0, k))
        commit = await c.wait_converged()
        totals = {i: c.machine(i).total for i in c.ids}
        assert set(totals.values()) == {36}
        for i, storage in storages.items():
            assert storage.syncs and all(storage.syncs), f"node {i} persisted with sync=False"
        await c.stop_all()
        assert {s.closed for s in storages.values()} == {1}
        assert {stored_commit(s) for s in storages.values()} == {commit}
        for i in c.ids:  # each node on its own: only what it stored counts
            c.net.isolate(i, c.ids)
        await c.start_all()
        await c.wait_until(lambda: all(n.applied_index == commit for n in c.live()), timeout=10)
        for n in c.live():
            assert n.status().commit == commit
            assert c.machine(n.id).total == totals[n.id]
        assert all(all(s.syncs) for s in storages.values())
        await c.stop_all()

    run_virtual(main())


# -- 5: no leaked parked proposals; bounded reads --------------------------------------------------------------


def test_proposals_parked_without_a_leader_are_dropped_when_their_callers_give_up():
    async def main() -> None:
        c = Cluster(3, seed=53)
        node = await c.start(1)  # alone: no leader is ever known, so forwarded proposals are parked
        with pytest.raises(CommitUnknown):
            await node.propose(command("", 0), timeout=0.5)
        pending = asyncio.gather(
            *(node.propose(command("", 0), timeout=1.0) for _ in range(50)), return_exceptions=True
        )
        await c.wait_until(lambda: len(node._parked) >= 50, timeout=1)
        results = await pending
        assert all(isinstance(r, CommitUnknown) for r in results)
        assert node._parked == {} and node._waiting == {} and not node._proposals
        # Once a leader is known, none of the abandoned commands is proposed.
        await c.start(2)
        await c.start(3)
        await c.wait_leader()
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {0}
        assert result_of(await node.propose(command("", 0, 3)))["total"] == 3
        await c.stop_all()

    run_virtual(main())


def test_reads_past_max_pending_reads_are_refused_with_overloaded():
    async def main() -> None:
        c = Cluster(3, seed=54, options=sim_options(max_pending_reads=3))
        node = await c.start(1)  # no quorum: reads wait
        reads = [asyncio.ensure_future(node.read(timeout=5.0)) for _ in range(3)]
        await c.wait_until(lambda: len(node._reads) == 3, timeout=1)
        with pytest.raises(Overloaded, match="limit 3"):
            await node.read(timeout=5.0)
        # Retried reads are queued once each, however many election timeouts pass.
        queues: list[list[bytes]] = []
        retry = node._retry_reads

        def recording_retry() -> None:
            retry()
            queues.append(list(node._read_queue))

        node._retry_reads = recording_retry  # type: ignore[method-assign]
        await c.wait_until(lambda: len(queues) >= 5, timeout=4)
        assert all(len(queued) == len(set(queued)) == 3 for queued in queues), queues
        for read in reads:
            with pytest.raises(ReadTimeout):
                await read
        assert node._reads == {}
        with pytest.raises(ReadTimeout):  # below the limit again: accepted (and times out without a quorum)
            await node.read(timeout=0.5)
        await c.stop_all()

    run_virtual(main())


# -- 6: a failed start undoes itself ---------------------------------------------------------------------------


class FailingTransport(MemoryTransport):
    """A ``MemoryTransport`` whose ``start`` raises while ``fail`` is set (a port in use, say)."""

    def __init__(self, network: MemoryNetwork, node: NodeId) -> None:
        super().__init__(network, node)
        self.fail = True
        self.closed = 0

    async def start(self, receiver: Receiver) -> None:
        if self.fail:
            raise OSError("address already in use")
        await super().start(receiver)

    async def close(self) -> None:
        self.closed += 1
        await super().close()


def test_a_failed_start_leaves_no_task_thread_or_open_storage_and_a_new_node_can_start():
    """A failed start undoes itself and leaves the node stopped for good (its storage is closed); a new
    ``Node`` over the same (reopened) storage starts and serves."""

    async def main() -> None:
        c = Cluster(3, seed=55)
        await c.start(2)
        await c.start(3)
        threads = threading.active_count()
        tasks = asyncio.all_tasks()
        storage = RecordingStorage(Membership.of(*c.ids))
        c.storages[1] = storage
        transport = FailingTransport(c.net, 1)
        threaded = Node(1, SimMachine(), storage, transport, sim_options(persist_in_thread=True), rng=random.Random(1))
        with pytest.raises(OSError, match="in use"):
            await threaded.start()
        assert threaded._executor is None and threaded._tasks == []
        assert threading.active_count() == threads
        assert asyncio.all_tasks() == tasks
        assert storage.closed == 1 and transport.closed == 1
        with pytest.raises(RuntimeError, match="cannot start again"):
            await threaded.start()

        transport.fail = False
        node = Node(1, SimMachine(), storage, transport, c.options, rng=random.Random(1), clock=c.clock)
        await node.start()  # a new node over the same storage (MemoryStorage needs no reopening)
        c.nodes[1] = node
        c.down.discard(1)
        await c.wait_leader()
        assert result_of(await node.propose(command("", 0, 4)))["total"] == 4
        await c.wait_converged()
        assert {c.machine(i).total for i in c.ids} == {4}
        await c.stop_all()
        assert storage.closed == 2

    run_virtual(main())


def test_a_node_whose_start_failed_refuses_work_at_once_like_a_node_never_started():
    async def main() -> None:
        c = Cluster(3, seed=57)
        node = Node(1, SimMachine(), c.storages[1], FailingTransport(c.net, 1), c.options, rng=random.Random(1))
        with pytest.raises(OSError):
            await node.start()
        with pytest.raises(NodeStopped):  # not a wait until the proposal timeout and CommitUnknown
            await node.propose(command("", 0), timeout=1.0)
        with pytest.raises(NodeStopped):
            await node.read(timeout=1.0)
        with pytest.raises(NodeStopped):
            node.status()

    run_virtual(main())


def test_after_a_failed_start_over_disk_storage_the_node_serves_or_refuses_a_second_start(tmp_path: Path):
    """The failed start closed the caller's DiskStorage: a second ``start()`` of the same node must either work
    or refuse at once; it must not start over the closed storage and then stop itself at its first write."""

    async def main() -> None:
        net = MemoryNetwork()
        storage = DiskStorage.open(tmp_path, membership=Membership.of(1), unsafe_skip_fsync=True)
        transport = FailingTransport(net, 1)
        node = Node(1, SimMachine(), storage, transport, sim_options(), rng=random.Random(1))
        with pytest.raises(OSError):
            await node.start()
        transport.fail = False
        try:
            await node.start()
        except (RuntimeError, NodeStopped):
            pass  # refused at once: the caller builds a new Node over a reopened storage (below)
        else:
            await node.wait_for_leader(timeout=10)
            assert result_of(await node.propose(command("", 0, 1), timeout=5))["total"] == 1
            await node.stop()
            return
        await node.stop()
        reopened = DiskStorage.open(tmp_path, membership=Membership.of(1), unsafe_skip_fsync=True)
        async with Node(1, SimMachine(), reopened, transport, sim_options(), rng=random.Random(1)) as fresh:
            await fresh.wait_for_leader(timeout=10)
            assert result_of(await fresh.propose(command("", 0, 1), timeout=5))["total"] == 1

    run_virtual(main())


# -- 7: malformed snapshot chunks are refused and never stop the node ----------------------------------------------


def test_malformed_snapshot_chunks_are_refused_and_the_follower_keeps_applying():
    async def main() -> None:
        c = Cluster(3, seed=56)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        await lead.propose(command("", 0, 1))
        await c.wait_converged()
        acks: list[SnapshotChunkAck] = []

        def tap(m: WireMessage) -> bool:
            if isinstance(m, SnapshotChunkAck) and m.src == follower.id:
                acks.append(m)
            return True

        c.net.tap = tap
        term = lead.status().term
        meta = SnapshotMeta(index=lead.status().commit + 100, term=term, membership=Membership.of(*c.ids))
        data = b"not a snapshot" * 10

        def chunk(**fields: Any) -> SnapshotChunk:
            values: dict[str, Any] = {
                "src": lead.id, "dst": follower.id, "term": term, "meta": meta, "size": len(data),
                "checksum": zlib.crc32(data), "offset": 0, "data": data, "done": True,
            }  # fmt: skip
            values.update(fields)
            return SnapshotChunk(**values)

        invalid = [  # out of the wire's bounds: a stream transport's codec refuses each of them
            chunk(size=-1, data=b"", checksum=0),  # negative size, last chunk
            chunk(size=-1, done=False),  # negative size, more to come
            chunk(checksum=-5),  # checksum out of range
            chunk(checksum=1 << 32),
            chunk(offset=-1),  # negative offset
            chunk(offset=1 << 70, done=False),  # offset far out of range
        ]
        for m in invalid:
            with pytest.raises(ValueError):
                codec.decode(codec.encode(m))
        bad = [
            *invalid,
            chunk(checksum=zlib.crc32(data) ^ 1),  # a bad checksum
            chunk(size=3),  # more data than announced
            chunk(size=len(data) + 1),  # less data than announced, yet "done"
        ]
        for m in bad:
            follower.receive(m)  # an in-memory transport delivers them as they are
        await c.wait_until(lambda: len(acks) == len(bad), timeout=5)
        assert follower._stopped is None
        assert c.machine(follower.id).restores == 0 and c.storages[follower.id].snapshot().is_empty()
        for k in range(2, 6):  # the follower keeps applying, and serving
            await (follower if k % 2 else lead).propose(command("", 0, k))
        await c.wait_converged()
        assert {c.machine(i).total for i in c.ids} == {15}
        await c.stop_all()
        # Each was refused: none was acknowledged as stored.
        assert [i for i, ack in enumerate(acks) if ack.ok] == [], acks

    run_virtual(main())


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open descriptors in /proc")
def test_a_disk_receiver_refuses_a_chunk_with_a_negative_size_without_leaking_a_file(tmp_path: Path):
    sent: list[WireMessage] = []
    storage = DiskStorage.open(tmp_path, membership=Membership.of(1, 2, 3), unsafe_skip_fsync=True)
    receiver = SnapshotReceiver(2, storage, sent.extend)
    meta = SnapshotMeta(index=9, term=2, membership=Membership.of(1, 2, 3))
    fds = len(os.listdir("/proc/self/fd"))
    for size, checksum in ((-1, 0), (4, -1), (4, 1 << 40)):
        m = SnapshotChunk(src=1, dst=2, term=2, meta=meta, size=size, checksum=checksum, offset=0, data=b"abcd")
        assert receiver.on_chunk(m) is None
    assert [type(a) for a in sent] == [SnapshotChunkAck] * 3
    assert not any(a.ok for a in sent if isinstance(a, SnapshotChunkAck))
    assert len(os.listdir("/proc/self/fd")) == fds, "a refused transfer left a file descriptor open"
    assert not list(tmp_path.rglob("*.partial")), "a refused transfer left its partial file"
    storage.close()


# -- 8: ReplicatedObject state that would not survive a JSON snapshot -------------------------------------------


class _IntKeyed(ReplicatedObject):
    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.count = 0

    @replicated
    def put(self, key: int, name: str) -> int:
        self.names[key] = name
        self.count += 1
        return self.count

    @query
    def get(self, key: int) -> str | None:
        return self.names.get(key)


class _Tupled(ReplicatedObject):
    def __init__(self) -> None:
        self.pair = (1, 2)


def test_snapshot_names_the_attribute_that_would_not_survive_json():
    obj = _IntKeyed()
    assert obj.snapshot()  # empty dict: fine
    obj.names[1] = "one"
    with pytest.raises(TypeError, match=r"_IntKeyed\.names"):
        obj.snapshot()
    with pytest.raises(TypeError, match=r"_Tupled\.pair"):
        _Tupled().snapshot()


def test_a_replicated_object_whose_state_cannot_be_snapshotted_keeps_serving_without_a_snapshot():
    async def main() -> None:
        net = MemoryNetwork()
        loop = current_virtual_loop()
        objs = {i: _IntKeyed() for i in (1, 2, 3)}
        storages = {i: MemoryStorage(Membership.of(1, 2, 3)) for i in (1, 2, 3)}
        options = sim_options(snapshot_entries=5, compact_keep_entries=1)
        nodes = {
            i: Node(i, objs[i], storages[i], net.transport(i), options, rng=random.Random(200 + i), clock=loop.clock_ms)
            for i in (1, 2, 3)
        }
        for i in (1, 2, 3):
            objs[i].attach(nodes[i])
            await nodes[i].start()
        await nodes[1].wait_for_leader(timeout=30)
        for k in range(1, 21):
            assert await objs[1 + k % 3].put(k, f"n{k}") == k
        assert await objs[2].get(7) == "n7"
        async with asyncio.timeout(30):
            while {n.applied_index for n in nodes.values()} != {nodes[1].status().commit}:
                await asyncio.sleep(0.05)
        for i in (1, 2, 3):
            assert nodes[i]._stopped is None
            assert storages[i].snapshot().is_empty(), f"node {i} wrote a snapshot"
            assert objs[i].count == 20 and objs[i].names[20] == "n20"
            assert storages[i].first_index() == 1  # nothing compacted without a snapshot
        for n in nodes.values():
            await n.stop()

    run_virtual(main())


# -- 9: the 16 MiB caps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_command_bytes", "snapshot_chunk_bytes"])
def test_command_and_chunk_sizes_are_capped_at_16_mib(field: str):
    assert getattr(NodeOptions(**{field: 16 << 20}), field) == 16 << 20
    with pytest.raises(ConfigError, match=field):
        NodeOptions(**{field: 32 << 20})
    with pytest.raises(ConfigError, match=field):
        NodeOptions(**{field: (16 << 20) + 1})
