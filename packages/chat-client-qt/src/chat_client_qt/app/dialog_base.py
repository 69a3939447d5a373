"""``ActionDialog``: the base of dialogs that make one call (error line, busy state, never a nested event loop).

Dialogs are opened with ``open()`` (window-modal, non-blocking), never ``exec()``: a nested Qt event loop
inside a qasync task would re-enter the asyncio loop.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from chat_client_qt.app import theme
from chat_client_qt.app.formatting import describe_error
from chat_client_qt.app.tasks import TaskSet
from chat_client_qt.client import ChatError


class ActionDialog(QDialog):
    """A dialog whose OK button runs one async call; errors show in the dialog, success closes it."""

    def __init__(self, title: str, ok_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self._tasks = TaskSet(title)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.error.setAccessibleName("Error")
        self.error.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        ok = self.buttons.addButton(ok_text, QDialogButtonBox.ButtonRole.AcceptRole)
        assert ok is not None
        self.ok_button = ok
        self.ok_button.setDefault(True)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        self.body = QVBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(self.body, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.busy = False

    def submit(self) -> None:
        """Run the dialog's call (subclasses implement ``run``)."""
        if self.busy:
            return
        problem = self.validate()
        if problem:
            self.show_error(problem)
            return
        self._set_busy(True)
        self._tasks.spawn(self._submit(), name=f"dialog:{self.windowTitle()}")

    async def _submit(self) -> None:
        try:
            await self.run()
        except ChatError as exc:
            self.show_error(describe_error(exc, action=self.windowTitle().lower()))
            return
        finally:
            self._set_busy(False)
        self.accept()

    def validate(self) -> str:
        """A problem with the input to show instead of calling ("" if none)."""
        return ""

    async def run(self) -> None:
        """The call (raise ``ChatError`` to show it)."""
        raise NotImplementedError

    def show_error(self, text: str) -> None:
        """Show an error line in the dialog."""
        self.error.setStyleSheet(f"color: {theme.error(self.palette()).name()};")
        self.error.setText(text)
        self.error.setVisible(bool(text))

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.ok_button.setEnabled(not busy)
        if busy:
            self.error.setVisible(False)

    def done(self, result: int) -> None:
        """Close, cancelling a call under way when cancelled."""
        if result != QDialog.DialogCode.Accepted:
            self._tasks.cancel()
        super().done(result)
