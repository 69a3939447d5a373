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

from raft_core.errors import CommandFailed, SessionError
from raft_core.messages import Propose
from raft_core.runtime import Node, ReplicatedObject, WireMessage, envelope, query, replicated
from raft_core.runtime.envelope import Envelope, EnvelopeError
from raft_core.runtime.sessions import SessionTable, Verdict, decode_result, encode_result
from raft_core.runtime.state_machine import Command
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.runtime_sim import Cluster, CountingNetwork, SimMachine, command, sim_options
from raft_core.testing.virtual_loop import VirtualLoop, current_virtual_loop, run_virtual
from raft_core.types import Membership


def result_of(answer: object) -> dict[str, Any]:
    """A ``SimMachine`` answer, checked to be one."""
    assert isinstance(answer, dict), answer
    return answer


# -- SessionTable -------------------------------------------------------------------------------------------


def test_verdicts_follow_the_sequence_numbers_and_the_floor():
    table = SessionTable(ttl_ms=1000, max_sessions=10)
    assert table.check("a", 1) == (Verdict.EXPIRED, None)  # never opened: no implicit session at seq 1
    assert "a" not in table and len(table) == 0
    table.register("a")
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
    table = SessionTable(ttl_ms=1000, max_sessions=10)
    table.register("a")
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
    table = SessionTable(ttl_ms=1000, max_sessions=10)
    table.register("a")
    table.record("a", 1, 1, "r1")
    table.record("a", 2, 1, "r2")
    table.record("a", 5, 3, "r5")  # floor 3: 1 and 2 are dropped
    table.record("a", 4, 1, "r4")  # sent earlier with an older floor, applied later: does not bring them back
    assert [table.check("a", n)[0] for n in (1, 2)] == [Verdict.STALE] * 2
    assert table.check("a", 3) == (Verdict.APPLY, None)  # at the floor, never answered: still allowed
    assert table.check("a", 4) == (Verdict.DUPLICATE, "r4")
    assert table.check("a", 5) == (Verdict.DUPLICATE, "r5")


def test_max_results_drops_the_lowest_results_and_raises_the_floor():
    table = SessionTable(ttl_ms=1000, max_sessions=10, max_results=3)
    table.register("a")
    for n in range(1, 6):
        table.record("a", n, 1, f"r{n}")  # the client claims to wait for all of them
    assert [table.check("a", n)[0] for n in (1, 2)] == [Verdict.STALE] * 2  # refused, never applied again
    assert [table.check("a", n) for n in (3, 4, 5)] == [(Verdict.DUPLICATE, f"r{n}") for n in (3, 4, 5)]
    rows = json.loads(table.to_json())["sessions"]
    assert [(client, floor) for client, _, floor, _ in rows] == [("a", 3)]
    table.record("a", 6, 1, "r6")
    assert table.check("a", 3) == (Verdict.STALE, None)
    assert table.check("a", 6) == (Verdict.DUPLICATE, "r6")


def test_register_keeps_an_open_session_and_counts_as_use():
    table = SessionTable(ttl_ms=1000, max_sessions=10)
    table.advance(100)
    table.register("a")
    table.record("a", 1, 1, "r1")
    table.record("a", 2, 1, "r2")
    table.advance(1000)
    table.register("a")  # a retried open: the results and the floor stay
    assert table.check("a", 1) == (Verdict.DUPLICATE, "r1")
    assert table.check("a", 2) == (Verdict.DUPLICATE, "r2")
    table.advance(1900)  # 1800 ms after the first open, 900 after the second: alive
    assert "a" in table
    table.advance(2001)
    assert "a" not in table


def test_sessions_expire_by_log_time_least_recently_used_first():
    table = SessionTable(ttl_ms=1000, max_sessions=10)
    table.advance(100)
    table.register("a")
    table.advance(400)
    table.register("b")
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
    table = SessionTable(ttl_ms=1000, max_sessions=10)
    table.advance(5000)
    table.advance(10)
    assert table.log_time == 5000
    table.register("a")
    table.record("a", 1, 1, None)
    table.advance(4000)  # an older clock (a lagging proposer) does not expire anything nor move time back
    assert table.log_time == 5000 and len(table) == 1


def test_max_sessions_evicts_the_idlest_session():
    table = SessionTable(ttl_ms=10**9, max_sessions=3)
    for t, client in enumerate("abc", start=1):
        table.advance(t)
        table.register(client)
        table.record(client, 1, 1, client)
    table.advance(10)
    table.record("a", 2, 2, "a2")  # a becomes the most recently used
    table.register("d")  # four sessions: b, the idlest, goes
    assert len(table) == 3
    assert "b" not in table
    assert table.check("b", 1)[0] is Verdict.EXPIRED
    assert table.check("c", 1)[0] is Verdict.DUPLICATE
    assert table.check("d", 1)[0] is Verdict.APPLY
    assert table.check("a", 2) == (Verdict.DUPLICATE, "a2")


