"""Server events: one encoder per event type, each returning the bytes every recipient gets.

The hub hands the same bytes to every subscriber (encode once, fan out many), so events are
encoded here, before publishing, never per recipient. ``reply`` and ``error`` answer a
command and live next to the decoder in ``frames``.
"""

from __future__ import annotations

from typing import Any

import orjson

from trustmess.models import Change, Conversation, Member, Message
from trustmess.wire.validation import MAX_BODY_CHARS


def hello(
    user_id: int,
    session_id: str,
    heartbeat_s: float,
    max_frame_bytes: int,
    replay_limit: int,
    ref: str | int | None,
) -> bytes:
    """``hello``: the first server frame of an authenticated socket, with its limits."""
    event: dict[str, Any] = {
        "type": "hello",
        "user_id": user_id,
        "session_id": session_id,
        "heartbeat_s": int(heartbeat_s) if heartbeat_s.is_integer() else heartbeat_s,
        "limits": {
            "max_frame_bytes": max_frame_bytes,
            "max_body_chars": MAX_BODY_CHARS,
            "replay_limit": replay_limit,
        },
    }
    if ref is not None:
        event["ref"] = ref
    return orjson.dumps(event)


def message(stored: Message) -> bytes:
    """``message``: a committed message, live or replayed."""
    return orjson.dumps({"type": "message", **stored.to_json()})


def change(entry: Change) -> bytes:
    """``change``: an edit, deletion or reaction, an entry of the conversation's stream with its
    own seq, live or replayed."""
    return orjson.dumps(entry.to_json())


def entry(stored: Message | Change) -> bytes:
    """The event of any stream entry: ``message`` or ``change``."""
    return change(stored) if isinstance(stored, Change) else message(stored)


def read(conversation_id: int, user_id: int, seq: int) -> bytes:
    """``read``: a member's read marker moved forward to ``seq``."""
    return orjson.dumps(
        {"type": "read", "conversation_id": conversation_id, "user_id": user_id, "seq": seq}
    )


def typing(conversation_id: int, user_id: int, state: str) -> bytes:
    """``typing``: a member started or stopped typing."""
    return orjson.dumps(
        {"type": "typing", "conversation_id": conversation_id, "user_id": user_id, "state": state}
    )


def conversation(view: Conversation) -> bytes:
    """``conversation``: the whole conversation as this member sees it, sent when it was created
    and to the members a change added."""
    return orjson.dumps({"type": "conversation", **view.to_json()})


def title_changed(conversation_id: int, version: int, title: str | None) -> bytes:
    """``conversation_update``: a group was renamed (title null: the title was cleared)."""
    return _update(conversation_id, version, "title", {"title": title})


def members_added(conversation_id: int, version: int, members: list[Member]) -> bytes:
    """``conversation_update``: users joined a group, as members see them."""
    added = [member.to_json() for member in members]
    return _update(conversation_id, version, "members_added", {"members": added})


def members_removed(
    conversation_id: int, version: int, user_ids: list[int], owner_id: int | None
) -> bytes:
    """``conversation_update``: members left or were removed; ``owner_id`` is the owner now
    (another member when the owner left)."""
    fields = {"user_ids": user_ids, "owner_id": owner_id}
    return _update(conversation_id, version, "members_removed", fields)


def _update(conversation_id: int, version: int, change: str, fields: dict[str, Any]) -> bytes:
    # One payload for every member: what changed, not the whole conversation (whose member
    # list made a rename of a 1,000-member group cost 85 KB per member).
    return orjson.dumps(
        {
            "type": "conversation_update",
            "conversation_id": conversation_id,
            "version": version,
            "change": change,
            **fields,
        }
    )


def removed(conversation_id: int) -> bytes:
    """``removed``: the user is no longer a member of the conversation."""
    return orjson.dumps({"type": "removed", "conversation_id": conversation_id})


def contact(change: str, user: dict[str, Any], **fields: Any) -> bytes:
    """``contact``: a contact or contact request with ``user`` (their public profile) changed:
    requested (with ``request``), accepted, declined, cancelled (with ``direction``), removed."""
    return orjson.dumps({"type": "contact", "change": change, "user": user, **fields})


def invitation(
    change: str, conversation_id: int, invitation: dict[str, Any] | None = None
) -> bytes:
    """``invitation``: an invitation to a group was made (``invited``, with ``invitation``),
    accepted, declined or withdrawn."""
    event: dict[str, Any] = {
        "type": "invitation",
        "change": change,
        "conversation_id": conversation_id,
    }
    if invitation is not None:
        event["invitation"] = invitation
    return orjson.dumps(event)


def presence(user_id: int, status: str, last_seen: str | None) -> bytes:
    """``presence``: a user the recipient may see came online, went offline (``last_seen``:
    when their last socket closed), or is now ``hidden`` from the recipient."""
    return orjson.dumps(
        {"type": "presence", "user_id": user_id, "status": status, "last_seen": last_seen}
    )
