"""Nox sessions for the monorepo.

`python3 -m nox` runs the default sessions (lint, typecheck, unit). List all with `nox -l`.
Extra arguments after `--` are passed through, e.g. `nox -s sim -- --seed 42`.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2024.10"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "unit"]
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3"]
PER_TEST_TIMEOUT_S = 300

# In-tree packages with their in-tree dependencies, dependencies first.
PACKAGES: dict[str, list[str]] = {
    "raft-core": [],
    "raft-grpc": ["raft-core"],
    "chat-server": ["raft-core", "raft-grpc"],
    "chat-client-qt": [],
}


def install_editable(session: nox.Session, *packages: str) -> None:
    """Install in-tree packages editable, each preceded by its in-tree dependencies."""
    ordered: list[str] = []
    for package in packages:
        for name in [*PACKAGES[package], package]:
            if name not in ordered:
                ordered.append(name)
    args: list[str] = []
    for name in ordered:
        args += ["-e", f"packages/{name}"]
    session.install(*args)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff lint and the ruff format check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy: --strict on raft-core (src and tests), default config on the rest."""
    session.install(MYPY, "pydantic>=2.7,<3", *TEST_DEPS)
    install_editable(session, *PACKAGES)
    session.run("mypy", "--strict", "packages/raft-core/src")
    # Tests: strict, except that test functions need not be annotated.
    if any((ROOT / "packages/raft-core/tests").rglob("*.py")):
        session.run(
            "mypy",
            "--strict",
            "--allow-untyped-defs",
            "--allow-incomplete-defs",
            "packages/raft-core/tests",
        )
    session.run(
        "mypy",
        "packages/raft-grpc/src",
        "packages/chat-server/src",
        "packages/chat-client-qt/src",
    )


@nox.session
@nox.parametrize("package", list(PACKAGES), ids=list(PACKAGES))
def unit(session: nox.Session, package: str) -> None:
    """Run one package's unit tests with pytest."""
    tests = ROOT / "packages" / package / "tests"
    if not tests.is_dir():
        session.skip(f"{package} has no tests yet")
    session.install(*TEST_DEPS)
    install_editable(session, package)
    session.run(
        "pytest",
        f"--timeout={PER_TEST_TIMEOUT_S}",
        f"packages/{package}/tests",
        *session.posargs,
    )


@nox.session
def sim(session: nox.Session) -> None:
    """Run the deterministic cluster simulation over many seeds."""
    install_editable(session, "raft-core")
    args = session.posargs or ["--seeds", "2000", "--jobs", "2"]
    session.run("python", "-m", "raft_core.testing.sim", *args)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the raft-core benchmarks: the protocol core, durable storage and the runtime (fsync on)."""
    install_editable(session, "raft-core")
    session.run("python", "packages/raft-core/benchmarks/bench_core.py", *session.posargs)
    session.run("python", "packages/raft-core/benchmarks/bench_storage.py", *session.posargs)
    session.run("python", "packages/raft-core/benchmarks/bench_runtime.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: a simulated 5-node cluster with faults (until the server exists)."""
    install_editable(session, "raft-core")
    session.run("python", "-m", "raft_core.testing.demo", *session.posargs)
