"""``DirectDialog``: start (or reopen) a direct conversation with someone found by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QWidget

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.dialog_base import ActionDialog
from chat_client_qt.app.user_picker import UserPicker, UserSearch


class DirectDialog(ActionDialog):
    """Pick a person, then ``open_direct`` them.

    Signals:
        opened(api.Conversation): the direct conversation (new or existing).
    """

    opened = pyqtSignal(object)

    def __init__(
        self,
        search: UserSearch,
        open_direct: Callable[[str], Awaitable[api.Conversation]],
        *,
        me: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("New direct message", "&Start", parent)
        self._open_direct = open_direct
        self.picker = UserPicker(search, me=me)
        self.picker.picked.connect(lambda _name: self.submit())
        self.body.addWidget(self.picker)
        self.resize(420, 420)
        self.setMinimumSize(320, 300)

    def validate(self) -> str:
        """A person must be highlighted."""
        if self.picker.current() is None and self.picker.results.count():
            self.picker.results.setCurrentRow(0)
        return "" if self.picker.current() else "Search for someone and choose them first."

    async def run(self) -> None:
        """Open the direct conversation."""
        username = self.picker.current()
        assert username is not None
        conversation = await self._open_direct(username)
        self.opened.emit(conversation)
