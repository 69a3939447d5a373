"""Tests of exactly-once client sessions: the session table, the envelope codec, and deduplication on a cluster
across retries, leader changes, snapshots, restarts and session expiry (decided by log time).

A client opens its session first (a ``REGISTER`` entry), then sends (client, seq, floor) with each command:
results are kept for the seqs at or above the floor, so several commands of one client may be in flight.
Everything runs on the virtual loop; waits poll with a deadline or await events, never sleep and hope.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from typing import Any

import pytest

from raft_core.errors import CommandFailed, ConfigError, ResultNotKept, SessionError
from raft_core.messages import Propose
from raft_core.runtime import Node, ReplicatedObject, WireMessage, envelope, query, replicated
from raft_core.runtime.envelope import Envelope, EnvelopeError
from raft_core.runtime.sessions import SessionTable, Verdict, decode_result, encode_result
from raft_core.runtime.state_machine import Command
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.runtime_sim import Cluster, CountingNetwork, SimMachine, command, sim_options
from raft_core.testing.virtual_loop import VirtualLoop, current_virtual_loop, run_virtual
from raft_core.types import Membership, NodeId


def result_of(answer: object) -> dict[str, Any]:
    """A ``SimMachine`` answer, checked to be one."""
    assert isinstance(answer, dict), answer
    return answer


# -- SessionTable -------------------------------------------------------------------------------------------


def opened(*clients: str, ttl_ms: int = 1000, max_sessions: int = 10, max_results: int = 1024) -> SessionTable:
    """A table with ``clients`` registered (in that order) at log time 0."""
    table = SessionTable(max_results=max_results)
    for client in clients:
        table.register(client, ttl_ms=ttl_ms, max_sessions=max_sessions)
    return table


def test_verdicts_follow_the_sequence_numbers_and_the_floor():
    table = SessionTable()
    assert table.check("a", 1) == (Verdict.EXPIRED, None)  # never opened: no implicit session at seq 1
    assert "a" not in table and len(table) == 0
    table.register("a", ttl_ms=1000, max_sessions=10)
    assert "a" in table and len(table) == 1
    assert table.check("a", 1) == (Verdict.APPLY, None)
    table.record("a", 1, 1, {"ok": 1})
    assert table.check("a", 1) == (Verdict.DUPLICATE, {"ok": 1})
    assert table.check("a", 2) == (Verdict.APPLY, None)
    table.record("a", 2, 2, {"ok": 2})  # floor 2: the client has the answer to 1
    assert table.check("a", 1) == (Verdict.STALE, None)
    assert table.check("a", 2) == (Verdict.DUPLICATE, {"ok": 2})
    assert table.check("a", 5) == (Verdict.APPLY, None)  # gaps are allowed
    assert len(table) == 1


def test_several_commands_in_flight_keep_their_results_until_the_floor_passes_them():
    table = opened("a")
    table.record("a", 2, 1, "r2")  # 2 applied before 1 (both in flight, floor 1)
    assert table.check("a", 1) == (Verdict.APPLY, None)  # still awaited: not stale
    table.record("a", 1, 1, "r1")
    assert table.check("a", 1) == (Verdict.DUPLICATE, "r1")
    assert table.check("a", 2) == (Verdict.DUPLICATE, "r2")
    table.record("a", 3, 2, "r3")  # the client has the answer to 1 now
    assert table.check("a", 1) == (Verdict.STALE, None)
    assert table.check("a", 2) == (Verdict.DUPLICATE, "r2")
    assert table.check("a", 3) == (Verdict.DUPLICATE, "r3")


def test_the_floor_never_goes_down():
    table = opened("a")
    table.record("a", 1, 1, "r1")
    table.record("a", 2, 1, "r2")
    table.record("a", 5, 3, "r5")  # floor 3: 1 and 2 are dropped
    table.record("a", 4, 1, "r4")  # sent earlier with an older floor, applied later: does not bring them back
    assert [table.check("a", n)[0] for n in (1, 2)] == [Verdict.STALE] * 2
    assert table.check("a", 3) == (Verdict.APPLY, None)  # at the floor, never answered: still allowed
    assert table.check("a", 4) == (Verdict.DUPLICATE, "r4")
    assert table.check("a", 5) == (Verdict.DUPLICATE, "r5")


def test_max_results_drops_the_lowest_results_and_raises_the_floor():
    table = opened("a", max_results=3)
    for n in range(1, 6):
        table.record("a", n, 1, f"r{n}")  # the client claims to wait for all of them
    assert [table.check("a", n)[0] for n in (1, 2)] == [Verdict.STALE] * 2  # refused, never applied again
    assert [table.check("a", n) for n in (3, 4, 5)] == [(Verdict.DUPLICATE, f"r{n}") for n in (3, 4, 5)]
    rows = json.loads(table.to_json())["sessions"]
    assert [(client, ttl, floor) for client, _, ttl, floor, _ in rows] == [("a", 1000, 3)]
    table.record("a", 6, 1, "r6")
    assert table.check("a", 3) == (Verdict.STALE, None)
    assert table.check("a", 6) == (Verdict.DUPLICATE, "r6")


def test_each_session_expires_after_its_own_ttl():
    table = SessionTable()
    table.advance(100)
    table.register("short", ttl_ms=1000, max_sessions=10)
    table.register("long", ttl_ms=5000, max_sessions=10)
    table.record("short", 1, 1, "r1")
    table.record("long", 1, 1, "r1")
    table.advance(1100)  # exactly the short TTL: still alive
    assert "short" in table and "long" in table
    table.advance(1101)
    assert "short" not in table and table.check("short", 1) == (Verdict.EXPIRED, None)
    assert table.check("long", 1) == (Verdict.DUPLICATE, "r1")
    table.advance(5100)
    assert "long" in table
    table.advance(5101)
    assert len(table) == 0


def test_a_touched_session_expires_by_its_latest_use_not_its_first():
    table = opened("a", "b", ttl_ms=1000)
    table.advance(800)
    table.record("a", 1, 1, None)  # a's old deadline (1000) no longer counts
    table.advance(1001)
    assert "a" in table and "b" not in table
    table.advance(1700)
    table.check("a", 1)  # a check alone is not a use
    table.touch("a")  # a retry answered from the table is
    table.advance(2600)
    assert "a" in table
    table.advance(2701)
    assert "a" not in table


def test_sessions_expire_by_log_time_least_recently_used_first():
    table = SessionTable()
    table.advance(100)
    table.register("a", ttl_ms=1000, max_sessions=10)
    table.advance(400)
    table.register("b", ttl_ms=1000, max_sessions=10)
    table.advance(900)
    table.record("a", 1, 1, None)  # a is used again: now b is the idlest
    table.advance(1401)  # b was last used at 400: idle for 1001 ms
    assert table.check("b", 1)[0] is Verdict.EXPIRED
    assert table.check("a", 1)[0] is Verdict.DUPLICATE
    table.advance(1900)  # a was last used at 900: exactly the TTL, still alive
    assert table.check("a", 1)[0] is Verdict.DUPLICATE
    table.advance(1901)
    assert len(table) == 0
    assert table.check("a", 1)[0] is Verdict.EXPIRED


def test_log_time_never_goes_back():
    table = SessionTable()
    table.advance(5000)
    table.advance(10)
    assert table.log_time == 5000
    table.register("a", ttl_ms=1000, max_sessions=10)
    table.record("a", 1, 1, None)
    table.advance(4000)  # an older clock (a lagging proposer) does not expire anything nor move time back
    assert table.log_time == 5000 and len(table) == 1


def test_max_sessions_evicts_the_idlest_session():
    table = SessionTable()
    for t, client in enumerate("abc", start=1):
        table.advance(t)
        table.register(client, ttl_ms=10**9, max_sessions=3)
        table.record(client, 1, 1, client)
    table.advance(10)
    table.record("a", 2, 2, "a2")  # a becomes the most recently used
    table.register("d", ttl_ms=10**9, max_sessions=3)  # four sessions: b, the idlest, goes
    assert len(table) == 3
    assert "b" not in table
    assert table.check("b", 1)[0] is Verdict.EXPIRED
    assert table.check("c", 1)[0] is Verdict.DUPLICATE
    assert table.check("d", 1)[0] is Verdict.APPLY
    assert table.check("a", 2) == (Verdict.DUPLICATE, "a2")


def test_the_latest_register_sets_the_table_size():
    table = opened("a", "b", "c", "d", max_sessions=10)
    assert len(table) == 4 and table.max_sessions == 10
    table.register("e", ttl_ms=1000, max_sessions=2)  # a smaller limit evicts down to it at once
    assert [client for client in "abcde" if client in table] == ["d", "e"]
    assert table.max_sessions == 2
    table.register("f", ttl_ms=1000, max_sessions=3)
    assert [client for client in "abcdef" if client in table] == ["d", "e", "f"]


def test_the_table_round_trips_through_json_with_its_order_floors_ttls_and_log_time():
    table = SessionTable()
    table.advance(50)
    table.register("x", ttl_ms=1000, max_sessions=2)
    table.record("x", 2, 1, encode_result("two"))
    table.record("x", 3, 2, encode_result({"bytes": b"\x00\xff", "list": (1, "two"), "none": None}))
    table.advance(60)
    table.register("y", ttl_ms=300, max_sessions=2)
    table.record("y", 1, 1, encode_result(7.5))
    copy = SessionTable()
    copy.restore(table.to_json())
    assert copy.to_json() == table.to_json()
    assert copy.log_time == 60 and len(copy) == 2 and copy.max_sessions == 2
    verdict, recorded = copy.check("x", 3)
    assert verdict is Verdict.DUPLICATE
    assert decode_result(recorded) == {"bytes": b"\x00\xff", "list": [1, "two"], "none": None}
    assert copy.check("x", 2) == (Verdict.DUPLICATE, "two")
    assert copy.check("x", 1) == (Verdict.STALE, None)  # the floor came along
    restored = SessionTable()
    restored.restore(table.to_json())
    restored.advance(361)  # y's own TTL (300 ms from 60) came along: it expires, x (1000 ms) does not
    assert "y" not in restored and "x" in restored
    copy.register("z", ttl_ms=1000, max_sessions=2)  # the restored order decides eviction: x is the idlest
    assert copy.check("x", 3)[0] is Verdict.EXPIRED and copy.check("y", 1)[0] is Verdict.DUPLICATE


def test_results_that_are_not_json_values_are_refused():
    with pytest.raises(TypeError):
        encode_result({1: "int key"})
    with pytest.raises(TypeError):
        encode_result({"a": {1, 2}})
    assert decode_result(encode_result([b"a", {"b": b""}])) == [b"a", {"b": b""}]
    assert decode_result(encode_result((1, (2, 3)))) == [1, [2, 3]]


# -- the envelope -------------------------------------------------------------------------------------------


def test_an_envelope_round_trips_with_and_without_a_session():
    plain = envelope.encode(3, 2**63, -5, b"cmd")
    assert envelope.decode(plain) == Envelope(3, 2**63, -5, b"cmd")
    data = envelope.encode(2**32 - 1, 7, 1_700_000_000_000, b"", "cli\u00e9nt", 2**64 - 1, 2**64 - 1)
    assert envelope.decode(data) == Envelope(2**32 - 1, 7, 1_700_000_000_000, b"", "cli\u00e9nt", 2**64 - 1, 2**64 - 1)
    data = envelope.encode(1, 2, 3, b"body", "c", 9, 4)
    assert envelope.decode(data) == Envelope(1, 2, 3, b"body", "c", 9, 4)


def test_a_register_envelope_round_trips_with_its_ttl_and_table_size():
    data = envelope.encode_register(4, 8, 1_700_000_000_000, 3_600_000, 100_000)
    env = envelope.decode(data)
    assert env == Envelope(4, 8, 1_700_000_000_000, b"", register=True, ttl_ms=3_600_000, max_sessions=100_000)
    assert (env.client, env.seq, env.floor) == ("", 0, 0)
    top = envelope.decode(envelope.encode_register(1, 2, 3, 2**64 - 1, 2**32 - 1))
    assert (top.ttl_ms, top.max_sessions) == (2**64 - 1, 2**32 - 1)
    plain = envelope.decode(envelope.encode(4, 8, 0, b"", "c", 1, 1))
    assert not plain.register and (plain.ttl_ms, plain.max_sessions) == (0, 0)


def test_envelope_encode_refuses_bad_sessions():
    with pytest.raises(ValueError, match="255"):
        envelope.encode(1, 1, 0, b"", "x" * 256, 1, 1)
    with pytest.raises(ValueError, match="start at 1"):
        envelope.encode(1, 1, 0, b"", "c", 0, 0)
    with pytest.raises(ValueError, match="floor"):
        envelope.encode(1, 1, 0, b"", "c", 1)  # floor 0 (the default) with a client
    with pytest.raises(ValueError, match="floor"):
        envelope.encode(1, 1, 0, b"", "c", 3, 4)  # floor above seq


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x00",  # shorter than the header
        struct.pack("<BBIQq", 9, 0, 1, 1, 0),  # unknown version
        struct.pack("<BBIQq", 1, 4, 1, 1, 0) + b"\x01c",  # unknown flags
        struct.pack("<BBIQq", 1, 3, 1, 1, 0) + b"\x01c" + struct.pack("<QQ", 1, 1),  # SESSION | REGISTER
    ],
    ids=["empty", "short", "version", "flags", "session-and-register"],
)
def test_envelope_decode_refuses_data_that_is_not_an_envelope(data: bytes):
    with pytest.raises(EnvelopeError):
        envelope.decode(data)


@pytest.mark.parametrize("cut", [0, 1, 3, 9, 12, 19])
def test_envelope_decode_refuses_a_truncated_session(cut: int):
    whole = envelope.encode(1, 1, 0, b"", "abc", 5, 5)
    head = struct.calcsize("<BBIQq")
    assert len(whole) == head + 4 + 16
    with pytest.raises(EnvelopeError):
        envelope.decode(whole[: head + cut])


@pytest.mark.parametrize("cut", [0, 1, 8, 11])
def test_envelope_decode_refuses_a_truncated_register(cut: int):
    whole = envelope.encode_register(1, 1, 0, 1000, 10)
    head = struct.calcsize("<BBIQq")
    assert len(whole) == head + 12
    with pytest.raises(EnvelopeError):
        envelope.decode(whole[: head + cut])


def test_envelope_decode_refuses_a_client_id_that_is_not_utf8():
    head = struct.pack("<BBIQq", 1, 1, 1, 1, 0)
    with pytest.raises(EnvelopeError):
        envelope.decode(head + b"\x02\xff\xfe" + struct.pack("<QQ", 1, 1))


# -- on a cluster -------------------------------------------------------------------------------------------


def register_entry(c: Cluster, node: NodeId, client: str) -> Envelope:
    """The decoded entry at the log index ``client`` names, in ``node``'s storage."""
    index = int(client)
    (entry,) = c.storages[node].entries(index, index + 1)
    return envelope.decode(entry.data)


