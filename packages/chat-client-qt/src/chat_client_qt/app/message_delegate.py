"""``MessageDelegate``: paints a message view's rows (day separators, system lines, messages) from the palette.

A message shows its sender and time, "(edited)" when edited, its body wrapped to the view's width (or
"This message was deleted"), and for one's own messages the delivery state: "Sending…", "Sent", or
"Failed · Retry" (the "Retry" part is a click target, see ``retry_rect``).
"""

from __future__ import annotations

from dataclasses import dataclass

from PyQt6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, QRect, QSize, Qt
from PyQt6.QtGui import QFont, QFontMetrics, QPainter, QPalette
from PyQt6.QtWidgets import QAbstractItemView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from chat_client_qt.app import theme
from chat_client_qt.app.formatting import time_label
from chat_client_qt.app.message_model import RowRole
from chat_client_qt.app.timeline import Delivery, Row, RowKind

H_PAD = 12
V_PAD = 5
GAP = 8
DELETED_TEXT = "This message was deleted"
DELIVERY_TEXT = {Delivery.PENDING: "Sending…", Delivery.SENT: "✓ Sent", Delivery.FAILED: "Failed ·"}
RETRY_TEXT = "Retry"


@dataclass(frozen=True, slots=True)
class _Layout:
    header: QRect
    body: QRect
    delivery: QRect
    retry: QRect
    height: int


