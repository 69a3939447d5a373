"""Small helpers shared by the protocol tests (test_raft_paper.py, test_raft_features.py)."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import pytest

from raft_core import (
    Config,
    Entry,
    EntryKind,
    HardState,
    Membership,
    MemoryStorage,
    Message,
    NodeId,
    Ready,
    Role,
)
from raft_core.testing.harness import MemoryNode
from raft_core.testing.network import Network

M = TypeVar("M")


def elect(net: Network, node: NodeId) -> None:
    """Make ``node`` campaign and check that it won."""
    net.campaign(node)
    assert net[node].node.role is Role.LEADER, f"node {node} did not win: {net[node].node.status()}"


def expire_lease(net: Network, *nodes: NodeId) -> None:
    """Tick ``nodes`` for an election timeout so that they no longer count on their leader's lease."""
    for node in nodes:
        net.tick(node, net[node].config.election_ticks)


def record_sent(net: Network, node: NodeId) -> list[Message]:
    """Every message ``node`` hands to its driver from now on, delivered or not (a cut does not hide it)."""
    sent: list[Message] = []

    def hook(_: MemoryNode, ready: Ready) -> None:
        sent.extend(ready.messages)

    net[node].on_persist = hook
    return sent


def of_type(messages: Iterable[Message], kind: type[M]) -> list[M]:
    """The messages of ``kind``."""
    return [m for m in messages if isinstance(m, kind)]


def stored(mn: MemoryNode) -> list[Entry]:
    """The entries a node's durable storage holds."""
    storage = mn.storage
    first, last = storage.first_index(), storage.last_index()
    return storage.entries(first, last + 1) if last >= first else []


def stored_terms(mn: MemoryNode) -> list[int]:
    """The terms of the stored entries, in index order."""
    return [e.term for e in stored(mn)]


def make_entries(terms: Sequence[int], *, tag: str = "") -> list[Entry]:
    """Entries 1..len(terms) with the given terms and a payload naming index, term and ``tag``."""
    return [Entry(t, i, EntryKind.NORMAL, f"{tag}{i}/{t}".encode()) for i, t in enumerate(terms, start=1)]


def preset(
    net: Network, node: NodeId, entries: Sequence[Entry], *, term: int, vote: NodeId = 0, commit: int = 0
) -> None:
    """Replace ``node`` by one restarted from a storage holding ``entries`` and the given hard state."""
    old = net[node]
    storage = MemoryStorage(Membership(voters=frozenset(net.ids)))
    storage.append(entries)
    storage.set_hard_state(HardState(term, vote, commit))
    net.nodes[node] = MemoryNode(old.config, storage.initial_state().membership, old.rng, storage)


def standalone(node: NodeId = 1, voters: Sequence[NodeId] = (1, 2, 3), **config: Any) -> MemoryNode:
    """One node of a ``voters`` cluster, not connected to anything: tests feed it messages by hand."""
    return MemoryNode(Config.build(id=node, **config), Membership(voters=frozenset(voters)), random.Random(node))


def hand_fed(mn: MemoryNode, *messages: Message) -> list[Message]:
    """Step ``messages`` into ``mn`` one by one, handling its Ready after each; returns what it sent."""
    out: list[Message] = []
    for m in messages:
        mn.node.step(m)
        out.extend(mn.handle_ready())
    return out


def deliver_only(net: Network, *messages: Message) -> list[Message]:
    """Step each message into its addressee and handle its Ready, returning what it sends (undelivered)."""
    out: list[Message] = []
    for m in messages:
        mn = net[m.dst]
        mn.node.step(m)
        out.extend(mn.handle_ready())
    return out


def deliver_holding(net: Network, kind: type, *messages: Message) -> list[Message]:
    """Deliver like ``Network.send`` but hold back messages of ``kind`` (still in flight: neither delivered nor
    reported lost), returning them. Cuts and ignored kinds are not applied: use it on a healed network."""
    held: list[Message] = []
    queue = deque(messages)
    while queue:
        m = queue.popleft()
        if isinstance(m, kind):
            held.append(m)
            continue
        net.delivered.append(m)
        net[m.dst].node.step(m)
        queue.extend(net[m.dst].handle_ready())
    return held


def tick_holding(net: Network, node: NodeId, kind: type) -> list[Message]:
    """Tick ``node`` once and deliver the consequences, holding back messages of ``kind`` (see above)."""
    net[node].node.tick()
    return deliver_holding(net, kind, *net[node].handle_ready())


def assert_log_matching(net: Network) -> None:
    """Log Matching (§5.3): two logs holding an entry of the same index and term agree on everything up to it."""
    logs = {n: {e.index: e for e in stored(net[n])} for n in net.ids}
    for a in net.ids:
        for b in net.ids:
            if a >= b:
                continue
            common = sorted(set(logs[a]) & set(logs[b]))
            for index in reversed(common):
                if logs[a][index].term == logs[b][index].term:
                    for i in common:
                        if i > index:
                            break
                        assert logs[a][i] == logs[b][i], f"nodes {a} and {b} differ at {i} below matching {index}"
                    break


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--rewrite``: golden interaction tests rewrite their expected output instead of comparing (review the diff)."""
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite the expected output of tests/testdata/interaction/*.txt from the actual output",
    )