def test_a_command_for_a_session_never_opened_is_refused_and_not_applied():
    async def main() -> None:
        c = Cluster(3, seed=41)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(SessionError, match="no open session"):
            await lead.propose(command("ghost", 1), client="ghost", seq=1)
        with pytest.raises(SessionError, match="no open session"):
            await follower.propose(command("ghost", 3), client="ghost", seq=3, floor=2)
        # An id that names a log index, but not one of a REGISTER entry, is no session either.
        plain = result_of(await lead.propose(command("", 0)))["index"]
        with pytest.raises(SessionError, match="no open session"):
            await follower.propose(command(str(plain), 1), client=str(plain), seq=1)
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}
        assert not any(n._applier.sessions for n in c.live()), "a refused command opened a session"
        client = await lead.open_session()  # an opened session makes the same command acceptable
        assert client not in ("ghost", str(plain))
        assert result_of(await follower.propose(command(client, 1), client=client, seq=1))["seq"] == 1
        with pytest.raises(SessionError, match="no open session"):  # the ghost stays unknown
            await lead.propose(command("ghost", 1), client="ghost", seq=1)
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {2}
        await c.stop_all()

    run_virtual(main())


def test_open_session_returns_the_log_index_of_its_register_entry_and_never_reuses_an_id():
    async def main() -> None:
        c = Cluster(3, seed=42, options=sim_options(session_ttl=90.0, max_sessions=7))
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        ids = [await lead.open_session(), await follower.open_session(), await lead.open_session()]
        assert len(set(ids)) == 3 and all(client.isdigit() for client in ids)
        assert [int(client) for client in ids] == sorted(int(client) for client in ids)
        for client in ids:
            entry = register_entry(c, lead.id, client)  # the id is the index of the session's REGISTER
            assert entry.register and (entry.ttl_ms, entry.max_sessions) == (90_000, 7)
        first = await lead.propose(command(ids[0], 1, 5), client=ids[0], seq=1)
        second = await follower.propose(command(ids[1], 1, 7), client=ids[1], seq=1)
        assert await follower.propose(command(ids[0], 1, 5), client=ids[0], seq=1) == first  # a retry elsewhere
        assert await lead.propose(command(ids[1], 1, 7), client=ids[1], seq=1) == second
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {2}
        assert {c.machine(i).total for i in c.ids} == {12}
        assert {len(n._applier.sessions) for n in c.live()} == {3}
        # Ids only grow, across leader changes and restarts: an expired id is never handed out again.
        target = next(i for i in c.ids if i != lead.id)
        await lead.transfer_leadership(target, timeout=10)
        await c.wait_leader(among=[target])
        await c.stop_all()
        await c.start_all()
        new = await c.wait_leader()
        later = await new.open_session()
        assert int(later) > max(int(client) for client in ids)
        await c.stop_all()

    run_virtual(main())


