"""``Timeline``: one conversation's rows as shown (messages, system lines, day separators, own pending sends).

No Qt here. A timeline merges, in any order and without duplicates: pages of history (``GetHistory``), live
events (from the subscription) and the states of one's own messages in the outbox (pending, sent, failed).
Events are keyed by seq; an outbox message is matched to its event by request_id, so a message is shown
once whether its acknowledgement or its echo on the stream comes first. ``EDITED`` and ``DELETED`` events
change the message they target (when loaded) and are not rows themselves.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date

from chat_client_qt._gen.api.chat import v1 as api
from chat_client_qt.app.formatting import day_label, local_datetime, system_text
from chat_client_qt.client import OutboxItem, OutboxState


class RowKind(enum.Enum):
    """What a row shows."""

    DAY = "day"
    MESSAGE = "message"
    SYSTEM = "system"


class Delivery(enum.StrEnum):
    """The delivery state of one's own message ("" for others' messages)."""

    NONE = ""
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a message view.

    Attributes:
        key: stable identity: ``day:YYYY-MM-DD``, ``seq:N`` or ``out:<request_id>`` (not sent yet).
        kind: day separator, message or system line.
        text: the message's body, the system line, or the day's label.
        sender: who wrote it (messages and system lines).
        time_ms: when (ms since the epoch; for an unsent message, when it was written).
        seq: its place in the conversation (None until sent).
        own: written by the signed-in user.
        delivery: pending / sent / failed for one's own messages.
        edited: the message was edited.
        deleted: the message was deleted (``text`` is then empty).
        request_id: the send's request_id, when known (to retry or discard a failed send).
        error: why a send failed (or the last transient error of a pending one).
    """

    key: str
    kind: RowKind
    text: str = ""
    sender: str = ""
    time_ms: int = 0
    seq: int | None = None
    own: bool = False
    delivery: Delivery = Delivery.NONE
    edited: bool = False
    deleted: bool = False
    request_id: str = ""
    error: str = ""


