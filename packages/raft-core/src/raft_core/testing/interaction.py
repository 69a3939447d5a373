"""Golden interaction scripts: a tiny data-driven runner over a cluster whose messages move only on command.

A script is a list of blocks separated by blank lines::

    # why this step matters
    campaign 1
    ----
    expected output

Nothing happens between commands: ``process-ready`` hands one node's ``Ready`` to its driver (messages wait
in flight), ``deliver-msgs`` steps waiting messages into their addressees, ``stabilize`` repeats both until
the cluster is quiet. Output uses ``raft_core.describe`` plus the core's own log lines, so a golden file reads
as a step-by-step trace. ``run_script`` returns the script with its outputs replaced by what actually happened.
"""

from __future__ import annotations

import logging
import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from raft_core.config import Config
from raft_core.describe import describe_entry, describe_message, describe_ready
from raft_core.errors import RaftError
from raft_core.messages import Message
from raft_core.testing.harness import MemoryNode
from raft_core.types import Membership, NodeId, Role

MAX_STABILIZE_ROUNDS = 1000
"""A cluster still talking after this many rounds of ``stabilize`` is a livelock, not a test."""


@dataclass(slots=True)
class Command:
    """One script command: ``name``, positional ``args`` and ``key=value`` options."""

    name: str
    args: list[str]
    options: dict[str, str]

    @classmethod
    def parse(cls, line: str) -> Command:
        """Split ``line`` shell-style; ``key=value`` words become options."""
        name, *words = shlex.split(line)
        args = [w for w in words if "=" not in w]
        options = dict(w.split("=", 1) for w in words if "=" in w)
        return cls(name, args, options)

    def ids(self) -> list[NodeId]:
        """The positional arguments as node ids."""
        return [int(a) for a in self.args]


@dataclass(slots=True)
class InteractionEnv:
    """The cluster under test: nodes, messages in flight (in send order) and isolated nodes."""

    nodes: dict[NodeId, MemoryNode] = field(default_factory=dict)
    in_flight: list[Message] = field(default_factory=list)
    isolated: set[NodeId] = field(default_factory=set)
    out: list[str] = field(default_factory=list)

    def handle(self, line: str) -> str:
        """Run one command line; returns its output (``ok`` when it printed nothing)."""
        command = Command.parse(line)
        handler = HANDLERS.get(command.name)
        if handler is None:
            raise ValueError(f"unknown command {command.name!r}")
        self.out = []
        with _CapturedLogs(self.out):
            try:
                handler(self, command)
            except RaftError as exc:
                self.out.append(f"error: {type(exc).__name__}: {exc}")
        return "\n".join(self.out) or "ok"

    def node(self, node_id: NodeId) -> MemoryNode:
        """The node with that id (a script naming an unknown node is a script bug)."""
        if node_id not in self.nodes:
            raise ValueError(f"no node {node_id}")
        return self.nodes[node_id]

    def process_ready(self, node_id: NodeId, indent: str = "") -> None:
        """Print the node's Ready, persist it, queue its messages, apply it and advance."""
        memory = self.node(node_id)
        if not memory.node.has_ready():
            self.out.append(f"{indent}<empty Ready>")
            return
        ready = memory.node.ready()
        self.out.extend(indent + line for line in describe_ready(ready).splitlines())
        memory.persist(ready)
        self.in_flight.extend(ready.messages)
        memory.apply(ready)
        memory.node.advance(ready)

    def deliver(self, node_id: NodeId, *, drop: bool = False, indent: str = "") -> int:
        """Step every message waiting for ``node_id`` into it (or drop them); returns how many there were."""
        mine = [m for m in self.in_flight if m.dst == node_id]
        self.in_flight = [m for m in self.in_flight if m.dst != node_id]
        for m in mine:
            if drop or m.src in self.isolated or m.dst in self.isolated:
                self.out.append(f"{indent}dropped: {describe_message(m)}")
                continue
            self.out.append(f"{indent}{describe_message(m)}")
            try:
                self.node(node_id).node.step(m)
            except RaftError as exc:
                self.out.append(f"{indent}error: {type(exc).__name__}: {exc}")
        return len(mine)


