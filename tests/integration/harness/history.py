"""Client histories and their checks: durability of acknowledged writes and per-key linearizability.

An ``Op`` is one client call with its real-time interval ``[start, end]`` (monotonic clock of the test
process, taken just before the call and just after its answer). Its outcome is one of:

- ``OK``: acknowledged (a write took effect; a read returned ``result``);
- ``FAIL``: definitely did not take effect (only used when the server says so without doubt, e.g. a CAS whose
  comparison failed is OK with result False, not FAIL);
- ``UNKNOWN``: timed out, unavailable, connection lost: a write may or may not have taken effect, at any time
  after its start (Jepsen's "info", Porcupine's return = +infinity). Unknown reads are dropped.

Every write writes a value unique to the test (``"<writer>-<seq>"``), which keeps the linearizability search
small (etcd's robustness suite does the same) and lets "nothing appears that was never written" be checked.

Checks (all raise ``AssertionError`` with a readable explanation):

- ``check_final_state``: for every key, the value all nodes converged to is one a linearizable register could
  hold after the history: written by some write (acknowledged or unknown) that no acknowledged write of the
  same key followed in real time, and never a value nobody wrote. In particular every acknowledged write
  survives (or was overwritten by a later write of the same test).
- ``check_linearizable``: Wing & Gong / Lowe search per key (P-compositionality) over a register model with
  put, delete, get and compare-and-set; unknown writes may take effect at any point after their start, or
  never. Bounded by a step budget; exceeding it is reported, not passed silently.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

ABSENT: str | None = None


class Outcome(Enum):
    """How a call ended."""

    PENDING = "pending"
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


WRITE_KINDS = frozenset({"put", "delete", "cas"})


@dataclass(eq=False)
class Op:
    """One client call: ``put(key, value)``, ``delete(key)``, ``get(key) -> result`` or ``cas(key, expected,
    value) -> result (bool)``.
    """

    client: str
    kind: str
    key: str
    value: str | None = None
    expected: str | None = None
    start: float = 0.0
    end: float = math.inf
    outcome: Outcome = Outcome.PENDING
    result: object = None
    error: str = ""
    node: str = ""

    @property
    def is_write(self) -> bool:
        """Whether the op may change state."""
        return self.kind in WRITE_KINDS

    def describe(self) -> str:
        """Stable one-line text for failure reports."""
        args = {"put": f"{self.value!r}", "delete": "", "get": "", "cas": f"{self.expected!r}->{self.value!r}"}
        end = "inf" if math.isinf(self.end) else f"{self.end:.3f}"
        tail = f" = {self.result!r}" if self.kind in ("get", "cas") and self.outcome is Outcome.OK else ""
        err = f" ({self.error})" if self.error else ""
        return (
            f"[{self.start:.3f}, {end}] {self.client} {self.kind}({self.key!r}{', ' if args[self.kind] else ''}"
            f"{args[self.kind]}){tail} {self.outcome.value}{err}"
        )


@dataclass
class History:
    """All calls of a test, in invocation order."""

    ops: list[Op] = field(default_factory=list)

    def invoke(self, client: str, kind: str, key: str, value: str | None = None, expected: str | None = None) -> Op:
        """Record the start of a call."""
        op = Op(client, kind, key, value, expected, start=time.monotonic())
        self.ops.append(op)
        return op

    @staticmethod
    def ok(op: Op, result: object = None) -> None:
        """Record an acknowledged answer."""
        op.end, op.outcome, op.result = time.monotonic(), Outcome.OK, result

    @staticmethod
    def unknown(op: Op, error: BaseException | str) -> None:
        """Record a call whose effect is unknown (its end stays +infinity for writes)."""
        op.outcome, op.error = Outcome.UNKNOWN, _short(error)

    @staticmethod
    def fail(op: Op, error: BaseException | str) -> None:
        """Record a call that certainly had no effect."""
        op.end, op.outcome, op.error = time.monotonic(), Outcome.FAIL, _short(error)

    def acked_writes(self) -> list[Op]:
        """Acknowledged writes that changed state (CAS only when it succeeded)."""
        return [op for op in self.ops if op.is_write and op.outcome is Outcome.OK and (op.kind != "cas" or op.result)]

    def unknown_writes(self) -> list[Op]:
        """Writes whose effect is unknown."""
        return [op for op in self.ops if op.is_write and op.outcome is Outcome.UNKNOWN]

    def keys(self) -> set[str]:
        """Every key any call touched."""
        return {op.key for op in self.ops}

    def written_keys(self) -> set[str]:
        """Every key any write (of any outcome) touched."""
        return {op.key for op in self.ops if op.is_write}

    def between(self, start: float, end: float) -> list[Op]:
        """Calls that started in ``[start, end)``."""
        return [op for op in self.ops if start <= op.start < end]

    def summary(self) -> str:
        """Counts per kind and outcome."""
        counts: dict[str, int] = defaultdict(int)
        for op in self.ops:
            counts[f"{op.kind}:{op.outcome.value}"] += 1
        return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no ops"


def _short(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:200] if text else ""


# ---------------------------------------------------------------------------------------------------------
# Final state


def check_final_state(history: History, state: dict[str, str | None]) -> None:
    """Every key's converged value is one its writes can explain (see the module docstring).

    ``state`` maps every key of ``history.written_keys()`` (at least) to its value on all nodes (None: absent).
    """
    problems: list[str] = []
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.is_write and op.outcome is not Outcome.FAIL:  # a PENDING write (cancelled call) may have landed
            by_key[op.key].append(op)
    all_written = {op.value for op in history.ops if op.is_write and op.value is not None}
    for key in sorted(history.written_keys() | set(state)):
        value = state.get(key)
        writes = by_key.get(key, [])
        acked = [w for w in writes if w.outcome is Outcome.OK and (w.kind != "cas" or w.result)]
        if value is not None and value not in all_written:
            problems.append(f"{key!r} = {value!r}, a value no call ever wrote")
            continue
        candidates = [w for w in writes if _result_value(w) == value and (w.kind != "cas" or w.result is not False)]
        if value is None and not acked:
            continue  # never set for sure: absence is fine
        if not candidates:
            last = max(acked, key=lambda w: w.end, default=None)
            problems.append(
                f"{key!r} = {value!r} but no write of that value exists; last acknowledged: "
                f"{last.describe() if last else 'none'}"
            )
            continue
        # Some candidate must not be followed (in real time) by an acknowledged write of another value.
        if not any(not any(a.start > c.end and _result_value(a) != value for a in acked) for c in candidates):
            later = [a for a in acked if all(a.start > c.end for c in candidates)]
            problems.append(
                f"{key!r} = {value!r} (from {candidates[-1].describe()}) but later acknowledged writes were lost: "
                + "; ".join(a.describe() for a in later[-3:])
            )
    if problems:
        raise AssertionError("final state does not match the history:\n  " + "\n  ".join(problems[:20]))


def _result_value(op: Op) -> str | None:
    """The register value after ``op`` takes effect."""
    return None if op.kind == "delete" else op.value


# ---------------------------------------------------------------------------------------------------------
# Linearizability (per key, register model)


class LinearizabilityUnknown(AssertionError):
    """The search ran out of budget: neither proven nor refuted."""


def check_linearizable(history: History, *, budget: int = 500_000, initial: dict[str, str | None] | None = None) -> int:
    """Check every key's sub-history; returns the number of keys checked. Raises on a violation."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history.ops:
        if op.outcome is Outcome.OK or (op.is_write and op.outcome in (Outcome.UNKNOWN, Outcome.PENDING)):
            by_key[op.key].append(op)
    for key, ops in sorted(by_key.items()):
        start_value = (initial or {}).get(key)
        if not _linearizable(ops, start_value, budget):
            lines = "\n  ".join(op.describe() for op in sorted(ops, key=lambda o: o.start)[:80])
            raise AssertionError(f"history of key {key!r} is not linearizable ({len(ops)} ops):\n  {lines}")
    return len(by_key)


