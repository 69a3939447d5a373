"""The sans-IO rule, enforced: the core imports no I/O, clock, thread or process module, and draws no
randomness except from the ``random.Random`` instance it is given.

The drivers around the core are exempt: ``raft_core.runtime`` (the asyncio node and transports),
``raft_core.testing`` (test support) and the disk-backed modules of ``raft_core.storage``. The core in turn
must not import them. The check reads the source with ``ast``, so it sees imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raft_core

FORBIDDEN_MODULES = frozenset({"socket", "asyncio", "threading", "time", "os", "subprocess", "select", "selectors"})
"""Modules whose use would tie the core to real I/O, a clock or concurrency."""

ALLOWED_RANDOM_NAMES = frozenset({"Random"})
"""The only names of the ``random`` module the core may use: instances, never the shared global generator."""

PACKAGE_ROOT = Path(raft_core.__file__).parent
DRIVER_PACKAGES = (PACKAGE_ROOT / "testing", PACKAGE_ROOT / "runtime")
DRIVER_MODULES = frozenset(
    PACKAGE_ROOT / "storage" / name for name in ("disk.py", "wal.py", "record.py", "snapshot_store.py", "__init__.py")
)
"""Storage that touches files. ``storage/memory.py`` and ``storage/protocol.py`` belong to the core."""


def is_driver(path: Path) -> bool:
    return path in DRIVER_MODULES or any(package in path.parents for package in DRIVER_PACKAGES)


def core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE_ROOT.rglob("*.py") if not is_driver(p))


def driver_imports(source: str) -> list[str]:
    """Imports of the driver side (runtime, testing, disk storage) in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.startswith(("raft_core.runtime", "raft_core.testing")) or name in {
                "raft_core.storage",
                "raft_core.storage.disk",
                "raft_core.storage.wal",
                "raft_core.storage.record",
                "raft_core.storage.snapshot_store",
            }:
                found.append(f"line {node.lineno}: {name}")
    return found


def violations(source: str) -> list[str]:
    """Every use of a forbidden module or of the global ``random`` functions in ``source``, one line each."""
    tree = ast.parse(source)
    random_aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN_MODULES:
                    found.append(f"line {node.lineno}: import {alias.name}")
                if alias.name == "random":
                    random_aliases.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            top = node.module.split(".")[0]
            if top in FORBIDDEN_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import ...")
            if node.module == "random":
                found.extend(
                    f"line {node.lineno}: from random import {alias.name}"
                    for alias in node.names
                    if alias.name not in ALLOWED_RANDOM_NAMES
                )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append(f"line {node.lineno}: __import__(...)")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_aliases
            and node.attr not in ALLOWED_RANDOM_NAMES
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_the_core_has_modules_to_check() -> None:
    names = {p.name for p in core_modules()}
    assert {"raft.py", "node.py", "log.py", "quorum.py"} <= names
    assert not any(is_driver(p) for p in core_modules())
    assert {"memory.py", "protocol.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(PACKAGE_ROOT)))
def test_core_module_does_no_io(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "path",
    [p for p in core_modules() if p.name != "__init__.py" or p.parent != PACKAGE_ROOT],
    ids=lambda p: str(p.relative_to(PACKAGE_ROOT)),
)
def test_core_module_does_not_import_its_drivers(path: Path) -> None:
    assert driver_imports(path.read_text(encoding="utf-8")) == []


def test_driver_import_checker() -> None:
    assert driver_imports("from raft_core.runtime.node import Node") != []
    assert driver_imports("import raft_core.storage.wal") != []
    assert driver_imports("from raft_core.storage import DiskStorage") != []
    assert driver_imports("from raft_core.storage.protocol import LogStorage") == []


# The checker itself must catch what it claims to catch.


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import asyncio",
        "import os.path",
        "import time as clock",
        "from threading import Thread",
        "from os import path",
        "from selectors import DefaultSelector",
        "from select import select",
        "import subprocess",
        "def f():\n    import time\n    return time.monotonic()",
        "import random\nx = random.random()",
        "import random\nrandom.seed(1)",
        "import random\nrandom.shuffle([1])",
        "import random as r\nx = r.randint(0, 3)",
        "from random import choice",
        "from random import Random, randrange",
        "__import__('socket')",
    ],
)
def test_checker_flags(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import random\nrng = random.Random(1)\nx = rng.random()",
        "import random\ndef f(rng: random.Random) -> int:\n    return rng.randrange(3)",
        "from random import Random",
        "import logging\nimport enum\nfrom collections import deque",
        "from raft_core.time_units import ticks",  # a module merely named like a forbidden one, but not it
        "import timeit_free_name",
        "from . import os",  # relative import of a sibling module
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source) == []
