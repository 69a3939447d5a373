"""``ServersDialog``: edit the cluster's server addresses (``host:port, ...``), remembered for the next start."""

from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from chat_client_qt.app import theme
from chat_client_qt.app.settings import format_servers, parse_servers


class ServersDialog(QDialog):
    """The server list editor.

    Signals:
        chosen(list): the new, valid server list.
    """

    chosen = pyqtSignal(list)

    def __init__(self, servers: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Servers")
        self.edit = QLineEdit(format_servers(servers))
        self.edit.setAccessibleName("Servers")
        self.edit.setMinimumWidth(380)
        help_text = QLabel(
            "The cluster's nodes as host:port, separated by commas. Any one that answers will do; "
            "the app finds the leader. Changing them signs you out."
        )
        help_text.setWordWrap(True)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setVisible(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(help_text)
        layout.addWidget(self.edit)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _accept(self) -> None:
        try:
            servers = parse_servers(self.edit.text())
        except ValueError as exc:
            self.error.setStyleSheet(f"color: {theme.error(self.palette()).name()};")
            self.error.setText(str(exc))
            self.error.setVisible(True)
            return
        self.chosen.emit(servers)
        self.accept()
