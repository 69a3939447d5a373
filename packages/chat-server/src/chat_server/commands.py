"""The replicated chat commands: pydantic models (one per ``op``), their JSON encoding and validation.

A command is built by the service layer, encoded with ``encode`` (compact JSON) and proposed through Raft;
every node decodes it with ``decode`` and applies it (``chat_server.store.ChatStateMachine``). Everything
non-deterministic is decided before proposing and carried in the command: conversation ids, password
hashes, token hashes, expiry times. Applying reads only the command and the log time.

Field shapes are checked here, when a command is built, so a malformed one never reaches the log: usernames
(3 to 32 characters, lowercase letters, digits, '.', '_' and '-', starting with a letter), request ids (1 to
64 characters), message bodies (1 to 4096 UTF-8 bytes), display and room names (1 to 64 characters), topics
(at most 256 characters), member lists (at most 100 usernames), admin keys (1 to 1024 bytes) and values (at
most 1 MiB; base64 in JSON). Building one with a bad field raises ``pydantic.ValidationError``;
``explain`` turns that into "field: why" text for an INVALID_ARGUMENT status. Whether the command makes
sense (the user exists, the caller is a member, ...) is checked when it is applied.

Every command carrying a ``request_id`` is applied at most once per ``dedup_key`` (the actor and the
request id): a retry returns the first result.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)

MAX_BODY_BYTES: Final = 4096
MAX_NAME_CHARS: Final = 64
MAX_TOPIC_CHARS: Final = 256
MAX_MEMBERS: Final = 100
MAX_REQUEST_ID_CHARS: Final = 64
MAX_DEVICE_CHARS: Final = 64
MAX_CONVERSATION_ID_CHARS: Final = 128
MAX_PASSWORD_HASH_CHARS: Final = 1024
MAX_KEY_BYTES: Final = 1024
MAX_VALUE_BYTES: Final = 1 << 20
MAX_MS: Final = (1 << 63) - 1
ADMIN: Final = "@admin"
"""The actor the admin key-value commands are deduplicated under (not a valid username, so no user collides)."""

_USERNAME = re.compile(r"[a-z][a-z0-9._-]{2,31}")
_TOKEN_HASH = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CommandDecodeError(ValueError):
    """Bytes that are not an encoded chat command (the message says what is wrong)."""


# -- field types ------------------------------------------------------------------------------------------------


def _username(value: str) -> str:
    if not _USERNAME.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not a valid username: use 3 to 32 characters (lowercase letters, digits, '.', '_' "
            "or '-'), starting with a letter"
        )
    return value


def _request_id(value: str) -> str:
    if not 1 <= len(value) <= MAX_REQUEST_ID_CHARS:
        raise ValueError(f"must be 1 to {MAX_REQUEST_ID_CHARS} characters (got {len(value)}); a UUID works")
    return value


def _name(value: str) -> str:
    if not value.strip() or len(value) > MAX_NAME_CHARS:
        raise ValueError(f"must be 1 to {MAX_NAME_CHARS} characters and not blank (got {len(value)})")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (such as line breaks)")
    return value


def _topic(value: str) -> str:
    if len(value) > MAX_TOPIC_CHARS:
        raise ValueError(f"must be at most {MAX_TOPIC_CHARS} characters (got {len(value)})")
    return value


def _body(value: str) -> str:
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text") from None
    if not 1 <= size <= MAX_BODY_BYTES:
        raise ValueError(f"must be 1 to {MAX_BODY_BYTES} bytes of UTF-8 text (got {size})")
    return value


def _device(value: str) -> str:
    if len(value) > MAX_DEVICE_CHARS:
        raise ValueError(f"must be at most {MAX_DEVICE_CHARS} characters (got {len(value)})")
    return value


def _conversation_id(value: str) -> str:
    if not 1 <= len(value) <= MAX_CONVERSATION_ID_CHARS or _CONTROL.search(value):
        raise ValueError(f"must be 1 to {MAX_CONVERSATION_ID_CHARS} printable characters")
    return value


def _token_hash(value: str) -> str:
    if not _TOKEN_HASH.fullmatch(value):
        raise ValueError("must be a SHA-256 in lowercase hex (64 characters)")
    return value


def _password_hash(value: str) -> str:
    if not 1 <= len(value) <= MAX_PASSWORD_HASH_CHARS:
        raise ValueError(f"must be 1 to {MAX_PASSWORD_HASH_CHARS} characters")
    return value


def _from_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("is not valid base64") from None
    return value


def _key(value: bytes) -> bytes:
    if not 1 <= len(value) <= MAX_KEY_BYTES:
        raise ValueError(f"must be 1 to {MAX_KEY_BYTES} bytes (got {len(value)})")
    return value


def _value(value: bytes) -> bytes:
    if len(value) > MAX_VALUE_BYTES:
        raise ValueError(f"must be at most {MAX_VALUE_BYTES} bytes (got {len(value)})")
    return value


def _members(value: list[str]) -> list[str]:
    if len(value) > MAX_MEMBERS:
        raise ValueError(f"at most {MAX_MEMBERS} usernames per request (got {len(value)})")
    return value


_Base64 = PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json")

Username = Annotated[str, AfterValidator(_username)]
RequestId = Annotated[str, AfterValidator(_request_id)]
DisplayName = Annotated[str, AfterValidator(_name)]
RoomName = Annotated[str, AfterValidator(_name)]
Topic = Annotated[str, AfterValidator(_topic)]
Body = Annotated[str, AfterValidator(_body)]
Device = Annotated[str, AfterValidator(_device)]
ConversationId = Annotated[str, AfterValidator(_conversation_id)]
TokenHash = Annotated[str, AfterValidator(_token_hash)]
PasswordHash = Annotated[str, AfterValidator(_password_hash)]
TimeMs = Annotated[int, Field(ge=0, le=MAX_MS)]
Seq = Annotated[int, Field(ge=1, le=MAX_MS)]
Usernames = Annotated[list[Username], AfterValidator(_members)]
KvKey = Annotated[bytes, BeforeValidator(_from_base64), AfterValidator(_key), _Base64]
"""Bytes (base64 text in JSON; a str given when building is read as base64 too)."""
KvValue = Annotated[bytes, BeforeValidator(_from_base64), AfterValidator(_value), _Base64]


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# -- accounts ---------------------------------------------------------------------------------------------------


class Register(_Command):
    """Create the account ``username`` (``password_hash``: argon2id, made before proposing).

    An empty ``display_name`` means the username.
    """

    op: Literal["register"] = "register"
    request_id: RequestId
    username: Username
    password_hash: PasswordHash
    display_name: Annotated[str, AfterValidator(lambda v: _name(v) if v else v)] = ""


class Login(_Command):
    """Open a session for ``username`` whose token hashes to ``token_hash``, valid until ``expires_at_ms``."""

    op: Literal["login"] = "login"
    request_id: RequestId
    username: Username
    token_hash: TokenHash
    device: Device = ""
    expires_at_ms: TimeMs


class Logout(_Command):
    """End the session whose token hashes to ``token_hash`` (nothing happens if there is none)."""

    op: Literal["logout"] = "logout"
    request_id: RequestId
    token_hash: TokenHash


class SetDisplayName(_Command):
    """Change ``actor``'s display name."""

    op: Literal["set_display_name"] = "set_display_name"
    request_id: RequestId
    actor: Username
    display_name: DisplayName


