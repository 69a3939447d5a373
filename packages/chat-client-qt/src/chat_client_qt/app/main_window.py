"""``MainWindow``: the conversation list, the open conversation, the dialogs and the cluster status bar.

The window keeps what it has loaded (the conversation list and every opened conversation's timeline) for
as long as it is open, so that while the cluster is unreachable people can still read and switch
conversations and write messages (they wait in the outbox, shown "Sending…"). Every call to the cluster
runs as an asyncio task on the Qt loop; results and errors come back to the widgets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence

from PyQt6.QtCore import QByteArray, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import QInputDialog, QLabel, QMainWindow, QMessageBox, QSplitter, QVBoxLayout, QWidget

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app import theme
from chat_client_qt.app.conversation_list import ConversationListView
from chat_client_qt.app.conversation_model import ConversationListModel
from chat_client_qt.app.conversation_pane import ConversationPane
from chat_client_qt.app.direct_dialog import DirectDialog
from chat_client_qt.app.formatting import describe_error, typing_text
from chat_client_qt.app.invite_dialog import InviteDialog
from chat_client_qt.app.message_model import MessageListModel
from chat_client_qt.app.room_dialog import RoomDialog
from chat_client_qt.app.search_dialog import SearchDialog
from chat_client_qt.app.servers_dialog import ServersDialog
from chat_client_qt.app.session import ChatSession
from chat_client_qt.app.settings import AppSettings
from chat_client_qt.app.status_bar import ClusterStatusBar
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.app.timeline import Timeline
from chat_client_qt.app.typing_state import TypingTracker
from chat_client_qt.client import ChatError, OutboxItem

log = logging.getLogger(__name__)

PAGE_SIZE = 50
PRESENCE_LOOKUPS = 40  # direct conversations whose presence is asked at start (others learn it live)
SEARCH_PAGES = 20  # older pages read at most to show a message chosen in the search


class MainWindow(QMainWindow):
    """The signed-in window (see the module's docstring).

    Signals:
        sign_out_requested(): File → Sign out, or the session expired.
        servers_changed(list): the servers were changed (the app signs out and shows the sign-in window).
        closed(): the user closed the window (the app quits).
    """

    sign_out_requested = pyqtSignal()
    servers_changed = pyqtSignal(list)
    closed = pyqtSignal()

    def __init__(
        self,
        session: ChatSession,
        settings: AppSettings,
        *,
        servers: Sequence[str] = (),
        page_size: int = PAGE_SIZE,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.client = session.client
        self.me = session.username
        self.settings = settings
        self.servers = list(servers)
        self.page_size = page_size
        self.conversations = ConversationListModel(self.me, self)
        self.timelines: dict[str, MessageListModel] = {}
        self.typing = TypingTracker()
        self._tasks = TaskSet("main-window")
        self._refreshing = False
        self._refresh_again = False
        self._presence_known: set[str] = set()
        self._quiet_close = False

        self.list_view = ConversationListView(self.conversations)
        self.list_view.conversation_chosen.connect(self.open_conversation)
        list_title = QLabel(f"Signed in as {self.me}")
        list_title.setFont(theme.bold(self.font()))
        left = QWidget()
        left_box = QVBoxLayout(left)
        left_box.setContentsMargins(8, 8, 0, 8)
        left_box.addWidget(list_title)
        left_box.addWidget(self.list_view, 1)
        self.pane = ConversationPane()
        self.pane.send_requested.connect(self.send)
        self.pane.typing.connect(self.session.typing)
        self.pane.older_wanted.connect(self.load_older)
        self.pane.invite_requested.connect(lambda _id: self.show_invite_dialog())
        self.pane.view.retry_requested.connect(self.retry)
        self.pane.view.discard_requested.connect(self.discard)
        self.pane.view.edit_requested.connect(self.ask_edit)
        self.pane.view.delete_requested.connect(self.ask_delete)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.pane)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([280, 620])
        self.splitter.setChildrenCollapsible(False)
        self.setCentralWidget(self.splitter)
        self.status = ClusterStatusBar()
        self.setStatusBar(self.status)
        self._build_menus()

        session.event_received.connect(self._on_event)
        session.typing_received.connect(self._on_typing)
        session.presence_received.connect(self._on_presence)
        session.heartbeat_received.connect(self.status.set_heartbeat)
        session.connection_changed.connect(self._on_connection)
        session.cluster_status_changed.connect(self.status.set_cluster)
        session.outbox_changed.connect(self._on_outbox)
        session.session_lost.connect(self._on_session_lost)
        self.conversations.dataChanged.connect(lambda *_: self._update_title())
        self.conversations.layoutChanged.connect(lambda *_: self._update_title())

        self._typing_timer = QTimer(self)
        self._typing_timer.setInterval(1000)
        self._typing_timer.timeout.connect(self._update_typing)
        self._typing_timer.start()
        self.setMinimumSize(640, 420)
        self.resize(1000, 680)
        geometry = settings.geometry("main-window")
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitter_state = settings.geometry("main-splitter")
        if splitter_state is not None:
            self.splitter.restoreState(splitter_state)
        self.status.set_pending(session.pending_count())
        self._update_title()

    # -- menus -----------------------------------------------------------------------------------------------

    def _action(
        self, text: str, shortcut: QKeySequence | QKeySequence.StandardKey | str | None, slot: object, tip: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)  # type: ignore[arg-type]
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        assert bar is not None
        chat = bar.addMenu("&Chat")
        assert chat is not None
        self.new_direct_action = self._action("New &direct message…", "Ctrl+N", self.show_direct_dialog)
        self.new_room_action = self._action("New &room…", "Ctrl+Shift+N", self.show_room_dialog)
        self.invite_action = self._action("&Invite people…", "Ctrl+I", self.show_invite_dialog)
        self.search_action = self._action("&Search…", QKeySequence.StandardKey.Find, self.show_search_dialog)
        chat.addActions([self.new_direct_action, self.new_room_action, self.invite_action, self.search_action])
        chat.addSeparator()
        self.servers_action = self._action("Ser&vers…", None, self.show_servers_dialog)
        self.sign_out_action = self._action("Sign &out", None, self.sign_out_requested.emit)
        self.quit_action = self._action("&Quit", QKeySequence.StandardKey.Quit, self.close)
        chat.addActions([self.servers_action, self.sign_out_action, self.quit_action])
        go = bar.addMenu("&Go")
        assert go is not None
        go.addAction(self._action("&Next conversation", "Alt+Down", lambda: self.list_view.step(1)))
        go.addAction(self._action("&Previous conversation", "Alt+Up", lambda: self.list_view.step(-1)))
        go.addAction(self._action("Conversation &list", "Ctrl+1", self.list_view.setFocus))
        go.addAction(self._action("&Messages", "Ctrl+2", self.pane.view.setFocus))
        go.addAction(self._action("Message &box", "Ctrl+L", self.pane.focus_compose))
        go.addAction(self._action("&Refresh", QKeySequence.StandardKey.Refresh, self.refresh_conversations))

    # -- conversations ---------------------------------------------------------------------------------------

    def set_conversations(self, conversations: Sequence[api.Conversation]) -> None:
        """Show a conversation listing (e.g. the one read at sign-in)."""
        self.conversations.set_conversations(conversations)
        current = self.pane.conversation_id
        if current is not None:
            self.conversations.mark_read(current)
        self._tasks.spawn(self._load_presence(), name="presence")

    def current_id(self) -> str | None:
        """The open conversation's id."""
        return self.pane.conversation_id

    def select_conversation(self, conversation_id: str) -> bool:
        """Select a listed conversation in the list (which opens it)."""
        return self.list_view.select(conversation_id)

    def open_conversation(self, conversation_id: str) -> None:
        """Show a conversation: its cached messages at once, loading the newest page if not loaded yet."""
        item = self.conversations.get(conversation_id)
        if item is None:
            return
        if self.list_view.current_id() != conversation_id:
            self.list_view.select(conversation_id)  # re-enters through conversation_chosen
            return
        model = self.messages(conversation_id)
        if self.pane.conversation_id != conversation_id:
            self.pane.show_conversation(item, model)
        timeline = model.timeline
        if not timeline.loaded and not timeline.loading:
            self._tasks.spawn(self._load_latest(conversation_id), name="history")
        self._show_notice()
        self._update_typing()
        self._read(conversation_id)
        self.invite_action.setEnabled(not item.direct)

    def messages(self, conversation_id: str) -> MessageListModel:
        """The (cached) message model of a conversation, made on first use with its unsent messages."""
        model = self.timelines.get(conversation_id)
        if model is None:
            timeline = Timeline(conversation_id, self.me)
            for item in [*self.client.pending(conversation_id), *self.client.failed()]:
                timeline.apply_outbox(item)
            model = MessageListModel(timeline, self)
            self.timelines[conversation_id] = model
        return model

    def refresh_conversations(self) -> None:
        """Read the conversation list again (coalesced)."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        self._tasks.spawn(self._refresh(), name="conversations")

    async def _refresh(self) -> None:
        try:
            while True:
                self._refresh_again = False
                try:
                    listing = await self.client.conversations()
                except ChatError as exc:
                    log.info("conversation list: %s", exc.message)
                    return
                self.set_conversations(listing.conversations)
                current = self.conversations.get(self.pane.conversation_id or "")
                if current is not None:
                    self.pane.update_header(current)
                elif self.pane.conversation_id is not None:
                    self.pane.show_conversation(None, None)  # left, or removed
                if not self._refresh_again:
                    return
        finally:
            self._refreshing = False

    async def _load_presence(self) -> None:
        for item in [i for i in self.conversations.items() if i.direct and i.name not in self._presence_known][
            :PRESENCE_LOOKUPS
        ]:
            try:
                members = await self.client.members(item.id)
            except ChatError:
                return
            self._presence_known.add(item.name)
            for user in members.members:
                if user.username != self.me:
                    self.conversations.set_presence(user.username, user.online)
                    self._header_changed(item.id)

    # -- history ---------------------------------------------------------------------------------------------

    async def _load_latest(self, conversation_id: str) -> None:
        model = self.messages(conversation_id)
        timeline = model.timeline
        timeline.loading = True
        self._show_notice()
        try:
            page = await self.client.history(conversation_id, limit=self.page_size)
        except ChatError as exc:
            timeline.load_error = describe_error(exc, action="load the messages")
        else:
            timeline.add_page(page, older=False)
            model.refresh()
        finally:
            timeline.loading = False
            self._show_notice()
        if conversation_id == self.pane.conversation_id:
            self._read(conversation_id)
            self._fill_view()

    def load_older(self, conversation_id: str) -> None:
        """Load the page before the oldest loaded message, if there is one (scroll-back)."""
        model = self.timelines.get(conversation_id)
        if model is None:
            return
        timeline = model.timeline
        if not timeline.loaded or timeline.loading or not timeline.has_more:
            return
        self._tasks.spawn(self._load_older(conversation_id), name="history-older")

    async def _load_older(self, conversation_id: str) -> bool:
        model = self.messages(conversation_id)
        timeline = model.timeline
        timeline.loading = True
        self._show_notice()
        try:
            page = await self.client.history(
                conversation_id,
                before_seq=timeline.oldest_seq,
                limit=self.page_size,
                consistency=api.ReadConsistency.FOLLOWER,
                min_applied=timeline.applied_index,
            )
        except ChatError as exc:
            timeline.load_error = describe_error(exc, action="load older messages")
            return False
        finally:
            timeline.loading = False
            self._show_notice()
        timeline.add_page(page, older=True)
        model.refresh()
        self._show_notice()
        if conversation_id == self.pane.conversation_id:
            self._fill_view()
        return True

    def _fill_view(self) -> None:
        """Load older pages while the open conversation's messages do not fill the view."""
        QTimer.singleShot(0, self.pane.view.want_more_if_short)

    def _show_notice(self) -> None:
        conversation_id = self.pane.conversation_id
        if conversation_id is None:
            return
        timeline = self.messages(conversation_id).timeline
        if timeline.loading:
            text = "Loading older messages…" if timeline.loaded else "Loading messages…"
        elif timeline.load_error:
            text = f"{timeline.load_error} Retrying when the connection is back."
            if timeline.loaded:
                text = "Older messages could not be loaded: " + text
        else:
            text = ""
        self.pane.set_notice(text)

    async def go_to_message(self, conversation_id: str, seq: int) -> None:
        """Open a conversation and show message ``seq``, loading older pages as needed."""
        if not self.select_conversation(conversation_id):
            return
        model = self.messages(conversation_id)
        timeline = model.timeline
        for _ in range(SEARCH_PAGES):
            if timeline.loaded and (timeline.message(seq) is not None or not timeline.has_more):
                break
            if not timeline.loaded:
                if not timeline.loading:
                    await self._load_latest(conversation_id)
                else:
                    await _tick()
                if not timeline.loaded and timeline.load_error:
                    return
            elif timeline.loading:
                await _tick()
            elif not await self._load_older(conversation_id):
                return
        if self.pane.conversation_id == conversation_id:
            self.pane.view.scroll_to_message(seq)

    # -- sending and own messages ----------------------------------------------------------------------------

    def send(self, conversation_id: str, body: str) -> None:
        """Send a message through the outbox (it shows "Sending…" at once)."""
        self.pane.view.scrollToBottom()
        self._tasks.spawn(self._send(conversation_id, body), name="send")

    async def _send(self, conversation_id: str, body: str) -> None:
        try:
            await self.session.send(conversation_id, body)
        except ChatError as exc:
            self._warn("Message not sent", describe_error(exc, action="send"))

    def retry(self, request_id: str) -> None:
        """Send a failed message again (same request_id, so at most once)."""
        self._tasks.spawn(self._retry(request_id), name="retry")

    async def _retry(self, request_id: str) -> None:
        try:
            await self.client.retry(request_id)
        except (KeyError, ValueError):
            pass  # gone or sent meanwhile
        except ChatError as exc:
            self._warn("Cannot retry", describe_error(exc))

    def discard(self, request_id: str) -> None:
        """Forget a failed message."""
        self.client.discard(request_id)
        for model in self.timelines.values():
            if model.timeline.outbox_row(request_id) is not None:
                model.timeline.forget_outbox(request_id)
                model.refresh()
        self.status.set_pending(self.session.pending_count())

    def ask_edit(self, seq: int, text: str) -> None:
        """Ask for the new text of one's message ``seq`` (non-blocking dialog), then edit it."""
        conversation_id = self.pane.conversation_id
        if conversation_id is None:
            return
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Edit message")
        dialog.setLabelText("New text:")
        dialog.setOption(QInputDialog.InputDialogOption.UsePlainTextEditForTextInput)
        dialog.setTextValue(text)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.textValueSelected.connect(lambda body: self._edit(conversation_id, seq, body))
        dialog.open()

    def _edit(self, conversation_id: str, seq: int, body: str) -> None:
        if body.strip():
            self._tasks.spawn(self._call_warn(self.client.edit(conversation_id, seq, body), "Edit failed"), name="edit")

    def ask_delete(self, seq: int) -> None:
        """Confirm, then delete one's message ``seq``."""
        conversation_id = self.pane.conversation_id
        if conversation_id is None:
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Delete message",
            "Delete this message for everyone?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(button: int) -> None:
            if button == QMessageBox.StandardButton.Yes:
                coro = self._call_warn(self.client.delete(conversation_id, seq), "Delete failed")
                self._tasks.spawn(coro, name="delete")

        box.finished.connect(answered)
        box.open()

    async def _call_warn(self, coro: Awaitable[object], title: str) -> None:
        try:
            await coro
        except ChatError as exc:
            self._warn(title, describe_error(exc))

    def _warn(self, title: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- dialogs ---------------------------------------------------------------------------------------------

    async def _search_users(self, query: str) -> list[api.User]:
        return list((await self.client.search_users(query, limit=20)).users)

    async def _search_messages(self, query: str, conversation_id: str) -> list[api.Event]:
        return list((await self.client.search_messages(query, conversation_id=conversation_id, limit=50)).messages)

    async def _create_room(self, name: str, topic: str, public: bool, members: Sequence[str]) -> api.Conversation:
        return await self.client.create_room(name, topic=topic, public=public, members=members)

    def _conversation_title(self, conversation_id: str) -> str:
        item = self.conversations.get(conversation_id)
        return item.title if item is not None else "a conversation"

    def _adopt(self, conversation: api.Conversation) -> None:
        self.conversations.add_conversation(conversation)
        self.select_conversation(conversation.id)
        self._header_changed(conversation.id)
        self.pane.focus_compose()

    def show_direct_dialog(self) -> DirectDialog:
        """Open the "new direct message" dialog."""
        dialog = DirectDialog(self._search_users, self.client.open_direct, me=self.me, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.opened.connect(self._adopt)
        dialog.open()
        return dialog

    def show_room_dialog(self) -> RoomDialog:
        """Open the "new room" dialog."""
        dialog = RoomDialog(self._search_users, self._create_room, me=self.me, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.created.connect(self._adopt)
        dialog.open()
        return dialog

    def show_invite_dialog(self) -> InviteDialog | None:
        """Open the "invite people" dialog for the open room."""
        item = self.conversations.get(self.pane.conversation_id or "")
        if item is None or item.direct:
            return None
        room_id = item.id

        async def invite(usernames: Sequence[str]) -> api.Conversation:
            return await self.client.invite(room_id, usernames)

        dialog = InviteDialog(item.title, self._search_users, invite, me=self.me, parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.invited.connect(self._adopt)
        dialog.open()
        return dialog

    def show_search_dialog(self) -> SearchDialog:
        """Open the search dialog (messages and people)."""
        dialog = SearchDialog(
            self._search_messages,
            self._search_users,
            self._conversation_title,
            me=self.me,
            current_conversation=self.pane.conversation_id,
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.message_chosen.connect(
            lambda cid, seq: self._tasks.spawn(self.go_to_message(cid, seq), name="search-open")
        )
        dialog.person_chosen.connect(self._open_direct_with)
        dialog.open()
        return dialog

    def _open_direct_with(self, username: str) -> None:
        existing = self.conversations.direct_with(username)
        if existing is not None:
            self.select_conversation(existing.id)
            return

        async def run() -> None:
            try:
                self._adopt(await self.client.open_direct(username))
            except ChatError as exc:
                self._warn("Cannot open the conversation", describe_error(exc))

        self._tasks.spawn(run(), name="open-direct")

    def show_servers_dialog(self) -> ServersDialog:
        """Open the servers dialog (a change signs out and reconnects)."""
        dialog = ServersDialog(self.servers or self.settings.servers, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.chosen.connect(self._servers_chosen)
        dialog.open()
        return dialog

    def _servers_chosen(self, servers: list[str]) -> None:
        self.settings.servers = servers
        if servers != self.servers:
            self.servers_changed.emit(servers)

    # -- session signals -------------------------------------------------------------------------------------

    def _on_event(self, event: api.Event) -> None:
        conversation_id = event.conversation_id
        active = conversation_id == self.pane.conversation_id and self.isVisible() and not self.isMinimized()
        if not self.conversations.apply_event(event, active=active):
            self.refresh_conversations()  # invited to a new conversation, most likely
        elif event.kind in (api.EventKind.JOINED, api.EventKind.LEFT, api.EventKind.RENAMED):
            self.refresh_conversations()  # member counts, or we left
        if event.kind is api.EventKind.MESSAGE:
            self.typing.stopped(conversation_id, event.sender)
        model = self.timelines.get(conversation_id)
        if model is not None:
            model.timeline.add_events([event])
            model.refresh()
        if active:
            self._update_typing()
            if event.kind is api.EventKind.MESSAGE and event.sender != self.me:
                self.session.mark_read(conversation_id, event.seq)

    def _on_outbox(self, item: OutboxItem) -> None:
        model = self.timelines.get(item.conversation_id)
        if model is not None:
            model.timeline.apply_outbox(item)
            model.refresh()
        self.status.set_pending(self.session.pending_count())

    def _on_typing(self, signal: api.TypingSignal) -> None:
        if signal.username == self.me:
            return
        self.typing.update(signal.conversation_id, signal.username, signal.typing, signal.expires_at_ms)
        if signal.conversation_id == self.pane.conversation_id:
            self._update_typing()

    def _on_presence(self, signal: api.PresenceSignal) -> None:
        self._presence_known.add(signal.username)
        self.conversations.set_presence(signal.username, signal.online)
        item = self.conversations.direct_with(signal.username)
        if item is not None:
            self._header_changed(item.id)

    def _on_connection(self, connected: bool, text: str) -> None:
        if not connected:
            self.status.set_reconnecting(text)
            return
        self.status.set_connected(text)
        self.refresh_conversations()
        current = self.pane.conversation_id
        if current is not None:
            timeline = self.messages(current).timeline
            if not timeline.loaded and not timeline.loading:
                self._tasks.spawn(self._load_latest(current), name="history")
            elif timeline.load_error:
                timeline.load_error = ""
                self._show_notice()
        for model in self.timelines.values():
            if not model.timeline.loaded and model.timeline.conversation_id != current:
                model.timeline.load_error = ""

    def _on_session_lost(self, message: str) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Signed out",
            f"Your session ended ({message}). Please sign in again; unsent messages are kept.",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: self.sign_out_requested.emit())
        box.open()

    # -- small updates ---------------------------------------------------------------------------------------

    def _read(self, conversation_id: str) -> None:
        item = self.conversations.get(conversation_id)
        model = self.timelines.get(conversation_id)
        newest = max(item.last_seq if item is not None else 0, model.timeline.newest_seq if model is not None else 0)
        if item is not None and item.unread and newest:
            self.session.mark_read(conversation_id, newest)
        self.conversations.mark_read(conversation_id)

    def _header_changed(self, conversation_id: str) -> None:
        item = self.conversations.get(conversation_id)
        if item is not None:
            self.pane.update_header(item)

    def _update_typing(self) -> None:
        conversation_id = self.pane.conversation_id
        if conversation_id is not None:
            self.pane.set_typing(typing_text(self.typing.names(conversation_id, exclude=self.me)))

    def _update_title(self) -> None:
        unread = self.conversations.total_unread()
        self.setWindowTitle(f"Chat — {self.me}" + (f" ({unread} unread)" if unread else ""))

    # -- closing ---------------------------------------------------------------------------------------------

    def close_quietly(self) -> None:
        """Close without asking the app to quit (signing out, changing servers)."""
        self._quiet_close = True
        self.close()

    async def close_tasks(self) -> None:
        """Cancel the window's calls under way."""
        await self._tasks.cancel_all()

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802
        """Remember the window's geometry; a user's close quits the app."""
        self.settings.set_geometry("main-window", self.saveGeometry())
        self.settings.set_geometry("main-splitter", QByteArray(self.splitter.saveState()))
        self._typing_timer.stop()
        self._tasks.cancel()
        super().closeEvent(event)
        if not self._quiet_close:
            self.closed.emit()


async def _tick() -> None:
    await asyncio.sleep(0.05)
