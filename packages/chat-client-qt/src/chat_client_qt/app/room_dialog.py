"""``RoomDialog``: create a room (name, topic, public or private) and invite people to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QCheckBox, QFormLayout, QLineEdit, QWidget

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.dialog_base import ActionDialog
from chat_client_qt.app.user_picker import UserPicker, UserSearch

CreateRoom = Callable[[str, str, bool, Sequence[str]], Awaitable[api.Conversation]]


class RoomDialog(ActionDialog):
    """The new-room form.

    Signals:
        created(api.Conversation): the new room.
    """

    created = pyqtSignal(object)

    def __init__(self, search: UserSearch, create_room: CreateRoom, *, me: str, parent: QWidget | None = None) -> None:
        super().__init__("New room", "&Create room", parent)
        self._create_room = create_room
        self.name = QLineEdit()
        self.name.setMaxLength(64)
        self.name.setPlaceholderText("e.g. general")
        self.topic = QLineEdit()
        self.topic.setMaxLength(256)
        self.topic.setPlaceholderText("What is it about? (optional)")
        self.public = QCheckBox("&Public: anyone can find and join it")
        self.picker = UserPicker(search, me=me, multi=True)
        form = QFormLayout()
        form.addRow("&Name:", self.name)
        form.addRow("&Topic:", self.topic)
        form.addRow("", self.public)
        form.addRow("&Invite:", self.picker)
        self.body.addLayout(form)
        self.resize(480, 520)
        self.setMinimumSize(360, 380)

    def validate(self) -> str:
        """The room needs a name."""
        return "" if self.name.text().strip() else "Give the room a name."

    async def run(self) -> None:
        """Create the room with the ticked people."""
        room = await self._create_room(
            self.name.text().strip(), self.topic.text().strip(), self.public.isChecked(), self.picker.ticked()
        )
        self.created.emit(room)