class Presence(_Command):
    """Renew (``online``) ``actor``'s presence lease until ``expires_at_ms``, or drop it."""

    op: Literal["presence"] = "presence"
    actor: Username
    online: bool
    expires_at_ms: TimeMs = 0


# -- conversations ----------------------------------------------------------------------------------------------


def direct_id(a: str, b: str) -> str:
    """The id of the direct conversation between users ``a`` and ``b`` (the same both ways)."""
    first, second = sorted((a, b))
    return f"dm:{first}:{second}"


class OpenDirect(_Command):
    """Open (or return) the direct conversation of ``actor`` and ``peer``; ``conversation_id`` = ``direct_id``."""

    op: Literal["open_direct"] = "open_direct"
    request_id: RequestId
    actor: Username
    peer: Username
    conversation_id: ConversationId

    @model_validator(mode="after")
    def _check_peer(self) -> Self:
        if self.actor == self.peer:
            raise ValueError("peer: you cannot open a direct conversation with yourself")
        if self.conversation_id != direct_id(self.actor, self.peer):
            raise ValueError(f"conversation_id: must be {direct_id(self.actor, self.peer)!r}")
        return self


class CreateRoom(_Command):
    """Create the room ``conversation_id`` (made by the caller, e.g. "r:" + a UUID's hex) with ``members``."""

    op: Literal["create_room"] = "create_room"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId
    name: RoomName
    topic: Topic = ""
    public: bool = False
    members: Usernames = []

    @model_validator(mode="after")
    def _check_id(self) -> Self:
        if self.conversation_id.startswith("dm:"):
            raise ValueError("conversation_id: room ids must not start with 'dm:'")
        return self


class Invite(_Command):
    """Add ``usernames`` to a room ``actor`` belongs to."""

    op: Literal["invite"] = "invite"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId
    usernames: Annotated[Usernames, Field(min_length=1)]