def test_a_retry_on_another_node_returns_the_first_result_and_applies_nothing():
    async def main() -> None:
        c = Cluster(3, seed=31)
        await c.start_all()
        lead = await c.wait_leader()
        client = await lead.open_session()
        first = await lead.propose(command(client, 1, 5), client=client, seq=1)
        for n in c.live():
            assert await n.propose(command(client, 1, 5), client=client, seq=1) == first
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}
        assert c.duplicates[lead.id] == 3
        await c.stop_all()

    run_virtual(main())


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_several_commands_of_one_client_in_flight_are_each_applied_once(order: tuple[int, int]):
    async def main() -> None:
        c = Cluster(3, seed=43)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        client = await lead.open_session()
        # Both in flight at once (floor 1: the client waits for both), proposed in the order given.
        answers = await asyncio.gather(
            *(lead.propose(command(client, seq, 10 * seq), client=client, seq=seq, floor=1) for seq in order)
        )
        first = dict(zip(order, answers, strict=True))
        assert result_of(first[order[0]])["index"] < result_of(first[order[1]])["index"]  # applied in that order
        assert {result_of(first[seq])["seq"] for seq in (1, 2)} == {1, 2}
        before = c.duplicates[lead.id]
        for node in (lead, follower):  # both retried later, on any node, in any order
            for seq in (2, 1):
                again = await node.propose(command(client, seq, 10 * seq), client=client, seq=seq, floor=1)
                assert again == first[seq]
        assert c.duplicates[lead.id] == before + 4
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {2}
        assert {c.machine(i).total for i in c.ids} == {30}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        await c.stop_all()

    run_virtual(main())


