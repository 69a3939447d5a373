"""Deterministic simulation of raft-core clusters: seeded faults, invariants checked after every step.

``python -m raft_core.testing.sim --seeds N`` runs N seeds (see ``__main__``); ``run_seed(seed)`` runs one
in-process. A seed fixes everything (cluster size, configuration, fault schedule, message fates, election
timeouts), so a failing seed replays exactly with ``--seed S``.
"""

from raft_core.testing.sim.cluster import RELIABLE, NetParams, SimCluster
from raft_core.testing.sim.invariants import InvariantFailure, Invariants
from raft_core.testing.sim.runner import Runner, SeedResult, replay_command, run_seed, trace_of
from raft_core.testing.sim.schedule import Phase, Plan, make_plan
from raft_core.testing.sim.trace import Trace

__all__ = [
    "RELIABLE",
    "InvariantFailure",
    "Invariants",
    "NetParams",
    "Phase",
    "Plan",
    "Runner",
    "SeedResult",
    "SimCluster",
    "Trace",
    "make_plan",
    "replay_command",
    "run_seed",
    "trace_of",
]
