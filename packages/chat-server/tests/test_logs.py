"""Structured logs: JSON lines and text with node id and extra fields; tokens, passwords and secrets redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from chat_server.logs import REDACTED, configure_logging, redact_text, redact_value

TOKEN = "tok_5f2c9a1b7e3d4c6a8b0e"
PASSWORD = "hunter2-correct-horse"


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def json_log(restore_root_logger) -> io.StringIO:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", node_id=3, stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_time_level_logger_message_node_and_extras(json_log):
    logging.getLogger("chat_server.test").info("user %s joined", "alice", extra={"room": "general", "count": 2})
    [entry] = lines(json_log)
    assert entry["level"] == "INFO" and entry["logger"] == "chat_server.test"
    assert entry["message"] == "user alice joined" and entry["node_id"] == 3
    assert entry["room"] == "general" and entry["count"] == 2
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_level_filters_and_reconfiguring_replaces_only_our_handler(restore_root_logger):
    first, second = io.StringIO(), io.StringIO()
    configure_logging("WARNING", "json", node_id=1, stream=first)
    configure_logging("WARNING", "json", node_id=1, stream=second)
    log = logging.getLogger("chat_server.test")
    log.info("quiet")
    log.warning("loud")
    assert first.getvalue() == ""
    assert [e["message"] for e in lines(second)] == ["loud"]


def test_token_in_message_arguments_or_extras_is_never_written(json_log):
    log = logging.getLogger("chat_server.test")
    log.info("call with authorization: Bearer %s", TOKEN)
    log.info("Bearer %s rejected", TOKEN)
    log.warning("login failed for alice password=%s", PASSWORD)
    log.info('payload {"password": "%s", "user": "bob"}', PASSWORD)
    log.info(
        "request",
        extra={
            "token": TOKEN,
            "password": PASSWORD,
            "authorization": f"Bearer {TOKEN}",
            "cluster_secret": "x" * 20,
            "headers": {"Authorization": f"Bearer {TOKEN}", "user-agent": "grpc-python"},
            "metadata": [("authorization", f"Bearer {TOKEN}"), ("x-request-id", "r-1")],
            "note": f"client sent Bearer {TOKEN}",
            "user": "alice",
        },
    )
    text = json_log.getvalue()
    assert TOKEN not in text and PASSWORD not in text and "x" * 20 not in text
    entries = lines(json_log)
    assert entries[0]["message"] == f"call with authorization: {REDACTED}"
    assert entries[1]["message"] == f"Bearer {REDACTED} rejected"
    assert entries[2]["message"] == f"login failed for alice password={REDACTED}"
    assert entries[3]["message"] == f'payload {{"password": "{REDACTED}", "user": "bob"}}'
    extras = entries[4]
    assert extras["token"] == extras["password"] == extras["authorization"] == extras["cluster_secret"] == REDACTED
    assert extras["headers"] == {"Authorization": REDACTED, "user-agent": "grpc-python"}
    assert extras["metadata"] == [["authorization", REDACTED], ["x-request-id", "r-1"]]
    assert extras["note"] == f"client sent Bearer {REDACTED}" and extras["user"] == "alice"


def test_secrets_in_tracebacks_are_redacted(json_log):
    try:
        raise ValueError(f"bad credentials token={TOKEN}")
    except ValueError:
        logging.getLogger("chat_server.test").exception("failed")
    [entry] = lines(json_log)
    assert "ValueError" in entry["exception"] and TOKEN not in entry["exception"]


def test_text_format_has_node_extras_and_redaction(restore_root_logger):
    stream = io.StringIO()
    configure_logging("INFO", "text", node_id=2, stream=stream)
    log = logging.getLogger("chat_server.test")
    log.info("hello %s", "room", extra={"user": "alice", "token": TOKEN})
    try:
        raise RuntimeError(f"Authorization: Bearer {TOKEN}")
    except RuntimeError:
        log.error("boom", exc_info=True)
    text = stream.getvalue()
    first = text.splitlines()[0]
    assert " INFO node2 chat_server.test: hello room " in first
    assert 'user="alice"' in first and f'token="{REDACTED}"' in first
    assert "RuntimeError" in text and TOKEN not in text


def test_the_caller_objects_are_not_modified(json_log):
    headers = {"authorization": f"Bearer {TOKEN}"}
    logging.getLogger("chat_server.test").info("x", extra={"headers": headers})
    assert headers == {"authorization": f"Bearer {TOKEN}"}


def test_redaction_helpers():
    assert redact_text("no secrets here, tokens are counted") == "no secrets here, tokens are counted"
    assert redact_text(f"api_key={TOKEN}&x=1") == f"api_key={REDACTED}&x=1"
    assert redact_text(f"Basic {TOKEN}") == f"Basic {REDACTED}"
    assert redact_value({"nested": {"secret": 1, "ok": [f"Bearer {TOKEN}"]}}) == {
        "nested": {"secret": REDACTED, "ok": [f"Bearer {REDACTED}"]}
    }