def test_a_command_that_failed_fails_again_on_retry_without_being_applied_again():
    async def main() -> None:
        c = Cluster(3, seed=32)
        await c.start_all()
        lead = await c.wait_leader()
        client = await lead.open_session()
        with pytest.raises(CommandFailed) as first:
            await lead.propose(command(client, 1, fail=True), client=client, seq=1)
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(CommandFailed) as again:
            await follower.propose(command(client, 1, fail=True), client=client, seq=1)
        assert (again.value.kind, again.value.detail) == (first.value.kind, first.value.detail)
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}
        await c.stop_all()

    run_virtual(main())


def test_dedup_holds_across_a_leader_change():
    async def main() -> None:
        c = Cluster(3, seed=33)
        await c.start_all()
        lead = await c.wait_leader()
        client = await lead.open_session()
        first = await lead.propose(command(client, 1), client=client, seq=1)
        target = next(i for i in c.ids if i != lead.id)
        await lead.transfer_leadership(target, timeout=10)
        new = await c.wait_leader(among=[target])
        assert await new.propose(command(client, 1), client=client, seq=1) == first
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}
        await c.stop_all()

    run_virtual(main())


def test_dedup_holds_after_a_snapshot_and_a_restart_of_the_whole_cluster():
    async def main() -> None:
        c = Cluster(3, seed=34, options=sim_options(snapshot_entries=10, compact_keep_entries=2))
        await c.start_all()
        lead = await c.wait_leader()
        client = await lead.open_session()
        other = await lead.open_session()
        first = await lead.propose(command(client, 1), client=client, seq=1)
        for k in range(1, 31):
            await lead.propose(command(other, k), client=other, seq=k)
        await c.wait_converged()
        index = result_of(first)["index"]
        assert all(s.first_index() > index for s in c.storages.values()), "the entry of c#1 was not compacted"
        await c.stop_all()
        await c.start_all()
        assert all(c.machine(i).restores == 0 for i in c.ids)
        new = await c.wait_leader()
        for n in c.live():
            assert await n.propose(command(client, 1), client=client, seq=1) == first
        # The sessions themselves survived: "other" goes on without opening again.
        assert result_of(await new.propose(command(other, 31), client=other, seq=31))["seq"] == 31
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {32}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        await c.stop_all()

    run_virtual(main())


