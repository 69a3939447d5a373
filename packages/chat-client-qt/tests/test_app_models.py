"""The app's window-free parts: timelines, list models, typing state, settings and wording (no cluster)."""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PyQt6.QtCore import QSettings

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app import formatting
from chat_client_qt.app.conversation_model import ConversationListModel, ItemRole
from chat_client_qt.app.message_model import MessageListModel, spoken
from chat_client_qt.app.settings import DEFAULT_SERVERS, AppSettings, parse_servers
from chat_client_qt.app.timeline import Delivery, RowKind, Timeline
from chat_client_qt.app.typing_state import TypingTracker
from chat_client_qt.client import (
    AlreadyExists,
    InvalidInput,
    OutboxItem,
    OutboxState,
    RateLimited,
    Unavailable,
)

C = "r:1"
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


def message(seq: int, sender: str = "bob", body: str = "", *, time_ms: int = NOW_MS, **fields: Any) -> api.Event:
    return api.Event(
        conversation_id=C,
        seq=seq,
        kind=api.EventKind.MESSAGE,
        sender=sender,
        body=body or f"m{seq}",
        time_ms=time_ms,
        **fields,
    )


def outbox(
    rid: str, state: OutboxState, body: str = "mine", seq: int | None = None, error: str | None = None
) -> OutboxItem:
    now = time.time()
    return OutboxItem(rid, C, body, now, state, 1, error, seq, now)


# -- Timeline -----------------------------------------------------------------------------------------------


def test_timeline_merges_history_and_live_events_in_seq_order_without_duplicates() -> None:
    timeline = Timeline(C, "me")
    timeline.add_events([message(3), message(4)])  # live events first
    page = api.GetHistoryResponse(events=[message(2), message(3), message(4)], has_more=True, applied_index=9)
    timeline.add_page(page, older=False)
    timeline.add_events([message(4), message(5)])
    rows = timeline.rows()
    assert [r.kind for r in rows] == [RowKind.DAY] + [RowKind.MESSAGE] * 4
    assert rows[0].text == "Today"
    assert [r.seq for r in rows[1:]] == [2, 3, 4, 5]
    assert timeline.loaded and timeline.has_more and timeline.applied_index == 9
    assert (timeline.oldest_seq, timeline.newest_seq) == (2, 5)


def test_timeline_day_separators_and_system_lines() -> None:
    timeline = Timeline(C, "me")
    created = api.Event(conversation_id=C, seq=1, kind=api.EventKind.CREATED, sender="me", time_ms=NOW_MS - 2 * DAY_MS)
    joined = api.Event(
        conversation_id=C, seq=2, kind=api.EventKind.JOINED, sender="me", member="bob", time_ms=NOW_MS - 2 * DAY_MS
    )
    timeline.add_events([created, joined, message(3, time_ms=NOW_MS - DAY_MS), message(4)])
    rows = timeline.rows()
    assert [(r.kind, r.text) for r in rows if r.kind is not RowKind.MESSAGE] == [
        (RowKind.DAY, formatting.day_label(date.today() - timedelta(days=2), date.today())),
        (RowKind.SYSTEM, "You created the conversation"),
        (RowKind.SYSTEM, "You added bob"),
        (RowKind.DAY, "Yesterday"),
        (RowKind.DAY, "Today"),
    ]


def test_own_message_pending_then_echoed_is_one_row_whichever_comes_first() -> None:
    # The acknowledgement (outbox "sent") first, then the echo on the stream.
    timeline = Timeline(C, "me")
    timeline.apply_outbox(outbox("r1", OutboxState.PENDING))
    [row] = [r for r in timeline.rows() if r.kind is RowKind.MESSAGE]
    assert (row.delivery, row.seq, row.key) == (Delivery.PENDING, None, "out:r1")
    timeline.apply_outbox(outbox("r1", OutboxState.SENT, seq=7))
    timeline.add_events([message(7, "me", "mine", request_id="r1")])
    [row] = [r for r in timeline.rows() if r.kind is RowKind.MESSAGE]
    assert (row.delivery, row.seq, row.own) == (Delivery.SENT, 7, True)

    # The echo first; a late "pending" notification (a retry after an unknown outcome) changes nothing.
    timeline = Timeline(C, "me")
    timeline.apply_outbox(outbox("r2", OutboxState.PENDING))
    timeline.add_events([message(8, "me", "mine", request_id="r2")])
    timeline.apply_outbox(outbox("r2", OutboxState.PENDING))
    timeline.apply_outbox(outbox("r2", OutboxState.SENT, seq=8))
    assert [(r.seq, r.delivery) for r in timeline.rows() if r.kind is RowKind.MESSAGE] == [(8, Delivery.SENT)]