class _CapturedLogs(logging.Handler):
    """Appends ``raft_core`` log records (DEBUG and up) to a list while in a ``with`` block."""

    def __init__(self, out: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self._out = out
        self._logger = logging.getLogger("raft_core")
        self._saved_level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self._out.append(f"{record.levelname} {record.getMessage()}")

    def __enter__(self) -> _CapturedLogs:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved_level)


# -- command handlers: one per script command ------------------------------------------------------------


def _option(text: str) -> object:
    """A Config value from script text: booleans and integers are converted, anything else stays text."""
    if text in ("true", "false"):
        return text == "true"
    return int(text) if text.lstrip("-").isdigit() else text


def add_nodes(env: InteractionEnv, cmd: Command) -> None:
    """``add-nodes N [field=value ...]``: nodes 1..N, all voters, with the given Config overrides."""
    ids = range(1, int(cmd.args[0]) + 1)
    membership = Membership.of(*ids)
    options = {key: _option(value) for key, value in cmd.options.items()}
    for node_id in ids:
        config = Config.build(id=node_id, **options)
        env.nodes[node_id] = MemoryNode(config, membership, random.Random(node_id))


def campaign(env: InteractionEnv, cmd: Command) -> None:
    """``campaign ID``: the node starts an election now (through a pre-vote if enabled)."""
    env.node(cmd.ids()[0]).node.campaign()


def propose(env: InteractionEnv, cmd: Command) -> None:
    """``propose ID DATA...``: propose the commands as one batch."""
    env.node(int(cmd.args[0])).node.propose_many(d.encode() for d in cmd.args[1:])


def _tick(env: InteractionEnv, node_id: NodeId, *, election: bool) -> None:
    memory = env.node(node_id)
    raft = memory.node._raft  # the timers are internal; scripts need to tick exactly to the deadline
    leader = raft.role is Role.LEADER
    if election:
        due = (raft.config.election_ticks if leader else raft.randomized_election_timeout) - raft.election_elapsed
    else:
        due = raft.config.heartbeat_ticks - (raft.heartbeat_elapsed if leader else 0)
    for _ in range(max(due, 1)):
        memory.node.tick()


def tick_election(env: InteractionEnv, cmd: Command) -> None:
    """``tick-election ID``: tick until the node's election timeout (a leader's check-quorum period) is due."""
    _tick(env, cmd.ids()[0], election=True)


def tick_heartbeat(env: InteractionEnv, cmd: Command) -> None:
    """``tick-heartbeat ID``: tick until a leader's next heartbeat (heartbeat_ticks ticks for others)."""
    _tick(env, cmd.ids()[0], election=False)


def process_ready(env: InteractionEnv, cmd: Command) -> None:
    """``process-ready ID...``: handle one Ready of each node; its messages stay in flight."""
    ids = cmd.ids()
    for node_id in ids:
        if len(ids) > 1:
            env.out.append(f"> {node_id} handling Ready")
        env.process_ready(node_id, "  " if len(ids) > 1 else "")


def deliver_msgs(env: InteractionEnv, cmd: Command) -> None:
    """``deliver-msgs [ID...] [drop=ID,...]``: deliver what waits for the nodes (default: all), drop the rest."""
    dropped = {int(i) for i in cmd.options.get("drop", "").split(",") if i}
    targets = set(cmd.ids() or ([] if dropped else env.nodes)) | dropped
    for node_id in sorted(targets):
        env.deliver(node_id, drop=node_id in dropped)


