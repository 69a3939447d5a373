"""``ServerConfig``: everything one ``raft-kv`` process needs, from flags, a TOML file and the environment.

Precedence: command-line flags, then the ``--config`` TOML file, then defaults. The cluster secret comes from
``--secret-file`` (or ``secret_file`` in the TOML) or the ``RAFT_KV_SECRET`` environment variable; it is
never logged or shown in a ``repr``. Validation happens here, with messages naming the flag at fault.

Timing defaults are chosen for fast failover on a LAN (median under 0.7 s with pre-vote): a 20 ms tick,
heartbeats every 3 ticks (60 ms) and elections after 15 to 30 ticks of silence (300 to 600 ms).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raft_grpc.auth import MIN_SECRET_BYTES

SECRET_ENV = "RAFT_KV_SECRET"
DEFAULT_TICK_INTERVAL = 0.02
DEFAULT_ELECTION_TICKS = 15
DEFAULT_HEARTBEAT_TICKS = 3


class ConfigError(ValueError):
    """The process configuration is invalid (the message names the flag or key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """One node of a key-value cluster. Addresses are ``host:port``."""

    id: int
    listen: str
    """Where this process serves Raft peers, DataService and health (one gRPC server)."""
    peers: dict[int, str]
    """Where this node reaches every other node's Raft endpoint (maybe through a proxy)."""
    client_addresses: dict[int, str]
    """What clients are told in leader hints, per node (default: the peer address)."""
    data_dir: Path
    secret: bytes = field(repr=False)
    tick_interval: float = DEFAULT_TICK_INTERVAL
    election_ticks: int = DEFAULT_ELECTION_TICKS
    heartbeat_ticks: int = DEFAULT_HEARTBEAT_TICKS
    forward: bool = True
    """Followers forward writes to the leader; when False they answer with the leader's address."""
    log_level: str = "INFO"
    snapshot_entries: int | None = None
    """Take a snapshot after this many applied entries (None: raft-core's default, 10,000)."""
    compact_keep_entries: int | None = None
    """Entries kept below a snapshot for slow followers (None: raft-core's default, 1,000)."""

    def __post_init__(self) -> None:
        """Check ids, addresses, the secret and the timing."""
        if self.id <= 0:
            raise ConfigError(f"--id must be a positive integer, got {self.id}")
        for name, address in [("--listen", self.listen), *((f"--peer {i}", a) for i, a in self.peers.items())]:
            _check_address(name, address)
        if any(i <= 0 for i in self.peers):
            raise ConfigError(f"--peer ids must be positive: {sorted(self.peers)}")
        if self.id in self.peers:
            raise ConfigError(f"--peer {self.id} names this node itself; list only the other nodes")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ConfigError(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")
        if not self.tick_interval > 0:
            raise ConfigError("--tick-interval must be positive")
        if not 1 <= self.heartbeat_ticks < self.election_ticks:
            raise ConfigError("need 1 <= --heartbeat-ticks < --election-ticks")

    @property
    def members(self) -> list[int]:
        """Every node id of the cluster, this one included."""
        return sorted({self.id, *self.peers})

    def peer_addresses(self) -> dict[int, str]:
        """The transport's address map: the peers, and this node at its listen address."""
        return {**self.peers, self.id: self.listen}

    def hint_addresses(self) -> dict[int, str]:
        """Client addresses for leader hints: ``client_addresses`` over the peer addresses."""
        return {**self.peers, self.id: self.listen, **self.client_addresses}


def _check_address(name: str, address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{name}: expected HOST:PORT, got {address!r}")


def _id_address(text: str, flag: str) -> tuple[int, str]:
    node, sep, address = text.partition("=")
    if not sep or not node.strip().isdigit():
        raise ConfigError(f"{flag}: expected ID=HOST:PORT, got {text!r}")
    return int(node), address.strip()


def build_parser() -> argparse.ArgumentParser:
    """The ``raft-kv`` command line (``serve`` is its one command)."""
    parser = argparse.ArgumentParser(prog="raft-kv", description="A replicated key-value store on Raft over gRPC.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one node of a cluster")
    serve.add_argument("--config", type=Path, help="TOML file with the same keys (flags override it)")
    serve.add_argument("--id", type=int, help="this node's id (positive)")
    serve.add_argument("--listen", help="HOST:PORT to serve peers, clients and health on")
    serve.add_argument("--peer", action="append", default=[], metavar="ID=HOST:PORT", help="another node")
    serve.add_argument(
        "--client-address", action="append", default=[], metavar="ID=HOST:PORT", help="address told to clients"
    )
    serve.add_argument("--data-dir", type=Path, help="directory for the log and snapshots")
    serve.add_argument("--secret-file", type=Path, help=f"file holding the cluster secret (or set {SECRET_ENV})")
    serve.add_argument("--tick-interval", type=float, help=f"seconds per tick (default {DEFAULT_TICK_INTERVAL})")
    serve.add_argument(
        "--election-ticks", type=int, help=f"election timeout in ticks (default {DEFAULT_ELECTION_TICKS})"
    )
    serve.add_argument(
        "--heartbeat-ticks", type=int, help=f"heartbeat interval in ticks (default {DEFAULT_HEARTBEAT_TICKS})"
    )
    serve.add_argument(
        "--no-forward", action="store_true", default=None, help="answer followers' writes with the leader"
    )
    serve.add_argument("--snapshot-entries", type=int, help="snapshot after this many entries (default 10000)")
    serve.add_argument("--compact-keep-entries", type=int, help="entries kept below a snapshot (default 1000)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return parser


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Merge parsed flags over the TOML file (if any) and read the secret; ``ConfigError`` if incomplete."""
    environ = os.environ if environ is None else environ
    file: dict[str, Any] = {}
    if args.config is not None:
        try:
            file = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--config {args.config}: {exc}") from None
    unknown = set(file) - _TOML_KEYS
    if unknown:
        raise ConfigError(f"--config: unknown keys {sorted(unknown)}; known: {sorted(_TOML_KEYS)}")

    def pick(flag_value: Any, key: str, default: Any = None) -> Any:
        return flag_value if flag_value is not None else file.get(key, default)

    peers = _id_map(file.get("peers", {}), "peers") | dict(_id_address(p, "--peer") for p in args.peer)
    clients = _id_map(file.get("client_addresses", {}), "client_addresses") | dict(
        _id_address(p, "--client-address") for p in args.client_address
    )
    missing = [f for f, v in (("--id", pick(args.id, "id")), ("--listen", pick(args.listen, "listen"))) if v is None]
    data_dir = pick(args.data_dir, "data_dir")
    if data_dir is None:
        missing.append("--data-dir")
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}")
    secret_file = pick(args.secret_file, "secret_file")
    forward = not args.no_forward if args.no_forward is not None else bool(file.get("forward", True))
    return ServerConfig(
        id=int(pick(args.id, "id")),
        listen=str(pick(args.listen, "listen")),
        peers=peers,
        client_addresses=clients,
        data_dir=Path(data_dir),
        secret=_read_secret(secret_file, environ),
        tick_interval=float(pick(args.tick_interval, "tick_interval", DEFAULT_TICK_INTERVAL)),
        election_ticks=int(pick(args.election_ticks, "election_ticks", DEFAULT_ELECTION_TICKS)),
        heartbeat_ticks=int(pick(args.heartbeat_ticks, "heartbeat_ticks", DEFAULT_HEARTBEAT_TICKS)),
        forward=forward,
        log_level=str(pick(args.log_level, "log_level", "INFO")).upper(),
        snapshot_entries=pick(args.snapshot_entries, "snapshot_entries"),
        compact_keep_entries=pick(args.compact_keep_entries, "compact_keep_entries"),
    )


def parse_config(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Parse ``raft-kv serve ...`` arguments (without the program name) into a ``ServerConfig``."""
    return config_from_args(build_parser().parse_args(list(argv)), environ)


_TOML_KEYS = {
    "id",
    "listen",
    "peers",
    "client_addresses",
    "data_dir",
    "secret_file",
    "tick_interval",
    "election_ticks",
    "heartbeat_ticks",
    "forward",
    "log_level",
    "snapshot_entries",
    "compact_keep_entries",
}


def _id_map(table: object, key: str) -> dict[int, str]:
    if not isinstance(table, dict):
        raise ConfigError(f'--config: {key} must be a table of id = "host:port"')
    try:
        return {int(node): str(address) for node, address in table.items()}
    except ValueError:
        raise ConfigError(f"--config: {key} keys must be node ids") from None


def _read_secret(path: object, environ: Mapping[str, str]) -> bytes:
    if path is not None:
        try:
            return Path(str(path)).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"--secret-file: cannot read {path}: {exc.strerror}") from None
    value = environ.get(SECRET_ENV)
    if value:
        return value.strip().encode()
    raise ConfigError(f"no cluster secret: pass --secret-file PATH or set {SECRET_ENV}")
