"""Control operations: what every node does to its own sockets and caches when a membership
ends, a conversation changes, an account is disabled, a session (device) ends or a connection
is replaced, and the resync after a bus outage during which this node may have missed some."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from trustmess.appkeys import (
    ACTIVE_USERS,
    GATEWAY,
    POOL,
    PRESENCE,
    READ_MARKERS,
    REVOKED_SESSIONS,
)
from trustmess.errors import CloseCode
from trustmess.store.conversations import non_members_among
from trustmess.store.sessions import purge_sessions, recently_ended
from trustmess.store.users import disabled_among
from trustmess.wire import events


def apply_control(app: web.Application, op: dict[str, Any]) -> None:
    """Carry out a control operation on this node (called for every node's operations)."""
    gateway, markers = app[GATEWAY], app[READ_MARKERS]
    kind = op.get("op")
    if kind == "conversation_changed":
        # Presence audiences: the members' are forgotten by the presence_audience_changed
        # operation the change also sends (notifications.py), not everyone's.
        gateway.membership.forget_conversation(op["conversation_id"])
        markers.forget_conversation(op["conversation_id"])
    elif kind == "member_removed":
        gateway.drop_membership(op["conversation_id"], op["user_id"])
        markers.forget_conversation(op["conversation_id"])
    elif kind == "presence":
        app[PRESENCE].deliver(op)
    elif kind == "presence_audience_changed":
        app[PRESENCE].forget_audiences([int(u) for u in op["user_ids"]])
    elif kind == "kick":
        gateway.close_sessions(op["sessions"], CloseCode.REPLACED, "replaced by a newer connection")
    elif kind == "user_disabled":
        app[ACTIVE_USERS].forget(op["user_id"])
        for conn in gateway.user_connections(op["user_id"]):
            conn.close_soon(CloseCode.AUTH_FAILED, "account disabled")
    elif kind == "sessions_ended":
        _end_sessions(app, op)


def _end_sessions(app: web.Application, op: dict[str, Any]) -> None:
    """Refuse the ended sessions' access tokens here, and close their sockets with 4001.

    ``all``: every socket of the user but those of session ``keep`` closes, whatever session
    it was opened with.
    """
    ended = [str(session_id) for session_id in op["session_ids"]]
    app[REVOKED_SESSIONS].revoke(ended)
    everything, keep, reason = bool(op.get("all")), op.get("keep"), str(op["reason"])
    wanted = set(ended)
    for conn in app[GATEWAY].user_connections(op["user_id"]):
        session_id = conn.login_session_id
        if session_id in wanted or (everything and session_id != keep):
            conn.close_soon(CloseCode.AUTH_FAILED, reason)


async def rebuild_revocations(app: web.Application) -> None:
    """Load the sessions ended recently from PostgreSQL into this node's revocation set, and
    forget sessions too old to matter (at start, and after a bus outage)."""
    revoked = app[REVOKED_SESSIONS]
    async with app[POOL].acquire() as db:
        ended = await recently_ended(db, revoked.keep_s)
        await purge_sessions(db, revoked.keep_s)
    revoked.replace(ended)


async def resync(app: web.Application) -> None:
    """The message bus was down: other nodes' control operations may have been missed here.

    Forget every cache, rebuild the revocation set, then re-check this node's sockets against
    PostgreSQL: those of sessions ended and accounts disabled meanwhile are closed with 4001,
    and memberships that ended meanwhile stop and get their ``removed`` event.
    """
    gateway = app[GATEWAY]
    gateway.membership.clear()
    app[PRESENCE].forget_audiences()
    app[ACTIVE_USERS].clear()
    app[READ_MARKERS].forget_all()
    await rebuild_revocations(app)
    revoked = app[REVOKED_SESSIONS]
    for conn in list(gateway.connections):
        if conn.login_session_id in revoked:
            conn.close_soon(CloseCode.AUTH_FAILED, "session ended")
    conns = [conn for conn in gateway.connections if not conn.closing]
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
        removed = events.removed(conversation_id)
        for conn in gateway.user_connections(user_id):
            conn.deliver_user(removed)