def test_failed_message_shows_its_error_and_unsent_rows_come_last() -> None:
    timeline = Timeline(C, "me")
    timeline.apply_outbox(outbox("r1", OutboxState.FAILED, body="denied", error="not a member"))
    timeline.add_events([message(3)])
    rows = [r for r in timeline.rows() if r.kind is RowKind.MESSAGE]
    assert [r.text for r in rows] == ["m3", "denied"]
    assert (rows[1].delivery, rows[1].error, rows[1].request_id) == (Delivery.FAILED, "not a member", "r1")
    timeline.forget_outbox("r1")
    assert [r.text for r in timeline.rows() if r.kind is RowKind.MESSAGE] == ["m3"]


def test_edits_and_deletes_change_their_target() -> None:
    timeline = Timeline(C, "me")
    timeline.add_events([message(2, body="draft"), message(3, body="secret")])
    timeline.add_events(
        [
            api.Event(conversation_id=C, seq=4, kind=api.EventKind.EDITED, sender="bob", target_seq=2, body="final"),
            api.Event(conversation_id=C, seq=5, kind=api.EventKind.DELETED, sender="bob", target_seq=3),
            api.Event(conversation_id=C, seq=6, kind=api.EventKind.EDITED, sender="bob", target_seq=1, body="x"),
        ]
    )
    edited, deleted = timeline.message(2), timeline.message(3)
    assert edited is not None and (edited.text, edited.edited) == ("final", True)
    assert deleted is not None and (deleted.text, deleted.deleted) == ("", True)
    assert timeline.message(4) is None and timeline.message(6) is None  # changes are not rows
    # A message read later from history carries its current state.
    timeline.add_events([message(2, body="final", edited_at_ms=NOW_MS), message(3, body="", deleted=True)])
    assert timeline.message(2).edited and timeline.message(3).deleted  # type: ignore[union-attr]
    assert "message deleted" in spoken(timeline.message(3))  # type: ignore[arg-type]


# -- MessageListModel ---------------------------------------------------------------------------------------


def test_message_model_signals_only_the_differences(qtmodeltester: Any) -> None:
    timeline = Timeline(C, "me")
    timeline.add_events([message(s) for s in range(10, 15)])
    model = MessageListModel(timeline)
    qtmodeltester.check(model)
    inserted: list[tuple[int, int]] = []
    changed: list[int] = []
    removed: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, first, last: inserted.append((first, last)))
    model.rowsRemoved.connect(lambda _p, first, last: removed.append((first, last)))
    model.dataChanged.connect(lambda top, _bottom: changed.append(top.row()))

    timeline.add_events([message(s) for s in range(5, 10)])  # an older page: inserted after the day separator
    model.refresh()
    assert inserted == [(1, 5)] and not removed and not changed
    timeline.add_events([api.Event(conversation_id=C, seq=15, kind=api.EventKind.EDITED, target_seq=12, body="new")])
    model.refresh()
    assert changed == [model.position_of(seq=12)]
    timeline.apply_outbox(outbox("r1", OutboxState.PENDING))
    model.refresh()
    assert inserted[-1] == (11, 11)
    timeline.add_events([message(16, "me", "mine", request_id="r1")])  # the pending row becomes the sent one
    model.refresh()
    assert removed == [(11, 11)] and inserted[-1] == (11, 11)
    assert [r.key for r in model.rows()] == [r.key for r in timeline.rows()]
    assert model.position_of(request_id="r1") == 11
    qtmodeltester.check(model)


# -- ConversationListModel ----------------------------------------------------------------------------------


def conversation(
    cid: str, name: str, *, direct: bool = False, last_ms: int = NOW_MS, unread: int = 0
) -> api.Conversation:
    last = api.Event(conversation_id=cid, seq=3, kind=api.EventKind.MESSAGE, sender="bob", body="hey", time_ms=last_ms)
    return api.Conversation(
        id=cid,
        kind=api.ConversationKind.DIRECT if direct else api.ConversationKind.ROOM,
        name=name,
        last_seq=3,
        unread_count=unread,
        last_event=last,
        member_count=2,
    )


