"""``Settings``: everything one ``chat-server`` node needs, from flags, the environment, a TOML file and defaults.

Precedence, highest first: command-line flags, environment variables (prefix ``CHAT_``, e.g. ``CHAT_NODE_ID``;
``CHAT_NODES`` is JSON), the TOML file (``--config PATH`` or ``CHAT_CONFIG``), then the defaults below. Each
layer replaces a setting as a whole (a ``nodes`` list from the flags replaces the file's, it is not merged).
``load_settings`` validates everything at start and raises ``SettingsError`` with one line per bad setting,
each naming the setting and what is wrong with it.

Secrets (``cluster_secret``, ``admin_token``) are ``SecretStr``: never shown by ``repr``, ``str`` or logs.
They come from the environment (``CHAT_CLUSTER_SECRET``, ``CHAT_ADMIN_TOKEN``), the TOML file, or files named
by ``cluster_secret_file`` / ``admin_token_file`` (read once, at validation; surrounding whitespace dropped).
There are deliberately no flags carrying secret values: a command line is visible to every local user.

Relative paths are relative to the working directory of the process, wherever they were given.

A TOML file looks like this::

    node_id = 1
    client_listen = "0.0.0.0:50051"
    peer_listen = "0.0.0.0:7001"
    data_dir = "/var/lib/chat/node-1"
    cluster_secret_file = "/etc/chat/cluster-secret"

    [[nodes]]
    id = 1
    peer = "chat-1.internal:7001"
    client = "chat-1.example.com:50051"

    [[nodes]]
    id = 2
    peer = "chat-2.internal:7001"
    client = "chat-2.example.com:50051"
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic_settings
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

if TYPE_CHECKING:
    from raft_grpc import TlsConfig

ENV_PREFIX = "CHAT_"
CONFIG_ENV = "CHAT_CONFIG"
"""The environment variable naming the TOML file when ``--config`` is not given."""
MIN_SECRET_BYTES = 16
"""Shortest cluster secret (bytes, UTF-8); raft-grpc's peer authentication needs at least this much."""
MIN_ADMIN_TOKEN_CHARS = 16
SECRET_FIELDS = frozenset({"cluster_secret", "admin_token"})
"""Settings whose values are secret: never echoed in errors, and with no command-line flag."""
FLAG_NAMES: Mapping[str, str] = {
    "nodes": "--node",
    "tls_cert_file": "--tls-cert",
    "tls_key_file": "--tls-key",
    "peer_tls_cert_file": "--peer-tls-cert",
    "peer_tls_key_file": "--peer-tls-key",
    "peer_tls_ca_file": "--peer-tls-ca",
}
"""Command-line flags whose names are not simply the setting's name with dashes (see ``flag_name``)."""

_DISABLED = {"", "off", "none", "no", "false", "disabled"}


class SettingsError(ValueError):
    """The settings are invalid; ``problems`` has one line per bad setting (``name: what is wrong``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid settings:\n" + "\n".join(f"  {p}" for p in self.problems))


def flag_name(setting: str) -> str:
    """The ``chat-server serve`` flag of ``setting`` (e.g. ``node_id`` -> ``--node-id``)."""
    return FLAG_NAMES.get(setting, "--" + setting.replace("_", "-"))


def env_name(setting: str) -> str:
    """The environment variable of ``setting`` (e.g. ``node_id`` -> ``CHAT_NODE_ID``)."""
    return ENV_PREFIX + setting.upper()


# -- addresses ------------------------------------------------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into host and port; ``ValueError`` if it is not one.

    Args:
        address: The address text.

    Returns:
        The host (brackets kept for IPv6) and the port, 1 to 65535.

    Raises:
        ValueError: With a message saying what was expected.
    """
    host, sep, port = address.rpartition(":")
    bad = not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535
    if not bad and ":" in host and not (host.startswith("[") and host.endswith("]")):
        bad = True  # an IPv6 host must be bracketed, or the port is ambiguous
    if bad:
        raise ValueError(f"expected HOST:PORT with a port from 1 to 65535, got {address!r}")
    return host, int(port)


def _check_address(value: str) -> str:
    split_address(value)
    return value


Address = Annotated[str, AfterValidator(_check_address)]
"""A validated ``host:port`` string."""


def _check_file(value: Path) -> Path:
    if not value.is_file():
        raise ValueError(f"no such file: {str(value)!r}")
    return value


