"""Cost of building raft-core values as slotted dataclasses versus pydantic models, and of validating them.

This backs the design choice "slotted dataclasses on the hot path, pydantic at the boundaries": the core
builds one ``Entry`` per proposal on the leader and ships them in ``AppendEntries`` messages, so what one
construction costs is paid per command, while validation is paid once where bytes from disk or the wire
become values.

Measured, in µs per operation (median of ``--repeats`` timeit repeats, each calibrated to run about
``--target`` seconds; the repeats go round-robin over the operations, so noise hits them alike):

- a log entry built as (a) the frozen, slotted dataclass ``raft_core.types.Entry``, (b) an equivalent frozen
  pydantic ``BaseModel`` (with and without validation), (c) an equivalent frozen pydantic dataclass; and a
  ``raft_core.types.Entry`` validated by a pydantic ``TypeAdapter`` from Python data (a dict) and from JSON;
- an ``AppendEntries`` message carrying 64 entries, built the same ways (the entries included, and from
  entries already built), and validated from a dict and from JSON.

The pydantic twins have the same fields and bounds as the core types (terms, indexes and ids ``>= 0``, bytes
as base64 in JSON, like ``raft_core.validation``). The ``TypeAdapter`` rows use ``raft_core.validation``'s
adapters when that module exists, else an adapter built here with the same settings.

Run: ``python packages/raft-core/benchmarks/bench_models.py [--quick]``.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
import pydantic.dataclasses
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from raft_core.messages import AppendEntries
from raft_core.types import Entry, EntryKind

NonNegative = Annotated[int, Field(ge=0)]
"""The bound the core's terms, indexes and ids carry when pydantic validates them."""

_MODEL_CONFIG = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")
_DATACLASS_CONFIG = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")  # frozen: on the decorator

ENTRIES_PER_MESSAGE = 64
PAYLOAD = bytes(range(100))
"""A 100-byte command, as in ``bench_core``."""


class EntryModel(BaseModel):
    """``Entry`` as a frozen pydantic model."""

    model_config = _MODEL_CONFIG

    term: NonNegative
    index: NonNegative
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


class AppendEntriesModel(BaseModel):
    """``AppendEntries`` as a frozen pydantic model."""

    model_config = _MODEL_CONFIG

    src: NonNegative
    dst: NonNegative
    term: NonNegative
    prev_index: NonNegative
    prev_term: NonNegative
    entries: tuple[EntryModel, ...] = ()
    commit: NonNegative = 0


@pydantic.dataclasses.dataclass(frozen=True, slots=True, config=_DATACLASS_CONFIG)
class EntryPd:
    """``Entry`` as a frozen, slotted pydantic dataclass."""

    term: NonNegative
    index: NonNegative
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@pydantic.dataclasses.dataclass(frozen=True, slots=True, kw_only=True, config=_DATACLASS_CONFIG)
class AppendEntriesPd:
    """``AppendEntries`` as a frozen, slotted pydantic dataclass."""

    src: NonNegative
    dst: NonNegative
    term: NonNegative
    prev_index: NonNegative
    prev_term: NonNegative
    entries: tuple[EntryPd, ...] = ()
    commit: NonNegative = 0


