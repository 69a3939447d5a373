"""``InviteDialog``: add people to an existing room."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QLabel, QWidget

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.dialog_base import ActionDialog
from chat_client_qt.app.user_picker import UserPicker, UserSearch

Invite = Callable[[Sequence[str]], Awaitable[api.Conversation]]


class InviteDialog(ActionDialog):
    """Tick people, then invite them.

    Signals:
        invited(api.Conversation): the room after the invitation.
    """

    invited = pyqtSignal(object)

    def __init__(
        self, room_title: str, search: UserSearch, invite: Invite, *, me: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(f"Invite people to {room_title}", "&Invite", parent)
        self._invite = invite
        self.picker = UserPicker(search, me=me, multi=True)
        self.body.addWidget(QLabel("Find people and tick them:"))
        self.body.addWidget(self.picker)
        self.resize(420, 440)
        self.setMinimumSize(320, 300)

    def validate(self) -> str:
        """Someone must be ticked."""
        return "" if self.picker.ticked() else "Tick at least one person."

    async def run(self) -> None:
        """Invite the ticked people."""
        self.invited.emit(await self._invite(self.picker.ticked()))