class Timeline:
    """The rows of one conversation (see the module's docstring).

    Attributes:
        conversation_id: the conversation.
        me: the signed-in username (for "own" and "You").
        loaded: the newest page of history has been read.
        loading: a history request is under way.
        has_more: older history exists beyond the oldest loaded event.
        load_error: why the last history request failed ("" if it did not).
        applied_index: the applied index the first page was read at (older pages are read no staler).
    """

    def __init__(self, conversation_id: str, me: str, *, today: Callable[[], date] | None = None) -> None:
        self.conversation_id = conversation_id
        self.me = me
        self.loaded = False
        self.loading = False
        self.has_more = False
        self.load_error = ""
        self.applied_index = 0
        self._today = today or date.today
        self._by_seq: dict[int, Row] = {}
        self._outbox: dict[str, Row] = {}  # pending or failed, by request_id
        self._outbox_order: dict[str, float] = {}
        self._rid_seq: dict[str, int] = {}

    # -- reading ---------------------------------------------------------------------------------------------

    @property
    def oldest_seq(self) -> int:
        """The smallest loaded seq (0: none loaded)."""
        return min(self._by_seq, default=0)

    @property
    def newest_seq(self) -> int:
        """The largest loaded seq (0: none loaded)."""
        return max(self._by_seq, default=0)

    def message(self, seq: int) -> Row | None:
        """The row at ``seq``, if loaded."""
        return self._by_seq.get(seq)

    def outbox_row(self, request_id: str) -> Row | None:
        """The row of an unsent (pending or failed) message."""
        return self._outbox.get(request_id)

    def rows(self) -> list[Row]:
        """Every row in display order: loaded events by seq, then unsent messages, with day separators."""
        body = [self._by_seq[s] for s in sorted(self._by_seq)]
        body += sorted(self._outbox.values(), key=lambda r: self._outbox_order.get(r.request_id, 0.0))
        today = self._today()
        out: list[Row] = []
        last_day: date | None = None
        for row in body:
            day = local_datetime(row.time_ms).date() if row.time_ms > 0 else today
            if day != last_day:
                out.append(Row(key=f"day:{day.isoformat()}", kind=RowKind.DAY, text=day_label(day, today)))
                last_day = day
            out.append(row)
        return out

    # -- merging ---------------------------------------------------------------------------------------------

    def add_page(self, page: api.GetHistoryResponse, *, older: bool) -> None:
        """Merge a page of history: the newest page (``older=False``) or one before the oldest loaded event."""
        self.add_events(page.events)
        if older:
            self.has_more = page.has_more
        else:
            self.loaded = True
            self.applied_index = max(self.applied_index, page.applied_index)
            self.has_more = page.has_more
        self.load_error = ""

    def add_events(self, events: Iterable[api.Event]) -> None:
        """Merge events (from history or the live stream), in any order; known seqs are refreshed."""
        changes: list[api.Event] = []
        for event in events:
            if event.conversation_id and event.conversation_id != self.conversation_id:
                continue
            if event.kind in (api.EventKind.EDITED, api.EventKind.DELETED):
                changes.append(event)
                continue
            row = self._row_of(event)
            if row is None:
                continue
            previous = self._by_seq.get(event.seq)
            if previous is not None and previous.edited and not row.edited and not row.deleted:
                row = replace(row, text=previous.text, edited=True)  # an EDITED seen live before the echo
            if previous is not None and previous.deleted:
                row = replace(row, text="", deleted=True)
            self._by_seq[event.seq] = row
            if event.request_id:
                self._rid_seq[event.request_id] = event.seq
                self._drop_outbox(event.request_id)
        for event in changes:
            self._apply_change(event)

    def apply_outbox(self, item: OutboxItem) -> None:
        """Show the state of one's own message from the outbox (pending, sent with its seq, or failed)."""
        if item.conversation_id != self.conversation_id:
            return
        if item.request_id in self._rid_seq:
            return  # its event is shown already: the message is sent
        if item.state is OutboxState.SENT:
            self._drop_outbox(item.request_id)
            if item.seq:
                self._rid_seq[item.request_id] = item.seq
                if item.seq not in self._by_seq:
                    self._by_seq[item.seq] = Row(
                        key=f"seq:{item.seq}",
                        kind=RowKind.MESSAGE,
                        text=item.body,
                        sender=self.me,
                        time_ms=int(item.updated_at * 1000),
                        seq=item.seq,
                        own=True,
                        delivery=Delivery.SENT,
                        request_id=item.request_id,
                    )
            return
        delivery = Delivery.PENDING if item.state is OutboxState.PENDING else Delivery.FAILED
        self._outbox[item.request_id] = Row(
            key=f"out:{item.request_id}",
            kind=RowKind.MESSAGE,
            text=item.body,
            sender=self.me,
            time_ms=int(item.created_at * 1000),
            own=True,
            delivery=delivery,
            request_id=item.request_id,
            error=item.last_error or "",
        )
        self._outbox_order.setdefault(item.request_id, item.created_at or time.time())

    def forget_outbox(self, request_id: str) -> None:
        """Remove an unsent message (it was discarded)."""
        self._drop_outbox(request_id)

    # -- internals -------------------------------------------------------------------------------------------

    def _drop_outbox(self, request_id: str) -> None:
        self._outbox.pop(request_id, None)
        self._outbox_order.pop(request_id, None)

    def _row_of(self, event: api.Event) -> Row | None:
        if event.kind is api.EventKind.MESSAGE:
            own = event.sender == self.me
            return Row(
                key=f"seq:{event.seq}",
                kind=RowKind.MESSAGE,
                text="" if event.deleted else event.body,
                sender=event.sender,
                time_ms=event.time_ms,
                seq=event.seq,
                own=own,
                delivery=Delivery.SENT if own else Delivery.NONE,
                edited=event.edited_at_ms != 0,
                deleted=event.deleted,
                request_id=event.request_id,
            )
        text = system_text(event, self.me)
        if not text:
            return None
        return Row(
            key=f"seq:{event.seq}",
            kind=RowKind.SYSTEM,
            text=text,
            sender=event.sender,
            time_ms=event.time_ms,
            seq=event.seq,
        )

    def _apply_change(self, event: api.Event) -> None:
        target = self._by_seq.get(event.target_seq)
        if target is None or target.kind is not RowKind.MESSAGE:
            return  # not loaded: a later page shows the message as it is then
        if event.kind is api.EventKind.DELETED:
            self._by_seq[event.target_seq] = replace(target, text="", deleted=True)
        elif not target.deleted:
            self._by_seq[event.target_seq] = replace(target, text=event.body, edited=True)
