"""The chat-server command line (serve, cluster, status) and LocalCluster's files, ports and process control.

The node processes of the LocalCluster tests are stand-ins (small Python scripts) and the gRPC answers come from
in-process fakes: the real server is tested end to end elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
import types
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chat_server import cli
from chat_server._gen.pb.chat.v1 import monitoring_pb2 as pb
from chat_server._gen.pb.chat.v1 import monitoring_pb2_grpc as pb_grpc
from chat_server.cluster import ClusterError, LocalCluster, free_ports
from chat_server.settings import SECRET_FIELDS, Settings, flag_name, load_settings

# The markers are printed as concatenations: the log's header line holds the script itself.
SLEEPER = "import time\nprint('stand-in ' + 'node up', flush=True)\ntime.sleep(120)\n"
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ignoring ' + 'SIGTERM', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[list[LocalCluster]]:
    """LocalClusters a test makes; every process they started is killed afterwards."""
    made: list[LocalCluster] = []
    yield made
    for cluster in made:
        cluster.stop(grace=0.0)


def stand_in(cluster: LocalCluster, script: str = SLEEPER) -> LocalCluster:
    """Make ``cluster`` run ``script`` instead of chat_server."""
    cluster.command = lambda node_id: [sys.executable, "-c", script]  # type: ignore[method-assign]
    return cluster


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- in-process fakes of a node's client port ----------------------------------------------------------------------


class FakeMonitoring(pb_grpc.MonitoringServiceServicer):
    def __init__(self, status: pb.NodeStatus, cluster: pb.ClusterStatus | None = None) -> None:
        self.status, self.cluster = status, cluster or pb.ClusterStatus()
        self.cluster_timeouts: list[int] = []

    def GetNodeStatus(self, request, context):  # noqa: N802
        return self.status

    def GetClusterStatus(self, request, context):  # noqa: N802
        self.cluster_timeouts.append(request.timeout_ms)
        return self.cluster


class FakeNode:
    """A gRPC server with the health and monitoring services, on ``address``."""

    def __init__(self, address: str, status: pb.NodeStatus, serving: bool = True) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.health = health.HealthServicer()
        self.monitoring = FakeMonitoring(status)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        pb_grpc.add_MonitoringServiceServicer_to_server(self.monitoring, self.server)
        self.port = self.server.add_insecure_port(address)
        self.address = f"{address.rpartition(':')[0]}:{self.port}"
        self.set_serving(serving)
        self.server.start()

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)

    def stop(self) -> None:
        self.server.stop(None)


@pytest.fixture
def fake_nodes() -> Iterator[list[FakeNode]]:
    made: list[FakeNode] = []
    yield made
    for node in made:
        node.stop()


def node_status(node_id: int = 1, **fields) -> pb.NodeStatus:
    defaults = dict(role="leader", term=4, leader_id=node_id, commit_index=120, applied_index=119, last_index=121)
    return pb.NodeStatus(node_id=node_id, **{**defaults, **fields})


# -- serve ---------------------------------------------------------------------------------------------------------


def test_serve_has_a_flag_for_every_setting_but_secret_values():
    serve = cli.build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    for name in Settings.model_fields:
        if name in SECRET_FIELDS:
            assert flag_name(name) not in flags
        else:
            assert flag_name(name) in flags, name
    assert "--config" in flags and "CHAT_NODE_ID" in serve.format_help()


def test_serve_flags_map_to_settings_and_only_given_flags_are_set():
    args = cli.build_parser().parse_args(
        [
            "serve",
            "--node-id",
            "2",
            "--node",
            "1=a:7001,a:50051",
            "--node",
            "2=b:7001,b:50051",
            "--tls-cert",
            "c.pem",
            "--unsafe-skip-fsync",
            "--config",
            "x.toml",
        ]
    )
    flags = cli.serve_flags(args)
    assert flags["node_id"] == "2" and flags["nodes"] == ["1=a:7001,a:50051", "2=b:7001,b:50051"]
    assert flags["tls_cert_file"] == "c.pem" and flags["unsafe_skip_fsync"] is True
    assert args.config == Path("x.toml")
    assert {k for k, v in flags.items() if v is not None} == {"node_id", "nodes", "tls_cert_file", "unsafe_skip_fsync"}
    assert (
        cli.serve_flags(cli.build_parser().parse_args(["serve", "--no-unsafe-skip-fsync"]))["unsafe_skip_fsync"]
        is False
    )


def serve_argv(tmp_path: Path, *more: str) -> list[str]:
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef")
    return [
        "serve",
        "--node-id",
        "1",
        "--client-listen",
        "127.0.0.1:50051",
        "--peer-listen",
        "127.0.0.1:7001",
        "--node",
        "1=127.0.0.1:7001,127.0.0.1:50051",
        "--data-dir",
        str(tmp_path / "data"),
        "--cluster-secret-file",
        str(secret),
        *more,
    ]


def test_serve_runs_the_server_with_the_loaded_settings(tmp_path, monkeypatch, capsys, restore_root_logger):
    seen: list[Settings] = []

    async def serve(settings: Settings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setitem(sys.modules, "chat_server.server", types.SimpleNamespace(serve=serve))
    monkeypatch.setenv("CHAT_TICK_MS", "25")
    code = cli.main(serve_argv(tmp_path, "--log-format", "json", "--unsafe-skip-fsync", "--election-ticks", "20"))
    assert code == 0
    [settings] = seen
    assert settings.node_id == 1 and settings.tick_ms == 25 and settings.election_ticks == 20
    warning = json.loads(capsys.readouterr().err.splitlines()[0])
    assert warning["level"] == "WARNING" and "UNSAFE" in warning["message"] and warning["node_id"] == 1


def test_serve_exit_code_of_the_server_and_on_a_crash(tmp_path, monkeypatch, capsys, restore_root_logger):
    async def fails(settings: Settings) -> int:
        return 1

    monkeypatch.setitem(sys.modules, "chat_server.server", types.SimpleNamespace(serve=fails))
    assert cli.main(serve_argv(tmp_path, "--log-format", "text")) == 1

    async def crashes(settings: Settings) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setitem(sys.modules, "chat_server.server", types.SimpleNamespace(serve=crashes))
    assert cli.main(serve_argv(tmp_path, "--log-format", "text")) == 1
    assert "node 1 stopped on an unexpected error" in capsys.readouterr().err


def test_serve_with_invalid_settings_prints_them_and_exits_2_without_traceback(tmp_path, capsys):
    code = cli.main(serve_argv(tmp_path, "--node-id", "7", "--tick-ms", "0", "--client-listen", "nowhere"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("chat-server: invalid settings:\n")
    assert "  tick_ms: input should be greater than or equal to 1" in err
    assert "  client_listen: expected HOST:PORT" in err
    assert "Traceback" not in err


def test_python_dash_m_entry_point_reports_bad_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    result = subprocess.run(
        [sys.executable, "-m", "chat_server", *serve_argv(tmp_path, "--node-id", "9")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "node_id: must be one of the configured nodes (1), got 9" in result.stderr
    assert "Traceback" not in result.stderr


# -- status --------------------------------------------------------------------------------------------------------


def test_format_node_status_is_readable():
    status = node_status(
        client_address="127.0.0.1:50051",
        leader_address="127.0.0.1:50051",
        last_election_ms=1_700_000_000_000,
        connected_clients=4,
        peers=[
            pb.PeerProgress(id=3, match_index=100, lag=21, state="probe", recent_active=False),
            pb.PeerProgress(id=2, match_index=121, lag=0, state="replicate", recent_active=True),
        ],
    )
    assert cli.format_node_status(status, now=1_700_000_012.5) == "\n".join(
        [
            "node 1 (127.0.0.1:50051): leader, term 4",
            "  leader:        node 1 at 127.0.0.1:50051",
            "  log:           commit 120, applied 119, last 121",
            "  subscriptions: 4",
            "  last election: 2023-11-14 22:13:20 UTC (12.5 s ago)",
            "  peers:",
            "    node  match  lag  state      active",
            "    2     121    0    replicate  yes",
            "    3     100    21   probe      no",
        ]
    )
    follower = cli.format_node_status(pb.NodeStatus(node_id=2, role="follower", term=1))
    assert "leader:        none known" in follower and "last election: never" in follower


def test_format_cluster_status_lists_every_node():
    status = pb.ClusterStatus(
        leader_id=1,
        nodes_up=2,
        nodes=[
            node_status(2, role="follower", leader_id=1, reachable=True, client_address="h:2", connected_clients=1),
            node_status(1, reachable=True, client_address="h:1"),
            pb.NodeStatus(node_id=3, reachable=False, client_address="h:3", error="DEADLINE_EXCEEDED"),
        ],
    )
    assert cli.format_cluster_status(status) == "\n".join(
        [
            "cluster: leader node 1, 2 of 3 nodes up",
            "node  role         term  leader  commit  applied  last  clients  address",
            "1     leader       4     1       120     119      121   0        h:1",
            "2     follower     4     1       120     119      121   1        h:2",
            "3     unreachable                                                h:3  DEADLINE_EXCEEDED",
        ]
    )


def test_status_command_asks_the_monitoring_service(fake_nodes, capsys):
    node = FakeNode("127.0.0.1:0", node_status(client_address="127.0.0.1:1"))
    fake_nodes.append(node)
    node.monitoring.cluster = pb.ClusterStatus(leader_id=1, nodes_up=1, nodes=[node_status(reachable=True)])
    assert cli.main(["status", "--server", node.address]) == 0
    assert capsys.readouterr().out.startswith("node 1 (127.0.0.1:1): leader, term 4\n")
    assert cli.main(["status", "--server", node.address, "--cluster", "--timeout", "1.5"]) == 0
    assert capsys.readouterr().out.startswith("cluster: leader node 1, 1 of 1 nodes up\n")
    assert node.monitoring.cluster_timeouts == [1000]
    assert cli.main(["status", "--server", node.address, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["commitIndex"] == "120"


def test_status_command_reports_an_unreachable_server():
    [port] = free_ports("127.0.0.1", 1)
    result = subprocess.run(
        [sys.executable, "-m", "chat_server", "status", "--server", f"127.0.0.1:{port}", "--timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"chat-server status: 127.0.0.1:{port}: " in result.stderr and "Traceback" not in result.stderr


# -- LocalCluster: files and ports ---------------------------------------------------------------------------------


def test_cluster_config_files_are_valid_settings_for_each_node(tmp_path, clusters):
    cluster = LocalCluster(
        tmp_path / "c",
        nodes=3,
        base_client_port=0,
        base_peer_port=0,
        base_metrics_port=0,
        unsafe_skip_fsync=True,
        settings={"password_hash_time_cost": 1, "tick_ms": 10},
    )
    clusters.append(cluster)
    cluster.write_files()
    for n in cluster.node_ids:
        config = cluster.config_path(n)
        assert config == tmp_path / "c" / f"node-{n}" / "config.toml"
        s = load_settings({}, config, env={})
        assert s.node_id == n and s.members == [1, 2, 3]
        assert s.client_listen == cluster.client_endpoint(n) and s.peer_listen == cluster.peer_endpoint(n)
        assert s.metrics_listen == cluster.metrics_endpoint(n)
        assert s.data_dir == tmp_path / "c" / f"node-{n}" / "data" and s.data_dir.is_dir()
        assert s.unsafe_skip_fsync is True and s.password_hash_time_cost == 1 and s.tick_ms == 10
        assert s.log_format == "text"
        assert s.cluster_secret_bytes() == cluster.cluster_secret_file.read_text().strip().encode()
        assert s.admin_token_value() == cluster.admin_token()
        assert s.client_addresses() == dict(zip(cluster.node_ids, cluster.client_endpoints(), strict=True))
    raw = tomllib.loads(cluster.config_path(2).read_text())
    assert [node["id"] for node in raw["nodes"]] == [1, 2, 3]


def test_cluster_secret_and_token_files_are_private_and_reused(tmp_path, clusters):
    first = LocalCluster(tmp_path, nodes=1, base_client_port=0, base_peer_port=0)
    first.write_files()
    for path in (first.cluster_secret_file, first.admin_token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret, token = first.cluster_secret_file.read_text(), first.admin_token()
    assert len(secret.strip()) >= 32 and len(token) >= 32
    again = LocalCluster(tmp_path, nodes=1, base_client_port=0, base_peer_port=0)
    again.write_files()
    assert again.cluster_secret_file.read_text() == secret and again.admin_token() == token
    elsewhere = LocalCluster(tmp_path, nodes=1, base_client_port=0, base_peer_port=0, admin_token_file=tmp_path / "t")
    elsewhere.write_files()
    assert elsewhere.admin_token_file == tmp_path / "t" and len(elsewhere.admin_token()) >= 32


def test_cluster_ports_fixed_from_bases_or_free_and_distinct(tmp_path):
    fixed = LocalCluster(tmp_path, nodes=5)
    assert fixed.client_endpoints() == [f"127.0.0.1:{50051 + i}" for i in range(5)]
    assert [fixed.peer_endpoint(n) for n in fixed.node_ids] == [f"127.0.0.1:{7001 + i}" for i in range(5)]
    assert fixed.metrics_endpoint(1) is None
    free = LocalCluster(tmp_path, nodes=5, base_client_port=0, base_peer_port=0, base_metrics_port=0)
    ports = [p for n in free.node_ids for p in (free.ports[n].client, free.ports[n].peer, free.ports[n].metrics)]
    assert len(set(ports)) == 15 and all(p for p in ports)
    with pytest.raises(ValueError, match="overlap"):
        LocalCluster(tmp_path, nodes=5, base_client_port=7000, base_peer_port=7003)
    with pytest.raises(ValueError, match="must fit"):
        LocalCluster(tmp_path, nodes=5, base_client_port=65534)


def test_cluster_command_line_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAT_NODE_ID", "9")
    monkeypatch.setenv("KEEP_ME", "1")
    cluster = LocalCluster(tmp_path, nodes=2, extra_args=["--log-level", "DEBUG"])
    assert cluster.command(2) == [
        sys.executable,
        "-m",
        "chat_server",
        "serve",
        "--config",
        str(tmp_path / "node-2" / "config.toml"),
        "--log-level",
        "DEBUG",
    ]
    assert "CHAT_NODE_ID" not in cluster.env and cluster.env["KEEP_ME"] == "1"
    assert LocalCluster(tmp_path, nodes=2, env={"CHAT_X": "y"}).env["CHAT_X"] == "y"


# -- LocalCluster: processes (stand-ins) and readiness (fakes) ------------------------------------------------------


def test_cluster_starts_kills_stops_and_restarts_nodes_by_pid(tmp_path, clusters):
    cluster = stand_in(LocalCluster(tmp_path, nodes=3, base_client_port=0, base_peer_port=0))
    clusters.append(cluster)
    cluster.start()
    assert cluster.running() == [1, 2, 3]
    wait_for(lambda: "stand-in node up" in cluster.log_tail(1))
    assert cluster.log_tail(1).startswith("==== LocalCluster: start at ")
    pid = cluster.pid(1)
    cluster.kill(1)
    assert cluster.exit_code(1) == -signal.SIGKILL and cluster.pid(1) is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped
    assert cluster.stop_node(2) == -signal.SIGTERM
    assert cluster.running() == [3]
    cluster.start_node(1)
    assert cluster.running() == [1, 3] and cluster.pid(1) != pid
    with pytest.raises(ClusterError, match="already running"):
        cluster.start_node(1)
    assert cluster.log_tail(1).count("==== LocalCluster: start") == 2  # appended across starts
    codes = cluster.stop()
    assert codes == {1: -signal.SIGTERM, 2: -signal.SIGTERM, 3: -signal.SIGTERM} and cluster.running() == []


def test_stop_node_kills_a_node_that_ignores_sigterm_after_the_grace(tmp_path, clusters):
    cluster = stand_in(LocalCluster(tmp_path, nodes=1, base_client_port=0, base_peer_port=0), STUBBORN)
    clusters.append(cluster)
    cluster.start()
    wait_for(lambda: "ignoring SIGTERM" in cluster.log_tail(1))
    started = time.monotonic()
    assert cluster.stop_node(1, grace=0.3) == -signal.SIGKILL
    assert 0.3 <= time.monotonic() - started < 5


def test_context_manager_stops_every_node(tmp_path):
    cluster = stand_in(LocalCluster(tmp_path, nodes=2, base_client_port=0, base_peer_port=0))
    with cluster:
        pids = [cluster.pid(n) for n in cluster.node_ids]
        assert all(pids)
    assert cluster.running() == []


def test_wait_ready_fails_when_a_node_exits_with_its_log(tmp_path, clusters):
    crash = "import sys\nprint('bad settings, ' + 'giving up', flush=True)\nsys.exit(3)\n"
    cluster = stand_in(LocalCluster(tmp_path, nodes=1, base_client_port=0, base_peer_port=0), crash)
    clusters.append(cluster)
    cluster.start()
    with pytest.raises(ClusterError, match=r"node 1 exited \(3\) before serving:(.|\n)*bad settings, giving up"):
        cluster.wait_ready(timeout=20)


def test_wait_ready_and_leader_id_ask_the_nodes(tmp_path, clusters, fake_nodes):
    cluster = stand_in(LocalCluster(tmp_path, nodes=3, base_client_port=0, base_peer_port=0))
    clusters.append(cluster)
    cluster.start()
    with pytest.raises(ClusterError, match=r"nodes \[1, 2, 3\] not serving after 0.3s"):
        cluster.wait_ready(timeout=0.3)  # nothing answers yet
    views = {1: node_status(1, role="follower", leader_id=2), 2: node_status(2, leader_id=2), 3: node_status(3)}
    for n in cluster.node_ids:
        fake_nodes.append(FakeNode(cluster.client_endpoint(n), views[n], serving=n != 3))
    with pytest.raises(ClusterError, match=r"nodes \[3\] not serving"):
        cluster.wait_ready(timeout=0.5)
    fake_nodes[2].set_serving(True)
    cluster.wait_ready(timeout=5)
    assert cluster.health(1) == "SERVING"
    assert cluster.leader_id(timeout=5) == 2  # nodes 1 and 2 agree; node 3 thinks it leads
    fake_nodes[1].monitoring.status = node_status(2, leader_id=0)
    with pytest.raises(ClusterError, match="no leader agreed by 2 nodes"):
        cluster.leader_id(timeout=0.3)


def test_cluster_command_reports_endpoints_and_stops_nodes_on_sigterm(tmp_path, monkeypatch, capsys):
    made: list[LocalCluster] = []

    class StandIn(LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            stand_in(self)
            made.append(self)

        def wait_ready(self, timeout=30.0, nodes=None):
            assert timeout == 12.0

        def leader_id(self, timeout=30.0):
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
            return 2

    monkeypatch.setattr(cli, "LocalCluster", StandIn)
    argv = ["cluster", "--nodes", "3", "--dir", str(tmp_path / "demo"), "--base-client-port", "0"]
    code = cli.main([*argv, "--base-peer-port", "0", "--timeout", "12"])
    out = capsys.readouterr().out
    [cluster] = made
    assert code == 0
    assert f"client endpoints: {','.join(cluster.client_endpoints())}\n" in out
    assert f"admin token file: {tmp_path / 'demo' / 'admin-token'}\n" in out
    assert "cluster ready: node 2 leads; Ctrl-C stops it" in out
    assert "stopped: node 1 exit -15, node 2 exit -15, node 3 exit -15" in out
    assert cluster.running() == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
