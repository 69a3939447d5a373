"""``LocalCluster``: an N-node chat cluster as local processes, for ``chat-server cluster``, demos and benchmarks.

Layout under the cluster's directory (reused when it exists, so a cluster can be stopped and started again on
its data)::

    DIR/cluster-secret          the peers' shared secret (mode 0600), made once
    DIR/admin-token             the admin DataService token (mode 0600), made once
    DIR/node-N/config.toml      node N's settings, rewritten on every start
    DIR/node-N/data/            node N's Raft log, snapshots and state
    DIR/node-N/log.txt          node N's standard output and error, appended across starts

Each node runs as ``sys.executable -m chat_server serve --config DIR/node-N/config.toml [extra_args]``, in a
session of its own (a Ctrl-C at the terminal reaches only the launcher, which then stops the nodes). Processes
are only ever signalled by the PID this object started, never by name. ``CHAT_*`` variables of the caller's
environment are not passed to the nodes (they would override every node's config file) unless ``env`` is given.

With base ports of 0, each node's ports are chosen free (bound to port 0 and released) when the object is made,
so tests can run clusters in parallel; they stay the same across restarts of the object's nodes.

The API is synchronous (blocking gRPC calls with short deadlines); from asyncio use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

log = logging.getLogger(__name__)

DEFAULT_BASE_CLIENT_PORT = 50051
DEFAULT_BASE_PEER_PORT = 7001
STOP_GRACE_S = 10.0
"""Seconds a node gets to exit after SIGTERM before it is killed (its own shutdown grace is 5 s by default)."""
PROBE_TIMEOUT_S = 0.5
"""Deadline of one health or status call to a node."""


class ClusterError(RuntimeError):
    """A node did not start, exited, or the cluster did not become ready in time (log tails in the message)."""


@dataclass(frozen=True, slots=True)
class NodePorts:
    """The ports of one node."""

    client: int
    peer: int
    metrics: int | None = None


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports free on ``host`` right now (all probed at once, so none repeats).

    Args:
        host: The address to bind the probes to.
        count: How many ports.

    Returns:
        The ports. Another process may still take one before the caller binds it.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
            sock.bind((host.strip("[]"), 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def toml_value(value: Any) -> str:
    """``value`` (str, Path, bool, int or float) as a TOML value.

    Args:
        value: The value to render.

    Returns:
        Its TOML text (JSON string escapes are valid TOML basic-string escapes).

    Raises:
        TypeError: For other types.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _write_secret_file(path: Path, value: str) -> None:
    """Create ``path`` with mode 0600 holding ``value``, unless it exists (then it is kept as it is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


class LocalCluster:
    """``nodes`` chat-server processes on ``host``, under ``directory``: start, stop, kill and ask them."""

    def __init__(
        self,
        directory: str | Path,
        nodes: int = 5,
        host: str = "127.0.0.1",
        base_client_port: int = DEFAULT_BASE_CLIENT_PORT,
        base_peer_port: int = DEFAULT_BASE_PEER_PORT,
        extra_args: Sequence[str] = (),
        unsafe_skip_fsync: bool = False,
        env: Mapping[str, str] | None = None,
        *,
        admin_token_file: str | Path | None = None,
        base_metrics_port: int | None = None,
        settings: Mapping[str, Any] | None = None,
        log_format: str = "text",
    ) -> None:
        """Plan a cluster (nothing is written or started until ``start``).

        Args:
            directory: Where the cluster's files live (created if missing; reused if present).
            nodes: How many nodes, numbered 1 to ``nodes``.
            host: The address every node binds and advertises.
            base_client_port: Node N serves clients on ``base + N - 1``; 0 chooses free ports.
            base_peer_port: Node N serves peers on ``base + N - 1``; 0 chooses free ports.
            extra_args: Flags appended to every node's ``serve`` command (flags override the config file).
            unsafe_skip_fsync: Write ``unsafe_skip_fsync = true`` (fast tests; a crash may lose data).
            env: The nodes' environment (default: this process's, less its ``CHAT_*`` variables).
            admin_token_file: Where the admin token is (made there if missing); default ``DIR/admin-token``.
            base_metrics_port: Node N serves ``/metrics`` on ``base + N - 1``; 0 chooses free ports; None: off.
            settings: More settings written to every node's config file (e.g. ``{"password_hash_time_cost": 1}``).
            log_format: The nodes' ``log_format`` (``text`` reads best in ``log.txt``).
        """
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.directory = Path(directory).absolute()
        self.host = host
        self.node_ids = list(range(1, nodes + 1))
        self.extra_args = list(extra_args)
        self.unsafe_skip_fsync = unsafe_skip_fsync
        self.settings = dict(settings or {})
        self.log_format = log_format
        self.cluster_secret_file = self.directory / "cluster-secret"
        self.admin_token_file = (
            Path(admin_token_file).absolute() if admin_token_file else self.directory / "admin-token"
        )
        if env is None:
            self.env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CHAT_")}
        else:
            self.env = dict(env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.ports = self._choose_ports(base_client_port, base_peer_port, base_metrics_port)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def _choose_ports(self, client: int, peer: int, metrics: int | None) -> dict[int, NodePorts]:
        n = len(self.node_ids)
        bases = [("client", client), ("peer", peer)] + ([("metrics", metrics)] if metrics is not None else [])
        fixed = [(name, base) for name, base in bases if base]
        for name, base in fixed:
            if not 1 <= base <= 65536 - n:
                raise ValueError(f"base {name} port {base}: the ports of {n} nodes must fit in 1..65535")
        free = free_ports(self.host, n * sum(1 for _, base in bases if not base))
        chosen: dict[str, list[int]] = {}
        for name, base in bases:
            if base:
                chosen[name] = [base + i for i in range(n)]
            else:
                chosen[name], free = free[:n], free[n:]
        every = [p for ports in chosen.values() for p in ports]
        clashes = sorted(p for p, count in Counter(every).items() if count > 1)
        if clashes:
            raise ValueError(f"the client, peer and metrics port ranges overlap at {clashes}")
        return {
            node: NodePorts(
                chosen["client"][i], chosen["peer"][i], chosen["metrics"][i] if "metrics" in chosen else None
            )
            for i, node in enumerate(self.node_ids)
        }

    # -- paths and addresses

    def node_dir(self, node_id: int) -> Path:
        """Node ``node_id``'s directory, ``DIR/node-N``."""
        self._check_id(node_id)
        return self.directory / f"node-{node_id}"

    def config_path(self, node_id: int) -> Path:
        """Node ``node_id``'s config file."""
        return self.node_dir(node_id) / "config.toml"

    def log_path(self, node_id: int) -> Path:
        """Node ``node_id``'s log file (its standard output and error)."""
        return self.node_dir(node_id) / "log.txt"

    def client_endpoint(self, node_id: int) -> str:
        """Where node ``node_id`` serves clients, ``HOST:PORT``."""
        return f"{self.host}:{self.ports[node_id].client}"

    def peer_endpoint(self, node_id: int) -> str:
        """Where node ``node_id`` serves Raft peers, ``HOST:PORT``."""
        return f"{self.host}:{self.ports[node_id].peer}"

    def metrics_endpoint(self, node_id: int) -> str | None:
        """Where node ``node_id`` serves ``/metrics``, or None when metrics are off."""
        port = self.ports[node_id].metrics
        return f"{self.host}:{port}" if port is not None else None

    def client_endpoints(self) -> list[str]:
        """Every node's client endpoint, in node order (``--servers`` for ``chat-client-qt``)."""
        return [self.client_endpoint(n) for n in self.node_ids]

    def admin_token(self) -> str:
        """The admin token (written by ``start`` / ``write_files``)."""
        return self.admin_token_file.read_text().strip()

    def _check_id(self, node_id: int) -> None:
        if node_id not in self.node_ids:
            raise ValueError(f"no node {node_id} in a cluster of nodes {self.node_ids[0]}..{self.node_ids[-1]}")

    # -- files

    def node_config(self, node_id: int) -> str:
        """The TOML text of node ``node_id``'s config file.

        Args:
            node_id: The node.

        Returns:
            Its settings: identity, addresses, every member, data dir, secret files and ``settings``.
        """
        ports = self.ports[node_id]
        values: dict[str, Any] = {
            "node_id": node_id,
            "client_listen": self.client_endpoint(node_id),
            "peer_listen": self.peer_endpoint(node_id),
            "data_dir": self.node_dir(node_id) / "data",
            "cluster_secret_file": self.cluster_secret_file,
            "admin_token_file": self.admin_token_file,
            "log_format": self.log_format,
            "unsafe_skip_fsync": self.unsafe_skip_fsync,
        }
        if ports.metrics is not None:
            values["metrics_listen"] = f"{self.host}:{ports.metrics}"
        values.update(self.settings)
        lines = ["# Written by chat_server.cluster.LocalCluster; rewritten on every start.", ""]
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        for n in self.node_ids:
            lines += ["", "[[nodes]]", f"id = {n}"]
            lines += [f"peer = {toml_value(self.peer_endpoint(n))}", f"client = {toml_value(self.client_endpoint(n))}"]
        return "\n".join(lines) + "\n"

    def write_files(self) -> None:
        """Create the directories, the secret and token files (kept if present) and every node's config file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_secret_file(self.cluster_secret_file, secrets.token_hex(32))
        _write_secret_file(self.admin_token_file, secrets.token_urlsafe(32))
        for n in self.node_ids:
            (self.node_dir(n) / "data").mkdir(parents=True, exist_ok=True)
            self.config_path(n).write_text(self.node_config(n))

    def command(self, node_id: int) -> list[str]:
        """The command line that runs node ``node_id``."""
        return [
            sys.executable,
            "-m",
            "chat_server",
            "serve",
            "--config",
            str(self.config_path(node_id)),
            *self.extra_args,
        ]

    # -- processes

    def pid(self, node_id: int) -> int | None:
        """Node ``node_id``'s process id while it runs, else None."""
        proc = self._procs.get(node_id)
        return proc.pid if proc is not None and proc.poll() is None else None

    def running(self) -> list[int]:
        """The nodes whose process runs."""
        return [n for n in self.node_ids if self.pid(n) is not None]

    def exit_code(self, node_id: int) -> int | None:
        """The exit code of node ``node_id``'s last process, or None if it runs or never ran."""
        proc = self._procs.get(node_id)
        return proc.poll() if proc is not None else None

    def start(self) -> None:
        """Write the files and start every node that is not running (does not wait: see ``wait_ready``)."""
        self.write_files()
        for n in self.node_ids:
            if self.pid(n) is None:
                self._spawn(n)

    def start_node(self, node_id: int) -> None:
        """Start node ``node_id`` (again) on its data; ``ClusterError`` if it runs already."""
        if self.pid(node_id) is not None:
            raise ClusterError(f"node {node_id} is already running (pid {self.pid(node_id)})")
        self.write_files()
        self._spawn(node_id)

    def _spawn(self, node_id: int) -> None:
        argv = self.command(node_id)
        with self.log_path(node_id).open("ab") as out:
            out.write(f"==== LocalCluster: start at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(argv)}\n".encode())
            out.flush()
            self._procs[node_id] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.directory,
                start_new_session=True,
            )
        log.info("started node %d (pid %d)", node_id, self._procs[node_id].pid)

    def kill(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` (a crash) and reap it; nothing if it is not running."""
        proc = self._procs.get(node_id)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_node(self, node_id: int, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM node ``node_id``, SIGKILL it if still running after ``grace`` seconds; returns its exit code.

        Args:
            node_id: The node.
            grace: Seconds to wait for a graceful exit.

        Returns:
            The exit code (negative: killed by that signal), or None if it never ran.
        """
        self._stop([node_id], grace)
        return self.exit_code(node_id)

    def stop(self, grace: float = STOP_GRACE_S) -> dict[int, int | None]:
        """Stop every running node at once (SIGTERM, then SIGKILL after ``grace``); returns the exit codes."""
        self._stop(self.node_ids, grace)
        return {n: self.exit_code(n) for n in self.node_ids}

    def _stop(self, node_ids: Iterable[int], grace: float) -> None:
        procs = [p for n in node_ids if (p := self._procs.get(n)) is not None and p.poll() is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d still running %.1fs after SIGTERM: killing it", proc.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, node_id: int, lines: int = 40) -> str:
        """The last ``lines`` lines of node ``node_id``'s log."""
        try:
            text = self.log_path(node_id).read_text(errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    # -- asking the nodes

    def _channel(self, node_id: int) -> grpc.Channel:
        return grpc.insecure_channel(self.client_endpoint(node_id))

    def health(self, node_id: int, service: str = "", timeout: float = PROBE_TIMEOUT_S) -> str:
        """Node ``node_id``'s ``grpc.health.v1`` status name (``SERVING``, ``NOT_SERVING``...) or ``UNREACHABLE``."""
        health_pb2 = importlib.import_module("grpc_health.v1.health_pb2")
        health_grpc = importlib.import_module("grpc_health.v1.health_pb2_grpc")
        with self._channel(node_id) as channel:
            try:
                reply = health_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
            except grpc.RpcError:
                return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def node_status(self, node_id: int, timeout: float = PROBE_TIMEOUT_S) -> Any | None:
        """Node ``node_id``'s ``chat.v1.NodeStatus`` from its MonitoringService, or None if it does not answer."""
        from chat_server._gen.pb.chat.v1 import monitoring_pb2, monitoring_pb2_grpc

        with self._channel(node_id) as channel:
            try:
                return monitoring_pb2_grpc.MonitoringServiceStub(channel).GetNodeStatus(
                    monitoring_pb2.GetNodeStatusRequest(), timeout=timeout
                )
            except grpc.RpcError:
                return None

    def wait_ready(self, timeout: float = 30.0, nodes: Iterable[int] | None = None) -> None:
        """Wait until every running node (or each of ``nodes``) reports SERVING (it knows a leader).

        Args:
            timeout: Seconds to wait in all.
            nodes: The nodes to wait for (default: those running).

        Raises:
            ClusterError: If a node exits, or is not serving in time (with its log tail).
        """
        waiting = set(self.running() if nodes is None else nodes)
        deadline = time.monotonic() + timeout
        while waiting:
            for n in sorted(waiting):
                if self.pid(n) is None:
                    raise ClusterError(f"node {n} exited ({self.exit_code(n)}) before serving:\n{self.log_tail(n)}")
                if self.health(n) == "SERVING":
                    waiting.discard(n)
            if not waiting:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"-- node {n}:\n{self.log_tail(n, 15)}" for n in sorted(waiting))
                raise ClusterError(f"nodes {sorted(waiting)} not serving after {timeout}s:\n{tails}")
            time.sleep(0.05)

    def leader_id(self, timeout: float = 30.0) -> int:
        """The leader a majority of the cluster's nodes agree on, waiting up to ``timeout`` seconds for one.

        Args:
            timeout: Seconds to wait.

        Returns:
            The leader's node id.

        Raises:
            ClusterError: If no majority agrees on a leader in time.
        """
        majority = len(self.node_ids) // 2 + 1
        deadline = time.monotonic() + timeout
        seen: dict[int, tuple[int, int]] = {}
        while True:
            seen = {}
            for n in self.running():
                status = self.node_status(n)
                if status is not None:
                    seen[n] = (int(status.leader_id), int(status.term))
            votes = Counter(view for view in seen.values() if view[0] != 0)
            if votes:
                (leader, _term), count = votes.most_common(1)[0]
                if count >= majority:
                    return leader
            if time.monotonic() > deadline:
                views = ", ".join(f"node {n}: leader {v[0]} term {v[1]}" for n, v in sorted(seen.items())) or "none"
                raise ClusterError(f"no leader agreed by {majority} nodes after {timeout}s (answers: {views})")
            time.sleep(0.05)

    def describe(self) -> Iterator[str]:
        """Lines describing each node (id, pid or exit code, endpoints, log), for people."""
        for n in self.node_ids:
            pid, code = self.pid(n), self.exit_code(n)
            state = f"pid {pid}" if pid is not None else "not started" if code is None else f"exited ({code})"
            where = f"clients {self.client_endpoint(n)}, peers {self.peer_endpoint(n)}"
            yield f"node {n}: {where}, {state}, log {self.log_path(n)}"
