"""The multi-process test harness: node processes, the proxy network, client load and history checks."""

from .aio import eventually, run
from .checks import verify
from .cluster import Cluster, LeaderMonitor, NodeView, Timing, free_port, host_of
from .history import History, LinearizabilityUnknown, Op, Outcome, check_final_state, check_linearizable
from .process import NodeProcess, ProcessFailed
from .proxy import LinkProxy, LinkState, Network
from .workload import Workload, keys_of

__all__ = [
    "Cluster",
    "History",
    "LeaderMonitor",
    "LinearizabilityUnknown",
    "LinkProxy",
    "LinkState",
    "Network",
    "NodeProcess",
    "NodeView",
    "Op",
    "Outcome",
    "ProcessFailed",
    "Timing",
    "Workload",
    "check_final_state",
    "check_linearizable",
    "eventually",
    "free_port",
    "host_of",
    "keys_of",
    "run",
    "verify",
]
