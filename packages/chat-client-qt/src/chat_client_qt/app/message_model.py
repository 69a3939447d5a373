"""``MessageListModel``: the Qt list model of one conversation's ``Timeline`` (its cache while the app runs).

``refresh`` recomputes the timeline's rows and tells the view only what changed (rows inserted or removed
at the edges or in the middle, rows whose content changed), so scrolling and selection survive new
messages, older pages and delivery-state changes.
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from chat_client_qt.app.formatting import time_label
from chat_client_qt.app.timeline import Delivery, Row, RowKind, Timeline

RowRole = Qt.ItemDataRole.UserRole + 1


class MessageListModel(QAbstractListModel):
    """The rows of one ``Timeline``; ``RowRole`` gives the ``Row``."""

    def __init__(self, timeline: Timeline, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._rows: list[Row] = timeline.rows()

    # -- Qt model --------------------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """The number of rows."""
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """The ``Row`` (``RowRole``), or its text as read aloud or copied."""
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == RowRole:
            return row
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return spoken(row)
        if role == Qt.ItemDataRole.ToolTipRole and row.error:
            return row.error
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        """Messages are selectable (for keyboard actions); separators and system lines are not."""
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        row = self._rows[index.row()]
        if row.kind is RowKind.MESSAGE:
            return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return Qt.ItemFlag.ItemIsEnabled

    # -- reading ---------------------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """Every row, as shown."""
        return list(self._rows)

    def row(self, position: int) -> Row:
        """The row at ``position``."""
        return self._rows[position]

    def position_of(self, *, seq: int | None = None, request_id: str | None = None) -> int:
        """The position of the message with ``seq`` or ``request_id`` (-1 if not shown)."""
        for i, row in enumerate(self._rows):
            if row.kind is RowKind.MESSAGE and (
                (seq is not None and row.seq == seq) or (request_id and row.request_id == request_id)
            ):
                return i
        return -1

    # -- updates ---------------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show the timeline's current rows, signalling only the differences."""
        new = self.timeline.rows()
        old = self._rows
        prefix = 0
        while prefix < len(old) and prefix < len(new) and old[prefix].key == new[prefix].key:
            prefix += 1
        suffix = 0
        while (
            suffix < len(old) - prefix
            and suffix < len(new) - prefix
            and old[len(old) - 1 - suffix].key == new[len(new) - 1 - suffix].key
        ):
            suffix += 1
        removed = len(old) - prefix - suffix
        inserted = len(new) - prefix - suffix
        if removed:
            self.beginRemoveRows(QModelIndex(), prefix, prefix + removed - 1)
            self._rows = old[:prefix] + old[len(old) - suffix :]
            self.endRemoveRows()
        if inserted:
            self.beginInsertRows(QModelIndex(), prefix, prefix + inserted - 1)
            self._rows = new[: prefix + inserted] + self._rows[prefix:]
            self.endInsertRows()
        self._rows = new
        for i in [*range(prefix), *range(len(new) - suffix, len(new))]:
            j = i if i < prefix else i - inserted + removed
            if old[j] != new[i]:
                index = self.index(i)
                self.dataChanged.emit(index, index)


def spoken(row: Row) -> str:
    """A row as one line of text (display role, screen readers, copying)."""
    if row.kind is not RowKind.MESSAGE:
        return row.text
    body = "message deleted" if row.deleted else row.text
    parts = [f"{row.sender} at {time_label(row.time_ms)}: {body}"]
    if row.edited and not row.deleted:
        parts.append("(edited)")
    if row.delivery is Delivery.PENDING:
        parts.append("(sending)")
    elif row.delivery is Delivery.FAILED:
        parts.append("(failed to send)")
    return " ".join(parts)
