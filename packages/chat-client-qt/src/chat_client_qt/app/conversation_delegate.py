"""``ConversationDelegate``: paints a conversation row: presence dot, name, time, preview, unread badge."""

from __future__ import annotations

from PyQt6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt
from PyQt6.QtGui import QBrush, QFontMetrics, QPainter, QPalette, QPen
from PyQt6.QtWidgets import QAbstractItemView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from chat_client_qt.app import theme
from chat_client_qt.app.conversation_model import ConversationItem, ItemRole
from chat_client_qt.app.formatting import short_time_label

H_PAD = 10
V_PAD = 7
DOT = 10


class ConversationDelegate(QStyledItemDelegate):
    """Paints ``ConversationListModel`` rows (two lines each)."""

    def __init__(self, view: QAbstractItemView) -> None:
        super().__init__(view)
        self._view = view

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        """Two lines of text and padding."""
        fm = QFontMetrics(option.font)
        small = QFontMetrics(theme.smaller(option.font))
        return QSize(220, fm.height() + small.height() + 2 * V_PAD + 3)

    def paint(
        self, painter: QPainter | None, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        """Draw one conversation."""
        item: ConversationItem | None = index.data(ItemRole)
        if painter is None or item is None:
            return
        painter.save()
        try:
            self._paint(painter, option, item)
        finally:
            painter.restore()

    def _paint(self, painter: QPainter, option: QStyleOptionViewItem, item: ConversationItem) -> None:
        style = self._view.style()
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, self._view)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        secondary = text if selected else theme.secondary(palette)
        base = option.font
        bold = theme.bold(base)
        small = theme.smaller(base)
        fm_bold, fm_small = QFontMetrics(bold), QFontMetrics(small)
        inner = option.rect.adjusted(H_PAD, V_PAD, -H_PAD, -V_PAD)
        line1 = QRect(inner.left(), inner.top(), inner.width(), fm_bold.height())
        line2 = QRect(inner.left(), line1.bottom() + 3, inner.width(), fm_small.height())

        # presence (direct) or '#' (room)
        icon = QRect(line1.left(), line1.center().y() - DOT // 2, DOT, DOT)
        if item.direct:
            if item.online:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(QBrush(theme.ONLINE))
            else:
                painter.setPen(QPen(secondary, 1.5))
                painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawEllipse(QRectF(icon).adjusted(1, 1, -1, -1))
        text_left = icon.right() + 8

        # time on the right of line 1, unread badge on the right of line 2
        when = short_time_label(item.last_time_ms)
        painter.setFont(small)
        when_w = fm_small.horizontalAdvance(when)
        painter.setPen(secondary)
        painter.drawText(line1, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), when)
        badge_w = 0
        if item.unread:
            label = str(item.unread) if item.unread < 100 else "99+"
            badge_w = max(fm_small.height() + 4, fm_small.horizontalAdvance(label) + 10)
            badge = QRectF(line2.right() - badge_w + 1, line2.top(), badge_w, fm_small.height())
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(
                QBrush(palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Highlight))
            )
            painter.drawRoundedRect(badge, badge.height() / 2, badge.height() / 2)
            painter.setPen(
                palette.color(QPalette.ColorRole.Highlight if selected else QPalette.ColorRole.HighlightedText)
            )
            painter.setFont(theme.bold(small))
            painter.drawText(badge, int(Qt.AlignmentFlag.AlignCenter), label)

        # name (bold when unread) and preview
        name_font = bold if item.unread else base
        painter.setFont(name_font)
        painter.setPen(text)
        name_rect = QRect(text_left, line1.top(), line1.right() - text_left - when_w - 8, line1.height())
        name = QFontMetrics(name_font).elidedText(item.title, Qt.TextElideMode.ElideRight, name_rect.width())
        painter.drawText(name_rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), name)
        painter.setFont(small)
        painter.setPen(secondary)
        preview_rect = QRect(text_left, line2.top(), line2.right() - text_left - badge_w - 6, line2.height())
        preview = fm_small.elidedText(item.preview or item.topic, Qt.TextElideMode.ElideRight, preview_rect.width())
        painter.drawText(preview_rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), preview)
