"""Running one seed: build the cluster its plan asks for, play the fault phases, then check liveness.

Each phase kind has a nemesis step (what faults to inject this tick); every tick also has client traffic
(proposals at random nodes, linearizable reads, snapshots with log compaction, now and then a leadership
transfer or a forced campaign). After the phases comes the liveness check: with a connected majority (a
minority still crashed or cut off, in half the seeds) and then with every node up and connected, a leader
must be elected within ``LEADER_BOUND`` ticks and proposals made to it applied by every node of the group
within ``COMMIT_BOUND`` more.
"""

from __future__ import annotations

import hashlib
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from raft_core.testing.sim.cluster import RELIABLE, SimCluster
from raft_core.testing.sim.invariants import InvariantFailure
from raft_core.testing.sim.schedule import ELECTION_TICKS, Phase, Plan, make_plan
from raft_core.testing.sim.trace import Trace
from raft_core.types import NodeId

LEADER_BOUND = 200
"""Ticks a calm, connected majority may take to elect a leader that all of it follows."""
COMMIT_BOUND = 200
"""Ticks that leader may take to have proposals applied by every node of the majority."""
TRACE_LINES = 60
"""How many trace events a failure report shows."""


@dataclass(slots=True)
class SeedResult:
    """The outcome of one seed."""

    seed: int
    size: int
    ok: bool
    ticks: int
    invariant: str = ""
    detail: str = ""
    report: str = ""
    """For a failure: the readable report (plan, violation, trace tail, replay command)."""
    fingerprint: str = ""
    """A digest of the final state: equal for two runs of one seed."""
    stats: dict[str, int] = field(default_factory=dict)


