"""The chat service under chaos: 30 users chatting in 10 rooms on 5 nodes while the leader is SIGKILLed (and
restarted) twice and a follower is cut off by the proxies and healed.

Every user is a ``ChatClient`` knowing every node (each starting on a different one; every fifth user knows
one node only, with a 1 s send deadline, so that its sends end unknown while that node is down or cut off), a
member of two rooms of six, subscribed to both from seq 0, sending unique bodies to them in turn. The nemesis
acts on progress (it waits for a new leader and for acknowledged writes after each fault, with deadlines), so
the faults always happen under load. Afterwards every node runs again, sends of unknown outcome are retried
with their request_id, and the verdict is:

(a) every acknowledged message is in its room exactly once, at the seq its acknowledgement named;
(b) every node's database holds the same rows (events, conversations, members, sessions, ...);
(c) no message is applied twice (a retry of an acknowledged request_id answers ``duplicate`` at the same seq);
(d) every subscription delivered, per room, the database's events from seq 1 on: in order, no gap, no
    duplicate, across the reconnects the kills and the cut forced;
(e) never two leaders in one term (statuses sampled every 100 ms during the whole test).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.aio import eventually, run
from harness.chat_cluster import (
    MESSAGE,
    ChatCluster,
    ChatUser,
    chat_cluster_factory,
    check_sends,
    check_streams,
    close_all,
    wait_delivered,
)
from harness.proxy import LinkState


@pytest.fixture
def make_chat_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ChatCluster]]:
    yield from chat_cluster_factory(request, tmp_path)


@dataclass(frozen=True)
class Plan:
    """The shape of one chaos run."""

    users: int = 30
    rooms: int = 10
    min_messages: int = 12  # per user; each goes on while the nemesis runs, up to max_messages
    max_messages: int = 40
    tail_messages: int = 2  # per user, after the nemesis is done
    think: tuple[float, float] = (0.3, 0.9)  # seconds between two sends of one user
    pinned_every: int = 5  # every fifth user knows one node only and gives a send 1 s: some sends end unknown
    leader_kills: int = 2
    isolations: int = 1
    leader_pauses: int = 0
    down_s: float = 1.5  # at least this long per fault ...
    acks_during_fault: int = 20  # ... and until this many sends were acknowledged during it
    seed: int = 7
    budget_s: float = 150.0


def rooms_of(i: int, rooms: int) -> tuple[int, int]:
    """User ``i``'s two rooms: its home (users 3r..3r+2) and a second one; every room gets six members."""
    home = (i // 3) % rooms
    return home, (home + 1 + i % 3) % rooms


class Nemesis:
    """The faults of a ``Plan``, one after another, each under load (see the module docstring)."""

    def __init__(self, cluster: ChatCluster, plan: Plan, users: list[ChatUser], rng: random.Random) -> None:
        self.cluster = cluster
        self.plan = plan
        self.users = users
        self.rng = rng
        self.done = asyncio.Event()
        self.log: list[str] = []
        self.leaders: set[int] = set()
        self.terms: set[int] = set()  # terms in which the nemesis found a leader (each kill must make a new one)

    def acked(self) -> int:
        return sum(1 for u in self.users for s in u.sent if s.acked)

    def say(self, text: str) -> None:
        line = f"[nemesis {time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line)

    async def under_load(self, since: int, minimum: float, what: str) -> None:
        """Let a fault last ``minimum`` seconds and until ``acks_during_fault`` sends were acknowledged."""
        start = time.monotonic()
        want = since + self.plan.acks_during_fault
        await eventually(lambda: self.acked() >= want, 30.0, f"{self.plan.acks_during_fault} acks during {what}")
        first = time.monotonic() - start
        await asyncio.sleep(max(0.0, minimum - first))
        self.say(f"{what}: {self.acked() - since} acks in {time.monotonic() - start:.1f}s")

    async def leader(self, among: list[int] | None = None) -> int:
        """The leader (of ``among``), remembered with its term."""
        leader = await self.cluster.leader(timeout=20, among=among)
        view = await self.cluster.status(leader)
        self.leaders.add(leader)
        if view is not None and view.role == "leader":
            self.terms.add(view.term)
        return leader

    async def kill_leader(self) -> None:
        cluster = self.cluster
        leader = await self.leader()
        since = self.acked()
        start = time.monotonic()
        await cluster.kill(leader)
        self.say(f"SIGKILL leader {leader}")
        new = await self.leader(among=[n for n in cluster.ids if n != leader])
        self.say(f"node {new} leads {time.monotonic() - start:.2f}s after the kill")
        await self.under_load(since, self.plan.down_s, f"leader {leader} down")
        await cluster.restart(leader)
        self.say(f"node {leader} restarted")

    async def isolate_follower(self) -> None:
        cluster = self.cluster
        leader = await cluster.leader(timeout=20)
        follower = self.rng.choice([n for n in cluster.ids if n != leader])
        since = self.acked()
        cluster.isolate(follower, mode=LinkState.RESET)
        self.say(f"follower {follower} isolated (leader {leader})")
        await self.under_load(since, 2 * self.plan.down_s, f"follower {follower} isolated")
        cluster.heal()
        self.say("healed")

    async def pause_leader(self) -> None:
        cluster = self.cluster
        leader = await cluster.leader(timeout=20)
        since = self.acked()
        cluster.pause(leader)
        self.say(f"SIGSTOP leader {leader}")
        await cluster.leader(timeout=20, among=[n for n in cluster.ids if n != leader])
        await self.under_load(since, self.plan.down_s, f"leader {leader} paused")
        cluster.resume(leader)
        self.say(f"SIGCONT node {leader}")

    async def run(self) -> None:
        plan = self.plan
        faults = (
            [self.kill_leader] * plan.leader_kills
            + [self.isolate_follower] * plan.isolations
            + [self.pause_leader] * plan.leader_pauses
        )
        # Kills first, then the rest in a seeded order: the default plan is kill, kill, isolate.
        rest = faults[plan.leader_kills :]
        self.rng.shuffle(rest)
        try:
            await eventually(lambda: self.acked() >= plan.users, 30.0, "the load to start")
            for fault in faults[: plan.leader_kills] + rest:
                await fault()
                await self.cluster.leader(timeout=20)
        finally:
            self.done.set()


async def chatter(user: ChatUser, rooms: tuple[str, str], plan: Plan, nemesis: Nemesis, rng: random.Random) -> None:
    """One user's bounded load: at least ``min_messages``, on while the nemesis runs, then ``tail_messages``."""
    deadline = time.monotonic() + plan.budget_s / 2
    k = 0
    tail = 0
    while k < plan.max_messages and time.monotonic() < deadline:
        if k >= plan.min_messages and nemesis.done.is_set():
            if tail >= plan.tail_messages:
                break
            tail += 1
        room = rooms[k % 2]
        await user.send(room, f"{user.name}-{k}")
        k += 1
        await asyncio.sleep(rng.uniform(*plan.think))


async def chaos(cluster: ChatCluster, plan: Plan) -> None:
    rng = random.Random(plan.seed)
    n_nodes = len(cluster.ids)
    users = []
    for i in range(plan.users):
        name = f"user{i:02d}"
        if plan.pinned_every and i % plan.pinned_every == plan.pinned_every - 1:
            node = 1 + (i // plan.pinned_every) % n_nodes
            users.append(ChatUser(name, [cluster.endpoint(node)], attempt_timeout=0.5, send_timeout=1.0))
        else:
            users.append(ChatUser(name, cluster.endpoints_from(1 + i % n_nodes)))
    try:
        await asyncio.gather(*(u.sign_up() for u in users))
        member_rooms = [rooms_of(i, plan.rooms) for i in range(plan.users)]
        members: dict[int, list[int]] = {r: [] for r in range(plan.rooms)}
        for i, (home, second) in enumerate(member_rooms):
            members[home].append(i)
            members[second].append(i)
        room_ids: dict[int, str] = {}

        async def create(r: int) -> None:
            owner, *others = members[r]
            room = await users[owner].call(
                users[owner].client.create_room(f"room{r}", members=[users[o].name for o in others]), "create_room"
            )
            room_ids[r] = room.id

        await asyncio.gather(*(create(r) for r in range(plan.rooms)))
        rooms = [room_ids[r] for r in range(plan.rooms)]
        for i, user in enumerate(users):
            home, second = member_rooms[i]
            user.subscribe({rooms[home]: 0, rooms[second]: 0})

        nemesis = Nemesis(cluster, plan, users, rng)
        start = time.monotonic()
        await asyncio.gather(
            nemesis.run(),
            *(
                chatter(u, (rooms[member_rooms[i][0]], rooms[member_rooms[i][1]]), plan, nemesis, random.Random(i))
                for i, u in enumerate(users)
            ),
        )
        load_s = time.monotonic() - start
        # A first answer "duplicate" means the client's own retry found an earlier attempt applied.
        retried_applied = sum(1 for u in users for s in u.sent if s.duplicate)

        # Everything back: every node running, every link up, a leader.
        cluster.heal()
        for n in cluster.ids:
            if not cluster.nodes[n].alive:
                await cluster.restart(n)
            elif cluster.nodes[n].paused:
                cluster.resume(n)
        await cluster.leader(timeout=20)

        # Sends of unknown outcome, retried with their request_id, now succeed (at most once in all).
        unknown = [(u, s) for u in users for s in u.unknown()]

        async def retry(user: ChatUser, room: str, body: str, rid: str) -> None:
            again = await user.send(room, body, request_id=rid, timeout=10.0)
            assert again.acked, f"{user.name}: retry of {body!r} failed on a healthy cluster: {again.error}"

        await asyncio.gather(*(retry(u, s.room, s.body, s.request_id) for u, s in unknown))
        # (c) A retry of an acknowledged request_id is answered as a duplicate, at the same seq.
        probes = [(u, u.acked()[0]) for u in users]
        answers = await asyncio.gather(
            *(u.send(s.room, s.body, request_id=s.request_id, timeout=10.0) for u, s in probes)
        )
        for (user, first), again in zip(probes, answers, strict=True):
            assert again.acked and again.duplicate and again.seq == first.seq, (
                f"{user.name}: resending {first.body!r} (acked at #{first.seq}) answered {again}"
            )

        # (d) Every subscription catches up to the end of its rooms, then stops.
        owner_of = {r: users[members[r][0]] for r in range(plan.rooms)}
        last_seq: dict[str, int] = {}
        for r in range(plan.rooms):
            page = await owner_of[r].call(owner_of[r].client.history(rooms[r], limit=1), "history")
            last_seq[rooms[r]] = page.last_seq
        await wait_delivered(users, last_seq, timeout=60)
        reconnects = sum(u.reconnects for u in users)
        await close_all(users)

        # (b) Every node converges to the same database.
        db = await cluster.wait_databases_converged(timeout=60)
        for room in rooms:
            assert len(db.events(room)) == last_seq[room], f"{room}: the database and GetHistory disagree"
        # (a), (c)
        counts = check_sends(db, users, rooms)
        # (d)
        streamed = check_streams(db, users, rooms)
        for i, user in enumerate(users):
            for r in member_rooms[i]:
                got = [int(e.seq) for e in user.received[rooms[r]]]
                assert got and got[0] == 1, f"{user.name} subscribed to {rooms[r]} from 0 but got {got[:3]}..."
        # (e)
        await cluster.monitor.sample()
        cluster.monitor.check_election_safety()

        sent = sum(len(u.sent) for u in users)
        messages = sum(1 for room in rooms for e in db.events(room) if e.kind == MESSAGE)
        print(
            f"chaos: {load_s:.1f}s of load, {sent} sends ({counts.get('acked', 0)} request_ids acked, "
            f"{len(unknown)} of unknown outcome at first, {counts.get('unknown_applied', 0)} of those applied "
            f"before the retry, {retried_applied} answered as duplicates of an earlier attempt), "
            f"{messages} messages, {streamed} streamed events checked, {reconnects} subscription reconnects, "
            f"leaders {sorted(nemesis.leaders)} in terms {sorted(nemesis.terms)}, monitor saw leaders in terms "
            f"{sorted(cluster.monitor.leaders_by_term)}"
        )
        # The run proves something only if the faults hit the clients.
        assert len(nemesis.terms) >= plan.leader_kills + 1, f"fewer leader changes than kills: {nemesis.log}"
        assert reconnects >= 1, "no subscription had to reconnect: the faults did not reach the streams"
        assert counts.get("unknown", 0) == 0, "a send was never acknowledged, even after its retry"
    finally:
        await close_all(users)


def run_plan(make_chat_cluster: Callable[..., Any], plan: Plan) -> None:
    cluster = make_chat_cluster(5)

    async def main() -> None:
        async with cluster:
            await chaos(cluster, plan)

    run(main(), timeout=plan.budget_s)


def test_chat_chaos(make_chat_cluster):
    run_plan(make_chat_cluster, Plan())


@pytest.mark.long
@pytest.mark.parametrize("seed", [11, 12])
def test_chat_chaos_long(make_chat_cluster, seed):
    plan = Plan(
        min_messages=30, max_messages=120, leader_kills=5, isolations=3, leader_pauses=2, seed=seed, budget_s=280.0
    )
    run_plan(make_chat_cluster, plan)
