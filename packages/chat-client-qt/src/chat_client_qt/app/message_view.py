"""``MessageView``: one conversation's messages; loads older history at the top, follows new ones at the bottom.

Keyboard: arrows move between messages; on one's own message, Enter or R retries a failed send, Delete
deletes (after confirming), E edits; the context menu (right click, Menu key or Shift+F10) has the same
actions and "Copy". Clicking "Retry" on a failed message retries it.
"""

from __future__ import annotations

from PyQt6.QtCore import QModelIndex, QPersistentModelIndex, QPoint, Qt, pyqtSignal
from PyQt6.QtGui import QContextMenuEvent, QGuiApplication, QKeyEvent, QKeySequence, QMouseEvent
from PyQt6.QtWidgets import QAbstractItemView, QListView, QMenu, QWidget

from chat_client_qt.app.message_delegate import MessageDelegate
from chat_client_qt.app.message_model import MessageListModel, RowRole, spoken
from chat_client_qt.app.timeline import Delivery, Row, RowKind

TOP_MARGIN_PX = 40  # load older history when scrolled this close to the top


class MessageView(QListView):
    """The message list of the open conversation (see the module's docstring).

    Signals:
        older_wanted(): the top was reached; load older history if there is some.
        retry_requested(str): retry the failed send with this request_id.
        discard_requested(str): forget the failed send with this request_id.
        edit_requested(int, str): edit own message ``seq`` (its current text).
        delete_requested(int): delete own message ``seq``.
    """

    older_wanted = pyqtSignal()
    retry_requested = pyqtSignal(str)
    discard_requested = pyqtSignal(str)
    edit_requested = pyqtSignal(int, str)
    delete_requested = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._delegate = MessageDelegate(self)
        self.setItemDelegate(self._delegate)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setWordWrap(True)
        self.setUniformItemSizes(False)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Messages")
        self._from_bottom = 0  # the scroll position, as distance from the bottom
        self._anchor: QPersistentModelIndex | None = None  # the top visible row while rows are inserted
        self._anchor_top = 0
        self._adjusting = False
        bar = self.verticalScrollBar()
        assert bar is not None
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)

    # -- model -----------------------------------------------------------------------------------------------

    def set_messages(self, model: MessageListModel | None) -> None:
        """Show a conversation's model (None: nothing), scrolled to its newest message."""
        old = self.model()
        if isinstance(old, MessageListModel):
            old.rowsAboutToBeInserted.disconnect(self._about_to_insert)
        self.setModel(model)
        self._from_bottom = 0
        if model is not None:
            model.rowsAboutToBeInserted.connect(self._about_to_insert)
            self.scrollToBottom()

    def messages(self) -> MessageListModel | None:
        """The model shown."""
        model = self.model()
        return model if isinstance(model, MessageListModel) else None

    def at_bottom(self) -> bool:
        """Whether the newest message is in view."""
        return self._from_bottom <= 4

    def _about_to_insert(self, _parent: QModelIndex, first: int, _last: int) -> None:
        """Remember the first visible row the insertion pushes down, to keep it in place (older history)."""
        self._anchor = None
        model = self.model()
        viewport = self.viewport()
        if self.at_bottom() or model is None or viewport is None:
            return
        top = self.indexAt(QPoint(4, 4))
        row = max(top.row() if top.isValid() else 0, first)
        if row >= model.rowCount():
            return  # appended below everything: nothing in view moves
        index = model.index(row, 0)
        rect = self.visualRect(index)
        if rect.top() <= viewport.height():
            self._anchor = QPersistentModelIndex(index)
            self._anchor_top = rect.top()

    def _scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        assert bar is not None
        if not self._adjusting:
            self._from_bottom = bar.maximum() - value
        if bar.maximum() > 0 and value - bar.minimum() <= TOP_MARGIN_PX:
            self.older_wanted.emit()

    def _range_changed(self, _minimum: int, maximum: int) -> None:
        bar = self.verticalScrollBar()
        assert bar is not None
        self._adjusting = True
        try:
            if self._from_bottom <= 4:
                bar.setValue(maximum)  # follow the newest messages
            elif self._anchor is not None and self._anchor.isValid():
                moved = self.visualRect(QModelIndex(self._anchor)).top() - self._anchor_top
                bar.setValue(bar.value() + moved)  # keep the rows in view where they were
            self._from_bottom = bar.maximum() - bar.value()
        finally:
            self._adjusting = False
            self._anchor = None
        if maximum == 0:
            self.older_wanted.emit()  # everything fits: there may be room for older messages

    def want_more_if_short(self) -> None:
        """Ask for older history when the messages do not fill the view (there is no scrolling to do it)."""
        self.executeDelayedItemsLayout()
        bar = self.verticalScrollBar()
        if bar is not None and bar.maximum() == 0 and self.model() is not None:
            self.older_wanted.emit()

    def scroll_to_message(self, seq: int) -> bool:
        """Select and show message ``seq`` if loaded."""
        model = self.messages()
        if model is None:
            return False
        position = model.position_of(seq=seq)
        if position < 0:
            return False
        index = model.index(position)
        self.setCurrentIndex(index)
        self.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)
        self._from_bottom = self.verticalScrollBar().maximum() - self.verticalScrollBar().value()  # type: ignore[union-attr]
        return True

    # -- actions ---------------------------------------------------------------------------------------------

    def current_row(self) -> Row | None:
        """The selected row, if any."""
        index = self.currentIndex()
        return index.data(RowRole) if index.isValid() else None

    def keyPressEvent(self, event: QKeyEvent | None) -> None:  # noqa: N802
        """Act on the selected own message (see the module's docstring)."""
        row = self.current_row()
        if event is not None and row is not None and row.kind is RowKind.MESSAGE:
            key = event.key()
            if row.delivery is Delivery.FAILED and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_R):
                self.retry_requested.emit(row.request_id)
                return
            if row.own and row.seq is not None and not row.deleted:
                if key == Qt.Key.Key_Delete:
                    self.delete_requested.emit(row.seq)
                    return
                if key == Qt.Key.Key_E:
                    self.edit_requested.emit(row.seq, row.text)
                    return
            if event.matches(QKeySequence.StandardKey.Copy):
                self._copy(row)
                return
        super().keyPressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:  # noqa: N802
        """A click on "Retry" retries the failed send."""
        if event is not None and event.button() == Qt.MouseButton.LeftButton:
            index = self.indexAt(event.position().toPoint())
            if index.isValid() and self._delegate.hits_retry(index, self.visualRect(index), event.position().toPoint()):
                row: Row = index.data(RowRole)
                self.retry_requested.emit(row.request_id)
                event.accept()
                return
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent | None) -> None:  # noqa: N802
        """The actions on a message: retry, discard, edit, delete, copy."""
        if event is None:
            return
        if event.reason() == QContextMenuEvent.Reason.Keyboard:
            index = self.currentIndex()
            position = self.visualRect(index).center() if index.isValid() else QPoint(10, 10)
        else:
            index = self.indexAt(event.pos())
            position = event.pos()
        row: Row | None = index.data(RowRole) if index.isValid() else None
        if row is None or row.kind is not RowKind.MESSAGE:
            return
        self.setCurrentIndex(index)
        menu = self.actions_menu(row)
        viewport = self.viewport()
        assert viewport is not None
        menu.popup(viewport.mapToGlobal(position))

    def actions_menu(self, row: Row) -> QMenu:
        """The context menu of a message row."""
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if row.delivery is Delivery.FAILED:
            menu.addAction("&Retry sending", lambda: self.retry_requested.emit(row.request_id))
            menu.addAction("&Discard", lambda: self.discard_requested.emit(row.request_id))
        if row.own and row.seq is not None and not row.deleted:
            seq = row.seq
            menu.addAction("&Edit…", lambda: self.edit_requested.emit(seq, row.text))
            menu.addAction("De&lete…", lambda: self.delete_requested.emit(seq))
        menu.addAction("&Copy", lambda: self._copy(row))
        return menu

    def _copy(self, row: Row) -> None:
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(row.text if not row.deleted else spoken(row))
