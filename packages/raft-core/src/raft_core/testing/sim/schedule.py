"""Random fault schedules: a ``Plan`` (cluster size, node config, a sequence of fault phases) from one seed.

A plan is drawn entirely from ``random.Random(seed)``: the same seed always gives the same plan, and the seed
for everything drawn while the plan runs (``Plan.runtime_seed``) comes from the same generator. Phases of
different kinds follow each other until the requested number of ticks is filled:

- ``calm``: a reliable network, every crashed node restarted, every cut healed;
- ``lossy``: drops, duplicates, delays and long reorderings (MIT 6.824's unreliable network);
- ``partition``: a new partition every few ticks: random splits, the leader cut off (alone or with one
  follower), one-way cuts, a bridge node between two halves, or none;
- ``crash``: random crashes (some in the middle of a Ready) and restarts, sometimes of the whole cluster;
- ``figure8``: propose on the leader, crash it a moment later, restart nodes to keep a majority (MIT
  TestFigure8), which makes old-term entries sit on some but not all nodes;
- ``figure8_unreliable``: the same with disconnections instead of crashes over a lossy network;
- ``churn``: every few ticks, disconnect, restart and crash nodes at random (MIT TestReliableChurn);
- ``diverge``: the leader and one follower are cut off and fed many proposals while the majority commits
  others, then the sides swap: long divergent logs to back up over (MIT TestBackup and TestRejoin).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raft_core.testing.sim.cluster import RELIABLE, NetParams

KINDS: tuple[str, ...] = ("calm", "lossy", "partition", "crash", "figure8", "figure8_unreliable", "churn", "diverge")
WEIGHTS: tuple[int, ...] = (2, 2, 3, 3, 4, 1, 2, 2)
ELECTION_TICKS = 10
"""Every seed uses the ``Config`` default election timeout (the phases' periods are tuned to it)."""


@dataclass(slots=True, frozen=True)
class Phase:
    """One stretch of the run with one kind of fault."""

    kind: str
    length: int
    """How many ticks the phase lasts."""
    net: NetParams = RELIABLE
    propose_rate: float = 0.1
    """Probability per tick that a client proposes something."""
    period: int = 10
    """Ticks between two actions of the nemesis (a new partition, a churn step, a divergence step)."""
    max_down: int = 1
    """In ``crash`` phases: how many nodes may be down at once."""
    mid_ready: float = 0.3
    """Share of crashes that happen after a Ready is persisted but before its messages are sent."""

    def describe(self) -> str:
        """A one-line summary, e.g. ``crash 120 ticks, network drop=0% ..., period 8``."""
        return (
            f"{self.kind} for {self.length} ticks; network {self.net.describe()}; period {self.period}; "
            f"proposals {self.propose_rate:.2f}/tick; max down {self.max_down}"
        )


@dataclass(slots=True, frozen=True)
class Plan:
    """Everything a seed decides before the run starts."""

    seed: int
    size: int
    config: dict[str, object] = field(default_factory=dict)
    """Overrides of ``Config`` fields for every node."""
    phases: tuple[Phase, ...] = ()
    snapshot_every: int = 100
    """Mean ticks between two snapshots (each on a random node)."""
    snapshot_keep: int = 2
    """Entries kept in the log before each snapshot's index."""
    liveness_minority: bool = True
    """Whether the liveness check first runs with a minority still cut off or crashed."""
    runtime_seed: int = 0
    budget: int = 2000
    """The ``ticks`` the plan was drawn for (needed, with the seed and the sizes, to replay it)."""

    @property
    def ticks(self) -> int:
        """Ticks of the fault phases (the liveness check runs after them)."""
        return sum(p.length for p in self.phases)

    def describe(self) -> list[str]:
        """The plan as readable lines."""
        cfg = ", ".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        lines = [
            f"seed {self.seed}: {self.size} nodes; {cfg}; snapshot every ~{self.snapshot_every} ticks "
            f"keeping {self.snapshot_keep}"
        ]
        lines += [f"  phase {n}: {p.describe()}" for n, p in enumerate(self.phases)]
        return lines


def make_plan(seed: int, sizes: tuple[int, ...] = (3, 5, 7), ticks: int = 2000) -> Plan:
    """Draw the plan of ``seed``: its size cycles through ``sizes``, its phases fill at least ``ticks`` ticks."""
    rng = random.Random(seed)
    size = sizes[seed % len(sizes)]
    phases: list[Phase] = []
    total = 0
    while total < ticks:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        phase = _phase(rng, kind, size, min(rng.randint(60, 300), max(ticks - total, 30)))
        phases.append(phase)
        total += phase.length
    return Plan(
        seed=seed,
        size=size,
        config=_config(rng),
        phases=tuple(phases),
        snapshot_every=rng.choice((30, 60, 100, 200, 400)),
        snapshot_keep=rng.choice((0, 0, 1, 2, 5)),
        liveness_minority=rng.random() < 0.5,
        runtime_seed=rng.getrandbits(64),
        budget=ticks,
    )


def _config(rng: random.Random) -> dict[str, object]:
    """Mostly defaults; some seeds turn pre-vote or check-quorum off or squeeze flow control."""
    config: dict[str, object] = {"election_ticks": ELECTION_TICKS, "heartbeat_ticks": rng.choice((1, 2))}
    if rng.random() < 0.2:
        config["pre_vote"] = False
    if rng.random() < 0.2:
        config["check_quorum"] = False
    if rng.random() < 0.4:
        config["max_size_per_msg"] = rng.choice((1, 1, 8, 40))
    if rng.random() < 0.3:
        config["max_inflight_msgs"] = rng.choice((1, 2, 4))
    return config


def _phase(rng: random.Random, kind: str, size: int, length: int) -> Phase:
    """Draw the parameters of one phase of ``kind``."""
    minority = (size - 1) // 2
    if kind == "calm":
        return Phase(kind, length, NetParams(max_delay=rng.choice((0, 0, 1))), propose_rate=rng.uniform(0.05, 0.5))
    if kind in ("lossy", "figure8_unreliable"):
        net = _lossy(rng)
        return Phase(kind, length, net, propose_rate=rng.uniform(0.1, 0.6), period=rng.randint(3, 15))
    net = _mild(rng)
    if kind == "partition":
        return Phase(kind, length, net, propose_rate=rng.uniform(0.05, 0.4), period=rng.randint(5, 60))
    if kind == "crash":
        max_down = size if rng.random() < 0.2 else rng.randint(1, max(minority, 1))
        return Phase(
            kind,
            length,
            net,
            propose_rate=rng.uniform(0.05, 0.4),
            period=rng.randint(5, 40),
            max_down=max_down,
            mid_ready=rng.choice((0.0, 0.3, 0.7)),
        )
    if kind == "figure8":
        # Delays of a tick or more let a leader crash halfway through replicating, as in the paper's figure.
        slow = NetParams(max_delay=rng.randint(1, 3))
        return Phase(kind, length, slow, propose_rate=0.0, period=rng.randint(1, 6), mid_ready=rng.choice((0.0, 0.5)))
    if kind == "churn":
        churn_net = net if rng.random() < 0.5 else _lossy(rng)
        return Phase(kind, length, churn_net, propose_rate=rng.uniform(0.1, 0.5), period=7, max_down=size)
    return Phase(kind, length, net, propose_rate=0.02, period=rng.randint(25, 50))


def _lossy(rng: random.Random) -> NetParams:
    """An unreliable network: up to 30% loss, duplicates, jitter, sometimes long reorderings."""
    long = rng.random() < 0.4
    return NetParams(
        drop=rng.choice((0.05, 0.1, 0.2, 0.3)),
        dup=rng.choice((0.0, 0.02, 0.1)),
        max_delay=rng.randint(1, 6),
        long_delay=rng.uniform(0.05, 0.3) if long else 0.0,
        long_delay_max=rng.randint(10, 60) if long else 0,
    )


def _mild(rng: random.Random) -> NetParams:
    """Half the time a reliable network, else a little loss and jitter."""
    if rng.random() < 0.5:
        return NetParams(max_delay=rng.choice((0, 1)))
    return NetParams(drop=rng.choice((0.01, 0.05)), dup=rng.choice((0.0, 0.01)), max_delay=rng.randint(1, 3))
