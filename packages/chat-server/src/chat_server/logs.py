"""Structured logging for the ``chat-server`` entry point: JSON lines or text, with secrets redacted.

``configure_logging`` is called once, by the entry point; library modules only call
``logging.getLogger(__name__)`` and pass structured fields with ``extra={...}``.

Every record goes through ``RedactingFilter`` before it is written: values of fields whose name looks secret
(password, token, secret, authorization, api key, cookie, credential...) become ``[REDACTED]``, in ``extra``
fields (nested dicts, lists and ``(key, value)`` pairs such as gRPC metadata included) and in ``key=value`` or
``key: value`` text of the message; so do ``Bearer ...`` credentials anywhere in the message. Tracebacks are
redacted the same way by the formatters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Literal

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(r"passw(or)?d|secret|token|authori[sz]ation|api[_-]?key|cookie|credential", re.I)
_KEY_VALUE = re.compile(
    r"""(?ix)
    (?P<key>\b[\w.-]*(?:passw(?:or)?d|secret|token|authori[sz]ation|api[_-]?key|cookie|credential)[\w.-]*)
    (?P<sep>["']?\s*[:=]\s*["']?)
    (?P<value>(?:bearer\s+|basic\s+)?[^\s"',;&}\]]+)
    """
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys() | {"message", "asctime", "taskName"}
)


def is_sensitive_key(key: str) -> bool:
    """Whether a field named ``key`` holds a secret (its value is never logged)."""
    return bool(_SENSITIVE_KEY.search(key))


def redact_text(text: str) -> str:
    """``text`` with ``key=value`` secrets and ``Bearer`` credentials replaced by ``[REDACTED]``.

    Args:
        text: A log message or traceback.

    Returns:
        The text with secret values replaced.
    """
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)


def redact_value(value: Any, key: str = "") -> Any:
    """A copy of ``value`` fit to log: secret-named entries redacted, strings scrubbed, containers walked.

    Args:
        value: An ``extra`` field's value.
        key: The field's name (a secret-looking name redacts the whole value).

    Returns:
        The redacted value; the original is not modified.
    """
    if key and is_sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", errors="replace"))
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        if len(items) == 2 and isinstance(items[0], str) and is_sensitive_key(items[0]):
            return (items[0], REDACTED)  # a (key, value) pair, e.g. gRPC metadata
        return [redact_value(v) for v in items]
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record so that no secret reaches a handler (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message (with its arguments merged in) and every ``extra`` field; always keeps the record.

        Args:
            record: The record, modified in place.

        Returns:
            True.
        """
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what we have rather than nothing
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact_text(message), None
        if record.exc_text:  # a traceback another handler's formatter already rendered (and cached)
            record.exc_text = redact_text(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS:
                setattr(record, key, redact_value(value, key))
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got from ``extra`` (its non-standard attributes)."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, node_id, the extra fields, then any exception."""

    def __init__(self, node_id: int | None = None) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "node_id": self.node_id,
        }
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_text:  # rendered already (by this or another handler's formatter)
            entry["exception"] = redact_text(record.exc_text)
        elif record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL nodeN logger: message key=value ...``, then any traceback."""

    def __init__(self, node_id: int | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(_chat_node)s%(name)s: %(message)s")
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as text, its extra fields appended as ``key=value``."""
        setattr(record, "_chat_node", f"node{self.node_id} " if self.node_id is not None else "")  # noqa: B010
        text = super().format(record)
        extras = extra_fields(record)
        if extras:
            first, sep, rest = text.partition("\n")
            fields = " ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=False)}" for k, v in extras.items())
            text = f"{first} {fields}{sep}{rest}"
        return redact_text(text) if record.exc_text or record.stack_info else text

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        """The traceback, redacted."""
        return redact_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 (logging's name)
        """The stack, redacted."""
        return redact_text(super().formatStack(stack_info))


_HANDLER_MARK = "_chat_server_handler"


def configure_logging(
    level: str | int = "INFO",
    fmt: Literal["json", "text"] = "json",
    node_id: int | None = None,
    *,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (standard error) in ``fmt``, redacted; call once at start.

    Calling it again replaces the handler it installed before (and only that one).

    Args:
        level: The root logger's level (name or number).
        fmt: ``json`` (one object per line) or ``text``.
        node_id: This node's id, put on every line (None: left out of text, null in JSON).
        stream: Where to write (default ``sys.stderr``).

    Returns:
        The installed handler.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter(node_id) if fmt == "json" else TextFormatter(node_id))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(True)
    return handler
