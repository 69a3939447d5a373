"""``ConversationPane``: the right side of the main window: header, messages, notices, typing indicator, compose box."""

from __future__ import annotations

from PyQt6.QtCore import QEvent, Qt, pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from chat_client_qt.app import theme
from chat_client_qt.app.compose import ComposeEdit
from chat_client_qt.app.conversation_model import ConversationItem
from chat_client_qt.app.message_model import MessageListModel
from chat_client_qt.app.message_view import MessageView


class ConversationPane(QWidget):
    """One open conversation.

    Signals:
        send_requested(str, str): send (conversation id, body).
        typing(str): the user types in a conversation.
        older_wanted(str): the view reached the top of a conversation.
        invite_requested(str): the "Invite…" button of a room was pressed.
    """

    send_requested = pyqtSignal(str, str)
    typing = pyqtSignal(str)
    older_wanted = pyqtSignal(str)
    invite_requested = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.conversation_id: str | None = None
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.title.setFont(theme.bold(theme.smaller(self.font(), 1.15)))
        self.subtitle = QLabel()
        self.subtitle.setTextFormat(Qt.TextFormat.PlainText)
        self.invite_button = QPushButton("&Invite…")
        self.invite_button.setToolTip("Add people to this room (Ctrl+I)")
        self.invite_button.clicked.connect(self._invite)
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.view = MessageView()
        self.view.older_wanted.connect(self._older)
        self.typing_label = QLabel()
        self.typing_label.setTextFormat(Qt.TextFormat.PlainText)
        self.typing_label.setAccessibleName("Typing")
        self.compose = ComposeEdit()
        self.compose.submitted.connect(self._submitted)
        self.compose.typing.connect(self._typing)
        self.placeholder = QLabel(
            "Choose a conversation on the left, or start one with Ctrl+N (direct) or Ctrl+Shift+N (room)."
        )
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)

        header = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(0)
        titles.addWidget(self.title)
        titles.addWidget(self.subtitle)
        header.addLayout(titles, 1)
        header.addWidget(self.invite_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.notice)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.placeholder, 1)
        layout.addWidget(self.typing_label)
        layout.addWidget(self.compose)
        self._restyle()
        self.show_conversation(None, None)

    def changeEvent(self, event: QEvent | None) -> None:  # noqa: N802
        """Follow palette changes (light / dark)."""
        super().changeEvent(event)
        if event is not None and event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._restyle()

    def _restyle(self) -> None:
        color = theme.secondary(self.palette()).name()
        self.subtitle.setStyleSheet(f"color: {color};")
        self.typing_label.setStyleSheet(f"color: {color}; font-style: italic;")
        self.notice.setStyleSheet(f"color: {color};")

    def show_conversation(self, item: ConversationItem | None, model: MessageListModel | None) -> None:
        """Show a conversation (None: the "choose a conversation" placeholder)."""
        self.conversation_id = item.id if item is not None else None
        opened = item is not None
        for widget in (self.title, self.subtitle, self.view, self.compose, self.typing_label):
            widget.setVisible(opened)
        self.placeholder.setVisible(not opened)
        self.invite_button.setVisible(opened and item is not None and not item.direct)
        self.view.set_messages(model)
        self.set_typing("")
        self.set_notice("")
        if item is not None:
            self.update_header(item)
            self.compose.setPlaceholderText(f"Message {item.title}…  (Enter sends, Shift+Enter adds a line)")

    def update_header(self, item: ConversationItem) -> None:
        """Refresh the title and subtitle of the open conversation."""
        if item.id != self.conversation_id:
            return
        self.title.setText(item.title)
        if item.direct:
            presence = {True: "online", False: "offline", None: ""}[item.online]
            self.subtitle.setText(f"Direct message · {presence}" if presence else "Direct message")
        else:
            members = f"{item.member_count} member{'s' if item.member_count != 1 else ''}"
            self.subtitle.setText(f"{item.topic} · {members}" if item.topic else members)

    def set_notice(self, text: str) -> None:
        """Show (or with "" hide) a line above the messages (loading, offline, start of history)."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def set_typing(self, text: str) -> None:
        """The typing indicator's text ("" when nobody types)."""
        self.typing_label.setText(text or " ")

    def focus_compose(self) -> None:
        """Put the keyboard focus in the compose box."""
        if self.compose.isVisible():
            self.compose.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def _submitted(self, body: str) -> None:
        if self.conversation_id is not None:
            self.send_requested.emit(self.conversation_id, body)

    def _typing(self) -> None:
        if self.conversation_id is not None:
            self.typing.emit(self.conversation_id)

    def _older(self) -> None:
        if self.conversation_id is not None:
            self.older_wanted.emit(self.conversation_id)

    def _invite(self) -> None:
        if self.conversation_id is not None:
            self.invite_requested.emit(self.conversation_id)
