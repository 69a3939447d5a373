"""The ``chat-server`` command line: ``serve`` one node, run a local ``cluster``, or show a node's ``status``.

``serve`` has a flag for every setting but the secret values (see ``chat_server.settings``; only the flags
given override the environment and the config file). Invalid settings are printed without a traceback and
exit with code 2. Logging is configured here, once, and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import chat_server
from chat_server.cluster import DEFAULT_BASE_CLIENT_PORT, DEFAULT_BASE_PEER_PORT, ClusterError, LocalCluster
from chat_server.logs import configure_logging
from chat_server.settings import CONFIG_ENV, SECRET_FIELDS, Settings, SettingsError, env_name, flag_name, load_settings

log = logging.getLogger(__name__)

PROG = "chat-server"
EXIT_USAGE = 2
"""Exit code of bad flags or settings (argparse's own)."""


# -- the parser -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``chat-server`` parser with its ``serve``, ``cluster`` and ``status`` commands."""
    parser = argparse.ArgumentParser(prog=PROG, description="A fault-tolerant chat service replicated with Raft.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {chat_server.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(sub)
    _add_cluster(sub)
    _add_status(sub)
    return parser


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="run one node of a cluster",
        description="Run one node. Settings come from these flags, then CHAT_* environment variables, then the "
        "--config file, then defaults. Secrets: CHAT_CLUSTER_SECRET / CHAT_ADMIN_TOKEN or the *-file flags.",
    )
    serve.add_argument(
        "--config", type=Path, metavar="PATH", help=f"TOML file of settings (default: the file named by ${CONFIG_ENV})"
    )
    for name, field in Settings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        help_text = (field.description or "").replace("%", "%%")
        if not field.is_required() and field.default is not None:
            help_text += f" Default: {field.default}."
        help_text += f" Env: {env_name(name)}."
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if name == "nodes":
            kwargs.update(action="append", metavar="ID=PEERHOST:PORT,CLIENTHOST:PORT")
        elif field.annotation is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:
            kwargs.update(metavar=name.upper())  # pydantic converts and validates the text
        serve.add_argument(flag_name(name), **kwargs)


def _add_cluster(sub: Any) -> None:
    cluster = sub.add_parser(
        "cluster",
        help="run a local N-node cluster in the foreground",
        description="Start N nodes on this machine, print their client endpoints and the admin token file, wait "
        "for a leader, and supervise until Ctrl-C or SIGTERM, which stop every node.",
    )
    cluster.add_argument("--nodes", type=int, default=5, help="how many nodes (default 5)")
    cluster.add_argument("--dir", type=Path, default=Path("chat-cluster"), help="cluster directory (./chat-cluster)")
    cluster.add_argument("--host", default="127.0.0.1", help="address to bind and advertise (default 127.0.0.1)")
    cluster.add_argument(
        "--base-client-port",
        type=int,
        default=DEFAULT_BASE_CLIENT_PORT,
        help=f"node N serves clients on BASE+N-1 (default {DEFAULT_BASE_CLIENT_PORT}; 0: free ports)",
    )
    cluster.add_argument(
        "--base-peer-port",
        type=int,
        default=DEFAULT_BASE_PEER_PORT,
        help=f"node N serves peers on BASE+N-1 (default {DEFAULT_BASE_PEER_PORT}; 0: free ports)",
    )
    cluster.add_argument(
        "--base-metrics-port", type=int, help="node N serves /metrics on BASE+N-1 (0: free ports; default: off)"
    )
    cluster.add_argument("--admin-token-file", type=Path, help="admin token file (made if missing; DIR/admin-token)")
    cluster.add_argument(
        "--unsafe-skip-fsync", action="store_true", help="never fsync (fast, but a crash may lose acknowledged data)"
    )
    cluster.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a leader (default 60)")


def _add_status(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="show a node's or the cluster's Raft status", description="Ask a node's MonitoringService."
    )
    status.add_argument("--server", required=True, metavar="HOST:PORT", help="a node's client address")
    status.add_argument("--cluster", action="store_true", help="every node's status, as seen from that node")
    status.add_argument("--tls-ca", type=Path, metavar="PEM", help="CA certificate, when the node serves TLS")
    status.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer (default 3)")
    status.add_argument("--json", action="store_true", help="print the reply as JSON")


def serve_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as ``serve`` flags (None for those not given), by setting name."""
    return {name: getattr(args, name) for name in Settings.model_fields if name not in SECRET_FIELDS}


# -- serve ----------------------------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    """Load the settings, configure logging and run the node until it stops; returns the exit code."""
    try:
        settings = load_settings(serve_flags(args), args.config)
    except SettingsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format, settings.node_id)
    if settings.unsafe_skip_fsync:
        log.warning(
            "UNSAFE: unsafe_skip_fsync is on: nothing is fsynced, so a crash or power loss may lose acknowledged "
            "messages and Raft votes. Never use this outside tests.",
            extra={"unsafe_skip_fsync": True},
        )
    try:
        # Imported here: the server assembly is the heaviest import, and the other commands do without it.
        server = importlib.import_module("chat_server.server")
        code = asyncio.run(server.serve(settings))
    except KeyboardInterrupt:
        return 0
    except Exception:
        log.critical("node %d stopped on an unexpected error", settings.node_id, exc_info=True)
        return 1
    return code if isinstance(code, int) else 0


# -- cluster --------------------------------------------------------------------------------------------------


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals(handler: Any, *signums: signal.Signals) -> Iterator[None]:
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def run_cluster(args: argparse.Namespace) -> int:
    """Start a local cluster, report it, wait for a leader and supervise until a signal; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format=f"{PROG} cluster: %(message)s", stream=sys.stderr)
    if args.nodes < 1:
        print(f"{PROG} cluster: --nodes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        cluster = LocalCluster(
            args.dir,
            nodes=args.nodes,
            host=args.host,
            base_client_port=args.base_client_port,
            base_peer_port=args.base_peer_port,
            unsafe_skip_fsync=args.unsafe_skip_fsync,
            admin_token_file=args.admin_token_file,
            base_metrics_port=args.base_metrics_port,
        )
    except (ValueError, OSError) as exc:
        print(f"{PROG} cluster: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = 0
    with _signals(_raise_terminated, signal.SIGTERM, signal.SIGHUP):
        try:
            cluster.start()
            print(f"{args.nodes}-node chat cluster under {cluster.directory}", flush=True)
            for line in cluster.describe():
                print(f"  {line}")
            print(f"client endpoints: {','.join(cluster.client_endpoints())}")
            print(f"admin token file: {cluster.admin_token_file}", flush=True)
            cluster.wait_ready(args.timeout)
            print(f"cluster ready: {_leader_text(cluster)}; Ctrl-C stops it", flush=True)
            code = _supervise(cluster)
        except (KeyboardInterrupt, _Terminated):
            pass
        except (ClusterError, OSError) as exc:
            print(f"{PROG} cluster: {exc}", file=sys.stderr)
            code = 1
        finally:
            with _signals(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                running = cluster.running()
                if running:
                    print(f"stopping nodes {', '.join(map(str, running))}...", flush=True)
                codes = cluster.stop()
                if running:
                    print("stopped: " + ", ".join(f"node {n} exit {codes[n]}" for n in running), flush=True)
    return code


def _leader_text(cluster: LocalCluster) -> str:
    try:
        return f"node {cluster.leader_id(timeout=5.0)} leads"
    except ClusterError:
        return "every node knows a leader"


def _supervise(cluster: LocalCluster, interval: float = 0.5) -> int:
    """Report nodes that exit; return 1 once none is left (a signal ends it otherwise)."""
    alive = set(cluster.running())
    while True:
        time.sleep(interval)
        for n in sorted(alive - set(cluster.running())):
            alive.discard(n)
            print(
                f"node {n} exited with code {cluster.exit_code(n)}; its log: {cluster.log_path(n)}",
                file=sys.stderr,
                flush=True,
            )
        if not alive:
            print(f"{PROG} cluster: every node has exited", file=sys.stderr)
            return 1


# -- status ---------------------------------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    """Print a node's (or, with ``--cluster``, every node's) status; returns 1 if the node does not answer."""
    import grpc
    from google.protobuf import json_format

    from chat_server._gen.pb.chat.v1 import monitoring_pb2, monitoring_pb2_grpc

    if args.tls_ca is not None:
        try:
            credentials = grpc.ssl_channel_credentials(root_certificates=args.tls_ca.read_bytes())
        except OSError as exc:
            print(f"{PROG} status: --tls-ca: {exc}", file=sys.stderr)
            return EXIT_USAGE
        channel = grpc.secure_channel(args.server, credentials)
    else:
        channel = grpc.insecure_channel(args.server)
    with channel:
        stub = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        try:
            if args.cluster:
                per_node_ms = max(1, int(args.timeout * 1000 * 2 / 3))
                reply: Any = stub.GetClusterStatus(
                    monitoring_pb2.GetClusterStatusRequest(timeout_ms=per_node_ms), timeout=args.timeout
                )
            else:
                reply = stub.GetNodeStatus(monitoring_pb2.GetNodeStatusRequest(), timeout=args.timeout)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "ERROR"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            print(f"{PROG} status: {args.server}: {code}: {details}", file=sys.stderr)
            return 1
    if args.json:
        print(json_format.MessageToJson(reply, always_print_fields_with_no_presence=True))
    elif args.cluster:
        print(format_cluster_status(reply))
    else:
        print(format_node_status(reply))
    return 0


def _since(ms: int, now: float | None) -> str:
    if ms <= 0:
        return "never"
    when = datetime.fromtimestamp(ms / 1000, UTC)
    ago = (time.time() if now is None else now) - ms / 1000
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({_duration(ago)} ago)"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]


def format_node_status(status: Any, now: float | None = None) -> str:
    """A ``chat.v1.NodeStatus`` as text for people.

    Args:
        status: The reply of ``GetNodeStatus``.
        now: The current time (seconds since the epoch) for "ago" figures; default the clock.

    Returns:
        A few lines: role and term, leader, log indexes, subscriptions, last election, and the leader's peers.
    """
    leader = f"node {status.leader_id}" if status.leader_id else "none known"
    if status.leader_id and status.leader_address:
        leader += f" at {status.leader_address}"
    where = f" ({status.client_address})" if status.client_address else ""
    lines = [
        f"node {status.node_id}{where}: {status.role or 'unknown role'}, term {status.term}",
        f"  leader:        {leader}",
        f"  log:           commit {status.commit_index}, applied {status.applied_index}, last {status.last_index}",
        f"  subscriptions: {status.connected_clients}",
        f"  last election: {_since(status.last_election_ms, now)}",
    ]
    if status.peers:
        rows = [
            (p.id, p.match_index, p.lag, p.state or "-", "yes" if p.recent_active else "no")
            for p in sorted(status.peers, key=lambda p: p.id)
        ]
        lines.append("  peers:")
        lines += [f"    {line}" for line in _table(("node", "match", "lag", "state", "active"), rows)]
    return "\n".join(lines)


def format_cluster_status(status: Any) -> str:
    """A ``chat.v1.ClusterStatus`` as a table for people.

    Args:
        status: The reply of ``GetClusterStatus``.

    Returns:
        A summary line (leader, nodes up) and one row per node; unreachable nodes show the error.
    """
    leader = f"leader node {status.leader_id}" if status.leader_id else "no leader"
    lines = [f"cluster: {leader}, {status.nodes_up} of {len(status.nodes)} nodes up"]
    rows: list[Sequence[object]] = []
    for n in sorted(status.nodes, key=lambda n: n.node_id):
        if n.reachable:
            rows.append(
                (
                    n.node_id,
                    n.role,
                    n.term,
                    n.leader_id or "-",
                    n.commit_index,
                    n.applied_index,
                    n.last_index,
                    n.connected_clients,
                    n.client_address,
                )
            )
        else:
            rows.append((n.node_id, "unreachable", "", "", "", "", "", "", f"{n.client_address}  {n.error}".strip()))
    header = ("node", "role", "term", "leader", "commit", "applied", "last", "clients", "address")
    lines += _table(header, rows)
    return "\n".join(lines)


# -- entry point ----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chat-server`` with ``argv`` (default: the process's arguments); returns the exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.command == "serve":
        return run_serve(args)
    if args.command == "cluster":
        return run_cluster(args)
    return run_status(args)
