"""Value types that cross layers, and their one JSON form (HTTP and socket send the same)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_last_ts: list[tuple[datetime, str]] = [(datetime.min.replace(tzinfo=UTC), "")]


def format_ts(value: datetime) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-22T10:00:00.123Z``."""
    # Every row of a group-committed batch has the same created_at (the transaction's now())
    # and each is formatted twice (reply and event): remember the last one.
    last, text = _last_ts[0]
    if value == last:
        return text
    # isoformat of an aware UTC value ends in "+00:00"; twice as fast as strftime.
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    _last_ts[0] = (value, text)
    return text


# Not frozen: built once per message on the hot path, where a frozen init costs 4x.
@dataclass(slots=True)
class Message:
    """A stored message; ``seq`` is its gapless position in the conversation."""

    id: int
    conversation_id: int
    seq: int
    sender_id: int
    body: str
    reply_to: int | None
    client_msg_id: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "body": self.body,
            "reply_to": self.reply_to,
            "client_msg_id": self.client_msg_id,
            "created_at": format_ts(self.created_at),
        }


# Not frozen: built once per message on the hot path, where a frozen init costs 4x.
@dataclass(slots=True)
class SendResult:
    """Outcome of a send: the stored message and whether it was already stored before."""

    message: Message
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a conversation as other members see it."""

    id: int
    username: str
    display_name: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation as one member sees it: ``read_seq`` and ``unread`` are that member's."""

    id: int
    kind: str
    title: str | None
    members: tuple[Member, ...]
    last_seq: int
    read_seq: int
    unread: int
    last_message: Message | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "members": [member.to_json() for member in self.members],
            "last_seq": self.last_seq,
            "read_seq": self.read_seq,
            "unread": self.unread,
            "last_message": None if self.last_message is None else self.last_message.to_json(),
            "created_at": format_ts(self.created_at),
        }
