"""The wire codec: client frame bytes → typed command; command answers (reply, error) → bytes.

No I/O here. ``decode`` never raises on bad input: it returns a :class:`FrameError` carrying the
protocol error code (and the frame's ``ref`` when one could be read), so the socket can answer
and keep serving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from trustmess.errors import ApiError, ErrorCode, invalid
from trustmess.wire.validation import (
    check_fields,
    client_change_id,
    client_msg_id,
    get_int,
    get_str,
    message_body,
    reaction,
    require_int,
    require_str,
)

Ref = str | int | None
MAX_REF_CHARS = 64


@dataclass(frozen=True, slots=True)
class Auth:
    """``auth {token}``: authenticate (first frame) or extend the session with a fresh token."""

    ref: Ref
    token: str


@dataclass(frozen=True, slots=True)
class Join:
    """``join {conversation_id, since?}``: receive the conversation's live events."""

    ref: Ref
    conversation_id: int
    since: int | None


@dataclass(frozen=True, slots=True)
class Leave:
    """``leave {conversation_id}``: stop receiving its live events on this connection."""

    ref: Ref
    conversation_id: int


# Not frozen: built once per message on the hot path, where a frozen init costs 4x.
@dataclass(slots=True)
class SendMessage:
    """``message {conversation_id, client_msg_id, body, reply_to?}``: send a message."""

    ref: Ref
    conversation_id: int
    client_msg_id: str
    body: str
    reply_to: int | None


@dataclass(frozen=True, slots=True)
class ChangeMessage:
    """``edit {conversation_id, target_seq, body, client_change_id?}``, ``delete {…}``,
    ``react {…, emoji}`` or ``unreact {…, emoji}``: change the message at ``target_seq``."""

    ref: Ref
    kind: str
    conversation_id: int
    target_seq: int
    client_change_id: str | None
    body: str | None = None
    emoji: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """``ack {conversation_id, seq}``: cumulative read marker."""

    ref: Ref
    conversation_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class Typing:
    """``typing {conversation_id, state?}``: start (default) or stop typing."""

    ref: Ref
    conversation_id: int
    state: str


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: answered by an empty reply."""

    ref: Ref


@dataclass(frozen=True, slots=True)
class PresenceSubscribe:
    """``presence``: send this socket the ``presence`` events of every user it may see from
    now on, and answer with their presence now (the snapshot)."""

    ref: Ref


Command = (
    Auth | Join | Leave | SendMessage | ChangeMessage | Ack | Typing | Ping | PresenceSubscribe
)


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that cannot be executed, and the error frame to answer it with."""

    ref: Ref
    code: ErrorCode
    message: str
    field: str | None = None