def stabilize(env: InteractionEnv, cmd: Command) -> None:
    """``stabilize``: handle Readys and deliver messages, node by node, until nothing is left to do."""
    for _ in range(MAX_STABILIZE_ROUNDS):
        busy = False
        for node_id in sorted(env.nodes):
            if env.nodes[node_id].node.has_ready():
                env.out.append(f"> {node_id} handling Ready")
                env.process_ready(node_id, "  ")
                busy = True
        for node_id in sorted(env.nodes):
            if any(m.dst == node_id for m in env.in_flight):
                env.out.append(f"> {node_id} receiving messages")
                env.deliver(node_id, indent="  ")
                busy = True
        if not busy:
            return
    raise AssertionError(f"the cluster did not stabilize within {MAX_STABILIZE_ROUNDS} rounds")


def raft_state(env: InteractionEnv, cmd: Command) -> None:
    """``raft-state``: one line per node: id, role, term, leader, commit and applied index."""
    for node_id in sorted(env.nodes):
        s = env.nodes[node_id].node.status()
        note = " (isolated)" if node_id in env.isolated else ""
        env.out.append(
            f"{node_id}: {s.role.value} term={s.term} lead={s.leader} commit={s.commit} applied={s.applied}{note}"
        )


def raft_log(env: InteractionEnv, cmd: Command) -> None:
    """``raft-log ID``: the node's persisted log."""
    storage = env.node(cmd.ids()[0]).storage
    first, last = storage.first_index(), storage.last_index()
    if first > last:
        env.out.append(f"log is empty: first index={first}, last index={last}")
    env.out.extend(describe_entry(e) for e in storage.entries(first, last + 1))


def read_index(env: InteractionEnv, cmd: Command) -> None:
    """``read-index ID CONTEXT``: ask for a linearizable read; its ReadState comes in a later Ready."""
    env.node(int(cmd.args[0])).node.read_index(cmd.args[1].encode())


def transfer_leadership(env: InteractionEnv, cmd: Command) -> None:
    """``transfer-leadership FROM TO``: ask node FROM to hand leadership to TO."""
    source, target = cmd.ids()
    env.node(source).node.transfer_leadership(target)


def isolate(env: InteractionEnv, cmd: Command) -> None:
    """``isolate ID``: from now on, messages to and from the node are dropped when delivered."""
    env.isolated.update(cmd.ids())


def recover(env: InteractionEnv, cmd: Command) -> None:
    """``recover``: heal every isolation."""
    env.isolated.clear()


HANDLERS: dict[str, Callable[[InteractionEnv, Command], None]] = {
    "add-nodes": add_nodes,
    "campaign": campaign,
    "propose": propose,
    "tick-election": tick_election,
    "tick-heartbeat": tick_heartbeat,
    "process-ready": process_ready,
    "deliver-msgs": deliver_msgs,
    "stabilize": stabilize,
    "raft-state": raft_state,
    "raft-log": raft_log,
    "read-index": read_index,
    "transfer-leadership": transfer_leadership,
    "isolate": isolate,
    "recover": recover,
}
"""Every script command and the function that runs it."""


# -- script files ----------------------------------------------------------------------------------------


def run_script(text: str) -> str:
    """Run every block of a script in one fresh environment; returns the script with actual outputs."""
    env = InteractionEnv()
    lines = text.splitlines()
    result: list[str] = []
    pending: list[str] = []  # comments (and blank lines) since the last block
    n = 0
    while n < len(lines):
        line = lines[n]
        n += 1
        if not line.strip() or line.startswith("#"):
            pending.append(line)
            continue
        if n >= len(lines) or lines[n] != "----":
            raise ValueError(f"line {n}: expected '----' after command {line!r}")
        n += 1
        while n < len(lines) and lines[n].strip():
            n += 1  # the expected output, replaced below
        if result:
            result.append("")
        result.extend(p for p in pending if p.strip())
        pending = []
        result.extend([line, "----", env.handle(line)])
    result.extend(p for p in pending if p.strip())
    return "\n".join(result) + "\n"