def test_dedup_holds_on_a_node_that_installed_the_session_table_with_a_snapshot():
    async def main() -> None:
        c = Cluster(3, seed=35, options=sim_options(snapshot_entries=10, compact_keep_entries=2))
        await c.start_all()
        lead = await c.wait_leader()
        lagging = next(i for i in c.ids if i != lead.id)
        c.net.isolate(lagging, c.ids)
        client = await lead.open_session()
        other = await lead.open_session()
        first = await lead.propose(command(client, 1), client=client, seq=1)
        for k in range(1, 31):
            await lead.propose(command(other, k), client=other, seq=k)
        c.net.heal()
        await c.wait_converged()
        assert c.machine(lagging).restores >= 1
        before = c.duplicates[lagging]
        assert await c.nodes[lagging].propose(command(client, 1), client=client, seq=1) == first
        assert c.duplicates[lagging] == before + 1  # answered from the installed session table
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {31}
        assert len({n._applier.sessions.to_json() for n in c.live()}) == 1
        await c.stop_all()

    run_virtual(main())


def test_a_sequence_number_below_the_floor_is_refused_with_session_error():
    async def main() -> None:
        c = Cluster(3, seed=36)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        cl = await lead.open_session()
        await lead.propose(command(cl, 1), client=cl, seq=1)
        await lead.propose(command(cl, 2), client=cl, seq=2)  # floor 2 (the default): 1 is answered
        with pytest.raises(SessionError, match="below the client's floor"):
            await lead.propose(command(cl, 1), client=cl, seq=1)
        with pytest.raises(SessionError, match="below the client's floor"):
            await follower.propose(command(cl, 1), client=cl, seq=1, floor=1)  # its own floor does not matter
        # A number never sent that lies below the floor is refused too (it may have been lost for good).
        await lead.propose(command(cl, 5), client=cl, seq=5, floor=4)
        with pytest.raises(SessionError, match="below the client's floor"):
            await follower.propose(command(cl, 3), client=cl, seq=3)
        assert result_of(await lead.propose(command(cl, 4), client=cl, seq=4))["seq"] == 4  # at the floor
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {4}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        await c.stop_all()

    run_virtual(main())


def test_max_results_on_a_cluster_refuses_a_retry_of_a_dropped_result_as_stale():
    async def main() -> None:
        c = Cluster(3, seed=44)
        await c.start_all()
        for n in c.live():  # the option is not in NodeOptions: set it on every node's table, the same way
            n._applier.sessions.max_results = 2
        lead = await c.wait_leader()
        cl = await lead.open_session()
        answers = [await lead.propose(command(cl, k), client=cl, seq=k, floor=1) for k in (1, 2, 3)]
        with pytest.raises(SessionError, match="below the client's floor"):
            await lead.propose(command(cl, 1), client=cl, seq=1, floor=1)
        assert await lead.propose(command(cl, 2), client=cl, seq=2, floor=1) == answers[1]
        assert await lead.propose(command(cl, 3), client=cl, seq=3, floor=1) == answers[2]
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {3}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        await c.stop_all()

    run_virtual(main())


