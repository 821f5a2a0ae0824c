"""Value types of the protocol's objects (protocol/README.md §4, §11), parsed from JSON.

Parsers read the documented fields and ignore any others, so a newer server that adds fields
does not break an older client (§2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class User:
    """A profile. ``bio`` and ``is_admin`` are only in some answers (``is_admin``: own profile)."""

    id: int
    username: str
    display_name: str
    bio: str = ""
    created_at: str = ""
    is_admin: bool | None = None

    @classmethod
    def parse(cls, data: Json) -> User:
        return cls(
            id=data["id"],
            username=data["username"],
            display_name=data["display_name"],
            bio=data.get("bio", ""),
            created_at=data.get("created_at", ""),
            is_admin=data.get("is_admin"),
        )


@dataclass(frozen=True, slots=True)
class Member:
    """A conversation member; ``role`` is ``owner`` or ``member``."""

    id: int
    username: str
    display_name: str
    role: str

    @classmethod
    def parse(cls, data: Json) -> Member:
        return cls(data["id"], data["username"], data["display_name"], data["role"])


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji on a message (HTTP history only); ``me``: the caller is among its reactors."""

    emoji: str
    count: int
    me: bool


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message: the ``message`` event, and a message item of a history page."""

    id: int
    conversation_id: int
    seq: int
    sender_id: int
    body: str | None
    reply_to: int | None
    client_msg_id: str
    created_at: str
    edited_at: str | None = None
    deleted: bool = False
    reactions: tuple[Reaction, ...] = ()

    @classmethod
    def parse(cls, data: Json) -> Message:
        return cls(
            id=data["id"],
            conversation_id=data["conversation_id"],
            seq=data["seq"],
            sender_id=data["sender_id"],
            body=data["body"],
            reply_to=data.get("reply_to"),
            client_msg_id=data["client_msg_id"],
            created_at=data["created_at"],
            edited_at=data.get("edited_at"),
            deleted=bool(data.get("deleted", False)),
            reactions=tuple(
                Reaction(r["emoji"], r["count"], r["me"]) for r in data.get("reactions", ())
            ),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """An edit, deletion or reaction: an entry of the stream with its own ``seq``, applied to
    the message at ``target_seq`` (the ``change`` event, and a change item of an ``after``
    page)."""

    conversation_id: int
    seq: int
    kind: str  # edit | delete | react | unreact
    target_seq: int
    user_id: int
    client_change_id: str | None
    created_at: str
    body: str | None = None  # edit
    edited_at: str | None = None  # edit
    emoji: str | None = None  # react, unreact
    count: int | None = None  # react, unreact: the emoji's count after the change

    @classmethod
    def parse(cls, data: Json) -> Change:
        return cls(
            conversation_id=data["conversation_id"],
            seq=data["seq"],
            kind=data["kind"],
            target_seq=data["target_seq"],
            user_id=data["user_id"],
            client_change_id=data.get("client_change_id"),
            created_at=data["created_at"],
            body=data.get("body"),
            edited_at=data.get("edited_at"),
            emoji=data.get("emoji"),
            count=data.get("count"),
        )


Entry = Message | Change


def parse_entry(data: Json) -> Entry:
    """A stream item: a change when it says so (``"type": "change"``), else a message."""
    return Change.parse(data) if data.get("type") == "change" else Message.parse(data)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A conversation as the caller sees it (``read_seq``, ``unread`` are the caller's)."""

    id: int
    kind: str  # direct | group
    title: str | None
    version: int
    members: tuple[Member, ...]
    last_seq: int
    read_seq: int
    unread: int
    last_message: Message | None
    created_at: str

    @classmethod
    def parse(cls, data: Json) -> Conversation:
        last = data.get("last_message")
        return cls(
            id=data["id"],
            kind=data["kind"],
            title=data.get("title"),
            version=data.get("version", 1),
            members=tuple(Member.parse(m) for m in data["members"]),
            last_seq=data["last_seq"],
            read_seq=data["read_seq"],
            unread=data["unread"],
            last_message=None if last is None else Message.parse(last),
            created_at=data["created_at"],
        )


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A committed message, as ``send`` returns it. ``duplicate``: the server already had it
    (a resend after a reconnect); ``id``, ``seq`` and ``created_at`` are the original's."""

    conversation_id: int
    id: int
    seq: int
    created_at: str
    client_msg_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """A committed change; ``seq`` is None when there was nothing to change."""

    conversation_id: int
    target_seq: int
    seq: int | None
    duplicate: bool


@dataclass(frozen=True, slots=True)
class JoinResult:
    """The answer to ``join``: the conversation's newest seq and the caller's read marker."""

    conversation_id: int
    last_seq: int
    read_seq: int
    resumed: bool


@dataclass(frozen=True, slots=True)
class LoginSession:
    """One signed-in device (``GET /auth/sessions``); ``current``: the one making the call."""

    id: str
    created_at: str
    last_used_at: str
    expires_at: str
    user_agent: str | None
    address: str | None
    current: bool

    @classmethod
    def parse(cls, data: Json) -> LoginSession:
        return cls(
            data["id"],
            data["created_at"],
            data["last_used_at"],
            data["expires_at"],
            data.get("user_agent"),
            data.get("address"),
            bool(data.get("current", False)),
        )


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact, and since when."""

    user: User
    since: str

    @classmethod
    def parse(cls, data: Json) -> Contact:
        return cls(User.parse(data["user"]), data["since"])


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """A pending request: ``incoming`` (``user`` sent it) or ``outgoing`` (sent to ``user``)."""

    user: User
    direction: str
    message: str | None
    created_at: str

    @classmethod
    def parse(cls, data: Json) -> ContactRequest:
        return cls(
            User.parse(data["user"]), data["direction"], data.get("message"), data["created_at"]
        )


@dataclass(frozen=True, slots=True)
class BlockedUser:
    """A user the caller blocked, and when."""

    user: User
    created_at: str

    @classmethod
    def parse(cls, data: Json) -> BlockedUser:
        return cls(User.parse(data["user"]), data["created_at"])


@dataclass(frozen=True, slots=True)
class Invitation:
    """An invitation to a group (the caller's consent setting asked for one)."""

    conversation_id: int
    title: str | None
    inviter: User
    created_at: str

    @classmethod
    def parse(cls, data: Json) -> Invitation:
        return cls(
            data["conversation_id"],
            data.get("title"),
            User.parse(data["inviter"]),
            data["created_at"],
        )
