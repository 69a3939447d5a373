"""The app's widgets offscreen, without a cluster: compose keys, sign-in checks, message actions, status bar."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import qasync
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app import theme
from chat_client_qt.app.compose import ComposeEdit
from chat_client_qt.app.conversation_model import ConversationItem
from chat_client_qt.app.conversation_pane import ConversationPane
from chat_client_qt.app.message_model import MessageListModel
from chat_client_qt.app.message_view import MessageView
from chat_client_qt.app.room_dialog import RoomDialog
from chat_client_qt.app.settings import AppSettings
from chat_client_qt.app.sign_in import CREATE, SignInWindow
from chat_client_qt.app.status_bar import ClusterStatusBar
from chat_client_qt.app.timeline import Timeline
from chat_client_qt.app.user_picker import UserPicker
from chat_client_qt.client import ChatClient, OutboxItem, OutboxState

NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="module")
def qloop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop on the Qt event loop that pytest-qt spins (qasync, "already running")."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    for task in asyncio.all_tasks(loop):
        task.cancel()
    qapp.processEvents()
    asyncio.events._set_running_loop(None)
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined]  # stop() would end pytest-qt's loops
    loop.close()
    asyncio.set_event_loop(None)


def test_compose_enter_sends_and_shift_enter_makes_a_line(qtbot: Any) -> None:
    compose = ComposeEdit()
    qtbot.addWidget(compose)
    sent: list[str] = []
    typed: list[int] = []
    compose.submitted.connect(sent.append)
    compose.typing.connect(lambda: typed.append(1))
    qtbot.keyClick(compose, Qt.Key.Key_Return)
    assert sent == []  # nothing to send
    qtbot.keyClicks(compose, "one")
    qtbot.keyClick(compose, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(compose, "two")
    assert compose.toPlainText() == "one\ntwo" and sent == [] and typed
    height = compose.height()
    qtbot.keyClick(compose, Qt.Key.Key_Enter)  # the keypad's Enter too
    assert sent == ["one\ntwo"] and compose.toPlainText() == ""
    assert compose.height() <= height  # shrinks back to one line


def sign_in_window(qtbot: Any, tmp_path: Path) -> tuple[SignInWindow, list[list[str]]]:
    made: list[list[str]] = []

    def factory(servers: list[str]) -> ChatClient:
        made.append(servers)
        raise AssertionError("no call should be made")

    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    window = SignInWindow(settings, factory, servers=["127.0.0.1:50051"])
    qtbot.addWidget(window)
    window.show()
    return window, made


def test_sign_in_checks_the_form_before_calling(qtbot: Any, tmp_path: Path) -> None:
    window, made = sign_in_window(qtbot, tmp_path)
    assert not window.display_name.isVisible() and not window.confirm.isVisible()
    window.username.setText("")
    window.submit()
    assert window.error_text() == "Enter your username."
    window.username.setText("ann")
    window.submit()
    assert window.error_text() == "Enter your password."
    window.servers.setText("localhost")
    window.password.setText("secret123")
    window.submit()
    assert window.error_text().startswith("Servers: “localhost” is not host:port")
    window.servers.setText("127.0.0.1:50051")
    window.set_mode(CREATE)
    assert window.display_name.isVisible() and window.confirm.isVisible()
    assert window.button.text() == "Create account"
    window.confirm.setText("different")
    qtbot.keyClick(window.confirm, Qt.Key.Key_Return)
    assert window.error_text() == "The two passwords differ."
    assert made == []


def own_rows_view(qtbot: Any) -> tuple[MessageView, MessageListModel]:
    timeline = Timeline("c", "me")
    events = [
        api.Event(conversation_id="c", seq=s, kind=api.EventKind.MESSAGE, sender=who, body=text, time_ms=NOW_MS)
        for s, who, text in [(1, "bob", "hello " * 30), (2, "me", "mine"), (3, "bob", "gone")]
    ]
    events[2].deleted = True
    timeline.add_page(api.GetHistoryResponse(events=events), older=False)
    now = time.time()
    timeline.apply_outbox(OutboxItem("rid-1", "c", "rejected", now, OutboxState.FAILED, 1, "not a member", None, now))
    timeline.apply_outbox(OutboxItem("rid-2", "c", "waiting", now + 1, OutboxState.PENDING, 0, None, None, now))
    model = MessageListModel(timeline)
    view = MessageView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.set_messages(model)
    view.show()
    qtbot.waitExposed(view)
    return view, model


def test_message_actions_by_mouse_and_keyboard(qtbot: Any) -> None:
    view, model = own_rows_view(qtbot)
    assert not view.grab().isNull()
    failed = model.position_of(request_id="rid-1")
    index = model.index(failed)
    view.scrollTo(index)
    retry = view._delegate.retry_rect(index, view.visualRect(index))
    assert not retry.isEmpty()
    with qtbot.waitSignal(view.retry_requested) as clicked:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=retry.center())
    assert clicked.args == ["rid-1"]

    view.setCurrentIndex(index)
    with qtbot.waitSignal(view.retry_requested) as pressed:
        qtbot.keyClick(view, Qt.Key.Key_R)
    assert pressed.args == ["rid-1"]

    view.setCurrentIndex(model.index(model.position_of(seq=2)))
    with qtbot.waitSignal(view.delete_requested) as deleting:
        qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert deleting.args == [2]
    with qtbot.waitSignal(view.edit_requested) as editing:
        qtbot.keyClick(view, Qt.Key.Key_E)
    assert editing.args == [2, "mine"]
    menu = view.actions_menu(model.row(failed))
    assert [a.text() for a in menu.actions()] == ["&Retry sending", "&Discard", "&Copy"]
    # Someone else's message has no actions but Copy; clicking it does not retry anything.
    view.setCurrentIndex(model.index(model.position_of(seq=1)))
    with qtbot.assertNotEmitted(view.delete_requested):
        qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert [a.text() for a in view.actions_menu(model.row(model.position_of(seq=1))).actions()] == ["&Copy"]


def test_dark_palette_renders(qtbot: Any, qapp: QApplication) -> None:
    original = qapp.palette()
    dark = QPalette()
    for role, color in [
        (QPalette.ColorRole.Window, "#202124"),
        (QPalette.ColorRole.Base, "#1b1b1d"),
        (QPalette.ColorRole.Text, "#e8eaed"),
        (QPalette.ColorRole.WindowText, "#e8eaed"),
    ]:
        dark.setColor(role, QColor(color))
    qapp.setPalette(dark)
    try:
        assert theme.is_dark(dark)
        assert theme.secondary(dark).lightness() < QColor("#e8eaed").lightness()
        view, _ = own_rows_view(qtbot)
        image = view.grab().toImage()
        assert image.pixelColor(2, 2).lightness() < 100  # the dark base, not a hard-coded white
    finally:
        qapp.setPalette(original)


def test_status_bar_texts(qtbot: Any) -> None:
    bar = ClusterStatusBar()
    qtbot.addWidget(bar)
    bar.set_connected("127.0.0.1:5001")
    assert bar.connection_text() == "● Connected to 127.0.0.1:5001"
    bar.set_heartbeat(api.Heartbeat(node_id=1, leader_id=2, term=4))
    assert bar.leader_text() == "Leader: node 2 · term 4"
    status = api.ClusterStatus(
        nodes=[
            api.NodeStatus(node_id=1, role="follower", term=5, reachable=True, client_address="a:1"),
            api.NodeStatus(node_id=3, role="leader", term=5, reachable=True, client_address="a:3"),
            api.NodeStatus(node_id=2, reachable=False, client_address="a:2"),
        ],
        leader_id=3,
        nodes_up=2,
    )
    bar.set_cluster(status)
    assert (bar.nodes_text(), bar.leader_text()) == ("Nodes up: 2/3", "Leader: node 3 · term 5")
    bar.set_heartbeat(api.Heartbeat(node_id=1, leader_id=2, term=4))  # older news is ignored
    assert bar.leader_text() == "Leader: node 3 · term 5"
    bar.set_reconnecting("node down")
    assert bar.connection_text().startswith("⟳ Reconnecting…") and bar.reconnects == 1
    bar.set_cluster(None)
    assert bar.nodes_text() == "Nodes up: none reachable"
    bar.set_pending(2)
    assert bar.outbox.text() == "2 messages waiting to send"


def test_conversation_pane_header_and_placeholder(qtbot: Any) -> None:
    pane = ConversationPane()
    qtbot.addWidget(pane)
    pane.show()
    assert pane.placeholder.isVisible() and not pane.compose.isVisible()
    item = ConversationItem(id="d", direct=True, name="bob", online=True)
    pane.show_conversation(item, MessageListModel(Timeline("d", "me")))
    assert (pane.title.text(), pane.subtitle.text()) == ("bob", "Direct message · online")
    assert not pane.invite_button.isVisible() and pane.compose.isVisible()
    room = ConversationItem(id="r", direct=False, name="general", topic="news", member_count=3)
    pane.show_conversation(room, MessageListModel(Timeline("r", "me")))
    assert (pane.title.text(), pane.subtitle.text()) == ("#general", "news · 3 members")
    assert pane.invite_button.isVisible()
    with qtbot.waitSignal(pane.send_requested) as sent:
        qtbot.keyClicks(pane.compose, "hi")
        qtbot.keyClick(pane.compose, Qt.Key.Key_Return)
    assert sent.args == ["r", "hi"]


def test_user_picker_and_room_dialog(qtbot: Any, qloop: asyncio.AbstractEventLoop) -> None:
    queries: list[str] = []

    async def search(query: str) -> list[api.User]:
        queries.append(query)
        return [api.User(username="me"), api.User(username="bob", online=True), api.User(username="bo")]

    created: list[tuple[str, str, bool, list[str]]] = []

    async def create(name: str, topic: str, public: bool, members: Any) -> api.Conversation:
        created.append((name, topic, public, list(members)))
        return api.Conversation(id="r:new", name=name)

    dialog = RoomDialog(search, create, me="me")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.submit()
    assert dialog.error.text() == "Give the room a name." and not created
    qtbot.keyClicks(dialog.name, "plans")
    qtbot.keyClicks(dialog.picker.query, "bo")
    dialog.picker.search_now()
    qtbot.waitUntil(lambda: dialog.picker.results.count() == 2)  # oneself is not offered
    assert dialog.picker.results.item(0).text() == "bob  ·  online"
    dialog.picker.results.item(0).setCheckState(Qt.CheckState.Checked)
    assert dialog.picker.ticked() == ["bob"]
    with qtbot.waitSignal(dialog.created) as done:
        dialog.submit()
    assert created == [("plans", "", False, ["bob"])] and done.args[0].id == "r:new"

    picker = UserPicker(search, me="me")
    qtbot.addWidget(picker)
    picker.query.setText("b")
    picker.search_now()
    qtbot.waitUntil(lambda: picker.results.count() == 2)
    with qtbot.waitSignal(picker.picked) as picked:
        qtbot.keyClick(picker.query, Qt.Key.Key_Return)
    assert picked.args == ["bob"]


def test_a_short_conversation_asks_for_older_history(qtbot: Any) -> None:
    timeline = Timeline("c", "me")
    event = api.Event(conversation_id="c", seq=9, kind=api.EventKind.MESSAGE, sender="bob", body="hi", time_ms=NOW_MS)
    timeline.add_page(api.GetHistoryResponse(events=[event], has_more=True), older=False)
    view = MessageView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    view.set_messages(MessageListModel(timeline))
    with qtbot.waitSignal(view.older_wanted, timeout=2000):
        view.want_more_if_short()  # nothing to scroll: the view asks by itself