def test_a_session_expires_after_its_ttl_of_log_time_on_every_node():
    async def main() -> None:
        c = Cluster(3, seed=37, options=sim_options(session_ttl=60.0))
        await c.start_all()
        lead = await c.wait_leader()
        idle = await lead.open_session()
        busy = await lead.open_session()
        await lead.propose(command(idle, 1), client=idle, seq=1)
        await lead.propose(command(busy, 1), client=busy, seq=1)
        for k in range(2, 5):  # "busy" stays active while log time moves 90 s on
            c.offset_ms += 30_000
            await lead.propose(command(busy, k), client=busy, seq=k)
        with pytest.raises(SessionError, match="no open session"):
            await lead.propose(command(idle, 2), client=idle, seq=2)
        with pytest.raises(SessionError, match="no open session"):  # nor is its old answer kept
            await lead.propose(command(idle, 1), client=idle, seq=1)
        assert await lead.propose(command(busy, 4), client=busy, seq=4) is not None  # still a duplicate
        fresh = await lead.open_session()  # a new session gets a new id
        assert fresh not in (idle, busy) and int(fresh) > int(busy)
        await lead.propose(command(fresh, 2), client=fresh, seq=2)
        with pytest.raises(SessionError, match="no open session"):  # the old id stays expired: not applied
            await lead.propose(command(idle, 2), client=idle, seq=2)
        await c.wait_converged()
        tables = {c.nodes[i]._applier.sessions.to_json() for i in c.ids}
        assert len(tables) == 1, "nodes disagree on which sessions expired"
        assert all(idle not in n._applier.sessions and fresh in n._applier.sessions for n in c.live())
        assert {c.machine(i).applies for i in c.ids} == {6}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        assert {c.machine(i).last_ok[idle] for i in c.ids} == {1}
        await c.stop_all()

    run_virtual(main())


def test_expiry_uses_the_proposers_clock_not_the_appliers():
    async def main() -> None:
        c = Cluster(3, seed=38, options=sim_options(session_ttl=60.0))
        await c.start_all()
        lead = await c.wait_leader()
        cl = await lead.open_session()
        await lead.propose(command(cl, 1), client=cl, seq=1)
        await c.wait_converged()
        for n in c.live():  # each node's own idea of the time is irrelevant; only log time counts
            assert n._applier.sessions.log_time == c.machine(n.id).times[-1]
        c.offset_ms += 59_000
        await lead.propose(command(cl, 2), client=cl, seq=2)  # within the TTL: accepted
        await c.wait_converged()
        assert {c.machine(i).last_ok[cl] for i in c.ids} == {2}
        await c.stop_all()

    run_virtual(main())


def test_expiry_and_eviction_follow_the_register_entries_not_each_nodes_options():
    """Nodes configured with different session TTLs and table sizes hold the same table: each session lives
    by the TTL its REGISTER entry carries (the opening node's option) and the latest REGISTER sets the size."""

    async def main() -> None:
        c = Cluster(3, seed=47)
        per_node = {
            1: sim_options(session_ttl=60.0, max_sessions=10),
            2: sim_options(session_ttl=600.0, max_sessions=10),
            3: sim_options(session_ttl=6000.0, max_sessions=2),
        }
        for i in c.ids:
            await c.start(i, per_node[i])
        lead = await c.wait_leader()
        nodes = c.nodes
        short = await nodes[1].open_session()  # 60 s, whoever applies it
        long = await nodes[2].open_session()  # 600 s
        assert (register_entry(c, 3, short).ttl_ms, register_entry(c, 1, long).ttl_ms) == (60_000, 600_000)
        await nodes[1].propose(command(short, 1), client=short, seq=1)
        await nodes[1].propose(command(long, 1), client=long, seq=1)
        for k in (2, 3):  # 2 x 90 s of log time, "long" used each time: past 60 s, within 600 s of idleness
            c.offset_ms += 90_000
            await lead.propose(command(long, k), client=long, seq=k)
        await c.wait_converged()
        for n in c.live():  # node 2 and 3 would keep "short" by their options, node 1 would drop "long"
            assert short not in n._applier.sessions, f"node {n.id} kept a session past its REGISTER's TTL"
            assert long in n._applier.sessions, f"node {n.id} expired a session by its own options"
        with pytest.raises(SessionError, match="no open session"):
            await nodes[3].propose(command(short, 2), client=short, seq=2)
        # Two sessions opened through node 2 (a table of 10), then one through node 3 (a table of 2).
        third, fourth = await nodes[2].open_session(), await nodes[2].open_session()
        await c.wait_converged()
        for n in c.live():  # node 3 would keep only two by its own options
            assert [cl for cl in (long, third, fourth) if cl in n._applier.sessions] == [long, third, fourth]
        fifth = await nodes[3].open_session()  # the table shrinks to 2 everywhere: the idlest go
        await c.wait_converged()
        for n in c.live():
            assert [cl for cl in (short, long, third, fourth, fifth) if cl in n._applier.sessions] == [fourth, fifth]
            assert n._applier.sessions.max_sessions == 2
        assert len({n._applier.sessions.to_json() for n in c.live()}) == 1
        # A node restarted with yet other options rebuilds the very same table from the log.
        await c.stop(1)
        await c.start(1, sim_options(session_ttl=1.0, max_sessions=1))
        await c.wait_converged()
        assert len({n._applier.sessions.to_json() for n in c.live()}) == 1
        assert {c.machine(i).applies for i in c.ids} == {4}
        await c.stop_all()

    run_virtual(main())