class MessageDelegate(QStyledItemDelegate):
    """Paints and sizes ``MessageListModel`` rows for the view it belongs to."""

    def __init__(self, view: QAbstractItemView) -> None:
        super().__init__(view)
        self._view = view

    # -- geometry --------------------------------------------------------------------------------------------

    def _width(self, option: QStyleOptionViewItem) -> int:
        width = option.rect.width()
        if width <= 0:
            viewport = self._view.viewport()
            width = viewport.width() if viewport is not None else 0
        return max(width, 200)

    def _fonts(self, option: QStyleOptionViewItem) -> tuple[QFont, QFont, QFont]:
        base = QFont(option.font)
        return base, theme.bold(base), theme.smaller(base)

    def _layout(self, row: Row, rect: QRect, option: QStyleOptionViewItem) -> _Layout:
        base, bold, small = self._fonts(option)
        fm, fm_bold, fm_small = QFontMetrics(base), QFontMetrics(bold), QFontMetrics(small)
        inner = rect.adjusted(H_PAD, V_PAD, -H_PAD, -V_PAD)
        header_h = max(fm_bold.height(), fm_small.height())
        header = QRect(inner.left(), inner.top(), inner.width(), header_h)
        text = DELETED_TEXT if row.deleted else row.text
        body_font_fm = QFontMetrics(theme.italic(base)) if row.deleted else fm
        bounds = body_font_fm.boundingRect(
            QRect(0, 0, max(inner.width(), 50), 1_000_000),
            int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft),
            text or " ",
        )
        body = QRect(inner.left(), header.bottom() + 3, inner.width(), bounds.height())
        delivery = QRect()
        retry = QRect()
        if row.own and row.delivery is not Delivery.NONE:
            label = DELIVERY_TEXT[row.delivery]
            label_w = fm_small.horizontalAdvance(label)
            retry_w = fm_small.horizontalAdvance(" " + RETRY_TEXT) if row.delivery is Delivery.FAILED else 0
            right = header.right()
            if retry_w:
                retry = QRect(right - retry_w + 1, header.top(), retry_w, header_h)
                right -= retry_w
            delivery = QRect(right - label_w + 1, header.top(), label_w, header_h)
        height = body.bottom() - rect.top() + 1 + V_PAD
        return _Layout(header, body, delivery, retry, height)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        """The row's height at the view's width (messages wrap)."""
        row: Row | None = index.data(RowRole)
        width = self._width(option)
        if row is None:
            return QSize(width, 0)
        base, _, small = self._fonts(option)
        if row.kind is RowKind.DAY:
            return QSize(width, QFontMetrics(base).height() + 2 * V_PAD + 8)
        if row.kind is RowKind.SYSTEM:
            return QSize(width, QFontMetrics(small).height() + 2 * V_PAD)
        return QSize(width, self._layout(row, QRect(0, 0, width, 0), option).height)

    def retry_rect(self, index: QModelIndex, rect: QRect) -> QRect:
        """Where the "Retry" link of a failed message is drawn in ``rect`` (empty if none)."""
        row: Row | None = index.data(RowRole)
        if row is None or row.delivery is not Delivery.FAILED:
            return QRect()
        option = QStyleOptionViewItem()
        option.initFrom(self._view)
        option.font = self._view.font()
        return self._layout(row, rect, option).retry

    def hits_retry(self, index: QModelIndex, rect: QRect, point: QPoint) -> bool:
        """Whether ``point`` is on the "Retry" link of the failed message at ``index``."""
        target = self.retry_rect(index, rect)
        return not target.isEmpty() and target.adjusted(-4, -4, 4, 4).contains(point)

    # -- painting --------------------------------------------------------------------------------------------

    def paint(
        self, painter: QPainter | None, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        """Draw one row."""
        row: Row | None = index.data(RowRole)
        if painter is None or row is None:
            return
        palette = option.palette
        painter.save()
        try:
            if row.kind is RowKind.DAY:
                self._paint_day(painter, option, row)
            elif row.kind is RowKind.SYSTEM:
                self._paint_system(painter, option, row)
            else:
                self._paint_message(painter, option, row, palette)
        finally:
            painter.restore()

    def _paint_day(self, painter: QPainter, option: QStyleOptionViewItem, row: Row) -> None:
        _, bold, _ = self._fonts(option)
        rect = option.rect.adjusted(H_PAD, V_PAD, -H_PAD, -V_PAD)
        fm = QFontMetrics(bold)
        text_w = fm.horizontalAdvance(row.text) + 2 * GAP
        mid_y = rect.center().y()
        painter.setPen(
            theme.mix(option.palette.color(QPalette.ColorRole.Text), option.palette.color(QPalette.ColorRole.Base), 0.8)
        )
        left_end = rect.center().x() - text_w // 2
        right_start = rect.center().x() + text_w // 2
        painter.drawLine(rect.left(), mid_y, left_end, mid_y)
        painter.drawLine(right_start, mid_y, rect.right(), mid_y)
        painter.setFont(bold)
        painter.setPen(theme.secondary(option.palette))
        painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), row.text)

    def _paint_system(self, painter: QPainter, option: QStyleOptionViewItem, row: Row) -> None:
        _, _, small = self._fonts(option)
        painter.setFont(theme.italic(small))
        painter.setPen(theme.secondary(option.palette))
        text = f"{row.text} · {time_label(row.time_ms)}" if row.time_ms else row.text
        painter.drawText(option.rect.adjusted(H_PAD, 0, -H_PAD, 0), int(Qt.AlignmentFlag.AlignCenter), text)

    def _paint_message(self, painter: QPainter, option: QStyleOptionViewItem, row: Row, palette: QPalette) -> None:
        style = self._view.style()
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter, self._view)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        secondary = text_color if selected else theme.secondary(palette)
        base, bold, small = self._fonts(option)
        layout = self._layout(row, option.rect, option)
        # header: sender, time, (edited) ... delivery state
        painter.setFont(bold)
        painter.setPen(text_color)
        sender_w = QFontMetrics(bold).horizontalAdvance(row.sender)
        painter.drawText(layout.header, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), row.sender)
        painter.setFont(small)
        painter.setPen(secondary)
        meta = time_label(row.time_ms) if row.time_ms else ""
        if row.edited and not row.deleted:
            meta += "  (edited)"
        meta_rect = layout.header.adjusted(sender_w + GAP, 0, 0, 0)
        painter.drawText(meta_rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), meta)
        if not layout.delivery.isEmpty():
            failed = row.delivery is Delivery.FAILED
            painter.setPen(theme.error(palette) if failed and not selected else secondary)
            painter.drawText(
                layout.delivery,
                int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
                DELIVERY_TEXT[row.delivery],
            )
            if failed:
                link = QFont(small)
                link.setUnderline(True)
                painter.setFont(link)
                painter.setPen(text_color if selected else palette.color(QPalette.ColorRole.Link))
                painter.drawText(
                    layout.retry, int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), RETRY_TEXT
                )
        # body
        if row.deleted:
            painter.setFont(theme.italic(base))
            painter.setPen(secondary)
            painter.drawText(layout.body, int(Qt.TextFlag.TextWordWrap), DELETED_TEXT)
        else:
            painter.setFont(base)
            painter.setPen(secondary if row.delivery is Delivery.PENDING and not selected else text_color)
            painter.drawText(layout.body, int(Qt.TextFlag.TextWordWrap), row.text)