class Join(_Command):
    """``actor`` joins a public room."""

    op: Literal["join"] = "join"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId


class Leave(_Command):
    """``actor`` leaves a room."""

    op: Literal["leave"] = "leave"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId


# -- messages ---------------------------------------------------------------------------------------------------


class Send(_Command):
    """Post ``body`` to a conversation ``actor`` belongs to."""

    op: Literal["send"] = "send"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId
    body: Body


class Edit(_Command):
    """Replace the body of ``actor``'s message at ``seq``."""

    op: Literal["edit"] = "edit"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId
    seq: Seq
    body: Body


class Delete(_Command):
    """Delete ``actor``'s message at ``seq``."""

    op: Literal["delete"] = "delete"
    request_id: RequestId
    actor: Username
    conversation_id: ConversationId
    seq: Seq


class MarkRead(_Command):
    """Move ``actor``'s read cursor to ``seq`` (never back, never past the newest event)."""

    op: Literal["mark_read"] = "mark_read"
    actor: Username
    conversation_id: ConversationId
    seq: TimeMs


class Typing(_Command):
    """``actor`` is (or stopped) typing in a conversation; changes no state, only tells subscribers."""

    op: Literal["typing"] = "typing"
    actor: Username
    conversation_id: ConversationId
    typing: bool
    expires_at_ms: TimeMs = 0


# -- admin key-value --------------------------------------------------------------------------------------------


class KvPut(_Command):
    """Set ``key`` to ``value``."""

    op: Literal["kv_put"] = "kv_put"
    request_id: RequestId
    key: KvKey
    value: KvValue


class KvDelete(_Command):
    """Remove ``key``."""

    op: Literal["kv_delete"] = "kv_delete"
    request_id: RequestId
    key: KvKey


class KvCas(_Command):
    """Set ``key`` to ``new_value`` if it holds ``expected_value`` (or, with ``expect_absent``, holds nothing)."""

    op: Literal["kv_cas"] = "kv_cas"
    request_id: RequestId
    key: KvKey
    expected_value: KvValue = b""
    expect_absent: bool = False
    new_value: KvValue


ChatCommand = Annotated[
    Register
    | Login
    | Logout
    | SetDisplayName
    | Presence
    | OpenDirect
    | CreateRoom
    | Invite
    | Join
    | Leave
    | Send
    | Edit
    | Delete
    | MarkRead
    | Typing
    | KvPut
    | KvDelete
    | KvCas,
    Field(discriminator="op"),
]
"""Any chat command (a union discriminated by ``op``)."""
Command = ChatCommand
"""Alias of ``ChatCommand``."""

_ADAPTER: TypeAdapter[ChatCommand] = TypeAdapter(ChatCommand)


def encode(command: ChatCommand) -> bytes:
    """``command`` as compact JSON (what is proposed)."""
    return _ADAPTER.dump_json(command)


def decode(data: bytes) -> ChatCommand:
    """The command ``encode`` made of ``data``; ``CommandDecodeError`` for anything else."""
    try:
        return _ADAPTER.validate_json(data)
    except ValidationError as exc:
        raise CommandDecodeError(f"not a chat command: {explain(exc, tagged=True)}") from None


def dedup_key(command: ChatCommand) -> tuple[str, str] | None:
    """``(actor, request_id)`` under which ``command`` is applied at most once; None if it carries no request id.

    Registration and login are keyed by the username, logout by the token hash, admin commands by ``ADMIN``.
    """
    match command:
        case Register(username=actor) | Login(username=actor):
            return actor, command.request_id
        case Logout():
            return f"@session:{command.token_hash}", command.request_id
        case KvPut() | KvDelete() | KvCas():
            return ADMIN, command.request_id
        case MarkRead() | Typing() | Presence():
            return None
        case _:
            return command.actor, command.request_id


def explain(exc: ValidationError, *, tagged: bool = False) -> str:
    """A ``ValidationError`` as "field: why" phrases joined by "; " (fit for an INVALID_ARGUMENT message).

    ``tagged``: the error comes from validating the ``ChatCommand`` union, whose locations start with the op.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in error["loc"]]
        if tagged and loc and loc[0] in _OPS:
            loc = loc[1:]
        ctx = error.get("ctx") or {}
        message = str(ctx["error"]) if "error" in ctx else error["msg"]
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(parts)


_OPS = frozenset(
    model.model_fields["op"].default
    for model in (
        Register,
        Login,
        Logout,
        SetDisplayName,
        Presence,
        OpenDirect,
        CreateRoom,
        Invite,
        Join,
        Leave,
        Send,
        Edit,
        Delete,
        MarkRead,
        Typing,
        KvPut,
        KvDelete,
        KvCas,
    )
)
