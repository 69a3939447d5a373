"""Settings: precedence flags > environment > TOML file > defaults, validation messages, secrets kept out of sight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from chat_server.settings import (
    NodeEntry,
    Settings,
    SettingsError,
    flag_name,
    load_settings,
    parse_node_spec,
    split_address,
)

SECRET = "s3cr3t-cluster-value-0123456789"
TOKEN = "admin-token-value-abcdefghij"
NODES_TOML = """
[[nodes]]
id = 1
peer = "n1.internal:7001"
client = "n1.example.com:50051"

[[nodes]]
id = 2
peer = "n2.internal:7001"
client = "n2.example.com:50051"

[[nodes]]
id = 3
peer = "n3.internal:7001"
client = "n3.example.com:50051"
"""


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    return tmp_path


def write_config(directory: Path, body: str = "", *, nodes: str = NODES_TOML) -> Path:
    """A complete node-1 config file, with ``body`` lines before the node tables."""
    path = directory / "config.toml"
    path.write_text(
        f'node_id = 1\nclient_listen = "0.0.0.0:50051"\npeer_listen = "0.0.0.0:7001"\n'
        f'data_dir = "{directory / "data"}"\ncluster_secret_file = "{directory / "secret"}"\n{body}\n{nodes}'
    )
    return path


def problems_of(flags: dict | None = None, config: Path | None = None, env: dict | None = None) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(flags or {}, config, env=env or {})
    assert str(info.value).startswith("invalid settings:\n")
    return info.value.problems


# -- precedence -------------------------------------------------------------------------------------------------


def test_flags_override_environment_which_overrides_the_file_which_overrides_defaults(cluster_dir):
    config = write_config(
        cluster_dir, "tick_ms = 30\nlog_level = 'WARNING'\nrate_limit_burst = 50\nlog_format = 'text'"
    )
    env = {"CHAT_TICK_MS": "40", "CHAT_LOG_LEVEL": "error", "CHAT_LOG_FORMAT": "json", "UNRELATED": "x"}
    flags = {"tick_ms": "50", "log_format": "text", "snapshot_entries": None}

    s = load_settings(flags, config, env=env)

    assert s.tick_ms == 50  # flag over env (40) over file (30)
    assert s.log_format == "text"  # flag over env
    assert s.log_level == "ERROR"  # env over file; case-insensitive
    assert s.rate_limit_burst == 50  # file over default
    assert s.snapshot_entries == 10_000  # default (a None flag is "not given")
    assert s.heartbeat_ticks == 3 and s.election_ticks == 15 and s.compact_keep_entries == 5_000
    assert s.token_ttl_s == 7 * 86_400 and s.rate_limit_per_s == 20.0 and s.max_subscribers == 10_000
    assert (s.password_hash_time_cost, s.password_hash_memory_kib) == (3, 65_536)
    assert s.shutdown_grace_s == 5.0 and s.unsafe_skip_fsync is False and s.metrics_listen is None
    assert s.tick_interval == pytest.approx(0.05)


def test_config_file_named_by_chat_config_when_no_flag(cluster_dir):
    config = write_config(cluster_dir, "max_subscribers = 7")
    s = load_settings({}, None, env={"CHAT_CONFIG": str(config)})
    assert s.max_subscribers == 7
    other = cluster_dir / "other.toml"
    other.write_text("this is not read = 1")
    assert load_settings({}, config, env={"CHAT_CONFIG": str(other)}).max_subscribers == 7  # --config wins


def test_nodes_from_toml_tables_env_json_and_flag_specs_replace_each_other(cluster_dir):
    config = write_config(cluster_dir)
    from_file = load_settings({}, config, env={})
    assert from_file.peer_addresses() == {1: "n1.internal:7001", 2: "n2.internal:7001", 3: "n3.internal:7001"}
    assert from_file.client_addresses()[3] == "n3.example.com:50051"
    assert from_file.members == [1, 2, 3] and from_file.this_node.id == 1

    env_nodes = [{"id": 1, "peer": "e1:7001", "client": "e1:50051"}, "2=e2:7001,e2:50051"]
    from_env = load_settings({}, config, env={"CHAT_NODES": json.dumps(env_nodes)})
    assert from_env.peer_addresses() == {1: "e1:7001", 2: "e2:7001"}

    flags = {"nodes": ["1=f1:7001,f1:50051", "5=f5:7005,f5:50055"]}
    from_flags = load_settings(flags, config, env={"CHAT_NODES": json.dumps(env_nodes)})
    assert from_flags.client_addresses() == {1: "f1:50051", 5: "f5:50055"}


# -- validation messages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"node_id": 4}, "node_id: must be one of the configured nodes (1, 2, 3), got 4"),
        ({"node_id": 0}, "node_id: input should be greater than or equal to 1"),
        ({"node_id": "one"}, "node_id: input should be a valid integer"),
        ({"client_listen": "localhost"}, "client_listen: expected HOST:PORT"),
        ({"client_listen": ":50051"}, "client_listen: expected HOST:PORT"),
        ({"peer_listen": "h:70000"}, "peer_listen: expected HOST:PORT with a port from 1 to 65535, got 'h:70000'"),
        ({"peer_listen": "h:0"}, "peer_listen: expected HOST:PORT"),
        ({"peer_listen": "0.0.0.0:7002"}, "peer_listen: port 7002 differs from node 1's peer address n1.internal:7001"),
        ({"client_listen": "0.0.0.0:1"}, "client_listen: port 1 differs from node 1's client address"),
        ({"metrics_listen": "nowhere"}, "metrics_listen: expected HOST:PORT"),
        ({"metrics_listen": "0.0.0.0:7001"}, "metrics_listen: uses the same port as peer_listen"),
        ({"nodes": ["1=a:7001,a:50051", "1=b:7001,b:50051"]}, "nodes: node ids must be unique; repeated: 1"),
        ({"nodes": ["1=a:7001,a:50051", "2=a:7001,b:50051"]}, "nodes: nodes 1 and 2 share the peer address a:7001"),
        ({"nodes": ["1=a:7001"]}, "nodes[0]: expected ID=PEERHOST:PORT,CLIENTHOST:PORT, got '1=a:7001'"),
        ({"nodes": ["1=a:7001,a:50051", "2=b:7001,b"]}, "nodes[1].client: expected HOST:PORT"),
        ({"nodes": []}, "nodes: must list every member of the cluster"),
        ({"heartbeat_ticks": 15}, "election_ticks: must be greater than heartbeat_ticks (15)"),
        ({"heartbeat_ticks": 0}, "heartbeat_ticks: input should be greater than or equal to 1"),
        ({"tick_ms": 0}, "tick_ms: input should be greater than or equal to 1"),
        ({"rate_limit_per_s": 0}, "rate_limit_per_s: input should be greater than 0"),
        ({"log_level": "LOUD"}, "log_level: input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ({"log_format": "xml"}, "log_format: input should be 'json' or 'text'"),
        ({"tls_cert_file": "/nonexistent/cert.pem"}, "tls_cert_file: no such file: '/nonexistent/cert.pem'"),
        ({"admin_token_file": "/nonexistent/token"}, "admin_token_file: cannot read '/nonexistent/token'"),
        ({"bogus": 1}, "bogus: not a setting"),
    ],
)
def test_each_invalid_setting_is_named_with_what_is_wrong(cluster_dir, flags, expected):
    problems = problems_of(flags, write_config(cluster_dir))
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_listed_on_its_own_line(cluster_dir):
    flags = {"node_id": 0, "tick_ms": "x", "client_listen": "nowhere", "log_format": "xml"}
    problems = problems_of(flags, write_config(cluster_dir))
    assert [p.split(":")[0] for p in problems] == ["node_id", "client_listen", "log_format", "tick_ms"]
    assert "(got 'x')" in problems[3]


def test_missing_required_settings_say_how_to_give_them(tmp_path):
    problems = problems_of({}, None, env={})
    assert problems[0] == "node_id: required (--node-id, CHAT_NODE_ID or node_id in the config file)"
    assert {p.split(":")[0] for p in problems} == {"node_id", "client_listen", "peer_listen", "nodes", "data_dir"}


def test_cross_setting_problems_are_reported_together(cluster_dir):
    (cluster_dir / "cert.pem").write_text("cert")
    flags = {"node_id": 9, "heartbeat_ticks": 20, "tls_cert_file": str(cluster_dir / "cert.pem")}
    problems = problems_of(flags, write_config(cluster_dir))
    assert [p.split(":")[0] for p in problems] == ["node_id", "election_ticks", "tls_key_file"]


def test_cluster_secret_exactly_one_of_value_and_file(cluster_dir):
    config = write_config(cluster_dir)
    both = problems_of({}, config, env={"CHAT_CLUSTER_SECRET": SECRET})
    assert both == [
        "cluster_secret: required, exactly one of cluster_secret (CHAT_CLUSTER_SECRET) and cluster_secret_file "
        "(--cluster-secret-file); both are set"
    ]
    config.write_text(config.read_text().replace(f'cluster_secret_file = "{cluster_dir / "secret"}"', ""))
    assert "neither is set" in problems_of({}, config)[0]
    assert load_settings({}, config, env={"CHAT_CLUSTER_SECRET": SECRET}).cluster_secret_bytes() == SECRET.encode()
    assert problems_of({}, config, env={"CHAT_CLUSTER_SECRET": "short"}) == [
        "cluster_secret: must be at least 16 bytes"
    ]


def test_cluster_secret_file_is_read_once_stripped_and_checked(cluster_dir):
    s = load_settings({}, write_config(cluster_dir), env={})
    assert s.cluster_secret_bytes() == SECRET.encode()
    (cluster_dir / "secret").write_text("changed-afterwards-0123456789")
    assert s.cluster_secret_bytes() == SECRET.encode()
    (cluster_dir / "secret").write_text("tiny\n")
    problems = problems_of({}, write_config(cluster_dir))
    assert problems == [
        f"cluster_secret_file: '{cluster_dir / 'secret'}' holds 4 bytes; the secret must be at least 16"
    ]
    problems = problems_of({"cluster_secret_file": str(cluster_dir / "missing")}, write_config(cluster_dir))
    assert problems[0].startswith(f"cluster_secret_file: cannot read '{cluster_dir / 'missing'}'")


def test_admin_token_is_optional_from_env_or_file_not_both(cluster_dir):
    config = write_config(cluster_dir)
    assert load_settings({}, config, env={}).admin_token_value() is None
    assert load_settings({}, config, env={"CHAT_ADMIN_TOKEN": TOKEN}).admin_token_value() == TOKEN
    from_file = load_settings({"admin_token_file": str(cluster_dir / "token")}, config, env={})
    assert from_file.admin_token_value() == TOKEN
    both = problems_of({"admin_token_file": str(cluster_dir / "token")}, config, env={"CHAT_ADMIN_TOKEN": TOKEN})
    assert both == ["admin_token: give admin_token or admin_token_file, not both"]
    assert problems_of({}, config, env={"CHAT_ADMIN_TOKEN": "short"}) == ["admin_token: must be at least 16 characters"]
    (cluster_dir / "token").write_text("short")
    assert problems_of({"admin_token_file": str(cluster_dir / "token")}, config)[0].startswith("admin_token_file:")


def test_tls_files_come_in_complete_sets(cluster_dir):
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (cluster_dir / name).write_text(name)
    config = write_config(cluster_dir)
    pem = {name: str(cluster_dir / name) for name in ("cert.pem", "key.pem", "ca.pem")}
    client = load_settings({"tls_cert_file": pem["cert.pem"], "tls_key_file": pem["key.pem"]}, config, env={})
    assert client.client_tls_key_pair() == (b"key.pem", b"cert.pem")
    assert load_settings({}, config, env={}).client_tls_key_pair() is None
    assert problems_of({"tls_key_file": pem["key.pem"]}, config) == [
        "tls_cert_file: required together with tls_key_file"
    ]
    partial = problems_of({"peer_tls_cert_file": pem["cert.pem"], "peer_tls_key_file": pem["key.pem"]}, config)
    assert partial == ["peer_tls_ca_file: required together with peer_tls_cert_file and peer_tls_key_file"]
    peer = {
        "peer_tls_cert_file": pem["cert.pem"],
        "peer_tls_key_file": pem["key.pem"],
        "peer_tls_ca_file": pem["ca.pem"],
    }
    tls = load_settings(peer, config, env={}).peer_tls_config()
    assert tls is not None and tls.ca_certificate == b"ca.pem" and tls.private_key == b"key.pem"
    assert load_settings({}, config, env={}).peer_tls_config() is None


def test_data_dir_is_created_and_must_be_usable(cluster_dir):
    target = cluster_dir / "deep" / "data"
    s = load_settings({"data_dir": str(target)}, write_config(cluster_dir), env={})
    assert s.data_dir == target and target.is_dir()
    (cluster_dir / "plain-file").write_text("x")
    problems = problems_of({"data_dir": str(cluster_dir / "plain-file" / "data")}, write_config(cluster_dir))
    assert problems[0].startswith(f"data_dir: cannot create '{cluster_dir / 'plain-file' / 'data'}'")


def test_metrics_listen_and_switches(cluster_dir):
    config = write_config(cluster_dir, 'metrics_listen = "127.0.0.1:9100"')
    assert load_settings({}, config, env={}).metrics_listen == "127.0.0.1:9100"
    assert load_settings({"metrics_listen": "off"}, config, env={}).metrics_listen is None
    assert load_settings({}, config, env={"CHAT_UNSAFE_SKIP_FSYNC": "true"}).unsafe_skip_fsync is True
    assert load_settings({}, config, env={"CHAT_UNSAFE_SKIP_FSYNC": ""}).unsafe_skip_fsync is False  # empty: unset


def test_config_file_errors_name_the_file(cluster_dir):
    assert problems_of({}, cluster_dir / "absent.toml")[0].startswith(
        f"config: cannot read '{cluster_dir / 'absent.toml'}'"
    )
    bad = cluster_dir / "bad.toml"
    bad.write_text("node_id = = 1")
    assert problems_of({}, bad)[0].startswith(f"config: '{bad}' is not valid TOML")
    unknown = write_config(cluster_dir, "colour = 'blue'")
    assert problems_of({}, unknown) == ["colour: not a setting"]


def test_environment_json_that_does_not_parse_is_named(cluster_dir):
    problems = problems_of({}, write_config(cluster_dir), env={"CHAT_NODES": "[1,"})
    assert problems[0].startswith("nodes: CHAT_NODES is not valid JSON")


# -- secrets ------------------------------------------------------------------------------------------------------


def test_secrets_never_appear_in_repr_str_dumps_or_errors(cluster_dir):
    config = write_config(cluster_dir)
    config.write_text(config.read_text().replace(f'cluster_secret_file = "{cluster_dir / "secret"}"', ""))
    s = load_settings({}, config, env={"CHAT_CLUSTER_SECRET": SECRET, "CHAT_ADMIN_TOKEN": TOKEN})
    assert s.cluster_secret_bytes() == SECRET.encode() and s.admin_token_value() == TOKEN
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump()), repr(s.cluster_secret)):
        assert SECRET not in text and TOKEN not in text
    short = "tooshort-secret"  # 15 bytes: an error, which must not echo it
    with pytest.raises(SettingsError) as info:
        load_settings({}, config, env={"CHAT_CLUSTER_SECRET": short, "CHAT_ADMIN_TOKEN": "also-short"})
    assert short not in str(info.value) and "also-short" not in str(info.value)
    with pytest.raises(ValidationError) as direct:
        Settings(
            node_id=1,
            client_listen="h:50051",
            peer_listen="h:7001",
            nodes=["1=h:7001,h:50051"],
            data_dir=cluster_dir / "d",
            cluster_secret=short,
        )
    assert short not in str(direct.value)


def test_settings_are_frozen(cluster_dir):
    s = load_settings({}, write_config(cluster_dir), env={})
    with pytest.raises(ValidationError):
        s.node_id = 2  # type: ignore[misc]


def test_direct_construction_reads_chat_variables_of_the_process_environment(cluster_dir, monkeypatch):
    monkeypatch.setenv("CHAT_TICK_MS", "35")
    s = Settings(
        node_id=1,
        client_listen="h:50051",
        peer_listen="h:7001",
        nodes=[NodeEntry(id=1, peer="h:7001", client="h:50051")],
        data_dir=cluster_dir / "d",
        cluster_secret=SECRET,
    )
    assert s.tick_ms == 35 and s.cluster_secret_bytes() == SECRET.encode()


# -- helpers ------------------------------------------------------------------------------------------------------


def test_address_and_node_spec_helpers():
    assert split_address("example.com:80") == ("example.com", 80)
    assert split_address("[::1]:7001") == ("[::1]", 7001)
    for bad in ("::1:7001", "host", "host:", ":1", "host:65536", "host:x"):
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            split_address(bad)
    assert parse_node_spec("3=p:7003,c:50053") == {"id": 3, "peer": "p:7003", "client": "c:50053"}
    assert NodeEntry.model_validate("3=p:7003,c:50053").spec() == "3=p:7003,c:50053"
    assert (
        flag_name("node_id") == "--node-id"
        and flag_name("nodes") == "--node"
        and flag_name("tls_key_file") == "--tls-key"
    )
