"""``ComposeEdit``: the message box: Enter sends, Shift+Enter makes a new line; typing is reported."""

from __future__ import annotations

from PyQt6.QtCore import QSize, Qt, pyqtSignal
from PyQt6.QtGui import QKeyEvent
from PyQt6.QtWidgets import QPlainTextEdit, QSizePolicy, QWidget

MAX_LINES = 6


class ComposeEdit(QPlainTextEdit):
    """A growing plain-text box for writing messages.

    Signals:
        submitted(str): Enter was pressed with some text (the box is then cleared).
        typing(): the user changed the text (not by sending).
    """

    submitted = pyqtSignal(str)
    typing = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Write a message…  (Enter sends, Shift+Enter adds a line)")
        self.setTabChangesFocus(True)
        self.setAccessibleName("Message")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._clearing = False
        self.textChanged.connect(self._changed)
        self._fit()

    def keyPressEvent(self, event: QKeyEvent | None) -> None:  # noqa: N802
        """Enter sends; Shift+Enter inserts a newline; anything else edits."""
        if event is not None and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submit()
            event.accept()
            return
        super().keyPressEvent(event)

    def submit(self) -> None:
        """Send the text (if it is not blank) and clear the box."""
        text = self.toPlainText()
        if not text.strip():
            return
        self._clearing = True
        try:
            self.clear()
        finally:
            self._clearing = False
        self.submitted.emit(text.strip("\n"))

    def _changed(self) -> None:
        self._fit()
        if not self._clearing and self.toPlainText():
            self.typing.emit()

    def _fit(self) -> None:
        document = self.document()
        lines = max(1, min(MAX_LINES, document.lineCount() if document is not None else 1))
        line_h = self.fontMetrics().lineSpacing()
        margins = self.contentsMargins()
        frame = 2 * self.frameWidth() + margins.top() + margins.bottom()
        doc_margin = int(document.documentMargin()) * 2 if document is not None else 8
        self.setFixedHeight(lines * line_h + frame + doc_margin + 2)

    def sizeHint(self) -> QSize:  # noqa: N802
        """As wide as there is room, as tall as the text (up to six lines)."""
        return QSize(400, self.height())
