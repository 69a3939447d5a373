"""Tests of snapshots in the runtime: chunked transfer (sender, receiver, in-memory assembly), installing a
snapshot on a node cut off while the log was compacted, and a receiver restarted in the middle of a transfer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib

import pytest

from raft_core.messages import InstallSnapshot
from raft_core.runtime import SnapshotChunk, SnapshotChunkAck, WireMessage
from raft_core.runtime.snapshot_transfer import MemoryIncoming, SnapshotReceiver, SnapshotSender, TransferError
from raft_core.testing.runtime_sim import Cluster, command, sim_options
from raft_core.testing.virtual_loop import run_virtual
from raft_core.types import Membership, NodeId, Snapshot, SnapshotMeta

META = SnapshotMeta(index=40, term=3, membership=Membership.of(1, 2, 3))
DATA = bytes(range(256)) * 2


# -- MemoryIncoming -----------------------------------------------------------------------------------------


def test_memory_incoming_assembles_a_snapshot_written_in_order():
    incoming = MemoryIncoming(META, len(DATA), zlib.crc32(DATA))
    for offset in range(0, len(DATA), 100):
        incoming.write(offset, DATA[offset : offset + 100])
    assert incoming.received == len(DATA)
    assert incoming.finish() == Snapshot(META, DATA)


def test_memory_incoming_refuses_a_chunk_at_the_wrong_offset():
    incoming = MemoryIncoming(META, len(DATA), zlib.crc32(DATA))
    incoming.write(0, DATA[:100])
    with pytest.raises(TransferError, match="offset 150, expected 100"):
        incoming.write(150, DATA[150:200])
    with pytest.raises(TransferError):
        incoming.write(0, DATA[:100])  # a repeated chunk is not the next one either
    assert incoming.received == 100


def test_memory_incoming_refuses_a_wrong_checksum_or_size():
    corrupt = MemoryIncoming(META, len(DATA), zlib.crc32(DATA))
    corrupt.write(0, DATA[:-1] + b"\x00")
    with pytest.raises(TransferError, match="corrupt"):
        corrupt.finish()
    short = MemoryIncoming(META, len(DATA), zlib.crc32(DATA))
    short.write(0, DATA[:-1])
    with pytest.raises(TransferError):
        short.finish()


def test_memory_incoming_abort_discards_what_was_received():
    incoming = MemoryIncoming(META, len(DATA), zlib.crc32(DATA))
    incoming.write(0, DATA[:10])
    incoming.abort()
    assert incoming.received == 0


# -- SnapshotReceiver ---------------------------------------------------------------------------------------


def chunks_of(data: bytes, size: int, *, src: NodeId = 1, dst: NodeId = 2, term: int = 3) -> list[SnapshotChunk]:
    """The chunks a sender makes of ``data`` (snapshot ``META``)."""
    checksum = zlib.crc32(data)
    return [
        SnapshotChunk(
            src=src,
            dst=dst,
            term=term,
            meta=META,
            size=len(data),
            checksum=checksum,
            offset=offset,
            data=data[offset : offset + size],
            done=offset + size >= len(data),
        )
        for offset in range(0, len(data), size)
    ]


def acks_in(sent: list[WireMessage]) -> list[SnapshotChunkAck]:
    return [m for m in sent if isinstance(m, SnapshotChunkAck)]


def test_the_receiver_acknowledges_each_chunk_and_returns_the_whole_snapshot_at_the_end():
    sent: list[WireMessage] = []
    receiver = SnapshotReceiver(2, object(), sent.extend)
    chunks = chunks_of(DATA, 100)
    results = [receiver.on_chunk(c) for c in chunks]
    assert results[:-1] == [None] * (len(chunks) - 1)
    installed = results[-1]
    assert installed == InstallSnapshot(src=1, dst=2, term=3, snapshot=Snapshot(META, DATA))
    acks = acks_in(sent)
    assert [a.received for a in acks] == [min(len(DATA), 100 * k) for k in range(1, len(chunks) + 1)]
    assert all(a.ok and a.dst == 1 and a.index == META.index for a in acks)


def test_the_receiver_refuses_a_chunk_after_a_gap_and_a_corrupt_snapshot():
    sent: list[WireMessage] = []
    receiver = SnapshotReceiver(2, object(), sent.extend)
    chunks = chunks_of(DATA, 100)
    receiver.on_chunk(chunks[0])
    assert receiver.on_chunk(chunks[2]) is None  # chunk 1 was lost
    assert acks_in(sent)[-1] == SnapshotChunkAck(src=2, dst=1, term=3, index=META.index, received=100, ok=False)
    sent.clear()
    bad = chunks_of(DATA[:-1] + b"\x00", 100)
    bad = [dataclasses.replace(c, checksum=zlib.crc32(DATA)) for c in bad]
    assert [receiver.on_chunk(c) for c in bad] == [None] * len(bad)
    assert not acks_in(sent)[-1].ok


def test_a_restarted_receiver_refuses_a_chunk_from_the_middle_of_a_transfer():
    sent: list[WireMessage] = []
    chunks = chunks_of(DATA, 100)
    SnapshotReceiver(2, object(), sent.extend).on_chunk(chunks[0])
    fresh = SnapshotReceiver(2, object(), sent.extend)  # the node restarted: nothing partial survives
    assert fresh.on_chunk(chunks[1]) is None
    assert acks_in(sent)[-1].ok is False and acks_in(sent)[-1].received == 0
    assert [fresh.on_chunk(c) for c in chunks][-1] is not None  # a new transfer from offset 0 succeeds


# -- SnapshotSender -----------------------------------------------------------------------------------------


def install(index: int = META.index, data: bytes = DATA, dst: NodeId = 2) -> InstallSnapshot:
    meta = SnapshotMeta(index=index, term=META.term, membership=META.membership)
    return InstallSnapshot(src=1, dst=dst, term=3, snapshot=Snapshot(meta, data))


def test_the_sender_keeps_at_most_a_window_of_chunks_unacknowledged_and_reports_success():
    async def main() -> None:
        sent: list[WireMessage] = []
        reports: list[tuple[NodeId, bool]] = []
        sender = SnapshotSender(
            1, sent.extend, lambda n, ok: reports.append((n, ok)), chunk_bytes=50, window=3, ack_timeout=1.0
        )
        receiver_out: list[WireMessage] = []
        receiver = SnapshotReceiver(2, object(), receiver_out.extend)
        sender.start(install())
        installed = None
        delivered = 0
        while installed is None:
            await asyncio.sleep(0.01)
            chunks = [m for m in sent if isinstance(m, SnapshotChunk)]
            assert len(chunks) - delivered <= 3, "more than a window of chunks in flight"
            if delivered == len(chunks):
                continue
            installed = receiver.on_chunk(chunks[delivered])
            delivered += 1
            for ack in acks_in(receiver_out):
                sender.on_ack(ack)
            receiver_out.clear()
        await asyncio.sleep(0.01)
        assert installed.snapshot.data == DATA
        assert delivered == -(-len(DATA) // 50)
        assert reports == [(2, True)] and sender.active() == 0

    run_virtual(main())


def test_the_sender_gives_up_without_acknowledgements_or_on_a_refusal():
    async def main() -> None:
        reports: list[tuple[NodeId, bool]] = []
        sender = SnapshotSender(
            1, lambda ms: None, lambda n, ok: reports.append((n, ok)), chunk_bytes=50, window=2, ack_timeout=1.0
        )
        loop = asyncio.get_running_loop()
        began = loop.time()
        sender.start(install(dst=2))
        while not reports:
            await asyncio.sleep(0.1)
        assert reports == [(2, False)] and loop.time() - began == pytest.approx(1.0, abs=0.11)
        sender.start(install(dst=3))
        await asyncio.sleep(0)
        sender.on_ack(SnapshotChunkAck(src=3, dst=1, term=3, index=META.index, received=0, ok=False))
        await asyncio.sleep(0.01)
        assert reports == [(2, False), (3, False)]

    run_virtual(main())


def test_a_replaced_transfer_does_not_report_a_failure_for_its_successor():
    """``cancel`` (and ``start`` replacing a transfer) is documented as "without reporting"."""

    async def main() -> None:
        reports: list[tuple[NodeId, bool]] = []
        sender = SnapshotSender(
            1, lambda ms: None, lambda n, ok: reports.append((n, ok)), chunk_bytes=50, window=2, ack_timeout=1.0
        )
        sender.start(install(index=40))
        await asyncio.sleep(0.01)
        sender.start(install(index=60))  # the leader's core asked for a newer snapshot
        await asyncio.sleep(0.01)
        assert reports == [], "the cancelled transfer reported a failure, aborting the new one in the core"
        sender.cancel(2)
        await asyncio.sleep(0.01)
        assert reports == []
        await sender.close()

    run_virtual(main())


def test_a_late_acknowledgement_of_a_replaced_transfer_does_not_abort_the_new_one():
    async def main() -> None:
        reports: list[tuple[NodeId, bool]] = []
        sent: list[WireMessage] = []
        sender = SnapshotSender(
            1, sent.extend, lambda n, ok: reports.append((n, ok)), chunk_bytes=50, window=2, ack_timeout=1.0
        )
        sender.start(install(index=40))
        await asyncio.sleep(0.01)
        sender.start(install(index=60))
        await asyncio.sleep(0.01)
        # The follower acknowledges a chunk of the old snapshot after the new transfer began.
        sender.on_ack(SnapshotChunkAck(src=2, dst=1, term=3, index=40, received=50))
        await asyncio.sleep(0.01)
        assert reports == [] and sender.active() == 1
        receiver = SnapshotReceiver(2, object(), lambda ms: None)
        fresh = [m for m in sent if isinstance(m, SnapshotChunk) and m.meta.index == 60]
        receiver.on_chunk(fresh[0])
        sender.on_ack(SnapshotChunkAck(src=2, dst=1, term=3, index=60, received=50))
        await asyncio.sleep(0.01)
        assert reports == [] and sender.active() == 1  # still streaming the new snapshot
        await sender.close()

    run_virtual(main())


# -- on a cluster -------------------------------------------------------------------------------------------


def test_a_node_cut_off_while_the_log_was_compacted_catches_up_by_a_chunked_snapshot():
    async def main() -> None:
        c = Cluster(
            3, seed=21, options=sim_options(snapshot_entries=20, compact_keep_entries=5, snapshot_chunk_bytes=64)
        )
        await c.start_all()
        lead = await c.wait_leader()
        lagging = next(i for i in c.ids if i != lead.id)
        c.net.isolate(lagging, c.ids)
        for k in range(1, 61):
            await lead.propose(command("s", k))
        assert c.storages[lead.id].first_index() > c.nodes[lagging].applied_index + 1, "the log was not compacted"
        c.net.heal()
        await c.wait_converged()
        assert c.net.chunks[lagging] > 3, "the snapshot did not flow in several chunks"
        assert c.machine(lagging).restores >= 1
        assert len({c.machine(i).snapshot() for i in c.ids}) == 1
        assert c.machine(lagging).last_ok["s"] == 60
        await c.stop_all()

    run_virtual(main())


def test_a_receiver_restarted_in_the_middle_of_a_transfer_gets_the_snapshot_later():
    async def main() -> None:
        c = Cluster(
            3,
            seed=22,
            options=sim_options(
                snapshot_entries=20, compact_keep_entries=5, snapshot_chunk_bytes=64, snapshot_chunk_timeout=1.0
            ),
        )
        await c.start_all()
        lead = await c.wait_leader()
        lagging = next(i for i in c.ids if i != lead.id)
        c.net.isolate(lagging, c.ids)
        for k in range(1, 61):
            await lead.propose(command("s", k))
        refusals: list[SnapshotChunkAck] = []
        restarts: list[asyncio.Task[object]] = []

        def tap(m: WireMessage) -> bool:
            if isinstance(m, SnapshotChunkAck) and not m.ok:
                refusals.append(m)
            if isinstance(m, SnapshotChunk) and m.dst == lagging and m.offset > 0 and not restarts:
                # The receiver crashes after the first chunk: this chunk is lost with it.
                restarts.append(c.loop.create_task(c.restart(lagging)))
                return False
            return True

        c.net.tap = tap
        c.net.heal()
        await c.wait_until(lambda: bool(restarts) and restarts[0].done())
        await c.wait_converged()
        assert refusals, "the restarted receiver never refused a chunk from the middle of the old transfer"
        assert c.machine(lagging).restores >= 1  # the new incarnation installed a snapshot later
        assert len({c.machine(i).snapshot() for i in c.ids}) == 1
        await c.stop_all()

    run_virtual(main())


def test_a_snapshot_taken_and_compacted_keeps_the_configured_tail():
    async def main() -> None:
        c = Cluster(1, seed=23, options=sim_options(snapshot_entries=20, compact_keep_entries=5))
        await c.start_all()
        node = await c.wait_leader()
        for k in range(1, 46):
            await node.propose(command("t", k))
        storage = c.storages[1]
        snap = storage.snapshot()
        assert snap.meta.index >= 20
        assert storage.first_index() == snap.meta.index - 5 + 1
        await c.restart(1)  # restores from the snapshot, replays the tail
        await c.wait_until(lambda: c.nodes[1].applied_index == storage.last_index())
        assert c.machine(1).last_ok["t"] == 45 and c.machine(1).applies == 45
        await c.stop_all()

    run_virtual(main())
