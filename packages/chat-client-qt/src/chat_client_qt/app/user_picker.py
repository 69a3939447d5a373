"""``UserPicker``: a search box and the matching users (with presence), to pick one or tick several."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QKeyEvent
from PyQt6.QtWidgets import QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.formatting import describe_error
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.client import ChatError

log = logging.getLogger(__name__)

UserSearch = Callable[[str], Awaitable[list[api.User]]]
DEBOUNCE_MS = 250


def user_label(user: api.User) -> str:
    """``name (display name) · online`` for a result row."""
    name = user.username
    if user.display_name and user.display_name != user.username:
        name += f" ({user.display_name})"
    return f"{name}  ·  {'online' if user.online else 'offline'}"


class UserPicker(QWidget):
    """Search users and pick one (``multi=False``) or tick several (``multi=True``).

    Signals:
        picked(str): a user was activated (double click or Enter on a result).
        changed(): the ticked users changed (multi).
    """

    picked = pyqtSignal(str)
    changed = pyqtSignal()

    def __init__(self, search: UserSearch, *, me: str = "", multi: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._search = search
        self.me = me
        self.multi = multi
        self._ticked: list[str] = []
        self._tasks = TaskSet("user-picker")
        self._generation = 0
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search people by name…")
        self.query.setClearButtonEnabled(True)
        self.query.setAccessibleName("Search people")
        self.query.textChanged.connect(self._schedule)
        self.query.installEventFilter(self)
        self.results = QListWidget()
        self.results.setAccessibleName("People found")
        self.results.itemActivated.connect(self._activated)
        self.results.itemChanged.connect(self._item_changed)
        self.info = QLabel("Type a name to search.")
        self.info.setWordWrap(True)
        self.chosen = QLabel("")
        self.chosen.setWordWrap(True)
        self.chosen.setVisible(multi)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.query)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.info)
        layout.addWidget(self.chosen)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._run)
        self.setFocusProxy(self.query)

    # -- reading ---------------------------------------------------------------------------------------------

    def ticked(self) -> list[str]:
        """The users ticked so far (multi), in the order ticked."""
        return list(self._ticked)

    def current(self) -> str | None:
        """The highlighted result's username, if any."""
        item = self.results.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    # -- behaviour -------------------------------------------------------------------------------------------

    def eventFilter(self, watched: object, event: object) -> bool:  # noqa: N802
        """Down from the search box goes to the results; Enter there activates the first one."""
        if watched is self.query and isinstance(event, QKeyEvent) and event.type() == QKeyEvent.Type.KeyPress:
            if event.key() == Qt.Key.Key_Down and self.results.count():
                self.results.setFocus()
                if self.results.currentRow() < 0:
                    self.results.setCurrentRow(0)
                return True
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.results.count() and not self.multi:
                item = self.results.currentItem() or self.results.item(0)
                if item is not None:
                    self._activated(item)
                    return True
        return super().eventFilter(watched, event)  # type: ignore[arg-type]

    def search_now(self) -> None:
        """Search without waiting for the debounce (e.g. tests, or Enter)."""
        self._timer.stop()
        self._run()

    def _schedule(self) -> None:
        self._timer.start()

    def _run(self) -> None:
        text = self.query.text().strip()
        self._generation += 1
        if not text:
            self.results.clear()
            self.info.setText("Type a name to search.")
            return
        self.info.setText("Searching…")
        self._tasks.spawn(self._query(text, self._generation), name="user-picker:search")

    async def _query(self, text: str, generation: int) -> None:
        try:
            users = await self._search(text)
        except ChatError as exc:
            if generation == self._generation:
                self.info.setText(describe_error(exc, action="search"))
            return
        if generation != self._generation:
            return  # a newer search is under way
        self.results.blockSignals(True)
        self.results.clear()
        for user in users:
            if user.username == self.me:
                continue
            item = QListWidgetItem(user_label(user))
            item.setData(Qt.ItemDataRole.UserRole, user.username)
            if self.multi:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                checked = user.username in self._ticked
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.results.addItem(item)
        self.results.blockSignals(False)
        count = self.results.count()
        self.info.setText(
            f"{count} found" + (" — Space ticks, Enter confirms" if self.multi and count else "")
            if count
            else "Nobody found."
        )

    def _activated(self, item: QListWidgetItem) -> None:
        username = str(item.data(Qt.ItemDataRole.UserRole))
        if self.multi:
            ticked = item.checkState() == Qt.CheckState.Checked
            item.setCheckState(Qt.CheckState.Unchecked if ticked else Qt.CheckState.Checked)
            return
        self.picked.emit(username)

    def _item_changed(self, item: QListWidgetItem) -> None:
        if not self.multi:
            return
        username = str(item.data(Qt.ItemDataRole.UserRole))
        if item.checkState() == Qt.CheckState.Checked and username not in self._ticked:
            self._ticked.append(username)
        elif item.checkState() != Qt.CheckState.Checked and username in self._ticked:
            self._ticked.remove(username)
        self.chosen.setText(f"Chosen: {', '.join(self._ticked)}" if self._ticked else "")
        self.changed.emit()

    def tick(self, username: str) -> None:
        """Tick a user (multi), whether or not shown in the results."""
        if username not in self._ticked:
            self._ticked.append(username)
            self.chosen.setText(f"Chosen: {', '.join(self._ticked)}")
            self.changed.emit()

    async def close_tasks(self) -> None:
        """Cancel a search under way."""
        await self._tasks.cancel_all()
