"""Tests of ``HeldAppends`` (a leader's empty AppendEntries held briefly) and of the ``Node`` that uses it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from raft_core.messages import AppendEntries, Heartbeat, InstallSnapshot
from raft_core.runtime import NodeOptions, WireMessage
from raft_core.runtime.held_appends import HeldAppends
from raft_core.testing.runtime_sim import Cluster, command, sim_options
from raft_core.testing.virtual_loop import current_virtual_loop, run_virtual
from raft_core.types import Entry, Membership, Snapshot, SnapshotMeta


class Timers:
    """A fake ``call_later``: callbacks run only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None], Handle]] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        handle = Handle()
        self.pending.append((delay, callback, handle))
        return handle

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for _, callback, handle in pending:
            if not handle.cancelled:
                callback()


class Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def append(dst: int, prev: int, commit: int, *, entries: int = 0) -> AppendEntries:
    batch = tuple(Entry(index=prev + k + 1, term=1, data=b"x") for k in range(entries))
    return AppendEntries(src=1, dst=dst, term=1, prev_index=prev, prev_term=1, entries=batch, commit=commit)


def holder(delay: float = 0.002) -> tuple[HeldAppends, list[AppendEntries], Timers]:
    sent: list[AppendEntries] = []
    timers = Timers()

    def send(messages: Sequence[AppendEntries]) -> None:
        sent.extend(messages)

    return HeldAppends(send, timers.call_later, delay), sent, timers


def test_empty_appends_are_held_until_the_timer_and_others_pass_at_once():
    held, sent, timers = holder()
    full = append(2, 5, 4, entries=2)
    beat = Heartbeat(src=1, dst=3, term=1, commit=4)
    assert held.filter([append(2, 7, 7), full, beat, append(3, 7, 7)]) == [full, beat]
    assert sent == [] and len(timers.pending) == 1 and timers.pending[0][0] == 0.002
    timers.fire()
    assert sorted(m.dst for m in sent) == [3]  # node 2's was replaced by the append with entries


def test_a_later_append_to_the_same_follower_replaces_a_held_one_and_it_is_never_sent():
    held, sent, timers = holder()
    assert held.filter([append(2, 7, 7), append(3, 7, 7)]) == []
    later = append(2, 7, 7, entries=1)
    assert held.filter([later]) == [later]
    timers.fire()
    assert [(m.dst, m.commit) for m in sent] == [(3, 7)]
    timers.fire()
    assert len(sent) == 1  # nothing is sent twice


def test_a_newer_empty_append_replaces_the_held_one_under_one_timer():
    held, sent, timers = holder()
    held.filter([append(2, 7, 6)])
    held.filter([append(2, 7, 7)])
    assert len(timers.pending) == 1
    timers.fire()
    assert [(m.dst, m.commit) for m in sent] == [(2, 7)]


def test_a_snapshot_for_the_follower_replaces_its_held_append():
    held, sent, timers = holder()
    held.filter([append(2, 7, 7)])
    meta = SnapshotMeta(index=9, term=1, membership=Membership.of(1, 2, 3))
    snap = InstallSnapshot(src=1, dst=2, term=1, snapshot=Snapshot(meta=meta, data=b"s"))
    assert held.filter([snap]) == [snap]
    timers.fire()
    assert sent == []


def test_drop_forgets_what_is_held_and_cancels_the_timer():
    held, sent, timers = holder()
    held.filter([append(2, 7, 7)])
    held.drop()
    assert timers.pending[0][2].cancelled
    timers.fire()
    held.release()
    assert sent == []


def test_a_zero_delay_holds_nothing():
    held, _sent, timers = holder(delay=0)
    messages: list[WireMessage] = [append(2, 7, 7), append(3, 7, 7)]
    assert held.filter(messages) == messages
    assert timers.pending == []


def empty_appends_while_proposing(options: NodeOptions) -> tuple[int, list[int]]:
    """(empty appends delivered, the followers' applied indexes once idle) for 20 proposals one after another."""
    result: tuple[int, list[int]] = (0, [])

    async def main() -> None:
        nonlocal result
        c = Cluster(3, seed=5, options=options)
        c.net.delay = lambda m: 0.001  # every link takes 1 ms
        empty = 0

        def tap(m: WireMessage) -> bool:
            nonlocal empty
            if isinstance(m, AppendEntries) and not m.entries:
                empty += 1
            return True

        await c.start_all()
        lead = await c.wait_leader()
        await c.wait_converged()
        c.net.tap = tap
        for k in range(20):
            await lead.propose(command("", 0, k))
        last = lead.applied_index
        loop = current_virtual_loop()
        deadline = loop.time() + 0.05  # less than a heartbeat interval: the held commit itself must arrive
        while loop.time() < deadline and any(n.applied_index < last for n in c.live()):
            await asyncio.sleep(0.001)
        result = (empty, [n.applied_index - last for n in c.live()])
        await c.stop_all()

    run_virtual(main())
    return result


def test_a_leader_sends_fewer_empty_appends_and_followers_still_learn_every_commit_promptly():
    slow_beats = {"heartbeat_ticks": 5}  # 250 ms between heartbeats: they cannot be what carries the commit
    held_empty, held_lag = empty_appends_while_proposing(sim_options(empty_append_delay=0.004, **slow_beats))
    sent_empty, sent_lag = empty_appends_while_proposing(sim_options(empty_append_delay=0, **slow_beats))
    assert held_lag == sent_lag == [0, 0, 0]
    assert held_empty < sent_empty / 2, (held_empty, sent_empty)
