"""``ConversationListModel``: the signed-in user's conversations, most recently active first, for the side list.

Each row is a ``ConversationItem``: name, kind, unread count, last-message preview and time, and for a direct
conversation the other user's presence. The model is fed by the conversation listing (``set_conversations``)
and by live events and presence signals; it needs no window (tests use it directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from PyQt6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.formatting import event_preview

ItemRole = Qt.ItemDataRole.UserRole + 1

_PREVIEW_KINDS = {
    api.EventKind.CREATED,
    api.EventKind.MESSAGE,
    api.EventKind.JOINED,
    api.EventKind.LEFT,
    api.EventKind.RENAMED,
}


@dataclass(frozen=True, slots=True)
class ConversationItem:
    """One conversation as the list shows it.

    Attributes:
        id: the conversation id.
        direct: a direct conversation (else a room).
        name: the room's name, or the other user's username.
        topic: the room's topic.
        member_count: how many members.
        unread: messages from others not read yet.
        last_seq: the newest seq known.
        last_time_ms: when the newest event happened (or the creation time).
        preview: the last message (or event) on one line.
        preview_seq: the seq of the event the preview shows.
        preview_sender: who caused that event.
        online: for a direct conversation, whether the other user is online (None: unknown; rooms: None).
    """

    id: str
    direct: bool
    name: str
    topic: str = ""
    member_count: int = 0
    unread: int = 0
    last_seq: int = 0
    last_time_ms: int = 0
    preview: str = ""
    preview_seq: int = 0
    preview_sender: str = ""
    online: bool | None = None

    @property
    def title(self) -> str:
        """The name as shown: ``#room`` or the username."""
        return self.name if self.direct else f"#{self.name}"


def item_of(conversation: api.Conversation, me: str, online: bool | None = None) -> ConversationItem:
    """A list item from a ``Conversation`` of the listing."""
    last = conversation.last_event
    return ConversationItem(
        id=conversation.id,
        direct=conversation.kind is api.ConversationKind.DIRECT,
        name=conversation.name,
        topic=conversation.topic,
        member_count=conversation.member_count,
        unread=conversation.unread_count,
        last_seq=conversation.last_seq,
        last_time_ms=(last.time_ms if last is not None and last.time_ms else conversation.created_at_ms),
        preview=event_preview(last, me),
        preview_seq=last.seq if last is not None else 0,
        preview_sender=last.sender if last is not None else "",
        online=online,
    )


