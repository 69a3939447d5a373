"""Save PNG screenshots of the desktop app's main screens, on a local cluster filled with demo data.

Starts a 3-node ``LocalCluster`` in a temporary directory, makes a few users, rooms, direct messages and
messages (one edited, one deleted) with the client library, then opens the app offscreen
(``QT_QPA_PLATFORM=offscreen``) and saves into ``docs/screenshots/`` (or ``--out``):

- ``sign-in.png``: the sign-in window;
- ``main-window.png``: the conversation list and a room's messages (light palette);
- ``main-window-dark.png``: the same with a dark palette;
- ``new-room.png``: the new-room dialog with someone invited;
- ``search.png``: message search results.

Run: ``python packages/chat-client-qt/tools/screenshots.py`` (needs chat-server and chat-client-qt installed).
Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PyQt6.QtCore import QSettings, Qt
from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication, QWidget

from chat_client_qt.app.application import ChatApp
from chat_client_qt.app.main_window import MainWindow
from chat_client_qt.app.settings import AppSettings
from chat_client_qt.client import ChatClient
from chat_server.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "demo-password"
USERS = {"alice": "Alice Martin", "bob": "Bob Chen", "carol": "Carol Diaz", "dave": "Dave Okafor"}


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait until ``predicate()`` holds (polling), or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def settle(seconds: float = 0.3) -> None:
    """Let layouts, repaints and pending calls finish (the Qt loop runs while this waits)."""
    await asyncio.sleep(seconds)


def save(widget: QWidget, path: Path) -> None:
    """Render ``widget`` and save it as a PNG."""
    if not widget.grab().save(str(path), "PNG"):
        raise RuntimeError(f"could not write {path}")
    print(f"wrote {path}")


async def demo_data(endpoints: list[str], data: Path) -> tuple[dict[str, ChatClient], str]:
    """Make the users, conversations and messages; returns the clients (logged in) and the main room's id."""
    clients: dict[str, ChatClient] = {}
    for name, display in USERS.items():
        client = ChatClient(endpoints, data_dir=data / name, timeout=15)
        await client.register(name, PASSWORD, display)
        await client.login(name, PASSWORD)
        clients[name] = client
    alice, bob, carol, dave = (clients[n] for n in USERS)
    room = await bob.create_room(
        "weekend-hike", topic="Saturday's hike: route, cars, food", members=["alice", "carol", "dave"]
    )
    await bob.send(room.id, "Morning all! Are we still on for Saturday?")
    await carol.send(room.id, "Yes! I checked the forecast: sunny and 18 °C.")
    drive = await dave.send(room.id, "I can drive, I have room for three.")
    await alice.send(room.id, "Count me in. Ridge trail or the lake loop?")
    oops = await carol.send(room.id, "wrong chat, sorry")
    assert oops.message is not None and drive.message is not None
    await carol.delete(room.id, oops.message.seq)
    await dave.edit(room.id, drive.message.seq, "I can drive: room for three, leaving at 8 from the station.")
    await bob.send(room.id, "Ridge trail up, then lunch by the lake?")
    await carol.send(room.id, "Perfect. I'll bring sandwiches for everyone.\nAnd a thermos of tea.")
    await alice.send(room.id, "Great plan, see you at the station at 8!")
    direct = await bob.open_direct("alice")
    await bob.send(direct.id, "Hey, can you look at my pull request today?")
    await alice.send(direct.id, "Sure, right after lunch.")
    releases = await dave.create_room("releases", topic="Release notes and dates", members=["alice", "bob"])
    await dave.send(releases.id, "v1.2 is tagged; the notes are in the wiki.")
    carol_direct = await carol.open_direct("alice")
    await carol.send(carol_direct.id, "See you Saturday! Do you need boots?")
    await dave.send(releases.id, "Lake loop photos from last time are in the shared folder.")
    return clients, room.id


