"""Business events that fan out to sockets: the one place views and commands announce changes.

Views and socket commands call these after a change is committed; they publish through the
hub and keep the membership cache honest.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from trustmess.appkeys import GATEWAY, HUB, POOL, READ_MARKERS
from trustmess.errors import CloseCode
from trustmess.store.conversations import get_conversation_for, member_ids


async def conversation_changed(app: web.Application, conversation_id: int) -> None:
    """Title or members changed, or the conversation was created: tell every member's
    connections (each member sees its own read_seq and unread count)."""
    gateway = app[GATEWAY]
    gateway.membership.forget_conversation(conversation_id)
    app[READ_MARKERS].forget_conversation(conversation_id)
    async with app[POOL].acquire() as conn:
        for user_id in await member_ids(conn, conversation_id):
            if not gateway.user_connections(user_id):
                continue
            conversation = await get_conversation_for(conn, conversation_id, user_id)
            if conversation is not None:
                event: dict[str, Any] = {"type": "conversation", **conversation.to_json()}
                app[HUB].publish_user(user_id, event)


async def member_removed(app: web.Application, conversation_id: int, user_id: int) -> None:
    """``user_id`` left or was removed: stop its live events at once and tell its devices."""
    app[GATEWAY].drop_membership(conversation_id, user_id)
    app[READ_MARKERS].forget_conversation(conversation_id)
    app[HUB].publish_user(user_id, {"type": "removed", "conversation_id": conversation_id})


async def user_disabled(app: web.Application, user_id: int) -> None:
    """An administrator disabled the account: its open sockets end now (4001: do not retry)."""
    for conn in app[GATEWAY].user_connections(user_id):
        conn.close_soon(CloseCode.AUTH_FAILED, "account disabled")


async def read_moved(app: web.Application, conversation_id: int, user_id: int, seq: int) -> None:
    """``user_id``'s read marker moved forward to ``seq`` (over HTTP: every device hears it)."""
    app[READ_MARKERS].note_read(conversation_id, user_id, seq)
    publish_read(app, conversation_id, user_id, seq)


def publish_read(
    app: web.Application, conversation_id: int, user_id: int, seq: int, skip: Any = None
) -> None:
    event = {"type": "read", "conversation_id": conversation_id, "user_id": user_id, "seq": seq}
    app[HUB].publish(conversation_id, event, skip=skip)
