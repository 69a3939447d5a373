"""``ConversationListView``: the side list of conversations; choosing one (mouse or arrow keys) opens it."""

from __future__ import annotations

from PyQt6.QtCore import QItemSelection, Qt, pyqtSignal
from PyQt6.QtWidgets import QAbstractItemView, QListView, QWidget

from chat_client_qt.app.conversation_delegate import ConversationDelegate
from chat_client_qt.app.conversation_model import ConversationListModel


class ConversationListView(QListView):
    """The conversation list.

    Signals:
        conversation_chosen(str): the current conversation changed (its id).
    """

    conversation_chosen = pyqtSignal(str)

    def __init__(self, model: ConversationListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self._model = model
        self.setItemDelegate(ConversationDelegate(self))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setUniformItemSizes(True)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAccessibleName("Conversations")
        self.setMinimumWidth(200)
        selection = self.selectionModel()
        assert selection is not None
        selection.selectionChanged.connect(self._selection_changed)

    def _selection_changed(self, selected: QItemSelection, _deselected: QItemSelection) -> None:
        indexes = selected.indexes()
        if indexes:
            self.conversation_chosen.emit(self._model.item(indexes[0].row()).id)

    def current_id(self) -> str | None:
        """The id of the selected conversation, if any."""
        index = self.currentIndex()
        return self._model.item(index.row()).id if index.isValid() else None

    def select(self, conversation_id: str) -> bool:
        """Select (and so open) a conversation; returns False if it is not listed."""
        row = self._model.row_of(conversation_id)
        if row < 0:
            return False
        index = self._model.index(row)
        self.setCurrentIndex(index)
        self.scrollTo(index)
        return True

    def step(self, delta: int) -> None:
        """Select the conversation ``delta`` rows below (negative: above) the current one, wrapping around."""
        count = self._model.rowCount()
        if not count:
            return
        current = self.currentIndex()
        row = (current.row() + delta) % count if current.isValid() else 0
        self.setCurrentIndex(self._model.index(row))