def test_the_table_round_trips_through_json_with_its_order_floors_and_log_time():
    table = SessionTable(ttl_ms=1000, max_sessions=2)
    table.advance(50)
    table.register("x")
    table.record("x", 2, 1, encode_result("two"))
    table.record("x", 3, 2, encode_result({"bytes": b"\x00\xff", "list": (1, "two"), "none": None}))
    table.advance(60)
    table.register("y")
    table.record("y", 1, 1, encode_result(7.5))
    copy = SessionTable(ttl_ms=1000, max_sessions=2)
    copy.restore(table.to_json())
    assert copy.to_json() == table.to_json()
    assert copy.log_time == 60 and len(copy) == 2
    verdict, recorded = copy.check("x", 3)
    assert verdict is Verdict.DUPLICATE
    assert decode_result(recorded) == {"bytes": b"\x00\xff", "list": [1, "two"], "none": None}
    assert copy.check("x", 2) == (Verdict.DUPLICATE, "two")
    assert copy.check("x", 1) == (Verdict.STALE, None)  # the floor came along
    copy.register("z")  # the restored order decides eviction: x is the idlest
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


def test_a_register_envelope_round_trips():
    data = envelope.encode_register(4, 8, 1_700_000_000_000, "cli\u00e9nt")
    env = envelope.decode(data)
    assert env == Envelope(4, 8, 1_700_000_000_000, b"", "cli\u00e9nt", register=True)
    assert (env.seq, env.floor) == (0, 0)
    assert not envelope.decode(envelope.encode(4, 8, 0, b"", "c", 1, 1)).register


def test_envelope_encode_refuses_bad_sessions():
    with pytest.raises(ValueError, match="255"):
        envelope.encode(1, 1, 0, b"", "x" * 256, 1, 1)
    with pytest.raises(ValueError, match="start at 1"):
        envelope.encode(1, 1, 0, b"", "c", 0, 0)
    with pytest.raises(ValueError, match="floor"):
        envelope.encode(1, 1, 0, b"", "c", 1)  # floor 0 (the default) with a client
    with pytest.raises(ValueError, match="floor"):
        envelope.encode(1, 1, 0, b"", "c", 3, 4)  # floor above seq
    with pytest.raises(ValueError, match="255"):
        envelope.encode_register(1, 1, 0, "x" * 256)
    with pytest.raises(ValueError):
        envelope.encode_register(1, 1, 0, "")


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


@pytest.mark.parametrize("cut", [0, 1, 3])
def test_envelope_decode_refuses_a_truncated_register(cut: int):
    whole = envelope.encode_register(1, 1, 0, "abc")
    head = struct.calcsize("<BBIQq")
    with pytest.raises(EnvelopeError):
        envelope.decode(whole[: head + cut])


def test_envelope_decode_refuses_a_client_id_that_is_not_utf8():
    head = struct.pack("<BBIQq", 1, 1, 1, 1, 0)
    with pytest.raises(EnvelopeError):
        envelope.decode(head + b"\x02\xff\xfe" + struct.pack("<QQ", 1, 1))
    head = struct.pack("<BBIQq", 1, 2, 1, 1, 0)
    with pytest.raises(EnvelopeError):
        envelope.decode(head + b"\x02\xff\xfe")


# -- on a cluster -------------------------------------------------------------------------------------------


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
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {0}
        assert not any("ghost" in n._applier.sessions for n in c.live()), "a refused command opened a session"
        assert await lead.open_session("ghost") == "ghost"  # opening it makes the same command acceptable
        assert result_of(await follower.propose(command("ghost", 1), client="ghost", seq=1))["seq"] == 1
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}
        await c.stop_all()

    run_virtual(main())


def test_open_session_is_idempotent_and_a_retried_open_keeps_the_results():
    async def main() -> None:
        c = Cluster(3, seed=42)
        await c.start_all()
        lead = await c.wait_leader()
        follower = next(n for n in c.live() if n is not lead)
        assert await lead.open_session("c") == "c"
        first = await lead.propose(command("c", 1, 5), client="c", seq=1)
        second = await lead.propose(command("c", 2, 7), client="c", seq=2, floor=1)
        assert await follower.open_session("c") == "c"  # the open is retried (its answer was lost, say)
        assert await lead.open_session("c") == "c"
        assert await follower.propose(command("c", 1, 5), client="c", seq=1, floor=1) == first
        assert await follower.propose(command("c", 2, 7), client="c", seq=2, floor=1) == second
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {2}
        assert {c.machine(i).total for i in c.ids} == {12}
        assert {len(n._applier.sessions) for n in c.live()} == {1}
        # Without an id, each open gives a fresh random one that can be used at once.
        a, b = await lead.open_session(), await follower.open_session()
        assert a != b and len(a) == len(b) == 32
        assert result_of(await follower.propose(command(a, 1), client=a, seq=1))["seq"] == 1
        assert {len(n._applier.sessions) for n in c.live()} == {3}
        await c.stop_all()

    run_virtual(main())


