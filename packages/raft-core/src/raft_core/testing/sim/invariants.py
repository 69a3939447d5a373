"""``Invariants``: the Raft safety properties (Figure 3 and more), checked incrementally after every step.

The simulator calls the hooks below as things happen; each hook costs a few dictionary operations, so every
step of every seed is checked. What is checked:

- **election safety**: at most one leader per term, over the whole run;
- **vote safety**: a node's persisted term never goes back and it never changes its vote within a term;
- **log matching**: two persisted entries with the same index and term carry the same command and follow
  entries of the same term (so, by induction, the logs agree on everything before them);
- **leader completeness**: a new leader holds every entry committed so far (above its own snapshot);
- **committed entries are never lost**: when an index is first seen committed, a majority has it persisted;
  no node that holds a committed entry ever overwrites or drops it (a node cut off from the cluster may
  still hold a stale leader's entry at that index, to be replaced later), no node commits a different
  entry there, and no snapshot contradicts it;
- **state machine safety**: no two nodes apply different entries at one index, and only committed ones;
- **read linearizability**: a ReadState's index is at least the commit index known anywhere when the read
  was issued.
"""

from __future__ import annotations

from raft_core.ready import Ready
from raft_core.storage.memory import MemoryStorage
from raft_core.testing.harness import MemoryNode
from raft_core.types import Entry, EntryKind, HardState, NodeId, ReadState

UNKNOWN = -1
"""The term of a committed index that no node has shown us yet (it was committed inside a snapshot)."""


class InvariantFailure(AssertionError):
    """A safety or liveness property was violated; ``invariant`` names it and ``detail`` says how."""

    def __init__(self, invariant: str, detail: str) -> None:
        """Build the failure from the property's name and the specifics."""
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


def term_at(storage: MemoryStorage, index: int) -> int | None:
    """The term of the persisted entry at ``index`` (the snapshot's at its index), None if not held."""
    if index < storage.first_index() - 1 or index > storage.last_index():
        return None
    return storage.term(index)