class ConversationListModel(QAbstractListModel):
    """The conversation list (see the module's docstring). ``ItemRole`` gives the ``ConversationItem``."""

    def __init__(self, me: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.me = me
        self._items: list[ConversationItem] = []

    # -- Qt model --------------------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """The number of conversations."""
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The item (``ItemRole``), its title (display), or a spoken summary (accessibility)."""
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == ItemRole:
            return item
        if role == Qt.ItemDataRole.DisplayRole:
            return item.title
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            parts = [item.title]
            if item.online is not None:
                parts.append("online" if item.online else "offline")
            if item.unread:
                parts.append(f"{item.unread} unread")
            if item.preview:
                parts.append(item.preview)
            return ", ".join(parts)
        return None

    # -- reading ---------------------------------------------------------------------------------------------

    def items(self) -> list[ConversationItem]:
        """Every item, in display order."""
        return list(self._items)

    def item(self, row: int) -> ConversationItem:
        """The item at ``row``."""
        return self._items[row]

    def get(self, conversation_id: str) -> ConversationItem | None:
        """The item of a conversation, if listed."""
        row = self.row_of(conversation_id)
        return self._items[row] if row >= 0 else None

    def row_of(self, conversation_id: str) -> int:
        """The row of a conversation (-1 if not listed)."""
        for row, item in enumerate(self._items):
            if item.id == conversation_id:
                return row
        return -1

    def direct_with(self, username: str) -> ConversationItem | None:
        """The direct conversation with ``username``, if listed."""
        return next((i for i in self._items if i.direct and i.name == username), None)

    def total_unread(self) -> int:
        """Unread messages over every conversation."""
        return sum(i.unread for i in self._items)

    # -- updates ---------------------------------------------------------------------------------------------

    def set_conversations(self, conversations: Sequence[api.Conversation]) -> None:
        """Replace the list with a fresh listing (keeping known presence; the selection survives)."""
        online = {i.name: i.online for i in self._items if i.direct}
        fresh = [
            item_of(c, self.me, online.get(c.name) if c.kind is api.ConversationKind.DIRECT else None)
            for c in conversations
        ]
        fresh_ids = {i.id for i in fresh}
        for row in reversed(range(len(self._items))):
            if self._items[row].id not in fresh_ids:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._items[row]
                self.endRemoveRows()
        for item in fresh:
            row = self.row_of(item.id)
            if row < 0:
                self.beginInsertRows(QModelIndex(), len(self._items), len(self._items))
                self._items.append(item)
                self.endInsertRows()
            else:
                self._set(row, item)
        self._resort()

    def add_conversation(self, conversation: api.Conversation) -> None:
        """Add (or refresh) one conversation, e.g. one just created or opened."""
        online = None
        existing = self.get(conversation.id)
        if existing is not None:
            online = existing.online
        item = item_of(conversation, self.me, online)
        row = self.row_of(conversation.id)
        if row < 0:
            self.beginInsertRows(QModelIndex(), len(self._items), len(self._items))
            self._items.append(item)
            self.endInsertRows()
        else:
            self._set(row, item)
        self._resort()

    def apply_event(self, event: api.Event, *, active: bool = False) -> bool:
        """Account for a live event: preview, time, unread count (not for the ``active`` conversation).

        Returns:
            False when the conversation is not listed (the caller should refresh the listing).
        """
        row = self.row_of(event.conversation_id)
        if row < 0:
            return False
        item = self._items[row]
        if event.seq <= item.last_seq and event.kind not in (api.EventKind.EDITED, api.EventKind.DELETED):
            return True  # already counted by the listing
        changes: dict[str, Any] = {"last_seq": max(item.last_seq, event.seq)}
        if event.kind in _PREVIEW_KINDS:
            changes.update(
                preview=event_preview(event, self.me),
                preview_seq=event.seq,
                preview_sender=event.sender,
                last_time_ms=event.time_ms,
            )
        elif event.target_seq and event.target_seq == item.preview_seq:  # the previewed message changed
            shown = api.Event(
                kind=api.EventKind.MESSAGE,
                sender=item.preview_sender,
                body=event.body,
                deleted=event.kind is api.EventKind.DELETED,
            )
            changes["preview"] = event_preview(shown, self.me)
        if event.kind is api.EventKind.MESSAGE and event.sender != self.me and not active:
            changes["unread"] = item.unread + 1
        if event.kind is api.EventKind.RENAMED and event.body:
            changes["name"] = event.body
        self._set(row, replace(item, **changes))
        if "last_time_ms" in changes:
            self._resort()
        return True

    def mark_read(self, conversation_id: str) -> None:
        """Clear a conversation's unread count (its messages were seen)."""
        row = self.row_of(conversation_id)
        if row >= 0 and self._items[row].unread:
            self._set(row, replace(self._items[row], unread=0))

    def set_presence(self, username: str, online: bool) -> None:
        """Show whether ``username`` is online, on their direct conversation."""
        for row, item in enumerate(self._items):
            if item.direct and item.name == username and item.online != online:
                self._set(row, replace(item, online=online))

    # -- internals -------------------------------------------------------------------------------------------

    def _set(self, row: int, item: ConversationItem) -> None:
        if self._items[row] != item:
            self._items[row] = item
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def _resort(self) -> None:
        order = sorted(range(len(self._items)), key=lambda r: (-self._items[r].last_time_ms, self._items[r].title))
        if order == list(range(len(self._items))):
            return
        self.layoutAboutToBeChanged.emit()
        old_persistent = self.persistentIndexList()
        new_row_of = {old: new for new, old in enumerate(order)}
        self._items = [self._items[r] for r in order]
        self.changePersistentIndexList(old_persistent, [self.index(new_row_of[i.row()]) for i in old_persistent])
        self.layoutChanged.emit()