def dark_palette() -> QPalette:
    """A dark palette like a desktop's dark theme."""
    palette = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#2b2d30",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1f22",
        QPalette.ColorRole.AlternateBase: "#2b2d30",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#3c3f41",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#2f65ca",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#8c8c8c",
        QPalette.ColorRole.Link: "#6ea8fe",
        QPalette.ColorRole.ToolTipBase: "#3c3f41",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
    }
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    return palette


async def shoot(qt: QApplication, cluster: LocalCluster, out: Path, work: Path) -> None:
    """Make the demo data, drive the app and save the screenshots."""
    endpoints = cluster.client_endpoints()
    clients, room_id = await demo_data(endpoints, work / "clients")
    bob = clients["bob"]
    online = [asyncio.ensure_future(_listen(clients[name])) for name in ("bob", "dave")]  # they appear online
    settings = AppSettings(QSettings(str(work / "app.ini"), QSettings.Format.IniFormat))
    chat = ChatApp(settings, servers=endpoints, data_dir=work / "app", status_interval=1.0)
    try:
        form = chat.start()
        form.username.setText("alice")
        form.password.setText(PASSWORD)
        form.resize(460, 360)
        await settle()
        save(form, out / "sign-in.png")

        form.submit()
        await until(lambda: chat.window is not None, "the main window")
        window = chat.window
        assert isinstance(window, MainWindow)
        window.resize(1100, 680)
        window.splitter.setSizes([300, 800])
        await until(lambda: window.session.connected, "the live stream")
        await until(lambda: window.status.nodes_text().startswith("Nodes up: 3"), "the cluster status")
        window.select_conversation(room_id)
        await until(lambda: window.messages(room_id).timeline.loaded, "the room's messages")
        await bob.set_typing(room_id, True)
        await until(lambda: "typing" in window.pane.typing_label.text(), "the typing indicator")
        await settle(0.5)
        save(window, out / "main-window.png")

        light = qt.palette()
        qt.setPalette(dark_palette())
        await settle(0.3)
        save(window, out / "main-window-dark.png")
        qt.setPalette(light)
        await settle(0.2)

        dialog = window.show_room_dialog()
        dialog.name.setText("book-club")
        dialog.topic.setText("One book a month, discussed on Fridays")
        dialog.picker.query.setText("ca")
        dialog.picker.search_now()
        await until(lambda: dialog.picker.results.count() > 0, "people found")
        item = dialog.picker.results.item(0)
        if item is not None:
            item.setCheckState(Qt.CheckState.Checked)
        await settle()
        save(dialog, out / "new-room.png")
        dialog.reject()

        search = window.show_search_dialog()
        search.query.setText("lake")
        search.search_now()
        await until(lambda: search.results.count() > 0, "search results")
        await settle()
        save(search, out / "search.png")
        search.reject()
    finally:
        for task in online:
            task.cancel()
        await chat.shutdown()
        for client in clients.values():
            await client.close()


async def _listen(client: ChatClient) -> None:
    with contextlib.suppress(Exception):
        async for _item in client.subscribe():
            pass


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, take the screenshots, stop the cluster; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where to save the PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    qt = QApplication([sys.argv[0], "-style", "fusion"])
    qt.setApplicationDisplayName("Chat")
    qt.setQuitOnLastWindowClosed(False)  # closing the windows at the end must not stop the loop early
    with tempfile.TemporaryDirectory(prefix="chat-screenshots-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(
            work / "cluster",
            nodes=3,
            base_client_port=0,
            base_peer_port=0,
            unsafe_skip_fsync=True,
            settings={"password_hash_time_cost": 1, "password_hash_memory_kib": 8},
        )
        cluster.start()
        try:
            cluster.wait_ready(60)
            cluster.leader_id(30)
            loop = qasync.QEventLoop(qt)
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(shoot(qt, cluster, args.out, work))
            finally:
                loop.close()
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