class Runner:
    """Plays one ``Plan`` on a ``SimCluster``."""

    def __init__(self, plan: Plan, *, full_trace: bool = False) -> None:
        """Prepare the run; all randomness comes from ``plan.runtime_seed``."""
        self.plan = plan
        self.rng = random.Random(plan.runtime_seed)
        self.trace = Trace(full=full_trace)
        self.cluster = SimCluster(plan.size, self.rng, plan.config, self.trace)
        self.counter = 0
        self.phase = Phase("calm", 0)
        self._countdown = 0
        self._steps: dict[str, Callable[[int], None]] = {
            "calm": self._step_nothing,
            "lossy": self._step_nothing,
            "partition": self._step_partition,
            "crash": self._step_crash,
            "figure8": self._step_figure8,
            "figure8_unreliable": self._step_figure8_unreliable,
            "churn": self._step_churn,
            "diverge": self._step_diverge,
        }

    def run(self) -> SeedResult:
        """Play every phase, then the liveness check; a violation or an exception ends the run as failed."""
        plan = self.plan
        try:
            for phase in plan.phases:
                self._play(phase)
            self._check_liveness()
        except InvariantFailure as exc:
            return self._failed(exc.invariant, exc.detail)
        except Exception as exc:  # any exception from the core or the harness is a failure of the seed
            frames = traceback.format_exception(exc)[-6:]
            return self._failed(f"exception {type(exc).__name__}", "".join(frames).rstrip())
        return SeedResult(
            plan.seed, plan.size, True, self.cluster.now, fingerprint=self.fingerprint(), stats=self.stats()
        )

    # -- phases ---------------------------------------------------------------------------------------------

    def _play(self, phase: Phase) -> None:
        c = self.cluster
        self.phase = phase
        self._countdown = 0
        self.trace.note(c.now, f"phase {phase.describe()}")
        c.set_net(phase.net)
        if phase.kind in ("calm", "lossy"):
            c.heal()
            c.cancel_pending_crashes()
            for node in c.down():
                c.restart(node)
        step = self._steps[phase.kind]
        for t in range(phase.length):
            self._clients(phase)
            step(t)
            c.tick()

    def _clients(self, phase: Phase) -> None:
        """Client traffic of one tick: proposals, snapshots, reads, rare transfers and campaigns."""
        c, rng = self.cluster, self.rng
        if phase.propose_rate and rng.random() < phase.propose_rate:
            lead = c.leader()
            node = lead if lead is not None and rng.random() < 0.5 else rng.choice(c.ids)
            self._propose(node, rng.randint(1, 3))
        if rng.random() * self.plan.snapshot_every < 1:
            c.snapshot(rng.choice(c.ids), self.plan.snapshot_keep)
        r = rng.random()
        if r < 0.02:
            self.counter += 1
            c.read_index(rng.choice(c.ids), b"r%d" % self.counter)
        elif r < 0.022:
            lead = c.leader()
            if lead is not None:
                c.transfer(lead, rng.choice(c.ids))
        elif r < 0.023:
            c.campaign(rng.choice(c.ids))

    def _propose(self, node: NodeId, count: int) -> int | None:
        data = []
        for _ in range(count):
            self.counter += 1
            data.append(b"v%d" % self.counter)
        return self.cluster.propose(node, *data)

    def _step_nothing(self, t: int) -> None:
        return

    def _step_partition(self, t: int) -> None:
        """Every ``period`` ticks: a new random partition (or none)."""
        if t % self.phase.period:
            return
        c, rng = self.cluster, self.rng
        ids = list(c.ids)
        rng.shuffle(ids)
        minority = (len(ids) - 1) // 2
        lead = c.leader()
        mode = rng.choice(("split", "split", "leader", "leader_plus", "one_way", "bridge", "heal"))
        if mode == "split":
            k = rng.randint(1, len(ids) - 1)
            c.partition(ids[:k], ids[k:])
        elif mode in ("leader", "leader_plus") and lead is not None:
            others = [n for n in ids if n != lead]
            k = 0 if mode == "leader" else rng.randint(0, max(minority - 1, 0))
            c.partition([lead, *others[:k]], others[k:])
        elif mode == "one_way":
            c.heal()
            for a in c.ids:
                for b in c.ids:
                    if a != b and rng.random() < 0.25:
                        c.cut(a, b)
        elif mode == "bridge":
            bridge, rest = ids[0], ids[1:]
            half = len(rest) // 2
            c.partition([bridge, *rest[:half]], [bridge, *rest[half:]])
        else:
            c.heal()

    def _step_crash(self, t: int) -> None:
        """Crash and restart nodes at random, keeping at most ``max_down`` down; rarely, all at once."""
        c, rng, phase = self.cluster, self.rng, self.phase
        rate = 1 / phase.period
        up, down = c.running(), c.down()
        if up and len(down) < phase.max_down and rng.random() < rate:
            c.crash(rng.choice(up), mid_ready=rng.random() < phase.mid_ready)
        if down and rng.random() < rate:
            c.restart(rng.choice(down))
        if rng.random() < rate / 30:
            self.trace.note(c.now, "whole-cluster crash and restart")
            for node in c.ids:
                c.restart(node)

    def _step_figure8(self, t: int) -> None:
        """MIT TestFigure8: propose on the leader, soon crash it; restart someone when a majority is not up."""
        self._figure8(crash=True)

    def _step_figure8_unreliable(self, t: int) -> None:
        """MIT TestFigure8Unreliable: as Figure 8, but disconnecting the leader over a lossy network."""
        self._figure8(crash=False)

    def _figure8(self, *, crash: bool) -> None:
        c, rng, phase = self.cluster, self.rng, self.phase
        lead = c.leader()
        if lead is not None and rng.random() < 0.7:
            self._propose(lead, 1)
        self._countdown -= 1
        if self._countdown > 0:
            return
        self._countdown = rng.randint(1, phase.period) if rng.random() < 0.9 else rng.randint(1, 30)
        if lead is not None:
            if crash:
                c.crash(lead, mid_ready=rng.random() < phase.mid_ready)
            elif rng.random() < 0.5:
                c.isolate(lead)
        if crash:
            down = c.down()
            if len(c.running()) < c.majority and down:
                c.restart(rng.choice(down))
            return
        cut = [n for n in c.ids if any(not c.connected(n, m) for m in c.ids if m != n)]
        if len(c.ids) - len(cut) < c.majority and cut:
            c.reconnect(rng.choice(cut))

    def _step_churn(self, t: int) -> None:
        """MIT TestChurn: every ``period`` ticks, maybe disconnect one, restart+reconnect one, crash one."""
        if t % self.phase.period:
            return
        c, rng = self.cluster, self.rng
        if rng.random() < 0.2:
            c.isolate(rng.choice(c.ids))
        if rng.random() < 0.5:
            node = rng.choice(c.ids)
            c.restart(node)
            c.reconnect(node)
        if rng.random() < 0.2:
            c.crash(rng.choice(c.ids), mid_ready=rng.random() < self.phase.mid_ready)

    def _step_diverge(self, t: int) -> None:
        """Every ``period`` ticks: maybe cut the leader off with a few followers, then feed it many entries."""
        if t % self.phase.period:
            return
        c, rng = self.cluster, self.rng
        for node in c.down():
            c.restart(node)
        lead = c.leader()
        if lead is None:
            c.heal()
            return
        if rng.random() < 0.6:
            others = [n for n in c.ids if n != lead]
            rng.shuffle(others)
            k = rng.randint(0, max((len(c.ids) - 1) // 2 - 1, 0))
            c.partition([lead, *others[:k]], others[k:])
        else:
            c.heal()
        for _ in range(rng.randint(10, 50)):
            self._propose(lead, 1)

    # -- liveness ------------------------------------------------------------------------------------------

    def _check_liveness(self) -> None:
        """Calm the network; with a majority (then everyone) connected, a leader must commit new proposals."""
        c, rng = self.cluster, self.rng
        c.set_net(RELIABLE)
        c.heal()
        c.cancel_pending_crashes()
        minority = (len(c.ids) - 1) // 2
        if self.plan.liveness_minority and minority:
            out = rng.sample(c.ids, rng.randint(1, minority))
            group = [n for n in c.ids if n not in out]
            for node in group:
                if not c.up[node]:
                    c.restart(node)
            for node in out:
                if rng.random() < 0.5:
                    c.crash(node)
                else:
                    c.isolate(node)
            self._calm(group, f"nodes {out} cut off or crashed")
            c.heal()
        for node in c.down():
            c.restart(node)
        self._calm(c.ids, "all nodes up and connected")

    def _calm(self, group: list[NodeId], what: str) -> None:
        """Within the bounds, ``group`` must settle on a leader and apply three proposals made to it."""
        c = self.cluster
        self.trace.note(c.now, f"liveness check: {what}")
        lead = self._settled_leader(group, what)
        pending: dict[int, bytes] = {}
        start = c.now
        for _ in range(3):
            self.counter += 1
            data = b"live%d" % self.counter
            index = c.propose(lead, data)
            if index is None:
                raise InvariantFailure("liveness", f"{what}: settled leader {lead} refused a proposal")
            pending[index] = data
            c.tick()
        while not self._applied_everywhere(group, pending):
            if c.now - start > COMMIT_BOUND:
                raise InvariantFailure(
                    "liveness",
                    f"{what}: proposals at {sorted(pending)} not applied everywhere within {COMMIT_BOUND} ticks; "
                    + self._roles(group),
                )
            c.tick()

    def _settled_leader(self, group: list[NodeId], what: str) -> NodeId:
        """Tick until one leader has been followed by all of ``group`` for an election timeout; return it.

        A leader left over from the faults may still step down at its next check-quorum; one that the whole
        group has followed for an election timeout has heard from all of it and stays, with nothing failing.
        """
        c = self.cluster
        settle = ELECTION_TICKS
        start = c.now
        since, current = start, None
        while True:
            lead = c.stable_leader(group)
            key = (lead, c.nodes[lead].node.term) if lead is not None else None
            if key != current:
                since, current = c.now, key
            if lead is not None and c.now - since >= settle:
                return lead
            if c.now - start > LEADER_BOUND:
                raise InvariantFailure(
                    "liveness", f"{what}: no leader settled within {LEADER_BOUND} ticks; " + self._roles(group)
                )
            c.tick()

    def _applied_everywhere(self, group: list[NodeId], pending: dict[int, bytes]) -> bool:
        c = self.cluster
        applied = c.invariants.applied
        for index, data in pending.items():
            got = applied.get(index)
            if got is not None and got[1] != data:
                raise InvariantFailure("liveness", f"a calm-period proposal at {index} was lost: {got[1]!r} applied")
        last = max(pending)
        return all(c.applied_index(n) >= last for n in group)

    def _roles(self, group: list[NodeId]) -> str:
        parts = []
        for n in group:
            s = self.cluster.nodes[n].node.status()
            state = s.role.value if self.cluster.up[n] else f"down ({s.role.value} when it crashed)"
            parts.append(f"n{n}: {state} term={s.term} lead={s.leader} commit={s.commit} last={s.last_index}")
        return "; ".join(parts)

    # -- results -------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters of the run: ticks, messages, elections, commits."""
        c = self.cluster
        return {
            "ticks": c.now,
            "delivered": c.delivered,
            "dropped": c.dropped,
            "leaders": len(c.invariants.leaders),
            "committed": c.invariants.max_commit,
            "checks": c.invariants.checks,
        }

    def fingerprint(self) -> str:
        """A digest of the final state of every node and of the run's counters."""
        c = self.cluster
        parts = [repr(sorted(self.stats().items()))]
        for n in c.ids:
            s = c.nodes[n].node.status()
            parts.append(f"{n}:{s.term}:{s.vote}:{s.commit}:{s.applied}:{s.last_index}:{c.up[n]}")
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def _failed(self, invariant: str, detail: str) -> SeedResult:
        plan, c = self.plan, self.cluster
        lines = [f"FAILED seed {plan.seed} at tick {c.now}: {invariant}", f"  {detail}", "", "plan:"]
        lines += ["  " + line for line in plan.describe()]
        lines += ["", "node states:", "  " + self._roles(c.ids).replace("; ", "\n  ")]
        lines += ["", f"last {TRACE_LINES} events:"]
        lines += ["  " + line for line in self.trace.lines(TRACE_LINES)]
        lines += ["", f"replay: {replay_command(plan)}"]
        return SeedResult(
            plan.seed,
            plan.size,
            False,
            c.now,
            invariant=invariant,
            detail=detail,
            report="\n".join(lines),
            fingerprint=self.fingerprint(),
            stats=self.stats(),
        )


def replay_command(plan: Plan) -> str:
    """The command that replays exactly this plan's run."""
    command = f"nox -s sim -- --seed {plan.seed}"
    if plan.size != (3, 5, 7)[plan.seed % 3]:
        command += f" --nodes {plan.size}"
    if plan.budget != 2000:
        command += f" --ticks {plan.budget}"
    return command


def run_seed(
    seed: int, *, sizes: tuple[int, ...] = (3, 5, 7), ticks: int = 2000, full_trace: bool = False
) -> SeedResult:
    """Run the seed's plan and check it; with ``full_trace`` the whole trace is kept (``trace_of`` reads it)."""
    return Runner(make_plan(seed, sizes, ticks), full_trace=full_trace).run()


def trace_of(seed: int, *, sizes: tuple[int, ...] = (3, 5, 7), ticks: int = 2000) -> tuple[SeedResult, Trace]:
    """Run a seed keeping its full trace; returns the result and the trace (for ``-v`` and replay hashes)."""
    runner = Runner(make_plan(seed, sizes, ticks), full_trace=True)
    return runner.run(), runner.trace