class Invariants:
    """The global history the checks compare each node against, and the check hooks."""

    def __init__(self, storages: dict[NodeId, MemoryStorage]) -> None:
        """Check a cluster whose nodes persist into ``storages`` (the dict is read live, not copied)."""
        self.storages = storages
        self.majority = len(storages) // 2 + 1
        self.leaders: dict[int, NodeId] = {}
        """term -> the node that led it."""
        self.entries: dict[tuple[int, int], tuple[EntryKind, bytes, int | None]] = {}
        """(index, term) -> (kind, data, term of the entry before it) of every entry ever persisted."""
        self.commit_terms: list[int] = [0]
        """index -> term of the committed entry (``UNKNOWN`` if only seen inside a snapshot)."""
        self.applied: dict[int, tuple[int, bytes]] = {}
        """index -> (term, data) of the entry applied there."""
        self.node_commit: dict[NodeId, int] = dict.fromkeys(storages, 0)
        self.hard: dict[NodeId, HardState] = {}
        self.reads: dict[bytes, int] = {}
        """read context -> the commit index known cluster-wide when the read was issued."""
        self.checks = 0

    @property
    def max_commit(self) -> int:
        """The highest index known committed anywhere."""
        return len(self.commit_terms) - 1

    # -- hooks ------------------------------------------------------------------------------------------

    def on_leader(self, node: MemoryNode) -> None:
        """``node`` is leader after a step: one leader per term; a new leader must hold all committed entries."""
        term = node.node.term
        known = self.leaders.get(term)
        if known == node.id:
            return
        if known is not None:
            raise InvariantFailure("election safety", f"nodes {known} and {node.id} are both leaders of term {term}")
        self.leaders[term] = node.id
        self._check_leader_completeness(node, term)

    def _check_leader_completeness(self, node: MemoryNode, term: int) -> None:
        storage = node.storage
        lo = max(storage.first_index(), 1)
        hi = self.max_commit
        if hi < lo:
            return
        if storage.last_index() < hi:
            raise InvariantFailure(
                "leader completeness",
                f"node {node.id} became leader of term {term} with last index {storage.last_index()}, "
                f"but index {hi} is committed",
            )
        terms = self.commit_terms
        for entry in storage.entries(lo, hi + 1):
            want = terms[entry.index]
            if want != UNKNOWN and want != entry.term:
                raise InvariantFailure(
                    "leader completeness",
                    f"node {node.id} became leader of term {term} holding {entry.term}/{entry.index}, "
                    f"but {want}/{entry.index} is committed",
                )

    def before_persist(self, node: MemoryNode, ready: Ready) -> None:
        """``node`` is about to persist ``ready``: it must not overwrite or drop a committed entry it holds.

        (A node cut off from the cluster may hold other entries at committed indexes, written by a stale
        leader; what Raft forbids is replacing the committed entry once a node has it.)
        """
        storage = node.storage
        last = storage.last_index()
        if ready.snapshot is not None:
            self._check_kept(node, ready.snapshot.meta.index + 1, last, {}, "installing a snapshot")
        elif ready.entries and ready.entries[0].index <= last:
            first = ready.entries[0].index
            new = {e.index: e.term for e in ready.entries if e.index <= last}
            self._check_kept(node, first, last, new, "appending")

    def _check_kept(self, node: MemoryNode, lo: int, hi: int, new: dict[int, int], why: str) -> None:
        """Indexes ``lo..hi`` of ``node``'s storage are replaced by ``new`` (index -> term) or dropped."""
        terms = self.commit_terms
        storage = node.storage
        for index in range(max(lo, storage.first_index()), min(hi, self.max_commit) + 1):
            old = storage.term(index)
            if new.get(index) != old and terms[index] == old:
                became = f"{new[index]}/{index}" if index in new else "nothing"
                raise InvariantFailure(
                    "no committed entry lost",
                    f"node {node.id} replaced the committed entry {old}/{index} by {became} when {why}",
                )

    def on_persist(self, node: MemoryNode, ready: Ready) -> None:
        """``ready`` was just persisted by ``node``: vote safety, log matching, commits."""
        self.checks += 1
        if ready.hard_state is not None:
            self._check_hard_state(node.id, ready.hard_state)
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            self._check_not_contradicting(node.id, meta.index, meta.term, "a snapshot ending at")
        if ready.entries:
            self._check_entries(node, ready.entries)
        commit = ready.hard_state.commit if ready.hard_state is not None else 0
        if ready.snapshot is not None:
            commit = max(commit, ready.snapshot.meta.index)
        if commit > self.node_commit[node.id]:
            self._observe_commit(node, commit)

    def _check_hard_state(self, node: NodeId, hard: HardState) -> None:
        prev = self.hard.get(node)
        if prev is not None:
            if hard.term < prev.term:
                raise InvariantFailure("vote safety", f"node {node} persisted term {hard.term} after {prev.term}")
            if hard.term == prev.term and prev.vote and hard.vote != prev.vote:
                raise InvariantFailure(
                    "vote safety", f"node {node} voted for {prev.vote} and then {hard.vote} in term {hard.term}"
                )
        self.hard[node] = hard

    def _check_entries(self, node: MemoryNode, entries: tuple[Entry, ...]) -> None:
        known = self.entries
        prev_term = term_at(node.storage, entries[0].index - 1)
        for entry in entries:
            index, term = entry.index, entry.term
            seen = known.get((index, term))
            if seen is None:
                known[(index, term)] = (entry.kind, entry.data, prev_term)
            elif seen[0] != entry.kind or seen[1] != entry.data:
                raise InvariantFailure(
                    "log matching",
                    f"node {node.id} persisted {term}/{index} = {entry.data!r}, elsewhere it is {seen[1]!r}",
                )
            elif prev_term is not None and seen[2] is not None and seen[2] != prev_term:
                raise InvariantFailure(
                    "log matching",
                    f"node {node.id} holds {term}/{index} after an entry of term {prev_term}, "
                    f"another node after one of term {seen[2]}",
                )
            elif seen[2] is None and prev_term is not None:
                known[(index, term)] = (seen[0], seen[1], prev_term)
            prev_term = term

    def _check_not_contradicting(self, node: NodeId, index: int, term: int, what: str) -> None:
        terms = self.commit_terms
        if index < len(terms) and terms[index] not in (term, UNKNOWN):
            raise InvariantFailure(
                "no committed entry lost",
                f"node {node} persisted {what} {term}/{index}, but {terms[index]}/{index} is committed",
            )

    def _observe_commit(self, node: MemoryNode, commit: int) -> None:
        """``node`` now says everything up to ``commit`` is committed: record it, check it against history."""
        storage = node.storage
        terms = self.commit_terms
        start = self.node_commit[node.id] + 1
        self.node_commit[node.id] = commit
        for index in range(start, commit + 1):
            term = term_at(storage, index)
            if index < len(terms):
                have = terms[index]
                if term is None or have == term:
                    continue
                if have != UNKNOWN:
                    raise InvariantFailure(
                        "no committed entry lost",
                        f"node {node.id} committed {term}/{index}, but {have}/{index} was committed before",
                    )
                terms[index] = term
                continue
            terms.append(UNKNOWN if term is None else term)
            if term is not None:
                self._check_majority_holds(node.id, index, term)

    def _check_majority_holds(self, node: NodeId, index: int, term: int) -> None:
        holders = [
            n
            for n, storage in self.storages.items()
            if storage.first_index() - 1 >= index or term_at(storage, index) == term
        ]
        if len(holders) < self.majority:
            raise InvariantFailure(
                "no committed entry lost",
                f"node {node} committed {term}/{index}, but only nodes {holders} have it persisted "
                f"(a majority is {self.majority})",
            )

    def on_apply(self, node: MemoryNode, entry: Entry) -> None:
        """``node`` applied ``entry``: it must be committed, and the same entry every node applies there."""
        index = entry.index
        terms = self.commit_terms
        if index >= len(terms) or terms[index] not in (entry.term, UNKNOWN):
            committed = f"{terms[index]}/{index}" if index < len(terms) else f"only up to {self.max_commit}"
            raise InvariantFailure(
                "state machine safety",
                f"node {node.id} applied {entry.term}/{index}, but the committed entry is {committed}",
            )
        seen = self.applied.get(index)
        if seen is None:
            self.applied[index] = (entry.term, entry.data)
        elif seen != (entry.term, entry.data):
            raise InvariantFailure(
                "state machine safety",
                f"node {node.id} applied {entry.term}/{index} = {entry.data!r}; "
                f"another node applied {seen[0]}/{index} = {seen[1]!r}",
            )

    def on_read_issued(self, context: bytes) -> None:
        """A client issued a linearizable read identified by ``context``."""
        self.reads[context] = self.max_commit

    def on_read_states(self, node: NodeId, states: tuple[ReadState, ...]) -> None:
        """``node`` was told its reads may be served at these indexes: never below what was committed."""
        for rs in states:
            floor = self.reads.get(rs.context)
            if floor is not None and rs.index < floor:
                raise InvariantFailure(
                    "read linearizability",
                    f"node {node} may serve read {rs.context!r} at index {rs.index}, "
                    f"but index {floor} was already committed when it was issued",
                )