ExistingFile = Annotated[Path, AfterValidator(_check_file)]


def _disabled_to_none(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in _DISABLED:
        return None
    return value


class NodeEntry(BaseModel):
    """One member of the cluster: its id, the address peers reach it at and the address clients are told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = Field(ge=1, description="The node's id (positive, unique in the cluster).")
    peer: Address = Field(description="HOST:PORT where the other nodes reach this node's Raft endpoint.")
    client: Address = Field(description="HOST:PORT clients are given for this node (leader hints, endpoints).")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            return parse_node_spec(data)
        return data

    def spec(self) -> str:
        """This entry in the ``--node`` form, ``ID=PEERHOST:PORT,CLIENTHOST:PORT``."""
        return f"{self.id}={self.peer},{self.client}"


def parse_node_spec(text: str) -> dict[str, Any]:
    """Parse the ``--node`` form ``ID=PEERHOST:PORT,CLIENTHOST:PORT`` into ``NodeEntry`` fields.

    Args:
        text: The flag's value.

    Returns:
        A mapping with ``id``, ``peer`` and ``client`` (the addresses are validated by ``NodeEntry``).

    Raises:
        ValueError: If the text does not have that shape.
    """
    node, eq, addresses = text.partition("=")
    peer, comma, client = addresses.partition(",")
    if not eq or not comma or not node.strip().isdigit():
        raise ValueError(f"expected ID=PEERHOST:PORT,CLIENTHOST:PORT, got {text!r}")
    return {"id": int(node), "peer": peer.strip(), "client": client.strip()}


# -- the settings ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layers:
    """What ``load_settings`` gives the sources of one validation: the environment and the TOML file."""

    env: Mapping[str, str]
    config_file: Path | None


_LAYERS: contextvars.ContextVar[_Layers | None] = contextvars.ContextVar("chat_settings_layers", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """``EnvSettingsSource`` over a given mapping instead of ``os.environ`` (tests pass their own)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            key if self.case_sensitive else key.lower(): value
            for key, value in self._environ.items()
            if value or not self.env_ignore_empty
        }


