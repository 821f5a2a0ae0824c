"""Typed server events (protocol/README.md §4, protocol/asyncapi.yaml).

``message``, ``change`` and ``conversation`` events are the objects of :mod:`.models`; the
others are defined here. A type this SDK does not know (one a newer server added) arrives as
:class:`UnknownEvent`, so an application sees it instead of losing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustmess.client.models import (
    Change,
    ContactRequest,
    Conversation,
    Invitation,
    Json,
    Member,
    Message,
    User,
)


@dataclass(frozen=True, slots=True)
class Read:
    """``user_id``'s read marker in the conversation moved to ``seq``."""

    conversation_id: int
    user_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class Typing:
    """``user_id`` started or stopped typing (``state``: ``start`` | ``stop``)."""

    conversation_id: int
    user_id: int
    state: str


@dataclass(frozen=True, slots=True)
class Presence:
    """``user_id`` is ``online``, ``offline`` (since ``last_seen``) or ``hidden`` from you now
    (forget what you showed). Only after :meth:`Client.presence` subscribed this client."""

    user_id: int
    status: str
    last_seen: str | None

    @classmethod
    def parse(cls, data: Json) -> Presence:
        return cls(data["user_id"], data["status"], data.get("last_seen"))


@dataclass(frozen=True, slots=True)
class ConversationUpdate:
    """One change to a group, bringing it to ``version``. ``change`` says which fields are set:
    ``title`` → ``title``; ``members_added`` → ``members``; ``members_removed`` →
    ``user_ids`` and ``owner_id``. Apply it if ``version`` is one above your copy's; after a
    bigger gap refetch the conversation (``Client.conversation``)."""

    conversation_id: int
    version: int
    change: str
    title: str | None = None
    members: tuple[Member, ...] = ()
    user_ids: tuple[int, ...] = ()
    owner_id: int | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """The user is no longer a member of the conversation; its events stop."""

    conversation_id: int


@dataclass(frozen=True, slots=True)
class ContactChange:
    """The user's contacts or contact requests changed (``change``: ``requested``,
    ``accepted``, ``declined``, ``cancelled``, ``removed``); ``user`` is the other user.
    ``request`` comes with ``requested``, ``direction`` with ``declined`` and ``cancelled``."""

    change: str
    user: User
    request: ContactRequest | None = None
    direction: str | None = None


@dataclass(frozen=True, slots=True)
class InvitationChange:
    """An invitation of the user changed (``change``: ``invited``, ``accepted``, ``declined``,
    ``withdrawn``); ``invitation`` comes with ``invited``."""

    change: str
    conversation_id: int
    invitation: Invitation | None = None


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Not a server event: the SDK's socket is back after a close (``close_code``; None when
    the connection broke without one). Joined conversations resume on their own, but
    ``conversation``, ``conversation_update`` and ``removed`` events sent meanwhile are not
    replayed: refetch the conversation list (protocol/README.md §9 step 8)."""

    close_code: int | None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event this SDK version does not know, or one it could not read: ``type`` and the
    whole frame as ``data``."""

    type: str
    data: Json


Event = (
    Message
    | Change
    | Read
    | Typing
    | Conversation
    | ConversationUpdate
    | Removed
    | ContactChange
    | InvitationChange
    | Presence
    | Reconnected
    | UnknownEvent
)


def parse_event(frame: Json) -> Event:
    """The typed event of a server frame; never raises."""
    kind = frame.get("type")
    try:
        if kind == "message":
            return Message.parse(frame)
        if kind == "change":
            return Change.parse(frame)
        if kind == "read":
            return Read(frame["conversation_id"], frame["user_id"], frame["seq"])
        if kind == "typing":
            return Typing(frame["conversation_id"], frame["user_id"], frame["state"])
        if kind == "conversation":
            return Conversation.parse(frame)
        if kind == "conversation_update":
            return _conversation_update(frame)
        if kind == "removed":
            return Removed(frame["conversation_id"])
        if kind == "contact":
            return _contact_change(frame)
        if kind == "invitation":
            return _invitation_change(frame)
        if kind == "presence":
            return Presence.parse(frame)
    except (KeyError, TypeError, ValueError):
        pass  # a documented type in a shape we cannot read: hand it over as it is
    return UnknownEvent(str(kind), frame)


def _conversation_update(frame: Json) -> ConversationUpdate:
    members: Any = frame.get("members", ())
    return ConversationUpdate(
        conversation_id=frame["conversation_id"],
        version=frame["version"],
        change=frame["change"],
        title=frame.get("title"),
        members=tuple(Member.parse(m) for m in members),
        user_ids=tuple(frame.get("user_ids", ())),
        owner_id=frame.get("owner_id"),
    )


def _contact_change(frame: Json) -> ContactChange:
    request = frame.get("request")
    return ContactChange(
        change=frame["change"],
        user=User.parse(frame["user"]),
        request=None if request is None else ContactRequest.parse(request),
        direction=frame.get("direction"),
    )


def _invitation_change(frame: Json) -> InvitationChange:
    invitation = frame.get("invitation")
    return InvitationChange(
        change=frame["change"],
        conversation_id=frame["conversation_id"],
        invitation=None if invitation is None else Invitation.parse(invitation),
    )
