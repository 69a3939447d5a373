"""Metrics: a private registry, the values the server feeds in, and the /metrics text exposition over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from chat_server.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by (name, sorted labels)."""
    text = metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_metrics_live_in_their_own_registry():
    a, b = Metrics(node_id=1), Metrics(node_id=2)  # no duplicate-registration error
    a.election()
    assert value(a, "chat_raft_elections_total") == 1 and value(b, "chat_raft_elections_total") == 0
    assert REGISTRY.get_sample_value("chat_raft_elections_total") is None
    assert value(a, "chat_node_info", node_id="1", version="0.1.0") == 1


def test_raft_state_role_and_peer_lag():
    m = Metrics(node_id=1)
    assert value(m, "chat_raft_role", role="follower") == 1
    m.set_raft(term=7, role="leader", leader=1, commit=120, applied=118, peer_lag={2: 0, 3: 5})
    assert value(m, "chat_raft_term") == 7 and value(m, "chat_raft_leader_id") == 1
    assert value(m, "chat_raft_commit_index") == 120 and value(m, "chat_raft_applied_index") == 118
    assert value(m, "chat_raft_role", role="leader") == 1
    assert value(m, "chat_raft_role", role="follower") == value(m, "chat_raft_role", role="candidate") == 0
    assert (
        value(m, "chat_raft_peer_lag_entries", peer="3") == 5 and value(m, "chat_raft_peer_lag_entries", peer="2") == 0
    )
    m.set_raft(term=8, role="follower", leader=2, commit=121, applied=121, peer_lag={})
    assert value(m, "chat_raft_peer_lag_entries", peer="3") is None  # lags are the leader's; gone with the role
    assert value(m, "chat_raft_role", role="leader") == 0 and value(m, "chat_raft_role", role="follower") == 1


def test_proposals_rpcs_fsync_and_clients():
    m = Metrics()
    m.observe_proposal("send_message", "ok", 0.004)
    m.observe_proposal("send_message", "ok", 0.2)
    m.observe_proposal("create_room", "not_leader", 0.001)
    assert value(m, "chat_proposals_total", op="send_message", outcome="ok") == 2
    assert value(m, "chat_proposals_total", op="create_room", outcome="not_leader") == 1
    assert value(m, "chat_proposal_duration_seconds_count", op="send_message") == 2
    assert value(m, "chat_proposal_duration_seconds_sum", op="send_message") == pytest.approx(0.204)
    assert value(m, "chat_proposal_duration_seconds_bucket", op="send_message", le="0.005") == 1

    m.observe_rpc("SendMessage", "OK", 0.01)
    m.observe_rpc("SendMessage", "UNAVAILABLE", 2.0)
    assert value(m, "chat_rpc_total", method="SendMessage", code="OK") == 1
    assert value(m, "chat_rpc_total", method="SendMessage", code="UNAVAILABLE") == 1
    assert value(m, "chat_rpc_duration_seconds_bucket", method="SendMessage", code="UNAVAILABLE", le="1.0") == 0

    m.observe_fsync(0.0003)
    assert value(m, "chat_fsync_duration_seconds_count") == 1
    assert value(m, "chat_fsync_duration_seconds_bucket", le="0.0005") == 1

    m.client_connected()
    m.client_connected()
    m.client_disconnected()
    assert value(m, "chat_connected_clients") == 1
    m.set_clients(9)
    assert value(m, "chat_connected_clients") == 9


def test_http_endpoint_serves_the_exposition_until_stopped():
    m = Metrics(node_id=4)
    port = m.start_http("127.0.0.1", 0)
    try:
        m.set_raft(term=3, role="candidate", leader=0, commit=1, applied=1, peer_lag={})
        with pytest.raises(RuntimeError):
            m.start_http("127.0.0.1", 0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
        assert "chat_raft_term 3.0" in body and 'chat_raft_role{role="candidate"} 1.0' in body
    finally:
        m.stop()
    m.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