class Settings(BaseSettings):
    """The validated, immutable settings of one node. Build it with ``load_settings``.

    Constructing ``Settings(...)`` directly also works (keyword arguments over ``CHAT_*`` variables of
    ``os.environ``, no TOML file); it raises pydantic's ``ValidationError`` rather than ``SettingsError``.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        validate_default=True,
        hide_input_in_errors=True,
    )

    # -- identity and addresses
    node_id: int = Field(ge=1, description="This node's id; one of the ids in nodes.")
    client_listen: Address = Field(description="HOST:PORT to serve the client gRPC API on.")
    peer_listen: Address = Field(description="HOST:PORT to serve Raft peer traffic on.")
    nodes: list[NodeEntry] = Field(
        description="Every member of the cluster, this node included: ID=PEERHOST:PORT,CLIENTHOST:PORT "
        "(repeat the flag; [[nodes]] tables in TOML; a JSON list in CHAT_NODES)."
    )
    data_dir: Path = Field(description="Directory of the Raft log, snapshots and state (created if missing).")

    # -- secrets
    cluster_secret: SecretStr | None = Field(
        default=None, description=f"Shared secret of the cluster's peers (at least {MIN_SECRET_BYTES} bytes)."
    )
    cluster_secret_file: Path | None = Field(default=None, description="File holding the cluster secret.")
    admin_token: SecretStr | None = Field(
        default=None,
        description=f"Token of the admin DataService (at least {MIN_ADMIN_TOKEN_CHARS} characters); "
        "without one the DataService is disabled.",
    )
    admin_token_file: Path | None = Field(default=None, description="File holding the admin token.")

    # -- TLS
    tls_cert_file: ExistingFile | None = Field(default=None, description="PEM certificate chain for client TLS.")
    tls_key_file: ExistingFile | None = Field(default=None, description="PEM private key for client TLS.")
    peer_tls_cert_file: ExistingFile | None = Field(default=None, description="PEM certificate for peer mTLS.")
    peer_tls_key_file: ExistingFile | None = Field(default=None, description="PEM private key for peer mTLS.")
    peer_tls_ca_file: ExistingFile | None = Field(default=None, description="PEM CA certificate for peer mTLS.")

    # -- observability
    metrics_listen: Annotated[Address | None, BeforeValidator(_disabled_to_none)] = Field(
        default=None, description='HOST:PORT to serve Prometheus /metrics on ("off" or unset: disabled).'
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
    log_format: Literal["json", "text"] = Field(default="json", description="json (one object a line) or text.")

    # -- Raft timing and storage
    tick_ms: int = Field(default=20, ge=1, le=10_000, description="Milliseconds per Raft tick.")
    heartbeat_ticks: int = Field(default=3, ge=1, description="Ticks between a leader's heartbeats.")
    election_ticks: int = Field(
        default=15, ge=2, description="Ticks of silence before a follower campaigns (more than heartbeat_ticks)."
    )
    max_inflight_appends: int = Field(
        default=2,
        ge=1,
        le=256,
        description="AppendEntries the leader may have unacknowledged per follower; entries proposed meanwhile "
        "leave together in the next one (fewer, fuller gRPC messages: +25% sends/s on 5 nodes against 256).",
    )
    commit_delay_ms: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="How long applied changes may wait to share one SQLite commit with the next batches (0: commit "
        "every batch; at most 256 commands wait). Reads see them at once; a crash loses only what the Raft log still "
        "holds. A commit writes every page its commands touched: 24 sends a commit cost ~75 us of CPU each, 64 "
        "or more ~52 us.",
    )
    snapshot_entries: int = Field(default=10_000, ge=1, description="Snapshot after this many applied entries.")
    compact_keep_entries: int = Field(default=5_000, ge=0, description="Log entries kept below a snapshot.")
    unsafe_skip_fsync: bool = Field(
        default=False, description="Never fsync (tests only: a crash may lose acknowledged writes)."
    )
    forward_writes: bool = Field(
        default=True,
        description="Followers forward writes to the leader; false: they answer UNAVAILABLE naming the leader.",
    )

    # -- service limits
    token_ttl_s: int = Field(default=7 * 86_400, ge=1, description="Lifetime of a session token, in seconds.")
    rate_limit_per_s: float = Field(default=20.0, gt=0, description="Requests per second allowed per user.")
    rate_limit_burst: int = Field(default=40, ge=1, description="Requests a user may burst above the rate.")
    max_subscribers: int = Field(default=10_000, ge=1, description="Most open Subscribe streams on this node.")
    password_hash_time_cost: int = Field(default=3, ge=1, description="Argon2id time cost (iterations).")
    password_hash_memory_kib: int = Field(default=65_536, ge=8, description="Argon2id memory cost in KiB.")
    shutdown_grace_s: float = Field(default=5.0, ge=0, description="Seconds in-flight calls get on shutdown.")

    _cluster_secret: bytes = PrivateAttr(default=b"")
    _admin_token: str | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init arguments), then the environment, then the TOML file of ``load_settings``, if any."""
        layers = _LAYERS.get()
        if layers is None:
            return init_settings, env_settings
        sources: list[PydanticBaseSettingsSource] = [init_settings, _MappingEnvSource(settings_cls, layers.env)]
        if layers.config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=layers.config_file))
        return tuple(sources)

    # -- single-setting checks

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cluster_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return value

    @field_validator("admin_token")
    @classmethod
    def _token_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_CHARS} characters")
        return value

    @field_validator("data_dir")
    @classmethod
    def _usable_dir(cls, value: Path) -> Path:
        try:
            value.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create {str(value)!r}: {exc.strerror or exc}") from None
        if not os.access(value, os.W_OK | os.X_OK):
            raise ValueError(f"{str(value)!r} is not writable")
        return value

    # -- checks across settings

    @model_validator(mode="after")
    def _check_together(self) -> Settings:
        problems: list[str] = []
        problems += self._check_nodes()
        if self.election_ticks <= self.heartbeat_ticks:
            problems.append(f"election_ticks: must be greater than heartbeat_ticks ({self.heartbeat_ticks})")
        problems += self._check_secrets()
        problems += _together("tls_cert_file", "tls_key_file", values=self._values())
        problems += _together("peer_tls_cert_file", "peer_tls_key_file", "peer_tls_ca_file", values=self._values())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields}

    def _check_nodes(self) -> list[str]:
        if not self.nodes:
            return ["nodes: must list every member of the cluster, this node included"]
        problems: list[str] = []
        ids = [n.id for n in self.nodes]
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
        if duplicates:
            problems.append(f"nodes: node ids must be unique; repeated: {', '.join(map(str, duplicates))}")
        for kind in ("peer", "client"):
            seen: dict[str, int] = {}
            for node in self.nodes:
                address = getattr(node, kind)
                if address in seen and seen[address] != node.id:
                    problems.append(f"nodes: nodes {seen[address]} and {node.id} share the {kind} address {address}")
                seen.setdefault(address, node.id)
        me = next((n for n in self.nodes if n.id == self.node_id), None)
        if me is None:
            members = ", ".join(map(str, sorted(set(ids))))
            problems.append(f"node_id: must be one of the configured nodes ({members}), got {self.node_id}")
            return problems
        for setting, listen, advertised in (
            ("peer_listen", self.peer_listen, me.peer),
            ("client_listen", self.client_listen, me.client),
        ):
            if split_address(listen)[1] != split_address(advertised)[1]:
                kind = setting.split("_")[0]
                problems.append(
                    f"{setting}: port {split_address(listen)[1]} differs from node {me.id}'s {kind} address "
                    f"{advertised} in nodes"
                )
        ports = [("peer_listen", self.peer_listen), ("client_listen", self.client_listen)]
        if self.metrics_listen is not None:
            ports.append(("metrics_listen", self.metrics_listen))
        for i, (name, address) in enumerate(ports):
            for other, other_address in ports[:i]:
                if split_address(address)[1] == split_address(other_address)[1]:
                    problems.append(f"{name}: uses the same port as {other} ({address})")
        return problems

    def _check_secrets(self) -> list[str]:
        problems: list[str] = []
        if (self.cluster_secret is None) == (self.cluster_secret_file is None):
            problems.append(
                "cluster_secret: required, exactly one of cluster_secret (CHAT_CLUSTER_SECRET) and "
                f"cluster_secret_file ({flag_name('cluster_secret_file')}); "
                + ("both are set" if self.cluster_secret is not None else "neither is set")
            )
        elif self.cluster_secret is not None:
            self._cluster_secret = self.cluster_secret.get_secret_value().strip().encode()
        else:
            assert self.cluster_secret_file is not None
            secret, problem = _read_secret_file(self.cluster_secret_file)
            if problem:
                problems.append(f"cluster_secret_file: {problem}")
            elif len(secret) < MIN_SECRET_BYTES:
                problems.append(
                    f"cluster_secret_file: {str(self.cluster_secret_file)!r} holds {len(secret)} bytes; "
                    f"the secret must be at least {MIN_SECRET_BYTES}"
                )
            self._cluster_secret = secret
        if self.admin_token is not None and self.admin_token_file is not None:
            problems.append("admin_token: give admin_token or admin_token_file, not both")
        elif self.admin_token is not None:
            self._admin_token = self.admin_token.get_secret_value().strip()
        elif self.admin_token_file is not None:
            token, problem = _read_secret_file(self.admin_token_file)
            text = token.decode(errors="replace")
            if problem:
                problems.append(f"admin_token_file: {problem}")
            elif len(text) < MIN_ADMIN_TOKEN_CHARS:
                problems.append(
                    f"admin_token_file: {str(self.admin_token_file)!r} holds {len(text)} characters; "
                    f"the token must be at least {MIN_ADMIN_TOKEN_CHARS}"
                )
            self._admin_token = text
        return problems

    # -- helpers

    @property
    def tick_interval(self) -> float:
        """Seconds per Raft tick (``tick_ms`` / 1000), as raft-core's ``NodeOptions.tick_interval`` wants it."""
        return self.tick_ms / 1000

    @property
    def members(self) -> list[int]:
        """Every node id of the cluster, sorted."""
        return sorted(n.id for n in self.nodes)

    @property
    def this_node(self) -> NodeEntry:
        """This node's entry in ``nodes``."""
        return next(n for n in self.nodes if n.id == self.node_id)

    def cluster_secret_bytes(self) -> bytes:
        """The cluster secret (from ``cluster_secret`` or the file, read at validation), whitespace stripped."""
        return self._cluster_secret

    def admin_token_value(self) -> str | None:
        """The admin token, or None when the admin DataService is disabled."""
        return self._admin_token

    def peer_addresses(self) -> dict[int, str]:
        """Where each node (this one included) serves Raft peer traffic: the transport's address map."""
        return {n.id: n.peer for n in self.nodes}

    def client_addresses(self) -> dict[int, str]:
        """The client address of each node (this one included), as told to clients in leader hints."""
        return {n.id: n.client for n in self.nodes}

    def client_tls_key_pair(self) -> tuple[bytes, bytes] | None:
        """The client API's (private key, certificate chain) PEM bytes, or None for plaintext."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return self.tls_key_file.read_bytes(), self.tls_cert_file.read_bytes()

    def peer_tls_config(self) -> TlsConfig | None:
        """raft-grpc's ``TlsConfig`` for peer mTLS, or None when peer TLS is not configured."""
        if self.peer_tls_ca_file is None or self.peer_tls_cert_file is None or self.peer_tls_key_file is None:
            return None
        from raft_grpc import TlsConfig

        return TlsConfig.from_files(self.peer_tls_ca_file, self.peer_tls_cert_file, self.peer_tls_key_file)


