"""The desktop app against a real local cluster (3 chat-server processes), offscreen, driven like a person.

One cluster serves the module; each test signs up its own users. The app runs on a qasync loop that shares
the Qt event loop with pytest-qt, so ``qtbot.waitUntil`` (polling with a deadline) lets both the widgets
and the app's gRPC calls progress. The last two tests crash the leader and stop the whole cluster; each
leaves every node running again.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import qasync
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtWidgets import QApplication

from chat_client_qt.app.application import ChatApp
from chat_client_qt.app.main_window import MainWindow
from chat_client_qt.app.settings import AppSettings
from chat_client_qt.app.sign_in import CREATE, SIGN_IN
from chat_client_qt.app.timeline import Delivery, Row, RowKind
from chat_client_qt.client import ChatClient
from chat_server.cluster import ClusterError, LocalCluster, free_ports

T = TypeVar("T")
PASSWORD = "correct horse"
FAST_SERVER = {
    "password_hash_time_cost": 1,  # cheap argon2: sign-ups take milliseconds
    "password_hash_memory_kib": 8,
}
WAIT_MS = 20_000


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster on free ports (started again once if a port was taken meanwhile)."""
    for attempt in range(2):
        made = LocalCluster(
            tmp_path_factory.mktemp("cluster"),
            nodes=3,
            base_client_port=0,
            base_peer_port=0,
            unsafe_skip_fsync=True,
            settings=FAST_SERVER,
        )
        made.start()
        try:
            made.wait_ready(60)
            made.leader_id(30)
        except ClusterError:
            made.stop(grace=1.0)
            if attempt:
                raise
            continue
        try:
            yield made
        finally:
            made.stop(grace=3.0)
        return


@pytest.fixture(scope="module")
def qloop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop on the Qt event loop that pytest-qt spins (qasync, "already running")."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    for task in asyncio.all_tasks(loop):
        task.cancel()
    deadline = time.monotonic() + 5.0
    while any(not t.done() for t in asyncio.all_tasks(loop)) and time.monotonic() < deadline:
        qapp.processEvents()
        time.sleep(0.01)
    asyncio.events._set_running_loop(None)
    loop._QEventLoop__is_running = False  # type: ignore[attr-defined]  # stop() would end pytest-qt's loops
    loop.close()
    asyncio.set_event_loop(None)


