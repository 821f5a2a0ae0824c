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


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji's reactions on a message, as one user sees them (``me``: that user is among
    the reactors)."""

    emoji: str
    count: int
    me: bool

    def to_json(self) -> dict[str, Any]:
        return {"emoji": self.emoji, "count": self.count, "me": self.me}


# Not frozen: built once per message on the hot path, where a frozen init costs 4x.
@dataclass(slots=True)
class Message:
    """A stored message; ``seq`` is its gapless position in the conversation.

    ``body`` is None once the message was deleted for everyone (``deleted``). ``reactions`` is
    set only where a reader's view is built (HTTP history); events never carry it.
    """

    id: int
    conversation_id: int
    seq: int
    sender_id: int
    body: str | None
    reply_to: int | None
    client_msg_id: str
    created_at: datetime
    edited_at: datetime | None = None
    deleted: bool = False
    reactions: list[Reaction] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "body": self.body,
            "reply_to": self.reply_to,
            "client_msg_id": self.client_msg_id,
            "created_at": format_ts(self.created_at),
        }
        # A message as sent has none of these: its event stays the v1 object, byte for byte.
        if self.edited_at is not None:
            data["edited_at"] = format_ts(self.edited_at)
        if self.deleted:
            data["deleted"] = True
        if self.reactions is not None:
            data["reactions"] = [reaction.to_json() for reaction in self.reactions]
        return data


@dataclass(slots=True)
class Change:
    """An edit, deletion or reaction: an entry of the conversation's stream with its own
    ``seq``, applied to the message at ``target_seq``.

    The fields after ``created_at`` describe the target right after this change (a live
    event) or as it is now (read back for a replay or a gap fill): ``body`` and ``edited_at``
    for an edit (``body`` None if the message has been deleted since), ``emoji`` and that
    emoji's ``count`` for a reaction. So applying the
    entries from any point on, in seq order, ends in the stored state, however often one is
    applied.
    """

    conversation_id: int
    seq: int
    kind: str  # edit | delete | react | unreact
    target_seq: int
    user_id: int
    client_change_id: str | None
    created_at: datetime
    body: str | None = None
    edited_at: datetime | None = None
    emoji: str | None = None
    count: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "change",
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "kind": self.kind,
            "target_seq": self.target_seq,
            "user_id": self.user_id,
            "client_change_id": self.client_change_id,
            "created_at": format_ts(self.created_at),
        }
        if self.kind == "edit":
            data["body"] = self.body
            data["edited_at"] = None if self.edited_at is None else format_ts(self.edited_at)
        elif self.kind != "delete":
            data["emoji"] = self.emoji
            data["count"] = self.count
        return data


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """Outcome of an edit, delete, react or unreact: the entry's ``seq``, or None when the
    command changed nothing (the message already deleted, the reaction already there or
    already gone, the same body); ``duplicate`` when its ``client_change_id`` was seen before."""

    conversation_id: int
    target_seq: int
    seq: int | None
    duplicate: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "target_seq": self.target_seq,
            "seq": self.seq,
            "duplicate": self.duplicate,
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
    # Bumped by every title or membership change: a ``conversation_update`` event that is not
    # exactly one above the client's copy means it missed one and should refetch.
    version: int
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
            "version": self.version,
            "members": [member.to_json() for member in self.members],
            "last_seq": self.last_seq,
            "read_seq": self.read_seq,
            "unread": self.unread,
            "last_message": None if self.last_message is None else self.last_message.to_json(),
            "created_at": format_ts(self.created_at),
        }