def test_a_retry_on_another_node_returns_the_first_result_and_applies_nothing():
    async def main() -> None:
        c = Cluster(3, seed=31)
        await c.start_all()
        lead = await c.wait_leader()
        await lead.open_session("c")
        first = await lead.propose(command("c", 1, 5), client="c", seq=1)
        for n in c.live():
            assert await n.propose(command("c", 1, 5), client="c", seq=1) == first
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
        await lead.open_session("c")
        # Both in flight at once (floor 1: the client waits for both), proposed in the order given.
        answers = await asyncio.gather(
            *(lead.propose(command("c", seq, 10 * seq), client="c", seq=seq, floor=1) for seq in order)
        )
        first = dict(zip(order, answers, strict=True))
        assert result_of(first[order[0]])["index"] < result_of(first[order[1]])["index"]  # applied in that order
        assert {result_of(first[seq])["seq"] for seq in (1, 2)} == {1, 2}
        before = c.duplicates[lead.id]
        for node in (lead, follower):  # both retried later, on any node, in any order
            for seq in (2, 1):
                assert await node.propose(command("c", seq, 10 * seq), client="c", seq=seq, floor=1) == first[seq]
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
        await lead.open_session("c")
        with pytest.raises(CommandFailed) as first:
            await lead.propose(command("c", 1, fail=True), client="c", seq=1)
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(CommandFailed) as again:
            await follower.propose(command("c", 1, fail=True), client="c", seq=1)
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
        await lead.open_session("c")
        first = await lead.propose(command("c", 1), client="c", seq=1)
        target = next(i for i in c.ids if i != lead.id)
        await lead.transfer_leadership(target, timeout=10)
        new = await c.wait_leader(among=[target])
        assert await new.propose(command("c", 1), client="c", seq=1) == first
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}
        await c.stop_all()

    run_virtual(main())


def test_dedup_holds_after_a_snapshot_and_a_restart_of_the_whole_cluster():
    async def main() -> None:
        c = Cluster(3, seed=34, options=sim_options(snapshot_entries=10, compact_keep_entries=2))
        await c.start_all()
        lead = await c.wait_leader()
        await lead.open_session("c")
        await lead.open_session("other")
        first = await lead.propose(command("c", 1), client="c", seq=1)
        for k in range(1, 31):
            await lead.propose(command("other", k), client="other", seq=k)
        await c.wait_converged()
        index = result_of(first)["index"]
        assert all(s.first_index() > index for s in c.storages.values()), "the entry of c#1 was not compacted"
        await c.stop_all()
        await c.start_all()
        assert all(c.machine(i).restores == 0 for i in c.ids)
        new = await c.wait_leader()
        for n in c.live():
            assert await n.propose(command("c", 1), client="c", seq=1) == first
        # The sessions themselves survived: "other" goes on without opening again.
        assert result_of(await new.propose(command("other", 31), client="other", seq=31))["seq"] == 31
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
        await lead.open_session("c")
        await lead.open_session("other")
        first = await lead.propose(command("c", 1), client="c", seq=1)
        for k in range(1, 31):
            await lead.propose(command("other", k), client="other", seq=k)
        c.net.heal()
        await c.wait_converged()
        assert c.machine(lagging).restores >= 1
        before = c.duplicates[lagging]
        assert await c.nodes[lagging].propose(command("c", 1), client="c", seq=1) == first
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
        await lead.open_session("c")
        await lead.propose(command("c", 1), client="c", seq=1)
        await lead.propose(command("c", 2), client="c", seq=2)  # floor 2 (the default): 1 is answered
        with pytest.raises(SessionError, match="below the client's floor"):
            await lead.propose(command("c", 1), client="c", seq=1)
        with pytest.raises(SessionError, match="below the client's floor"):
            await follower.propose(command("c", 1), client="c", seq=1, floor=1)  # its own floor does not matter
        # A number never sent that lies below the floor is refused too (it may have been lost for good).
        await lead.propose(command("c", 5), client="c", seq=5, floor=4)
        with pytest.raises(SessionError, match="below the client's floor"):
            await follower.propose(command("c", 3), client="c", seq=3)
        assert result_of(await lead.propose(command("c", 4), client="c", seq=4))["seq"] == 4  # at the floor
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
        await lead.open_session("c")
        answers = [await lead.propose(command("c", k), client="c", seq=k, floor=1) for k in (1, 2, 3)]
        with pytest.raises(SessionError, match="below the client's floor"):
            await lead.propose(command("c", 1), client="c", seq=1, floor=1)
        assert await lead.propose(command("c", 2), client="c", seq=2, floor=1) == answers[1]
        assert await lead.propose(command("c", 3), client="c", seq=3, floor=1) == answers[2]
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
        await lead.open_session("idle")
        await lead.open_session("busy")
        await lead.propose(command("idle", 1), client="idle", seq=1)
        await lead.propose(command("busy", 1), client="busy", seq=1)
        for k in range(2, 5):  # "busy" stays active while log time moves 90 s on
            c.offset_ms += 30_000
            await lead.propose(command("busy", k), client="busy", seq=k)
        with pytest.raises(SessionError, match="no open session"):
            await lead.propose(command("idle", 2), client="idle", seq=2)
        with pytest.raises(SessionError, match="no open session"):  # nor is its old answer kept
            await lead.propose(command("idle", 1), client="idle", seq=1)
        assert await lead.propose(command("busy", 4), client="busy", seq=4) is not None  # still a duplicate
        await lead.open_session("idle")  # a new session under the same id
        await lead.propose(command("idle", 2), client="idle", seq=2)
        await c.wait_converged()
        tables = {c.nodes[i]._applier.sessions.to_json() for i in c.ids}
        assert len(tables) == 1, "nodes disagree on which sessions expired"
        assert {c.machine(i).applies for i in c.ids} == {6}
        assert {c.machine(i).dup_applies for i in c.ids} == {0}
        await c.stop_all()

    run_virtual(main())


