"""``ChatApp``: the app's lifecycle: the sign-in window, then the main window with its session, until quit.

It owns the remembered settings and the way clients are made (servers, data directory, timeouts), so the
same object drives the real app (``main``), the tests and the screenshot script.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from PyQt6.QtCore import QObject, pyqtSignal

from chat_client_qt.app.main_window import MainWindow
from chat_client_qt.app.session import ChatSession
from chat_client_qt.app.settings import AppSettings
from chat_client_qt.app.sign_in import SignInWindow
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.client import ChatClient, ChatError

log = logging.getLogger(__name__)


class ChatApp(QObject):
    """The desktop app without the QApplication (see the module's docstring).

    Signals:
        finished(): the user quit (the last window was closed).
        main_window_shown(MainWindow): signed in and showing the main window.
    """

    finished = pyqtSignal()
    main_window_shown = pyqtSignal(object)

    def __init__(
        self,
        settings: AppSettings,
        *,
        servers: list[str] | None = None,
        data_dir: str | Path | None = None,
        timeout: float = 10.0,
        status_interval: float = 3.0,
        idle_timeout: float = 25.0,
        page_size: int = 50,
        parent: QObject | None = None,
    ) -> None:
        """Prepare the app (``start`` shows the sign-in window).

        Args:
            settings: the remembered settings.
            servers: servers given on the command line (remembered after a successful sign-in); default: the
                remembered ones.
            data_dir: where the outbox lives (default: the user's data directory).
            timeout: the deadline of one call, retries included (seconds).
            status_interval: how often the cluster's status is asked (seconds).
            idle_timeout: reopen the live stream after this long without a message (seconds).
            page_size: events per page of history.
            parent: the Qt parent.
        """
        super().__init__(parent)
        self.settings = settings
        self.servers = servers
        self.data_dir = data_dir
        self.timeout = timeout
        self.status_interval = status_interval
        self.idle_timeout = idle_timeout
        self.page_size = page_size
        self.sign_in: SignInWindow | None = None
        self.window: MainWindow | None = None
        self.session: ChatSession | None = None
        self._tasks = TaskSet("app")
        self._done = asyncio.Event()
        self._quitting = False

    # -- clients ---------------------------------------------------------------------------------------------

    def make_client(self, servers: list[str]) -> ChatClient:
        """A new client of ``servers`` with the app's data directory and timeouts."""
        return ChatClient(servers, data_dir=self.data_dir, timeout=self.timeout)

    # -- windows ---------------------------------------------------------------------------------------------

    def start(self) -> SignInWindow:
        """Show the sign-in window."""
        return self.show_sign_in()

    def show_sign_in(self, servers: list[str] | None = None, error: str = "") -> SignInWindow:
        """Show the sign-in window (made once), optionally with other servers and an error."""
        if self.sign_in is None:
            self.sign_in = SignInWindow(self.settings, self.make_client, servers=servers or self.servers)
            self.sign_in.signed_in.connect(self._signed_in)
            self.sign_in.closed.connect(self._sign_in_closed)
        elif servers:
            self.sign_in.servers.setText(",".join(servers))
        self.sign_in.show_error(error)
        self.sign_in.show()
        self.sign_in.raise_()
        self.sign_in.activateWindow()
        return self.sign_in

    def _signed_in(self, client: ChatClient) -> None:
        self._tasks.spawn(self._open_main(client), name="open-main")

    async def _open_main(self, client: ChatClient) -> None:
        listing = None
        try:
            listing = await client.conversations()
        except ChatError as exc:
            log.info("conversation list at sign-in: %s (loading it when connected)", exc.message)
        session = ChatSession(client, status_interval=self.status_interval, idle_timeout=self.idle_timeout)
        window = MainWindow(session, self.settings, servers=client.connection.endpoints, page_size=self.page_size)
        window.sign_out_requested.connect(lambda: self._tasks.spawn(self.sign_out(), name="sign-out"))
        window.servers_changed.connect(lambda servers: self._tasks.spawn(self.sign_out(servers=servers, logout=False)))
        window.closed.connect(self.quit)
        self.session, self.window = session, window
        cursors: dict[str, int] = {}
        if listing is not None:
            window.set_conversations(listing.conversations)
            cursors = {c.id: c.last_seq for c in listing.conversations}
        window.show()
        if self.sign_in is not None:
            self.sign_in.hide()
        session.start(cursors)
        self.main_window_shown.emit(window)

    async def sign_out(self, *, servers: list[str] | None = None, logout: bool = True) -> None:
        """Close the main window and its session (``logout``: end it on the cluster), then show sign-in."""
        window, session = self.window, self.session
        self.window, self.session = None, None
        if window is not None:
            window.close_quietly()
            await window.close_tasks()
            window.deleteLater()
        if session is not None:
            await session.close(logout=logout)
        self.show_sign_in(servers)

    def _sign_in_closed(self) -> None:
        if self.window is None:
            self.quit()

    def quit(self) -> None:
        """End the app: close the session (pending messages stay in the outbox for next time)."""
        if self._quitting:
            return
        self._quitting = True
        self._tasks.spawn(self._quit(), name="quit")

    async def _quit(self) -> None:
        await self.shutdown()
        self.finished.emit()
        self._done.set()

    async def shutdown(self) -> None:
        """Close every window and the session (without logging out)."""
        window, session = self.window, self.session
        self.window, self.session = None, None
        if window is not None:
            window.close_quietly()
            await window.close_tasks()
        if session is not None:
            await session.close()
        if self.sign_in is not None:
            self.sign_in.hide()

    async def run(self) -> None:
        """Show the sign-in window and wait until the user quits."""
        self.start()
        await self._done.wait()
