"""Nox sessions for the monorepo.

`python3 -m nox` runs the default sessions (lint, typecheck, unit, integration). List all with `nox -l`.
Extra arguments after `--` are passed through, e.g. `nox -s sim -- --seed 42`.
"""

from __future__ import annotations

import filecmp
import re
import tempfile
from pathlib import Path

import nox

nox.needs_version = ">=2024.10"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "unit", "integration"]
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3"]
QT_TEST_DEPS = ["pytest-qt>=4.4"]  # only where PyQt6 is installed: the plugin needs a Qt binding
# betterproto2-compiler formats its output with ruff, so ruff is pinned with it for reproducible output.
PROTO_TOOLS = ["grpcio-tools==1.85.1", "mypy-protobuf==5.1.0", "betterproto2-compiler==0.10.1", RUFF]

# Generated protobuf code: (proto package under proto/, its _gen directory, that directory's import path).
# Adding a package's generated code is one line here.
PROTO_TARGETS: list[tuple[str, str, str]] = [
    ("raft", "packages/raft-grpc/src/raft_grpc/_gen", "raft_grpc._gen"),
    ("kv", "packages/raft-grpc/src/raft_grpc/kv/_gen", "raft_grpc.kv._gen"),
    ("chat", "packages/chat-server/src/chat_server/_gen/pb", "chat_server._gen.pb"),
    ("chat", "packages/chat-client-qt/src/chat_client_qt/_gen/pb", "chat_client_qt._gen.pb"),
]
# betterproto2 messages (pydantic dataclasses) for the chat API edge: (proto package, output directory).
# The output is a package with relative imports; its directory must sit inside an importable package.
BETTERPROTO_TARGETS: list[tuple[str, str]] = [
    ("chat", "packages/chat-server/src/chat_server/_gen/api"),
    ("chat", "packages/chat-client-qt/src/chat_client_qt/_gen/api"),
]
BETTERPROTO_OPTIONS = "client_generation=sync,server_generation=none,pydantic_dataclasses"
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
    session.install(RUFF, *PROTO_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    with tempfile.TemporaryDirectory() as tmp:
        for package, gen_dir, module in PROTO_TARGETS:
            fresh = Path(tmp) / package
            _generate_proto(session, package, fresh, module)
            stale = _tree_differences(fresh, ROOT / gen_dir)
            if stale:
                session.error(f"{gen_dir} is stale ({', '.join(stale[:5])}): run `nox -s proto` and commit")
        for i, (package, gen_dir) in enumerate(BETTERPROTO_TARGETS):
            fresh = Path(tmp) / f"bp-{i}"
            _generate_betterproto(session, package, fresh)
            stale = _tree_differences(fresh, ROOT / gen_dir)
            if stale:
                session.error(f"{gen_dir} is stale ({', '.join(stale[:5])}): run `nox -s proto` and commit")


@nox.session
def proto(session: nox.Session) -> None:
    """Regenerate every package's protobuf code (``_gen`` directories) from ``proto/`` with pinned tools."""
    session.install(*PROTO_TOOLS)
    for package, gen_dir, module in PROTO_TARGETS:
        _generate_proto(session, package, ROOT / gen_dir, module)
    for package, gen_dir in BETTERPROTO_TARGETS:
        _generate_betterproto(session, package, ROOT / gen_dir)


def _fresh_directory(out: Path) -> None:
    """Empty ``out`` (creating it if needed)."""
    if out.exists():
        for old in sorted(out.rglob("*"), reverse=True):
            old.rmdir() if old.is_dir() else old.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _generate_betterproto(session: nox.Session, package: str, out: Path) -> None:
    """Compile ``proto/<package>/**.proto`` into betterproto2 pydantic dataclasses in ``out`` (replaced)."""
    sources = sorted(str(f) for f in (ROOT / "proto" / package).rglob("*.proto"))
    _fresh_directory(out)
    args = [f"--python_betterproto2_out={out}", f"--python_betterproto2_opt={BETTERPROTO_OPTIONS}"]
    session.run("python", "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", *args, *sources, silent=True)


def _generate_proto(session: nox.Session, package: str, out: Path, module: str) -> None:
    """Compile ``proto/<package>/**.proto`` into ``out`` (replaced) with imports rooted at ``module``."""
    sources = sorted(str(f) for f in (ROOT / "proto" / package).rglob("*.proto"))
    _fresh_directory(out)
    outs = [f"--{kind}_out={out}" for kind in ("python", "grpc_python", "mypy", "mypy_grpc")]
    session.run("python", "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", *outs, *sources, silent=True)
    # protoc writes absolute imports of the proto package ("from raft.v1 import raft_pb2"): root them at module.
    absolute = re.compile(rf"(?<![\w./])({package}(?:\.\w+)*)(?=(?:\.\w+_pb2(?:_grpc)?\b| import \w+_pb2))")
    for path in [out, *(d for d in out.rglob("*") if d.is_dir())]:
        (path / "__init__.py").touch()
    for path in [*out.rglob("*.py"), *out.rglob("*.pyi")]:
        path.write_text(absolute.sub(rf"{module}.\1", path.read_text()))


def _tree_differences(fresh: Path, committed: Path) -> list[str]:
    """Relative paths that differ between two directory trees (missing, extra or changed files)."""
    names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    names |= {p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return sorted(
        str(n)
        for n in names
        if not ((fresh / n).is_file() and (committed / n).is_file() and filecmp.cmp(fresh / n, committed / n, False))
    )


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy: --strict on raft-core (src and tests), default config on the rest."""
    session.install(MYPY, "pydantic>=2.7,<3", "types-protobuf>=7.35,<8", "grpc-stubs>=1.53", *TEST_DEPS)
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
    if package == "chat-client-qt":  # its app tests run against a real local cluster (chat_server.cluster)
        session.install(*QT_TEST_DEPS)
        install_editable(session, "chat-server")
    session.run(
        "pytest",
        f"--timeout={PER_TEST_TIMEOUT_S}",
        f"packages/{package}/tests",
        *session.posargs,
    )


@nox.session
def integration(session: nox.Session) -> None:
    """Run the multi-process cluster tests in tests/integration (``-- --long`` adds the long variants)."""
    session.install(*TEST_DEPS)
    install_editable(session, "raft-core", "raft-grpc", "chat-server", "chat-client-qt")
    session.run("pytest", f"--timeout={PER_TEST_TIMEOUT_S}", "tests/integration", *session.posargs)


@nox.session
def sim(session: nox.Session) -> None:
    """Run the deterministic cluster simulation over many seeds."""
    install_editable(session, "raft-core")
    args = session.posargs or ["--seeds", "2000", "--jobs", "2"]
    session.run("python", "-m", "raft_core.testing.sim", *args)


@nox.session(name="runtime-sim")
def runtime_sim(session: nox.Session) -> None:
    """Run the seeded simulation of real runtime nodes on a virtual clock (``-- --seeds N``, ``--seed S``)."""
    install_editable(session, "raft-core")
    args = session.posargs or ["--seeds", "300"]
    session.run("python", "-m", "raft_core.testing.runtime_sim", *args)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks: raft-core's core, storage and runtime, then raft-grpc's real clusters (fsync on)."""
    install_editable(session, "raft-core")
    session.run("python", "packages/raft-core/benchmarks/bench_core.py", *session.posargs)
    session.run("python", "packages/raft-core/benchmarks/bench_storage.py", *session.posargs)
    session.run("python", "packages/raft-core/benchmarks/bench_runtime.py", *session.posargs)
    install_editable(session, "raft-grpc")
    session.run("python", "packages/raft-grpc/benchmarks/bench_kv.py", *session.posargs)
    install_editable(session, "chat-server", "chat-client-qt")
    session.run("python", "packages/chat-server/benchmarks/bench_chat.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run a local 5-node chat cluster and a scripted chat on it that survives a leader kill.

    The cluster keeps running for the desktop client until Ctrl-C (``-- --exit`` stops after the script).
    """
    install_editable(session, "chat-server", "chat-client-qt")
    session.run("python", "demo/chat_demo.py", *session.posargs)


@nox.session
def screenshots(session: nox.Session) -> None:
    """Save PNG screenshots of the desktop app into docs/screenshots/ (a local cluster with demo data)."""
    install_editable(session, "chat-server", "chat-client-qt")
    session.run(
        "python",
        "packages/chat-client-qt/tools/screenshots.py",
        *session.posargs,
        env={"QT_QPA_PLATFORM": "offscreen"},
    )


@nox.session(name="sim-demo")
def sim_demo(session: nox.Session) -> None:
    """Run raft-core's simulated 5-node cluster with faults, printed as it happens."""
    install_editable(session, "raft-core")
    session.run("python", "-m", "raft_core.testing.demo", *session.posargs)
