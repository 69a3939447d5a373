"""Remembered settings (``AppSettings`` over QSettings) and the parser of ``--servers host:port,...``."""

from __future__ import annotations

import re

from PyQt6.QtCore import QByteArray, QSettings

ORGANIZATION = "chat-client-qt"
APPLICATION = "chat-client-qt"
DEFAULT_SERVERS = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053", "127.0.0.1:50054", "127.0.0.1:50055"]

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")


def parse_servers(text: str) -> list[str]:
    """``host:port`` endpoints from text separated by commas or whitespace (duplicates dropped).

    Raises:
        ValueError: nothing given, or an entry is not ``host:port`` with a port from 1 to 65535.
    """
    servers: list[str] = []
    for part in re.split(r"[\s,;]+", text.strip()):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not _HOST.match(host):
            raise ValueError(f"“{part}” is not host:port (for example 127.0.0.1:50051)")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"“{part}”: the port must be a number from 1 to 65535")
        if part not in servers:
            servers.append(part)
    if not servers:
        raise ValueError("give at least one server as host:port")
    return servers


def format_servers(servers: list[str]) -> str:
    """Endpoints as the comma-separated text ``parse_servers`` reads."""
    return ",".join(servers)


class AppSettings:
    """The app's remembered settings: servers, last username, window geometry.

    Args:
        settings: where to keep them (default: the user's native QSettings for chat-client-qt; tests pass an
            INI file).
    """

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qsettings = settings if settings is not None else QSettings(ORGANIZATION, APPLICATION)

    @property
    def servers(self) -> list[str]:
        """The remembered servers (the local 5-node defaults if none, or if unreadable)."""
        value = self.qsettings.value("servers", "", type=str)
        try:
            return parse_servers(str(value)) if value else list(DEFAULT_SERVERS)
        except ValueError:
            return list(DEFAULT_SERVERS)

    @servers.setter
    def servers(self, servers: list[str]) -> None:
        self.qsettings.setValue("servers", format_servers(servers))
        self.qsettings.sync()

    @property
    def last_username(self) -> str:
        """The username of the last successful sign-in ("" if none)."""
        return str(self.qsettings.value("last_username", "", type=str))

    @last_username.setter
    def last_username(self, username: str) -> None:
        self.qsettings.setValue("last_username", username)
        self.qsettings.sync()

    def geometry(self, name: str) -> QByteArray | None:
        """A saved window or splitter state (None if none)."""
        value = self.qsettings.value(f"geometry/{name}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, name: str, state: QByteArray) -> None:
        """Save a window or splitter state."""
        self.qsettings.setValue(f"geometry/{name}", state)
