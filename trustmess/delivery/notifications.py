"""Business events that fan out to sockets: the one place views and commands announce changes.

Views and socket commands call these after a change is committed. Changes that every node must
act on (membership, disabled accounts) travel as hub *control* operations, applied by
``apply_control`` on each node, the publishing one included.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from trustmess.appkeys import ACTIVE_USERS, GATEWAY, HUB, POOL, READ_MARKERS
from trustmess.errors import CloseCode
from trustmess.store.conversations import (
    get_conversation_for_members,
    member_ids,
    non_members_among,
)
from trustmess.store.users import disabled_among


async def conversation_changed(app: web.Application, conversation_id: int) -> None:
    """Title or members changed, or the conversation was created: tell every member's
    connections (each member sees its own read_seq and unread count)."""
    hub = app[HUB]
    hub.publish_control({"op": "conversation_changed", "conversation_id": conversation_id})
    gateway = app[GATEWAY]
    async with app[POOL].acquire() as conn:
        user_ids = await member_ids(conn, conversation_id)
        if gateway.settings.broker == "local":
            # With one process we know who is online; across nodes every member is told.
            user_ids = [u for u in user_ids if gateway.user_connections(u)]
        views = await get_conversation_for_members(conn, conversation_id, user_ids)
    for user_id, conversation in views:
        hub.publish_user(user_id, {"type": "conversation", **conversation.to_json()})


async def member_removed(app: web.Application, conversation_id: int, user_id: int) -> None:
    """``user_id`` left or was removed: stop its live events at once and tell its devices."""
    app[HUB].publish_control(
        {"op": "member_removed", "conversation_id": conversation_id, "user_id": user_id}
    )
    app[HUB].publish_user(user_id, {"type": "removed", "conversation_id": conversation_id})


async def user_disabled(app: web.Application, user_id: int) -> None:
    """An administrator disabled the account: its open sockets end now (4001: do not retry)."""
    app[HUB].publish_control({"op": "user_disabled", "user_id": user_id})


async def read_moved(app: web.Application, conversation_id: int, user_id: int, seq: int) -> None:
    """``user_id``'s read marker moved forward to ``seq`` (over HTTP: every device hears it)."""
    app[READ_MARKERS].note_read(conversation_id, user_id, seq)
    publish_read(app, conversation_id, user_id, seq)


def publish_read(
    app: web.Application, conversation_id: int, user_id: int, seq: int, skip: Any = None
) -> None:
    event = {"type": "read", "conversation_id": conversation_id, "user_id": user_id, "seq": seq}
    app[HUB].publish(conversation_id, event, skip=skip)


def apply_control(app: web.Application, op: dict[str, Any]) -> None:
    """Carry out a control operation on this node (called for every node's operations)."""
    gateway, markers = app[GATEWAY], app[READ_MARKERS]
    kind = op.get("op")
    if kind == "conversation_changed":
        gateway.membership.forget_conversation(op["conversation_id"])
        markers.forget_conversation(op["conversation_id"])
    elif kind == "member_removed":
        gateway.drop_membership(op["conversation_id"], op["user_id"])
        markers.forget_conversation(op["conversation_id"])
    elif kind == "kick":
        gateway.close_sessions(op["sessions"], CloseCode.REPLACED, "replaced by a newer connection")
    elif kind == "user_disabled":
        app[ACTIVE_USERS].forget(op["user_id"])
        for conn in gateway.user_connections(op["user_id"]):
            conn.close_soon(CloseCode.AUTH_FAILED, "account disabled")


async def resync(app: web.Application) -> None:
    """The message bus was down: other nodes' control operations may have been missed here.

    Forget every cache, then re-check this node's sockets against PostgreSQL: accounts
    disabled meanwhile are closed with 4001, and memberships that ended meanwhile stop and
    get their ``removed`` event.
    """
    gateway = app[GATEWAY]
    gateway.membership.clear()
    app[ACTIVE_USERS].clear()
    app[READ_MARKERS].forget_all()
    conns = list(gateway.connections)
    if not conns:
        return
    pairs = sorted({(cid, conn.user_id) for conn in conns for cid in conn.joined})
    async with app[POOL].acquire() as db:
        disabled = await disabled_among(db, sorted({conn.user_id for conn in conns}))
        ended = await non_members_among(db, pairs) if pairs else []
    for user_id in disabled:
        apply_control(app, {"op": "user_disabled", "user_id": user_id})
    for conversation_id, user_id in ended:
        apply_control(
            app, {"op": "member_removed", "conversation_id": conversation_id, "user_id": user_id}
        )
        removed = orjson.dumps({"type": "removed", "conversation_id": conversation_id})
        for conn in gateway.user_connections(user_id):
            conn.deliver_user(removed)
