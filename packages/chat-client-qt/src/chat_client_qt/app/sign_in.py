"""``SignInWindow``: sign in or create an account, with the servers to use and clear errors.

Errors are worded for people: a wrong password, a taken name, input the server rejects (with its reason),
and an unreachable cluster (no server answered in time). A successful sign-in remembers the servers and
the username, then hands the signed-in ``ChatClient`` over (``signed_in``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from chat_client_qt.app import theme
from chat_client_qt.app.formatting import describe_error
from chat_client_qt.app.settings import AppSettings, format_servers, parse_servers
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.client import AlreadyExists, ChatClient, ChatError, Unauthenticated

log = logging.getLogger(__name__)

ClientFactory = Callable[[list[str]], ChatClient]
SIGN_IN, CREATE = 0, 1


class SignInWindow(QWidget):
    """The first window (see the module's docstring).

    Signals:
        signed_in(ChatClient): a client with an open session.
        closed(): the window was closed by the user (the app quits).
    """

    signed_in = pyqtSignal(object)
    closed = pyqtSignal()

    def __init__(
        self,
        settings: AppSettings,
        client_factory: ClientFactory,
        *,
        servers: list[str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Chat — Sign in")
        self._settings = settings
        self._factory = client_factory
        self._tasks = TaskSet("sign-in")
        self.busy = False

        heading = QLabel("Welcome to Chat")
        heading.setFont(theme.bold(theme.smaller(self.font(), 1.4)))
        self.tabs = QTabBar()
        self.tabs.addTab("Sign in")
        self.tabs.addTab("Create account")
        self.tabs.setAccessibleName("Sign in or create an account")
        self.tabs.currentChanged.connect(self._mode_changed)

        self.servers = QLineEdit(format_servers(servers or settings.servers))
        self.servers.setToolTip("The cluster's nodes as host:port, separated by commas")
        self.username = QLineEdit(settings.last_username)
        self.username.setMaxLength(32)
        self.username.setPlaceholderText("lowercase letters, digits, . _ -")
        self.display_name = QLineEdit()
        self.display_name.setMaxLength(64)
        self.display_name.setPlaceholderText("optional")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        for field in (self.servers, self.username, self.display_name, self.password, self.confirm):
            field.returnPressed.connect(self.submit)

        self.form = QFormLayout()
        self.form.addRow("&Servers:", self.servers)
        self.form.addRow("&Username:", self.username)
        self.form.addRow("&Display name:", self.display_name)
        self.form.addRow("&Password:", self.password)
        self.form.addRow("&Repeat password:", self.confirm)

        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setAccessibleName("Error")
        self.error.setVisible(False)
        self.status = QLabel("")
        self.button = QPushButton("Sign in")
        self.button.setDefault(True)
        self.button.setAutoDefault(True)
        self.button.clicked.connect(self.submit)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.addWidget(heading)
        layout.addWidget(self.tabs)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(self.status)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addStretch(1)
        self.setMinimumSize(420, 340)
        self.resize(460, 380)
        self._mode_changed(SIGN_IN)
        (self.password if self.username.text() else self.username).setFocus()

    # -- modes and messages ----------------------------------------------------------------------------------

    @property
    def creating(self) -> bool:
        """Whether the form creates an account (else it signs in)."""
        return self.tabs.currentIndex() == CREATE

    def set_mode(self, mode: int) -> None:
        """Show the sign-in (``SIGN_IN``) or the create-account (``CREATE``) form."""
        self.tabs.setCurrentIndex(mode)

    def _mode_changed(self, mode: int) -> None:
        creating = mode == CREATE
        self.form.setRowVisible(self.display_name, creating)
        self.form.setRowVisible(self.confirm, creating)
        self.button.setText("Create account" if creating else "Sign in")
        self.setWindowTitle("Chat — Create account" if creating else "Chat — Sign in")
        self.show_error("")

    def show_error(self, text: str) -> None:
        """Show an error under the form ("" hides it)."""
        self.error.setStyleSheet(f"color: {theme.error(self.palette()).name()};")
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def error_text(self) -> str:
        """The error shown ("" if none)."""
        return self.error.text() if self.error.isVisible() or self.error.text() else ""

    def _set_busy(self, busy: bool, status: str = "") -> None:
        self.busy = busy
        for widget in (
            self.servers,
            self.username,
            self.display_name,
            self.password,
            self.confirm,
            self.button,
            self.tabs,
        ):
            widget.setEnabled(not busy)
        self.status.setText(status)

    # -- submitting ------------------------------------------------------------------------------------------

    def validate(self) -> str:
        """A problem with the form ("" if none), checked before any call."""
        try:
            parse_servers(self.servers.text())
        except ValueError as exc:
            return f"Servers: {exc}."
        if not self.username.text().strip():
            return "Enter your username."
        if not self.password.text():
            return "Enter your password." if not self.creating else "Choose a password (at least 8 characters)."
        if self.creating and self.password.text() != self.confirm.text():
            return "The two passwords differ."
        return ""

    def submit(self) -> None:
        """Sign in, or create the account then sign in (in the background)."""
        if self.busy:
            return
        problem = self.validate()
        if problem:
            self.show_error(problem)
            return
        self.show_error("")
        servers = parse_servers(self.servers.text())
        self._set_busy(True, "Creating the account…" if self.creating else "Signing in…")
        self._tasks.spawn(self._submit(servers, self.creating), name="sign-in")

    async def _submit(self, servers: list[str], creating: bool) -> None:
        username = self.username.text().strip()
        password = self.password.text()
        client = self._factory(servers)
        registered = False
        try:
            if creating:
                await client.register(username, password, self.display_name.text().strip())
                registered = True
                self.status.setText("Account created; signing in…")
            await client.login(username, password)
        except ChatError as exc:
            await client.close()
            self._set_busy(False)
            self._failed(exc, username, creating, registered)
            return
        except BaseException:
            await client.close()
            self._set_busy(False)
            raise
        self._set_busy(False)
        self._settings.servers = servers
        self._settings.last_username = username
        self.password.clear()
        self.confirm.clear()
        log.info("signed in as %s", username)
        self.signed_in.emit(client)

    def _failed(self, error: ChatError, username: str, creating: bool, registered: bool) -> None:
        if registered:
            self.set_mode(SIGN_IN)
            self.show_error(
                f"Your account was created, but signing in failed: {describe_error(error, action='sign in')}"
            )
        elif isinstance(error, Unauthenticated) and not creating:
            self.show_error("Wrong username or password.")
            self.password.selectAll()
            self.password.setFocus()
        elif isinstance(error, AlreadyExists):
            self.show_error(f"The name “{username}” is taken: choose another one.")
            self.username.selectAll()
            self.username.setFocus()
        else:
            self.show_error(describe_error(error, action="create the account" if creating else "sign in"))

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802
        """Closing the sign-in window (not hiding it after signing in) quits."""
        self._tasks.cancel()
        super().closeEvent(event)
        self.closed.emit()
