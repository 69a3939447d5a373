"""The ``chat-client-qt`` console script: parse ``--servers``, make the QApplication and run it on qasync."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import qasync
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from chat_client_qt import __version__
from chat_client_qt.app.application import ChatApp
from chat_client_qt.app.settings import APPLICATION, ORGANIZATION, AppSettings, parse_servers


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(
        prog="chat-client-qt",
        description="The desktop client of the replicated chat service.",
        epilog="Qt options (e.g. -platform offscreen, -style fusion) may follow.",
    )
    parser.add_argument(
        "--servers",
        metavar="HOST:PORT,...",
        help="the cluster's nodes (remembered; also settable in the app). Default: the last ones used",
    )
    parser.add_argument("--data-dir", type=Path, help="where unsent messages are kept (default: the user data dir)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a call may take, retries included")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app; returns the exit code."""
    parser = build_parser()
    args, qt_args = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    servers = None
    if args.servers:
        try:
            servers = parse_servers(args.servers)
        except ValueError as exc:
            parser.error(f"--servers: {exc}")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    app = QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Chat")
    app.setApplicationVersion(__version__)
    app.setQuitOnLastWindowClosed(False)  # ChatApp decides, after closing the session

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    chat = ChatApp(AppSettings(), servers=servers, data_dir=args.data_dir, timeout=args.timeout)

    # Ctrl-C in the terminal: let Python see the signal (Qt's loop would otherwise hold it) and quit cleanly.
    signal.signal(signal.SIGINT, lambda *_: chat.quit())
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    # Qt, the generated message types and the window live as long as the app: keep them out of the cyclic
    # collector, whose full passes over them stall the UI and the live stream for tens of milliseconds.
    gc.collect()
    gc.freeze()
    try:
        loop.run_until_complete(chat.run())
    finally:
        ticker.stop()
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