@pytest.mark.parametrize("ttl", [1e-4, 1e20, float("inf")], ids=["0ms", "past-u64", "inf"])
def test_a_session_ttl_that_a_register_entry_cannot_carry_is_refused_by_node_options(ttl: float):
    """The TTL travels as whole milliseconds in a u64: a ``session_ttl`` outside that must be a ``ConfigError``,
    not an error from ``open_session`` (struct.error, OverflowError) nor a TTL of 0 ms (expired at once)."""
    try:
        options = sim_options(session_ttl=ttl)
    except ConfigError:
        return

    async def main() -> None:
        c = Cluster(1, seed=48, options=options)
        await c.start_all()
        await c.wait_leader()
        client = await c.nodes[1].open_session()
        assert register_entry(c, 1, client).ttl_ms >= 1
        await c.stop_all()

    run_virtual(main())


def test_a_machine_result_of_bytes_is_returned_to_a_retry_unchanged():
    class BytesMachine(SimMachine):
        def apply(self, cmd: Command) -> object:
            super().apply(cmd)
            return b"\x00raw" + cmd.index.to_bytes(4, "little")

    async def main() -> None:
        c = Cluster(3, seed=39, machine=BytesMachine)
        await c.start_all()
        lead = await c.wait_leader()
        cl = await lead.open_session()
        first = await lead.propose(command(cl, 1), client=cl, seq=1)
        assert isinstance(first, bytes)
        assert await lead.propose(command(cl, 1), client=cl, seq=1) == first
        await c.stop_all()

    run_virtual(main())


def test_the_first_caller_gets_the_recorded_form_of_the_result():
    class TupleMachine(SimMachine):
        def apply(self, cmd: Command) -> object:
            super().apply(cmd)
            return (cmd.index, ("nested", b"\x01"))

    async def main() -> None:
        c = Cluster(3, seed=45, machine=TupleMachine)
        await c.start_all()
        lead = await c.wait_leader()
        cl = await lead.open_session()
        first = await lead.propose(command(cl, 1), client=cl, seq=1)
        assert isinstance(first, list) and first[1] == ["nested", b"\x01"]  # tuples come back as lists
        follower = next(n for n in c.live() if n is not lead)
        assert await follower.propose(command(cl, 1), client=cl, seq=1) == first
        await c.stop_all()

    run_virtual(main())


def test_a_result_that_is_not_json_gives_result_not_kept_to_the_first_caller_and_every_retry():
    class SetMachine(SimMachine):
        def apply(self, cmd: Command) -> object:
            super().apply(cmd)
            return {cmd.index}

    async def main() -> None:
        c = Cluster(3, seed=46, machine=SetMachine)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        cl = await lead.open_session()
        with pytest.raises(ResultNotKept, match="set") as first:
            await lead.propose(command(cl, 1, 5), client=cl, seq=1)
        assert not isinstance(first.value, CommandFailed)
        with pytest.raises(ResultNotKept) as again:
            await follower.propose(command(cl, 1, 5), client=cl, seq=1)
        assert str(again.value) == str(first.value)
        with pytest.raises(ResultNotKept):
            await lead.propose(command(cl, 1, 5), client=cl, seq=1)
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}  # applied once: the state did change
        assert {c.machine(i).total for i in c.ids} == {5}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        # The session goes on: the next command is applied and answered as usual.
        with pytest.raises(ResultNotKept):
            await follower.propose(command(cl, 2, 1), client=cl, seq=2)
        await c.wait_converged()
        assert {c.machine(i).total for i in c.ids} == {6}
        await c.stop_all()

    run_virtual(main())


def test_a_retry_of_a_first_command_after_its_session_was_evicted_is_not_applied_again():
    """Exactly once must not depend on the session surviving: a client whose first command's outcome was
    unknown (CommitUnknown) and whose session was then evicted (max_sessions) or expired must not have that
    command applied a second time by its retry; it gets ``SessionError``."""

    async def main() -> None:
        c = Cluster(3, seed=40, options=sim_options(max_sessions=2))
        await c.start_all()
        lead = await c.wait_leader()
        a = await lead.open_session()
        first = await lead.propose(command(a, 1, 5), client=a, seq=1)
        b = await lead.open_session()
        await lead.propose(command(b, 1), client=b, seq=1)
        await lead.open_session()  # evicts a's session, the idlest
        await c.wait_converged()
        assert not any(a in n._applier.sessions for n in c.live())
        with pytest.raises(SessionError, match="no open session"):
            await lead.propose(command(a, 1, 5), client=a, seq=1)
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(SessionError, match="no open session"):
            await follower.propose(command(a, 1, 5), client=a, seq=1)
        await c.wait_converged()
        assert {c.machine(i).dup_applies for i in c.ids} == {0}, "command a#1 was applied twice"
        assert {c.machine(i).applies for i in c.ids} == {2}
        assert {c.machine(i).total for i in c.ids} == {result_of(first)["total"] + 1}
        await c.stop_all()

    run_virtual(main())


# -- ReplicatedObject ---------------------------------------------------------------------------------------


class _Counter(ReplicatedObject):
    def __init__(self) -> None:
        self.value = 0
        self.log: list[int] = []

    @replicated
    def add(self, n: int) -> int:
        self.value += n
        self.log.append(n)
        return self.value

    @query
    def get(self) -> int:
        return self.value


class _Clock:
    """The nodes' log clock: virtual ms plus ``offset_ms`` (tests move log time with it)."""

    def __init__(self, loop: VirtualLoop) -> None:
        self.loop = loop
        self.offset_ms = 0

    def __call__(self) -> int:
        return self.loop.clock_ms() + self.offset_ms