def test_conversation_list_order_unread_preview_and_presence(qtmodeltester: Any) -> None:
    model = ConversationListModel("me")
    model.set_conversations(
        [conversation("a", "general", last_ms=NOW_MS - 5000, unread=2), conversation("b", "bob", direct=True)]
    )
    qtmodeltester.check(model)
    assert [i.id for i in model.items()] == ["b", "a"]  # most recent first
    assert model.get("a").title == "#general" and model.get("a").unread == 2  # type: ignore[union-attr]
    assert model.get("b").preview == "bob: hey"  # type: ignore[union-attr]

    event = api.Event(
        conversation_id="a", seq=4, kind=api.EventKind.MESSAGE, sender="bob", body="news", time_ms=NOW_MS + 10
    )
    assert model.apply_event(event)
    assert [i.id for i in model.items()] == ["a", "b"]
    assert (model.get("a").unread, model.get("a").preview) == (3, "bob: news")  # type: ignore[union-attr]
    assert model.apply_event(event)  # the same event again: counted once
    assert model.get("a").unread == 3  # type: ignore[union-attr]
    mine = api.Event(
        conversation_id="a", seq=5, kind=api.EventKind.MESSAGE, sender="me", body="ok", time_ms=NOW_MS + 20
    )
    model.apply_event(mine)
    assert (model.get("a").unread, model.get("a").preview) == (3, "You: ok")  # type: ignore[union-attr]
    edit = api.Event(conversation_id="a", seq=6, kind=api.EventKind.EDITED, sender="me", target_seq=5, body="okay")
    model.apply_event(edit)
    assert model.get("a").preview == "You: okay"  # type: ignore[union-attr]
    active = api.Event(
        conversation_id="b", seq=7, kind=api.EventKind.MESSAGE, sender="bob", body="hi", time_ms=NOW_MS + 30
    )
    model.apply_event(active, active=True)
    assert model.get("b").unread == 0  # type: ignore[union-attr]
    model.mark_read("a")
    assert model.total_unread() == 0
    assert not model.apply_event(api.Event(conversation_id="zzz", seq=1, kind=api.EventKind.MESSAGE))

    model.set_presence("bob", True)
    assert model.get("b").online is True and model.get("a").online is None  # type: ignore[union-attr]
    index = model.index(model.row_of("b"))
    assert model.data(index, ItemRole).name == "bob"
    # A fresh listing keeps the known presence and drops conversations left.
    model.set_conversations([conversation("b", "bob", direct=True)])
    assert [i.id for i in model.items()] == ["b"] and model.get("b").online is True  # type: ignore[union-attr]
    qtmodeltester.check(model)


# -- typing, settings, wording ------------------------------------------------------------------------------


def test_typing_tracker_expires_and_excludes_oneself() -> None:
    typing = TypingTracker()
    typing.update(C, "bob", True, 2_000)
    typing.update(C, "ann", True, 5_000)
    typing.update(C, "me", True, 5_000)
    assert typing.names(C, 1_000, exclude="me") == ["ann", "bob"]
    assert typing.names(C, 3_000, exclude="me") == ["ann"]
    typing.stopped(C, "ann")
    assert typing.names(C, 3_000, exclude="me") == []
    assert formatting.typing_text(["bob"]) == "bob is typing…"
    assert formatting.typing_text(["a", "b"]) == "a and b are typing…"
    assert formatting.typing_text(["a", "b", "c", "d"]) == "a, b and 2 more are typing…"


def test_parse_servers() -> None:
    assert parse_servers(" 127.0.0.1:1, node-2.example:50052  [::1]:7 127.0.0.1:1") == [
        "127.0.0.1:1",
        "node-2.example:50052",
        "[::1]:7",
    ]
    for bad in ["", "localhost", "host:0", "host:99999", "host:x", ":80", "bad_host!:1"]:
        with pytest.raises(ValueError):
            parse_servers(bad)


def test_settings_remember_servers_and_username(tmp_path: Path) -> None:
    path = str(tmp_path / "s.ini")
    settings = AppSettings(QSettings(path, QSettings.Format.IniFormat))
    assert settings.servers == DEFAULT_SERVERS and settings.last_username == ""
    settings.servers = ["10.0.0.1:5000", "10.0.0.2:5000"]
    settings.last_username = "ann"
    again = AppSettings(QSettings(path, QSettings.Format.IniFormat))
    assert again.servers == ["10.0.0.1:5000", "10.0.0.2:5000"] and again.last_username == "ann"


def test_error_wording() -> None:
    assert formatting.describe_error(Unavailable("x"), action="sign in").startswith(
        "Cannot reach the cluster to sign in"
    )
    assert (
        formatting.describe_error(RateLimited("slow down", retry_after=2.0)) == "Too many requests: try again in 2 s."
    )
    assert formatting.describe_error(InvalidInput("username: must be 3 to 32 characters")) == (
        "Username: must be 3 to 32 characters."
    )
    assert formatting.describe_error(AlreadyExists("taken")) == "Taken."
    now = datetime.now().astimezone()
    assert formatting.short_time_label(int(now.timestamp() * 1000), now) == now.strftime("%H:%M")
    assert formatting.one_line("a\n  b " + "c" * 200, 10) == "a b ccccc…"  # 10 characters


def test_command_line_rejects_bad_servers(capsys: pytest.CaptureFixture[str]) -> None:
    from chat_client_qt.app import main

    with pytest.raises(SystemExit) as exit_info:
        main.main(["--servers", "nonsense"])
    assert exit_info.value.code == 2
    assert "--servers" in capsys.readouterr().err
    assert main.build_parser().parse_known_args(["--servers", "h:1", "-platform", "offscreen"])[1] == [
        "-platform",
        "offscreen",
    ]