def test_expiry_uses_the_proposers_clock_not_the_appliers():
    async def main() -> None:
        c = Cluster(3, seed=38, options=sim_options(session_ttl=60.0))
        await c.start_all()
        lead = await c.wait_leader()
        await lead.open_session("c")
        await lead.propose(command("c", 1), client="c", seq=1)
        await c.wait_converged()
        for n in c.live():  # each node's own idea of the time is irrelevant; only log time counts
            assert n._applier.sessions.log_time == c.machine(n.id).times[-1]
        c.offset_ms += 59_000
        await lead.propose(command("c", 2), client="c", seq=2)  # within the TTL: accepted
        await c.wait_converged()
        assert {c.machine(i).last_ok["c"] for i in c.ids} == {2}
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
        await lead.open_session("c")
        first = await lead.propose(command("c", 1), client="c", seq=1)
        assert isinstance(first, bytes)
        assert await lead.propose(command("c", 1), client="c", seq=1) == first
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
        await lead.open_session("c")
        first = await lead.propose(command("c", 1), client="c", seq=1)
        assert isinstance(first, list) and first[1] == ["nested", b"\x01"]  # tuples come back as lists
        follower = next(n for n in c.live() if n is not lead)
        assert await follower.propose(command("c", 1), client="c", seq=1) == first
        await c.stop_all()

    run_virtual(main())


def test_a_result_that_is_not_json_fails_for_the_first_caller_and_every_retry_alike():
    class SetMachine(SimMachine):
        def apply(self, cmd: Command) -> object:
            super().apply(cmd)
            return {cmd.index}

    async def main() -> None:
        c = Cluster(3, seed=46, machine=SetMachine)
        await c.start_all()
        lead = await c.wait_leader()
        await lead.open_session("c")
        with pytest.raises(CommandFailed) as first:
            await lead.propose(command("c", 1), client="c", seq=1)
        assert first.value.kind == "TypeError"
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(CommandFailed) as again:
            await follower.propose(command("c", 1), client="c", seq=1)
        assert (again.value.kind, again.value.detail) == (first.value.kind, first.value.detail)
        await c.wait_converged()
        assert {c.machine(i).applies for i in c.ids} == {1}  # applied once (the state did change)
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
        await lead.open_session("a")
        first = await lead.propose(command("a", 1, 5), client="a", seq=1)
        await lead.open_session("b")
        await lead.propose(command("b", 1), client="b", seq=1)
        await lead.open_session("c")  # evicts a's session, the idlest
        await c.wait_converged()
        assert not any("a" in n._applier.sessions for n in c.live())
        with pytest.raises(SessionError, match="no open session"):
            await lead.propose(command("a", 1, 5), client="a", seq=1)
        follower = next(n for n in c.live() if n is not lead)
        with pytest.raises(SessionError, match="no open session"):
            await follower.propose(command("a", 1, 5), client="a", seq=1)
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