async def _counters(
    **options: Any,
) -> tuple[dict[int, Node], dict[int, _Counter], _Clock, CountingNetwork]:
    """Three started nodes (``sim_options(**options)``) whose state machines are attached ``_Counter``s."""
    clock = _Clock(current_virtual_loop())
    net = CountingNetwork()
    counters = {i: _Counter() for i in (1, 2, 3)}
    nodes = {
        i: Node(
            i,
            counters[i],
            MemoryStorage(Membership.of(1, 2, 3)),
            net.transport(i),
            sim_options(**options),
            rng=random.Random(100 + i),
            clock=clock,
        )
        for i in (1, 2, 3)
    }
    for i in (1, 2, 3):
        counters[i].attach(nodes[i])
        await nodes[i].start()
    await nodes[1].wait_for_leader(timeout=30)
    return nodes, counters, clock, net


async def _converged(nodes: dict[int, Node]) -> None:
    """Wait until every node has applied the same, final commit index."""
    async with asyncio.timeout(30):
        while True:
            commits = {n.status().commit for n in nodes.values()}
            applied = {n.applied_index for n in nodes.values()}
            if len(commits) == 1 and commits == applied:
                return
            await asyncio.sleep(0.05)


def test_concurrent_calls_on_one_replicated_object_each_apply_exactly_once():
    async def main() -> None:
        nodes, counters, _, _ = await _counters()
        leader = nodes[1].leader
        follower = next(i for i in nodes if i != leader)
        for k, i in enumerate((follower, leader), start=1):  # through a follower, then through the leader
            results = await asyncio.gather(*(counters[i].add(1) for _ in range(20)))
            assert sorted(results) == list(range(20 * k - 19, 20 * k + 1))
        await _converged(nodes)
        for counter in counters.values():
            assert counter.log == [1] * 40 and counter.value == 40
        clients = {counters[i]._client for i in (follower, leader)}
        assert len(clients) == 2 and "" not in clients  # one session per object, opened once
        for n in nodes.values():
            assert all(client in n._applier.sessions for client in clients)
            assert len(n._applier.sessions) == 2
        for n in nodes.values():
            await n.stop()

    run_virtual(main())


def test_a_replicated_object_opens_a_new_session_after_its_session_expired():
    async def main() -> None:
        nodes, counters, clock, _ = await _counters(session_ttl=60.0)
        obj = counters[2]
        assert await obj.add(1) == 1
        old = obj._client
        assert old and all(old in n._applier.sessions for n in nodes.values())
        clock.offset_ms += 61_000  # the object stays away for longer than the TTL
        assert await obj.add(2) == 3  # refused (not applied) under the old session, then sent under a new one
        new = obj._client
        assert new and new != old
        await _converged(nodes)
        for n in nodes.values():
            assert old not in n._applier.sessions and new in n._applier.sessions
        for counter in counters.values():
            assert counter.log == [1, 2]
        clock.offset_ms += 61_000  # and again, with several calls in flight when they find it expired
        results = await asyncio.gather(*(obj.add(10) for _ in range(5)))
        assert sorted(results) == [13, 23, 33, 43, 53]
        await _converged(nodes)
        for counter in counters.values():
            assert counter.log == [1, 2] + [10] * 5
        for n in nodes.values():
            await n.stop()

    run_virtual(main())


def test_a_replicated_call_whose_answer_was_lost_is_not_applied_again_after_its_session_expired():
    """A call whose first attempt timed out (``CommitUnknown``: maybe applied) and whose session then expired
    must not be sent again under a new session: it may have been applied already."""

    async def main() -> None:
        # Elections slower than the proposal timeout: the deaf follower keeps its leader and forwards to it.
        nodes, counters, clock, net = await _counters(session_ttl=60.0, election_ticks=100)
        leader = nodes[1].leader
        follower = next(i for i in nodes if i != leader)
        obj = counters[follower]
        assert await obj.add(1) == 1
        forwarded = 0

        def tap(m: WireMessage) -> bool:
            nonlocal forwarded
            if isinstance(m, Propose) and m.src == follower:
                forwarded += 1
                if forwarded == 2:  # the retry, after CommitUnknown: the follower hears again from now on
                    return True
            return forwarded >= 2 or m.dst != follower

        net.tap = tap  # the follower hears nothing: add(5) is applied by the others, its answer never comes
        call = asyncio.ensure_future(obj.add(5))
        async with asyncio.timeout(10):
            while counters[leader].log != [1, 5]:
                await asyncio.sleep(0.05)
        clock.offset_ms += 61_000  # the retry (after the proposal timeout) comes after the session's TTL
        try:
            answer: object = await call
        except SessionError:
            answer = "refused"
        assert forwarded >= 2, "the call was never retried"
        await _converged(nodes)
        logs = {tuple(counter.log) for counter in counters.values()}
        assert logs == {(1, 5)}, f"add(5) was applied {logs.pop().count(5)} times (answered {answer!r})"
        assert answer in (6, "refused")
        for n in nodes.values():
            await n.stop()

    run_virtual(main())
