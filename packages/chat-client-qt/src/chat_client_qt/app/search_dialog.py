"""``SearchDialog``: find messages (in every conversation or the open one) and people; opens what is chosen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.formatting import describe_error, one_line, short_time_label
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.app.user_picker import UserPicker, UserSearch
from chat_client_qt.client import ChatError

MessageSearch = Callable[[str, str], Awaitable[list[api.Event]]]
DEBOUNCE_MS = 350


class SearchDialog(QDialog):
    """Message and people search (tabs: Ctrl+Tab switches).

    Signals:
        message_chosen(str, int): open this conversation at this seq.
        person_chosen(str): open a direct conversation with this user.
    """

    message_chosen = pyqtSignal(str, int)
    person_chosen = pyqtSignal(str)

    def __init__(
        self,
        search_messages: MessageSearch,
        search_users: UserSearch,
        conversation_title: Callable[[str], str],
        *,
        me: str,
        current_conversation: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Search")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self._search_messages = search_messages
        self._title = conversation_title
        self._current = current_conversation
        self._tasks = TaskSet("search")
        self._generation = 0

        self.query = QLineEdit()
        self.query.setPlaceholderText('Words or "a phrase"…')
        self.query.setClearButtonEnabled(True)
        self.query.setAccessibleName("Search messages")
        self.query.textChanged.connect(self._schedule)
        self.query.returnPressed.connect(self.search_now)
        self.only_here = QCheckBox(
            f"&Only in {conversation_title(current_conversation)}"
            if current_conversation
            else "Only in the open conversation"
        )
        self.only_here.setEnabled(current_conversation is not None)
        self.only_here.toggled.connect(self.search_now)
        self.results = QListWidget()
        self.results.setAccessibleName("Messages found")
        self.results.setWordWrap(True)
        self.results.setSpacing(3)
        self.results.setAlternatingRowColors(True)
        self.results.itemActivated.connect(self._message_activated)
        self.info = QLabel("Type to search your conversations.")
        messages = QWidget()
        box = QVBoxLayout(messages)
        box.addWidget(self.query)
        box.addWidget(self.only_here)
        box.addWidget(self.results, 1)
        box.addWidget(self.info)

        self.people = UserPicker(search_users, me=me)
        self.people.picked.connect(self._person_picked)

        self.tabs = QTabWidget()
        self.tabs.addTab(messages, "&Messages")
        self.tabs.addTab(self.people, "&People")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.search_now)
        self.resize(560, 520)
        self.setMinimumSize(380, 320)
        self.query.setFocus()

    def search_now(self) -> None:
        """Search messages for the query now."""
        self._timer.stop()
        text = self.query.text().strip()
        self._generation += 1
        if not text:
            self.results.clear()
            self.info.setText("Type to search your conversations.")
            return
        self.info.setText("Searching…")
        scope = self._current if self.only_here.isChecked() and self._current else ""
        self._tasks.spawn(self._run(text, scope, self._generation), name="search:messages")

    def _schedule(self) -> None:
        self._timer.start()

    async def _run(self, text: str, scope: str, generation: int) -> None:
        try:
            found = await self._search_messages(text, scope)
        except ChatError as exc:
            if generation == self._generation:
                self.info.setText(describe_error(exc, action="search"))
            return
        if generation != self._generation:
            return
        self.results.clear()
        for event in found:
            label = (
                f"{event.sender} in {self._title(event.conversation_id)} · {short_time_label(event.time_ms)}\n"
                f"{one_line(event.body, 160)}"
            )
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, (event.conversation_id, event.seq))
            self.results.addItem(item)
        count = self.results.count()
        self.info.setText(
            f"{count} message{'s' if count != 1 else ''} found (newest first)" if count else "No messages found."
        )

    def _message_activated(self, item: QListWidgetItem) -> None:
        conversation_id, seq = item.data(Qt.ItemDataRole.UserRole)
        self.message_chosen.emit(conversation_id, int(seq))
        self.accept()

    def _person_picked(self, username: str) -> None:
        self.person_chosen.emit(username)
        self.accept()

    def done(self, result: int) -> None:
        """Close, cancelling searches under way."""
        self._tasks.cancel()
        super().done(result)
