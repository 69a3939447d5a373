"""Rows and state-machine results to ``chat.v1`` messages (the only place that knows both).

Most functions build the typed betterproto2 messages. The hottest, what live streams carry
(``server_event_bytes``, ``typing_event_bytes``, ``presence_event_bytes``: made once per event or signal per
node, framed into batches by ``server_event_batch_bytes``) and the answer to SendMessage
(``send_response_bytes``), are encoded straight to bytes with the C-backed protobuf classes (``_gen/pb``):
about 4 µs instead of 75 µs, the same bytes (the wire contract test compares them).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from chat_server import api
from chat_server._gen.pb.chat.v1 import chat_pb2 as pb
from chat_server.errors import ChatError
from chat_server.store import ConversationRow, EventRow, PresenceNotice, TypingNotice, UserRow
from raft_grpc import codec


def user(row: UserRow, now_ms: int) -> api.User:
    """A user with presence as of ``now_ms``."""
    return api.User(
        username=row.username,
        display_name=row.display_name,
        online=row.online(now_ms),
        last_seen_ms=row.last_seen_ms,
        created_at_ms=row.created_at_ms,
    )


def event(row: EventRow) -> api.Event:
    """One event of a conversation's sequence."""
    return api.Event(
        conversation_id=row.conversation_id,
        seq=row.seq,
        kind=api.EventKind(int(row.kind)),
        sender=row.sender,
        body=row.body,
        target_seq=row.target_seq,
        member=row.member,
        time_ms=row.time_ms,
        edited_at_ms=row.edited_at_ms,
        deleted=row.deleted,
        request_id=row.request_id,
    )


def _event_pb(row: EventRow) -> pb.Event:
    return pb.Event(
        conversation_id=row.conversation_id,
        seq=row.seq,
        kind=int(row.kind),  # type: ignore[arg-type]
        sender=row.sender,
        body=row.body,
        target_seq=row.target_seq,
        member=row.member,
        time_ms=row.time_ms,
        edited_at_ms=row.edited_at_ms,
        deleted=row.deleted,
        request_id=row.request_id,
    )


def server_event_bytes(row: EventRow) -> bytes:
    """``ServerEvent(event=event(row))``, encoded."""
    return pb.ServerEvent(event=_event_pb(row)).SerializeToString()


def _send_response_pb(row: EventRow, duplicate: bool) -> pb.SendMessageResponse:
    return pb.SendMessageResponse(message=_event_pb(row), duplicate=duplicate)


def send_response_bytes(row: EventRow, duplicate: bool) -> bytes:
    """``SendMessageResponse(message=event(row), duplicate=duplicate)``, encoded."""
    return _send_response_pb(row, duplicate).SerializeToString()


def send_result(item_id: int, row: EventRow, duplicate: bool) -> pb.SendMessageResult:
    """The result of batched send ``item_id`` that succeeded: its ``SendMessageResponse``."""
    return pb.SendMessageResult(id=item_id, response=_send_response_pb(row, duplicate))


def send_result_error(item_id: int, error: ChatError) -> pb.SendMessageResult:
    """The result of batched send ``item_id`` that failed: the status its SendMessage call would have had."""
    detail = error.rich_status()
    failure = pb.CallError(
        code=error.code.value[0],
        message=error.message,
        status_details=detail.SerializeToString() if detail is not None else b"",
    )
    return pb.SendMessageResult(id=item_id, error=failure)


def send_result_batch_bytes(results: list[pb.SendMessageResult]) -> bytes:
    """``SendMessageResultBatch(results=results)``, encoded."""
    return pb.SendMessageResultBatch(results=results).SerializeToString()


def conversation(row: ConversationRow) -> api.Conversation:
    """A conversation as seen by the user it was read for."""
    return api.Conversation(
        id=row.id,
        kind=api.ConversationKind(int(row.kind)),
        name=row.name,
        topic=row.topic,
        public=row.public,
        last_seq=row.last_seq,
        read_seq=row.read_seq,
        unread_count=row.unread_count,
        last_event=event(row.last_event) if row.last_event is not None else None,
        member_count=row.member_count,
        created_at_ms=row.created_at_ms,
        joined_seq=row.joined_seq,
    )


def typing(notice: TypingNotice) -> api.TypingSignal:
    """A typing signal."""
    return api.TypingSignal(
        conversation_id=notice.conversation_id,
        username=notice.username,
        typing=notice.typing,
        expires_at_ms=notice.expires_at_ms,
    )


def presence(notice: PresenceNotice, now_ms: int) -> api.PresenceSignal:
    """A presence change (online while the lease runs)."""
    return api.PresenceSignal(
        username=notice.username,
        online=notice.online and notice.expires_at_ms > now_ms,
        last_seen_ms=notice.last_seen_ms,
    )


def typing_event_bytes(notice: TypingNotice) -> bytes:
    """``ServerEvent(typing=typing(notice))``, encoded."""
    signal = pb.TypingSignal(
        conversation_id=notice.conversation_id,
        username=notice.username,
        typing=notice.typing,
        expires_at_ms=notice.expires_at_ms,
    )
    return pb.ServerEvent(typing=signal).SerializeToString()


def presence_event_bytes(notice: PresenceNotice, now_ms: int) -> bytes:
    """``ServerEvent(presence=presence(notice, now_ms))``, encoded."""
    signal = pb.PresenceSignal(
        username=notice.username,
        online=notice.online and notice.expires_at_ms > now_ms,
        last_seen_ms=notice.last_seen_ms,
    )
    return pb.ServerEvent(presence=signal).SerializeToString()


def server_event_batch_bytes(events: Iterable[bytes]) -> bytes:
    """A ``ServerEventBatch`` of already-encoded ``ServerEvent``s, framed without parsing or copying them.

    ``ServerEventBatch.events`` is field 1, length-delimited, as ``raft.v1.Batch.messages`` is: raft-grpc's
    framing serves both (the wire contract test compares the bytes with protobuf's).
    """
    return codec.frame_batch(events)


def _unexpected(result: object) -> ChatError:
    return ChatError(grpc.StatusCode.INTERNAL, f"unexpected answer from the store ({type(result).__name__})")


def event_result(result: object) -> tuple[EventRow, bool]:
    """The event of a send / edit / delete result and whether it was a duplicate retry."""
    if isinstance(result, dict) and isinstance(result.get("event"), EventRow):
        return result["event"], bool(result.get("duplicate"))
    raise _unexpected(result)


def conversation_id_of(result: object) -> str:
    """The id of the conversation a conversation-changing command returned."""
    if isinstance(result, ConversationRow):
        return result.id
    raise _unexpected(result)


def seq_of(result: object) -> int:
    """The newest seq of the conversation a command returned (the LEFT event of a leave)."""
    if isinstance(result, ConversationRow):
        return result.last_seq
    raise _unexpected(result)


def read_result(result: object) -> tuple[int, int]:
    """``(read_seq, unread_count)`` of a mark-read result."""
    if isinstance(result, dict):
        return int(result.get("read_seq", 0)), int(result.get("unread_count", 0))
    raise _unexpected(result)