@dataclass(slots=True)
class EntryMutable:
    """Reference point: ``Entry`` as a slotted dataclass that is *not* frozen (what ``frozen`` costs)."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


def boundary_adapters() -> tuple[TypeAdapter[Entry], TypeAdapter[AppendEntries], str]:
    """The pydantic adapters for ``Entry`` and ``AppendEntries``, and where they come from."""
    try:
        validation = importlib.import_module("raft_core.validation")
    except ImportError:
        validation = None
    if validation is not None and hasattr(validation, "adapter"):
        return validation.adapter(Entry), validation.adapter(AppendEntries), "raft_core.validation.adapter"
    # pydantic reads a stdlib dataclass's config from this class attribute (TypeAdapter refuses ``config=``
    # for dataclasses); set it the way raft_core.validation does, for this process only.
    kinds: tuple[type[Any], ...] = (Entry, AppendEntries)
    for kind in kinds:
        if not hasattr(kind, "__pydantic_config__"):
            kind.__pydantic_config__ = _DATACLASS_CONFIG
    return TypeAdapter(Entry), TypeAdapter(AppendEntries), "TypeAdapter built here"


@dataclass(slots=True, frozen=True)
class Case:
    """One measured operation: a timeit statement run in ``namespace``, checked once with ``check``."""

    group: str
    label: str
    stmt: str
    check: Callable[[Any], bool] | None = None


def build_cases() -> tuple[list[Case], dict[str, Any], str]:
    """Every operation to time, and the namespace their statements run in."""
    entry_adapter, append_adapter, adapter_source = boundary_adapters()
    entry_dict = {"term": 3, "index": 42, "kind": 0, "data": PAYLOAD}
    entry_json = json.dumps({"term": 3, "index": 42, "kind": 0, "data": base64.b64encode(PAYLOAD).decode()}).encode()
    n = ENTRIES_PER_MESSAGE
    entries = tuple(Entry(3, 100 + i, EntryKind.NORMAL, PAYLOAD) for i in range(n))
    entry_models = tuple(EntryModel(term=3, index=100 + i, kind=EntryKind.NORMAL, data=PAYLOAD) for i in range(n))
    entry_pds = tuple(EntryPd(3, 100 + i, EntryKind.NORMAL, PAYLOAD) for i in range(n))
    message_fields: dict[str, Any] = {"src": 1, "dst": 2, "term": 3, "prev_index": 99, "prev_term": 3, "commit": 99}
    message_dict = {**message_fields, "entries": [{**entry_dict, "index": 100 + i} for i in range(n)]}
    message_json = json.dumps(
        {
            **message_fields,
            "entries": [{**json.loads(entry_json), "index": 100 + i} for i in range(n)],
        }
    ).encode()
    namespace: dict[str, Any] = {
        "Entry": Entry,
        "EntryMutable": EntryMutable,
        "EntryModel": EntryModel,
        "EntryPd": EntryPd,
        "AppendEntries": AppendEntries,
        "AppendEntriesModel": AppendEntriesModel,
        "AppendEntriesPd": AppendEntriesPd,
        "NORMAL": EntryKind.NORMAL,
        "payload": PAYLOAD,
        "entry_adapter": entry_adapter,
        "append_adapter": append_adapter,
        "entry_dict": entry_dict,
        "entry_json": entry_json,
        "entries": entries,
        "entry_models": entry_models,
        "entry_pds": entry_pds,
        "message_dict": message_dict,
        "message_json": message_json,
        "rng": range(100, 100 + n),
    }
    expected_entry = Entry(3, 42, EntryKind.NORMAL, PAYLOAD)
    expected_message = AppendEntries(src=1, dst=2, term=3, prev_index=99, prev_term=3, entries=entries, commit=99)

    def is_entry(value: object) -> bool:
        return value == expected_entry

    def is_message(value: object) -> bool:
        return value == expected_message

    def has_64(value: Any) -> bool:
        return bool(len(value.entries) == n and bytes(value.entries[-1].data) == PAYLOAD)

    msg = "src=1, dst=2, term=3, prev_index=99, prev_term=3, commit=99"
    group_e = "Entry (100-byte payload)"
    group_m = f"AppendEntries with {n} entries"
    cases = [
        Case(group_e, "(a) dataclass Entry(...)  [hot path]", "Entry(3, 42, NORMAL, payload)", is_entry),
        Case(group_e, "    slotted dataclass, not frozen (reference)", "EntryMutable(3, 42, NORMAL, payload)"),
        Case(group_e, "(b) pydantic BaseModel, frozen", "EntryModel(term=3, index=42, kind=NORMAL, data=payload)"),
        Case(
            group_e,
            "    BaseModel.model_construct (no validation)",
            "EntryModel.model_construct(term=3, index=42, kind=NORMAL, data=payload)",
        ),
        Case(group_e, "(c) pydantic dataclass, frozen", "EntryPd(3, 42, NORMAL, payload)"),
        Case(
            group_e,
            "    TypeAdapter(Entry).validate_python(dict)",
            "entry_adapter.validate_python(entry_dict)",
            is_entry,
        ),
        Case(
            group_e, "    TypeAdapter(Entry).validate_json(bytes)", "entry_adapter.validate_json(entry_json)", is_entry
        ),
        Case(group_e, "    BaseModel.model_validate_json(bytes)", "EntryModel.model_validate_json(entry_json)"),
        Case(
            group_m,
            "(a) dataclass: 64 Entry + message  [hot path]",
            f"AppendEntries({msg}, entries=tuple([Entry(3, i, NORMAL, payload) for i in rng]))",
            has_64,
        ),
        Case(group_m, "(a) dataclass: message only", f"AppendEntries({msg}, entries=entries)", is_message),
        Case(
            group_m,
            "(b) BaseModel: 64 EntryModel + message",
            f"AppendEntriesModel({msg}, entries=tuple([EntryModel(term=3, index=i, kind=NORMAL, data=payload)"
            " for i in rng]))",
            has_64,
        ),
        Case(group_m, "(b) BaseModel: message only", f"AppendEntriesModel({msg}, entries=entry_models)", has_64),
        Case(
            group_m,
            "(c) pydantic dataclass: 64 EntryPd + message",
            f"AppendEntriesPd({msg}, entries=tuple([EntryPd(3, i, NORMAL, payload) for i in rng]))",
            has_64,
        ),
        Case(group_m, "(c) pydantic dataclass: message only", f"AppendEntriesPd({msg}, entries=entry_pds)", has_64),
        Case(
            group_m,
            "    TypeAdapter(AppendEntries).validate_python(dict)",
            "append_adapter.validate_python(message_dict)",
            is_message,
        ),
        Case(
            group_m,
            "    TypeAdapter(AppendEntries).validate_json(bytes)",
            "append_adapter.validate_json(message_json)",
            is_message,
        ),
        Case(
            group_m,
            "    BaseModel.model_validate_json(bytes)",
            "AppendEntriesModel.model_validate_json(message_json)",
            has_64,
        ),
    ]
    return cases, namespace, adapter_source


def calibrate(case: Case, namespace: dict[str, Any], target: float) -> tuple[timeit.Timer, int]:
    """Check ``case`` once, then find how many executions of it take about ``target`` seconds."""
    if case.check is not None:
        value = eval(case.stmt, namespace)  # the statements are this module's own constants
        if not case.check(value):
            raise AssertionError(f"{case.label}: unexpected result {value!r}")
    timer = timeit.Timer(case.stmt, globals=namespace)
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= target / 4:
            break
        number *= 4 if elapsed < target / 40 else 2
    return timer, max(1, int(number * target / elapsed))


def measure_all(cases: Sequence[Case], namespace: dict[str, Any], *, repeats: int, target: float) -> list[list[float]]:
    """µs per operation of every case, ``repeats`` times each.

    The repeats go round-robin over the cases, so a slow spell of a noisy machine hits every case alike
    rather than one of them, which keeps the ratios between cases steadier than the absolute figures.
    """
    loops = [calibrate(case, namespace, target) for case in cases]
    runs: list[list[float]] = [[] for _ in cases]
    for _ in range(repeats):
        for (timer, number), times in zip(loops, runs, strict=True):
            times.append(timer.timeit(number) * 1e6 / number)
    return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter timing loops (about 3 s in all)")
    parser.add_argument("--repeats", type=int, default=5, help="timeit repeats per operation (default 5)")
    parser.add_argument("--target", type=float, default=None, help="seconds per repeat (default 0.1; quick 0.02)")
    args = parser.parse_args(argv)
    if args.target is None:
        args.target = 0.02 if args.quick else 0.1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Time every case and print a table per group, with each figure relative to the hot-path dataclass."""
    args = parse_args(argv)
    cases, namespace, adapter_source = build_cases()
    print(
        f"raft-core value construction: µs per operation, median [min..max] of {args.repeats} round-robin repeats; "
        f"Python {sys.version.split()[0]}, pydantic {pydantic.VERSION}; adapters: {adapter_source}"
    )
    group = ""
    baselines: dict[bool, float] = {}
    all_runs = measure_all(cases, namespace, repeats=args.repeats, target=args.target)
    for case, runs in zip(cases, all_runs, strict=True):
        if case.group != group:
            group = case.group
            baselines = {}
            print(f"\n{group}")
            print(f"  {'operation':<52} {'µs/op median [min..max]':>30} {'vs (a)':>8}")
        median = statistics.median(runs)
        # "message only" rows compare with the dataclass message only; every other row with (a) in full.
        only = "message only" in case.label
        if case.label.startswith("(a)"):
            baselines[only] = median
        baseline = baselines.get(only, 0.0)
        spread = f"{median:8.3f} [{min(runs):.3f}..{max(runs):.3f}]"
        ratio = f"{median / baseline:6.1f}x" if baseline else ""
        print(f"  {case.label:<52} {spread:>30} {ratio:>8}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