def _auth(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref", "token"}, ("token",))
    return Auth(ref, require_str(data, "token", min_len=1, max_len=4096))


def _join(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref", "conversation_id", "since"}, ("conversation_id",))
    return Join(ref, require_int(data, "conversation_id", lo=1), get_int(data, "since", lo=0))


def _leave(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref", "conversation_id"}, ("conversation_id",))
    return Leave(ref, require_int(data, "conversation_id", lo=1))


_MESSAGE_FIELDS = frozenset({"type", "ref", "conversation_id", "client_msg_id", "body", "reply_to"})
_MESSAGE_REQUIRED = ("conversation_id", "client_msg_id", "body")


def _message(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, _MESSAGE_FIELDS, _MESSAGE_REQUIRED)
    return SendMessage(
        ref,
        require_int(data, "conversation_id", lo=1),
        client_msg_id(data),
        message_body(data),
        get_int(data, "reply_to", lo=1),
    )


_CHANGE_FIELDS = {"type", "ref", "conversation_id", "target_seq", "client_change_id"}
_CHANGE_REQUIRED = ("conversation_id", "target_seq")


def _edit(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, _CHANGE_FIELDS | {"body"}, (*_CHANGE_REQUIRED, "body"))
    return ChangeMessage(
        ref,
        "edit",
        require_int(data, "conversation_id", lo=1),
        require_int(data, "target_seq", lo=1),
        client_change_id(data),
        body=message_body(data),
    )


def _delete(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, _CHANGE_FIELDS, _CHANGE_REQUIRED)
    return ChangeMessage(
        ref,
        "delete",
        require_int(data, "conversation_id", lo=1),
        require_int(data, "target_seq", lo=1),
        client_change_id(data),
    )


def _reaction(kind: str) -> Callable[[Ref, dict[str, Any]], Command]:
    def parse(ref: Ref, data: dict[str, Any]) -> Command:
        check_fields(data, _CHANGE_FIELDS | {"emoji"}, (*_CHANGE_REQUIRED, "emoji"))
        return ChangeMessage(
            ref,
            kind,
            require_int(data, "conversation_id", lo=1),
            require_int(data, "target_seq", lo=1),
            client_change_id(data),
            emoji=reaction(data.get("emoji")),
        )

    return parse


def _ack(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref", "conversation_id", "seq"}, ("conversation_id", "seq"))
    return Ack(ref, require_int(data, "conversation_id", lo=1), require_int(data, "seq", lo=0))


def _typing(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref", "conversation_id", "state"}, ("conversation_id",))
    state = get_str(data, "state", max_len=5, default="start")
    if state not in ("start", "stop"):
        raise invalid("state", "must be 'start' or 'stop'")
    return Typing(ref, require_int(data, "conversation_id", lo=1), state)


def _ping(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref"})
    return Ping(ref)


def _presence(ref: Ref, data: dict[str, Any]) -> Command:
    check_fields(data, {"type", "ref"})
    return PresenceSubscribe(ref)


_PARSERS = {
    "auth": _auth,
    "join": _join,
    "leave": _leave,
    "message": _message,
    "edit": _edit,
    "delete": _delete,
    "react": _reaction("react"),
    "unreact": _reaction("unreact"),
    "ack": _ack,
    "typing": _typing,
    "ping": _ping,
    "presence": _presence,
}


def _read_ref(data: dict[str, Any]) -> tuple[Ref, FrameError | None]:
    ref = data.get("ref")
    if ref is None:
        return None, None
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        return None, FrameError(
            None, ErrorCode.INVALID, "ref: must be a string or an integer", "ref"
        )
    if isinstance(ref, str) and len(ref) > MAX_REF_CHARS:
        return None, FrameError(
            None, ErrorCode.INVALID, f"ref: must be at most {MAX_REF_CHARS} characters", "ref"
        )
    if isinstance(ref, int) and not -(2**53) < ref < 2**53:
        return None, FrameError(None, ErrorCode.INVALID, "ref: integer out of range", "ref")
    return ref, None


def decode(raw: bytes | str) -> Command | FrameError:
    """Parse and validate one client frame."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return FrameError(None, ErrorCode.BAD_FRAME, "frame is not valid JSON")
    if not isinstance(data, dict):
        return FrameError(None, ErrorCode.BAD_FRAME, "frame must be a JSON object")
    ref, ref_error = _read_ref(data)
    if ref_error is not None:
        return ref_error
    kind = data.get("type")
    if not isinstance(kind, str):
        return FrameError(ref, ErrorCode.BAD_FRAME, "frame needs a string 'type'")
    parser = _PARSERS.get(kind)
    if parser is None:
        return FrameError(ref, ErrorCode.UNKNOWN_TYPE, f"unknown type {kind[:64]!r}")
    try:
        return parser(ref, data)
    except ApiError as error:
        return FrameError(ref, error.code, error.message, error.field)


def reply(ref: Ref, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "reply", "ref": ref, "data": data})


def error(ref: Ref, code: ErrorCode | str, message: str, field: str | None = None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if ref is not None:
        frame["ref"] = ref
    if field is not None:
        frame["field"] = field
    return orjson.dumps(frame)


def error_from(failure: FrameError) -> bytes:
    return error(failure.ref, failure.code, failure.message, failure.field)