def _step(op: Op, value: str | None) -> tuple[bool, str | None]:
    """Apply ``op`` to a register holding ``value``: (consistent with op's observed result, new value)."""
    if op.kind == "put":
        return True, op.value
    if op.kind == "delete":
        return True, None
    if op.kind == "get":
        return op.result == value, value
    if op.kind == "cas":
        matches = value == op.expected
        if op.outcome is Outcome.UNKNOWN:
            return True, op.value if matches else value
        return bool(op.result) == matches, op.value if matches else value
    raise ValueError(f"unknown op kind {op.kind}")


def _linearizable(ops: Iterable[Op], initial: str | None, budget: int) -> bool:
    """Lowe's just-in-time linearization search with a (done-set, value) cache.

    An op may be linearized next iff it started before every not-yet-linearized *completed* op returned.
    Unknown writes never constrain others (end = +inf) and need not be linearized at all. Completed ops are
    scanned from the earliest one not yet linearized and only while they could still be candidates, so a
    state costs about the concurrency of the history, not its length.
    """
    ordered = sorted(ops, key=lambda o: o.start)
    known = [i for i, op in enumerate(ordered) if op.outcome is Outcome.OK]
    unknown = [i for i, op in enumerate(ordered) if op.outcome is not Outcome.OK]
    seen: set[tuple[int, str | None]] = set()
    stack: list[tuple[int, str | None, int]] = [(0, initial, 0)]
    steps = 0
    while stack:
        done, value, pos = stack.pop()
        while pos < len(known) and done >> known[pos] & 1:
            pos += 1
        if pos == len(known):
            return True
        if (done, value) in seen:
            continue
        seen.add((done, value))
        steps += 1
        if steps > budget:
            raise LinearizabilityUnknown(f"linearizability search exceeded {budget} states")
        horizon = math.inf
        candidates: list[int] = []
        for i in known[pos:]:
            op = ordered[i]
            if op.start > horizon:
                break
            if not done >> i & 1:
                candidates.append(i)
                horizon = min(horizon, op.end)
        candidates = [i for i in candidates if ordered[i].start <= horizon]
        candidates += [i for i in unknown if not done >> i & 1 and ordered[i].start <= horizon]
        for i in sorted(candidates, reverse=True):  # the earliest-started candidate is tried first
            consistent, new_value = _step(ordered[i], value)
            if consistent:
                stack.append((done | 1 << i, new_value, pos))
    return False