def _together(*names: str, values: Mapping[str, Any]) -> list[str]:
    """A problem for each of ``names`` that is missing when some of them are set."""
    given = [n for n in names if values[n] is not None]
    if not given or len(given) == len(names):
        return []
    return [f"{n}: required together with {' and '.join(given)}" for n in names if values[n] is None]


def _read_secret_file(path: Path) -> tuple[bytes, str]:
    try:
        return path.read_bytes().strip(), ""
    except OSError as exc:
        return b"", f"cannot read {str(path)!r}: {exc.strerror or exc}"


# -- loading --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _layers(env: Mapping[str, str], config_file: Path | None) -> Iterator[None]:
    token = _LAYERS.set(_Layers(env, config_file))
    try:
        yield
    finally:
        _LAYERS.reset(token)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Merge flags over the environment over the TOML file over the defaults, and validate.

    Args:
        flags: Settings given on the command line, by setting name; None values (flags not given) are ignored.
        config_file: The TOML file (``--config``); when None, the file named by ``CHAT_CONFIG``, if set.
        env: The environment (default ``os.environ``); only ``CHAT_*`` variables are read.

    Returns:
        The validated settings (``data_dir`` exists and is writable, secret files were read).

    Raises:
        SettingsError: Listing every invalid setting, one line each.
    """
    env = os.environ if env is None else env
    given = {name: value for name, value in (flags or {}).items() if value is not None}
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    if config_file is not None:
        try:
            with config_file.open("rb") as f:
                tomllib.load(f)
        except OSError as exc:
            raise SettingsError([f"config: cannot read {str(config_file)!r}: {exc.strerror or exc}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"config: {str(config_file)!r} is not valid TOML: {exc}"]) from None
    try:
        with _layers(env, config_file):
            return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None
    except pydantic_settings.SettingsError as exc:  # an environment variable that is not valid JSON
        match = re.search(r'field "(\w+)"', str(exc))
        name = match.group(1) if match else "environment"
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        raise SettingsError([f"{name}: {env_name(name)} is not valid JSON{cause}"]) from None


def describe_errors(error: ValidationError) -> list[str]:
    """One readable line per problem of a ``Settings`` validation error, each starting with the setting.

    Args:
        error: Pydantic's error from validating ``Settings``.

    Returns:
        Lines like ``node_id: must be one of the configured nodes (1, 2, 3), got 4``; secret values are never
        included.
    """
    problems: list[str] = []
    for e in error.errors(include_url=False):
        loc = e["loc"]
        msg = str(e["msg"]).removeprefix("Value error, ")
        if not loc:  # the cross-setting checks: their message already has one "setting: problem" per line
            problems.extend(line for line in msg.splitlines() if line)
            continue
        name = str(loc[0])
        where = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        if e["type"] == "missing" and len(loc) == 1:
            problems.append(f"{where}: required ({_how_to_set(name)})")
        elif e["type"] == "extra_forbidden":
            problems.append(f"{where}: not a setting")
        else:
            value = e.get("input")
            shown = (
                f" (got {value!r})"
                if name not in SECRET_FIELDS and isinstance(value, str | int | float) and str(value) not in msg
                else ""
            )
            problems.append(f"{where}: {msg[:1].lower()}{msg[1:]}{shown}")
    return problems


def _how_to_set(name: str) -> str:
    if name in SECRET_FIELDS:
        return f"{env_name(name)} or {name} in the config file"
    return f"{flag_name(name)}, {env_name(name)} or {name} in the config file"