def run(qtbot: Any, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a coroutine on the Qt loop until it is done (the GUI keeps running meanwhile)."""
    task = asyncio.ensure_future(coro)
    try:
        qtbot.waitUntil(task.done, timeout=int(timeout * 1000))
    except Exception:
        stacks = io.StringIO()
        for other in asyncio.all_tasks():
            other.print_stack(file=stacks)
        print(f"tasks still running:\n{stacks.getvalue()}")  # shown with the failure
        raise
    return task.result()


class Apps:
    """Starts ChatApps for a test and closes them (and other clients) at its end."""

    def __init__(self, qtbot: Any, cluster: LocalCluster, tmp_path: Path) -> None:
        self.qtbot = qtbot
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.apps: list[ChatApp] = []
        self.clients: list[ChatClient] = []

    def servers(self) -> list[str]:
        """The endpoints with the leader's first (so the app's live stream starts on the leader)."""
        leader = self.cluster.client_endpoint(self.cluster.leader_id(30))
        return [leader, *(e for e in self.cluster.client_endpoints() if e != leader)]

    def open(self, name: str = "app", *, servers: list[str] | None = None, timeout: float = 5.0) -> ChatApp:
        settings = AppSettings(QSettings(str(self.tmp_path / f"{name}.ini"), QSettings.Format.IniFormat))
        app = ChatApp(
            settings,
            servers=servers or self.servers(),
            data_dir=self.tmp_path / f"{name}-data",
            timeout=timeout,
            status_interval=1.0,
            idle_timeout=10.0,
            page_size=20,
        )
        app.start()
        self.apps.append(app)
        return app

    def sign_up(self, username: str, *, typed: bool = False) -> MainWindow:
        """A new app, signed up as ``username`` through the sign-in window; returns its main window."""
        app = self.open(username)
        form = app.sign_in
        assert form is not None
        form.set_mode(CREATE)
        if typed:
            form.username.clear()
            self.qtbot.keyClicks(form.username, username)
            self.qtbot.keyClicks(form.password, PASSWORD)
            self.qtbot.keyClicks(form.confirm, PASSWORD)
            self.qtbot.mouseClick(form.button, Qt.MouseButton.LeftButton)
        else:
            form.username.setText(username)
            form.password.setText(PASSWORD)
            form.confirm.setText(PASSWORD)
            form.submit()
        self.qtbot.waitUntil(lambda: app.window is not None and app.window.isVisible(), timeout=WAIT_MS)
        assert app.window is not None
        return app.window

    def client(self, username: str) -> ChatClient:
        """Another user, on a plain ChatClient (registered and logged in)."""
        client = ChatClient(self.cluster.client_endpoints(), data_dir=self.tmp_path / f"{username}-client", timeout=10)
        self.clients.append(client)

        async def enter() -> None:
            await client.register(username, PASSWORD)
            await client.login(username, PASSWORD)

        run(self.qtbot, enter())
        return client

    def close(self) -> None:
        async def close_all() -> None:
            for app in self.apps:
                await app.shutdown()
            for client in self.clients:
                await asyncio.wait_for(client.close(), 5.0)

        run(self.qtbot, close_all(), timeout=30)
        for app in self.apps:
            if app.sign_in is not None:
                app.sign_in.deleteLater()


@pytest.fixture
def apps(qtbot: Any, qloop: asyncio.AbstractEventLoop, cluster: LocalCluster, tmp_path: Path) -> Iterator[Apps]:
    made = Apps(qtbot, cluster, tmp_path)
    yield made
    made.close()


def message_rows(window: MainWindow, conversation_id: str) -> list[Row]:
    return [r for r in window.messages(conversation_id).rows() if r.kind is RowKind.MESSAGE]


def rows_with(window: MainWindow, conversation_id: str, text: str) -> list[Row]:
    return [r for r in message_rows(window, conversation_id) if r.text == text]


def wait_connected(qtbot: Any, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.status.connection_text().startswith("● Connected to"), timeout=WAIT_MS)


# -- tests --------------------------------------------------------------------------------------------------


def test_sign_up_then_errors_for_taken_name_wrong_password_and_unreachable_cluster(apps: Apps, qtbot: Any) -> None:
    window = apps.sign_up("ann", typed=True)
    wait_connected(qtbot, window)
    assert window.windowTitle().startswith("Chat — ann")
    qtbot.waitUntil(lambda: window.status.nodes_text() == "Nodes up: 3/3", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.status.leader_text().startswith("Leader: node "), timeout=WAIT_MS)

    # The servers and the username are remembered.
    remembered = AppSettings(QSettings(str(apps.tmp_path / "ann.ini"), QSettings.Format.IniFormat))
    assert sorted(remembered.servers) == sorted(apps.cluster.client_endpoints())
    assert remembered.last_username == "ann"

    other = apps.open("other")
    form = other.sign_in
    assert form is not None
    form.set_mode(CREATE)
    form.username.setText("ann")
    form.password.setText(PASSWORD)
    form.confirm.setText(PASSWORD)
    form.submit()
    qtbot.waitUntil(lambda: "taken" in form.error_text(), timeout=WAIT_MS)
    assert form.error_text() == "The name “ann” is taken: choose another one."

    form.set_mode(SIGN_IN)
    form.password.setText("not the password")
    qtbot.keyClick(form.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: form.error_text() != "" and not form.busy, timeout=WAIT_MS)
    assert form.error_text() == "Wrong username or password."
    assert other.window is None

    # Nothing listens on a port just freed: the cluster is unreachable.
    free = free_ports("127.0.0.1", 1)[0]
    lost = apps.open("lost", servers=[f"127.0.0.1:{free}"], timeout=1.5)
    form = lost.sign_in
    assert form is not None
    form.username.setText("ann")
    form.password.setText(PASSWORD)
    form.submit()
    qtbot.waitUntil(lambda: form.error_text() != "" and not form.busy, timeout=WAIT_MS)
    assert form.error_text().startswith("Cannot reach the cluster to sign in")
    assert lost.window is None


def test_send_receive_typing_edit_delete(apps: Apps, qtbot: Any) -> None:
    bob = apps.client("bob")
    window = apps.sign_up("cat")
    wait_connected(qtbot, window)

    room = run(qtbot, bob.create_room("plans", topic="the weekend", members=["cat"]))
    run(qtbot, bob.send(room.id, "hello cat"))
    # Received live: the room appears with an unread badge and a preview.
    qtbot.waitUntil(lambda: (i := window.conversations.get(room.id)) is not None and i.unread == 1, timeout=WAIT_MS)
    item = window.conversations.get(room.id)
    assert item is not None and item.preview == "bob: hello cat" and item.title == "#plans"

    window.select_conversation(room.id)
    qtbot.waitUntil(lambda: len(rows_with(window, room.id, "hello cat")) == 1, timeout=WAIT_MS)
    assert window.conversations.get(room.id).unread == 0  # type: ignore[union-attr]
    assert window.pane.title.text() == "#plans"

    # Compose: Shift+Enter makes a new line, Enter sends.
    compose = window.pane.compose
    qtbot.keyClicks(compose, "hi bob")
    qtbot.keyClick(compose, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(compose, "see you")
    assert message_rows(window, room.id)[-1].text == "hello cat"  # nothing sent yet
    qtbot.keyClick(compose, Qt.Key.Key_Return)
    assert compose.toPlainText() == ""
    body = "hi bob\nsee you"
    qtbot.waitUntil(lambda: len(rows_with(window, room.id, body)) == 1, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: (
            [r.delivery for r in rows_with(window, room.id, body)] == [Delivery.SENT]
            and rows_with(window, room.id, body)[0].seq is not None
        ),
        timeout=WAIT_MS,
    )
    history = run(qtbot, bob.history(room.id))
    assert [(e.sender, e.body) for e in history.events if e.body == body] == [("cat", body)]

    # Typing indicator.
    run(qtbot, bob.set_typing(room.id, True))
    qtbot.waitUntil(lambda: window.pane.typing_label.text() == "bob is typing…", timeout=WAIT_MS)

    # A message edited and one deleted, as the other user does it.
    edited = run(qtbot, bob.send(room.id, "see you at 5"))
    deleted = run(qtbot, bob.send(room.id, "oops"))
    run(qtbot, bob.edit(room.id, edited.message.seq, "see you at 6"))
    run(qtbot, bob.delete(room.id, deleted.message.seq))
    qtbot.waitUntil(lambda: window.messages(room.id).timeline.newest_seq >= deleted.message.seq, timeout=WAIT_MS)

    def changed() -> bool:
        timeline = window.messages(room.id).timeline
        a, b = timeline.message(edited.message.seq), timeline.message(deleted.message.seq)
        return a is not None and a.edited and a.text == "see you at 6" and b is not None and b.deleted

    qtbot.waitUntil(changed, timeout=WAIT_MS)
    assert window.pane.typing_label.text().strip() == ""  # bob's message ended his typing

    # A direct message started by the other user shows up too.
    direct = run(qtbot, bob.open_direct("cat"))
    run(qtbot, bob.send(direct.id, "psst"))
    qtbot.waitUntil(lambda: (i := window.conversations.get(direct.id)) is not None and i.unread == 1, timeout=WAIT_MS)
    assert window.conversations.get(direct.id).direct  # type: ignore[union-attr]


def test_scroll_back_loads_older_history_on_demand(apps: Apps, qtbot: Any) -> None:
    bob = apps.client("bea")
    window = apps.sign_up("dee")
    room = run(qtbot, bob.create_room("archive", members=["dee"]))

    async def chat() -> None:
        for i in range(45):
            await bob.send(room.id, f"message {i}")

    run(qtbot, chat(), timeout=60)
    qtbot.waitUntil(lambda: window.conversations.get(room.id) is not None, timeout=WAIT_MS)
    window.select_conversation(room.id)
    timeline = window.messages(room.id).timeline
    qtbot.waitUntil(lambda: timeline.loaded, timeout=WAIT_MS)
    assert [r.text for r in message_rows(window, room.id)][-1] == "message 44"
    assert timeline.has_more and timeline.oldest_seq > 1  # one page of 20, not everything

    bar = window.pane.view.verticalScrollBar()
    assert bar is not None
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=WAIT_MS)
    assert bar.value() == bar.maximum()  # opened at the newest message
    for _ in range(5):
        if not timeline.has_more:
            break
        oldest = timeline.oldest_seq
        bar.setValue(bar.minimum())  # scrolled to the top: the next older page loads
        qtbot.waitUntil(lambda o=oldest: timeline.oldest_seq < o or not timeline.has_more, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: not timeline.loading, timeout=WAIT_MS)
        # The view keeps its place (the rows seen stay in view) instead of staying at the top.
        qtbot.waitUntil(lambda: bar.value() > bar.minimum(), timeout=5000)
    assert not timeline.has_more
    assert [r.text for r in message_rows(window, room.id)] == [f"message {i}" for i in range(45)]


def test_leader_killed_while_open(apps: Apps, qtbot: Any) -> None:
    cluster = apps.cluster
    bob = apps.client("ben")
    window = apps.sign_up("fay")
    room = run(qtbot, bob.create_room("ops", members=["fay"]))
    qtbot.waitUntil(lambda: window.conversations.get(room.id) is not None, timeout=WAIT_MS)
    window.select_conversation(room.id)
    qtbot.waitUntil(lambda: window.messages(room.id).timeline.loaded, timeout=WAIT_MS)

    leader = cluster.leader_id(30)
    leader_endpoint = cluster.client_endpoint(leader)
    wait_connected(qtbot, window)
    assert window.session.endpoint == leader_endpoint, "the live stream should start on the first server"
    qtbot.waitUntil(lambda: window.status.leader_text().startswith(f"Leader: node {leader} "), timeout=WAIT_MS)
    changes: list[tuple[bool, str]] = []
    window.session.connection_changed.connect(lambda up, text: changes.append((up, text)))

    cluster.kill(leader)
    try:
        qtbot.waitUntil(lambda: any(not up for up, _ in changes), timeout=WAIT_MS)
        run(qtbot, bob.send(room.id, "still there?"), timeout=30)
        qtbot.waitUntil(lambda: len(rows_with(window, room.id, "still there?")) == 1, timeout=WAIT_MS)
        qtbot.keyClicks(window.pane.compose, "yes")
        qtbot.keyClick(window.pane.compose, Qt.Key.Key_Return)
        qtbot.waitUntil(
            lambda: [r.delivery for r in rows_with(window, room.id, "yes")] == [Delivery.SENT], timeout=WAIT_MS
        )
        wait_connected(qtbot, window)
        assert window.session.endpoint != leader_endpoint
        assert window.status.reconnects >= 1
        qtbot.waitUntil(
            lambda: (
                window.status.leader_text().startswith("Leader: node ")
                and not window.status.leader_text().startswith(f"Leader: node {leader} ")
            ),
            timeout=WAIT_MS,
        )
        qtbot.waitUntil(lambda: window.status.nodes_text() == "Nodes up: 2/3", timeout=WAIT_MS)
        history = run(qtbot, bob.history(room.id))
        assert [e.body for e in history.events if e.body in ("still there?", "yes")] == ["still there?", "yes"]
    finally:
        cluster.start_node(leader)
        cluster.wait_ready(60)


def test_offline_outbox_delivers_once_when_the_cluster_returns(apps: Apps, qtbot: Any) -> None:
    cluster = apps.cluster
    bob = apps.client("bill")
    window = apps.sign_up("gus")
    room = run(qtbot, bob.create_room("outage", members=["gus"]))
    direct = run(qtbot, bob.open_direct("gus"))
    run(qtbot, bob.send(direct.id, "a cached message"))
    for conversation in (direct, room):
        qtbot.waitUntil(lambda c=conversation: window.conversations.get(c.id) is not None, timeout=WAIT_MS)
        window.select_conversation(conversation.id)
        qtbot.waitUntil(lambda c=conversation: window.messages(c.id).timeline.loaded, timeout=WAIT_MS)
    wait_connected(qtbot, window)

    cluster.stop(grace=3.0)
    try:
        qtbot.waitUntil(lambda: window.status.connection_text().startswith("⟳ Reconnecting"), timeout=WAIT_MS)
        # The app keeps working from its cache: switching conversations shows what was loaded.
        window.list_view.step(1)
        qtbot.waitUntil(lambda: window.current_id() == direct.id, timeout=WAIT_MS)
        assert [r.text for r in message_rows(window, direct.id)] == ["a cached message"]
        window.select_conversation(room.id)
        assert window.current_id() == room.id

        qtbot.keyClicks(window.pane.compose, "written offline")
        qtbot.keyClick(window.pane.compose, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: len(rows_with(window, room.id, "written offline")) == 1, timeout=WAIT_MS)
        assert rows_with(window, room.id, "written offline")[0].delivery is Delivery.PENDING
        qtbot.waitUntil(lambda: window.status.outbox.text() == "1 message waiting to send", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: window.status.nodes_text() == "Nodes up: none reachable", timeout=WAIT_MS)
        qtbot.wait(500)  # let a few delivery attempts fail
        assert rows_with(window, room.id, "written offline")[0].delivery is Delivery.PENDING
    finally:
        started = time.monotonic()
        cluster.start()
        cluster.wait_ready(60)
    qtbot.waitUntil(
        lambda: (
            [(r.delivery, r.seq is not None) for r in rows_with(window, room.id, "written offline")]
            == [(Delivery.SENT, True)]
        ),
        timeout=WAIT_MS,
    )
    wait_connected(qtbot, window)
    assert time.monotonic() - started < 60
    qtbot.waitUntil(lambda: window.status.outbox.text() == "", timeout=WAIT_MS)  # acknowledged, not only echoed
    history = run(qtbot, bob.history(room.id))
    assert [e.body for e in history.events].count("written offline") == 1
    # The live stream delivered the message's own event too; it is still shown once.
    row = rows_with(window, room.id, "written offline")[0]
    qtbot.waitUntil(lambda: window.messages(room.id).timeline.newest_seq >= (row.seq or 0), timeout=WAIT_MS)
    assert len(rows_with(window, room.id, "written offline")) == 1
