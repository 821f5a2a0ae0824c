"""One function per client command: the business rules of the socket protocol.

Each returns the reply ``data`` (sent only when the command carried a ``ref``), or ``None``
when it answers later by itself (``message`` replies after its group commit). Failures raise
ApiError, which the router turns into an ``error`` frame.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from trustmess.appkeys import (
    ACTIVE_USERS,
    GATEWAY,
    HUB,
    NOTIFIER,
    PRESENCE,
    READ_MARKERS,
    REVOKED_SESSIONS,
    SEND_BUDGET,
    SETTINGS,
    WRITER,
)
from trustmess.auth import decode_access_token, unauthenticated
from trustmess.delivery.sending import submit_change, submit_message
from trustmess.errors import ApiError, ErrorCode, conversation_blocked, conversation_not_found
from trustmess.gateway.connection import Connection, JoinState
from trustmess.models import ChangeResult, SendResult, format_ts
from trustmess.store.changes import NewChange
from trustmess.store.joins import JoinRequest
from trustmess.store.messages import NewMessage
from trustmess.wire import events, frames

Reply = dict[str, Any] | None


async def join(app: web.Application, conn: Connection, cmd: frames.Join) -> Reply:
    """Check, subscribe, then read: an event committed meanwhile is either in the replay or
    waiting in ``pending``, and the connection's ``delivered`` seq removes the overlap.

    Membership is checked (through the cache) before subscribing, so a non-member never sits
    in the hub, not even for the moment the read takes; the read checks it again.
    """
    hub = app[HUB]
    cid = cmd.conversation_id
    state = conn.joined.get(cid)
    fresh = state is None
    if fresh and not await app[GATEWAY].membership.is_member(cid, conn.user_id):
        raise conversation_not_found()
    if state is None:
        state = conn.joined[cid] = JoinState(delivered=0)
        await hub.subscribe(cid, conn)
    elif cmd.since is not None and state.pending is None:
        state.pending = []
    try:
        found = await app[GATEWAY].joins.get(JoinRequest(cid, conn.user_id, cmd.since))
        if found is None:
            raise conversation_not_found()
        last_seq, resumed = found.last_seq, found.resumed
        # An ack of this user that is not written yet (readbuffer.py) counts already.
        read_seq = max(found.read_seq, app[READ_MARKERS].current(cid, conn.user_id))
        hub.position(cid, last_seq)
    except BaseException:
        if fresh:
            conn.joined.pop(cid, None)
            hub.unsubscribe(cid, conn)
        elif state.pending is not None:
            conn.start_live(cid)
        raise
    if fresh or cmd.since is not None:
        # With `since` the client continues right after it; otherwise from the present.
        state.delivered = cmd.since if resumed and cmd.since is not None else last_seq
    data = {"conversation_id": cid, "last_seq": last_seq, "read_seq": read_seq, "resumed": resumed}
    if cmd.ref is not None:
        conn.send(frames.reply(cmd.ref, data))
    for entry in found.replay:
        conn.deliver_replayed(cid, entry.seq, events.entry(entry))
    conn.start_live(cid)
    return None


async def leave(app: web.Application, conn: Connection, cmd: frames.Leave) -> Reply:
    if conn.joined.pop(cmd.conversation_id, None) is not None:
        app[HUB].unsubscribe(cmd.conversation_id, conn)
        app[GATEWAY].typing.stop(conn, cmd.conversation_id, conn.user_id)
    return {"conversation_id": cmd.conversation_id}


def message(app: web.Application, conn: Connection, cmd: frames.SendMessage) -> None:
    """Queue for group commit and go on reading; the reply is sent from the commit callback.

    Not a coroutine: it never waits, and it is most of the traffic (see router.dispatch_now).
    """
    ref = cmd.ref

    def answer(outcome: SendResult | ApiError) -> None:
        if isinstance(outcome, ApiError):
            conn.send(frames.error(ref, outcome.code, outcome.message, outcome.field))
        elif ref is not None:
            msg = outcome.message
            data = {
                "conversation_id": msg.conversation_id,
                "id": msg.id,
                "seq": msg.seq,
                "created_at": format_ts(msg.created_at),
                "duplicate": outcome.duplicate,
            }
            conn.send(frames.reply(ref, data))

    if not app[SEND_BUDGET].take(conn.user_id):
        # The user's budget on this node, shared with its other sockets and HTTP sends.
        raise ApiError(429, ErrorCode.RATE_LIMITED, "too many messages")
    new = NewMessage(cmd.conversation_id, conn.user_id, cmd.client_msg_id, cmd.body, cmd.reply_to)
    submit_message(app[WRITER], new, answer)


async def change(app: web.Application, conn: Connection, cmd: frames.ChangeMessage) -> Reply:
    """``edit``, ``delete``, ``react``, ``unreact``: queued for group commit like ``message``;
    the reply is sent from the commit callback."""
    ref = cmd.ref

    def answer(outcome: ChangeResult | ApiError) -> None:
        if isinstance(outcome, ApiError):
            conn.send(frames.error(ref, outcome.code, outcome.message, outcome.field))
        elif ref is not None:
            conn.send(frames.reply(ref, outcome.to_json()))

    new = NewChange(
        cmd.conversation_id,
        conn.user_id,
        cmd.kind,
        cmd.target_seq,
        cmd.client_change_id,
        body=cmd.body,
        emoji=cmd.emoji,
    )
    submit_change(app[WRITER], new, answer)
    return None


async def ack(app: web.Application, conn: Connection, cmd: frames.Ack) -> Reply:
    """Cumulative read marker, answered from the coalescing buffer (see readbuffer.py)."""
    read_seq, moved = await app[READ_MARKERS].advance(cmd.conversation_id, conn.user_id, cmd.seq)
    if moved:
        app[NOTIFIER].read(cmd.conversation_id, conn.user_id, read_seq, skip=conn)
    return {"conversation_id": cmd.conversation_id, "read_seq": read_seq}


async def typing(app: web.Application, conn: Connection, cmd: frames.Typing) -> Reply:
    gateway = app[GATEWAY]
    member, blocked = await gateway.membership.standing(cmd.conversation_id, conn.user_id)
    if not member:
        raise conversation_not_found()
    if blocked and cmd.state == "start":
        raise conversation_blocked()  # typing is words too
    if cmd.state == "start":
        gateway.typing.start(conn, cmd.conversation_id)
    else:
        gateway.typing.stop(conn, cmd.conversation_id, conn.user_id)
    return {}


async def ping(app: web.Application, conn: Connection, cmd: frames.Ping) -> Reply:
    return {}


async def presence(app: web.Application, conn: Connection, cmd: frames.PresenceSubscribe) -> Reply:
    """Subscribe the socket to presence events; the reply is the snapshot."""
    return {"users": await app[PRESENCE].subscribe(conn)}


async def reauth(app: web.Application, conn: Connection, cmd: frames.Auth) -> Reply:
    """A fresh token for the same user extends the session; anything else is refused."""
    secret = app[SETTINGS].jwt_secret
    assert secret is not None
    try:
        claims = decode_access_token(secret, cmd.token)
    except ApiError as error:
        # The socket protocol has one code for every refused token.
        raise unauthenticated(error.message) from None
    if claims.user_id != conn.user_id:
        raise unauthenticated("token belongs to another user")
    if claims.session_id in app[REVOKED_SESSIONS]:
        raise unauthenticated("session ended")
    if not await app[ACTIVE_USERS].is_active(claims.user_id):
        raise unauthenticated("account disabled")
    # The socket now lives on this token: it closes when this token's session ends.
    conn.login_session_id = claims.session_id
    app[GATEWAY].expiry.watch(conn, claims.expires_at)
    return {"user_id": conn.user_id, "expires_in": max(0, claims.expires_at - int(time.time()))}
