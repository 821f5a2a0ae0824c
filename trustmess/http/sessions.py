"""Sessions (devices): listing and ending them, and ``end_sessions``, the one way anything
(logout, logout-all, a password change or reset, an administrator, account deletion) ends
sessions so that their access tokens and sockets stop at once on every node.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

from aiohttp import web

from trustmess.appkeys import NOTIFIER, POOL
from trustmess.auth import SESSION_ID
from trustmess.errors import not_found
from trustmess.http.authn import authenticate
from trustmess.http.jsonio import json_response
from trustmess.store import sessions as stored_sessions

routes = web.RouteTableDef()

ALL_SESSIONS: Literal["all"] = "all"

# The close reasons of the 4001 a socket gets when its session ends (protocol/README.md).
LOGGED_OUT = "logged out"
SESSION_ENDED = "session ended"
SIGNED_OUT_EVERYWHERE = "signed out everywhere"
PASSWORD_CHANGED = "password changed"
PASSWORD_RESET = "password reset"
ACCOUNT_DISABLED = "account disabled"
ACCOUNT_DELETED = "account deleted"
TOKEN_REUSED = "refresh token reused"


async def end_sessions(
    app: web.Application,
    user_id: int,
    session_ids: Collection[str] | Literal["all"],
    reason: str,
    *,
    keep: str | None = None,
) -> list[str]:
    """End sessions of ``user_id`` (``"all"``: every one but ``keep``); the ids that ended.

    Their refresh tokens are revoked in PostgreSQL; their access tokens are refused from now on
    and their sockets closed with 4001 (close reason ``reason``) on every node, through the
    ``sessions_ended`` control operation. Ids that are not the user's live sessions are left
    alone (and not in the answer).
    """
    everything = session_ids == ALL_SESSIONS
    ended = await stored_sessions.end_sessions(
        app[POOL], user_id, None if everything else list(session_ids), keep=keep
    )
    announce_ended(app, user_id, ended, reason, everything=everything, keep=keep)
    return ended


def announce_ended(
    app: web.Application,
    user_id: int,
    session_ids: list[str],
    reason: str,
    *,
    everything: bool,
    keep: str | None = None,
) -> None:
    """Tell every node that sessions ended in the database (by a caller's own transaction)."""
    if session_ids or everything:
        app[NOTIFIER].sessions_ended(
            user_id, session_ids, everything=everything, keep=keep, reason=reason
        )


@routes.get("/auth/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    """The caller's live sessions (devices), most recently used first; ``current`` marks the
    one of the access token making the request."""
    claims = await authenticate(request)
    found = await stored_sessions.live_sessions(request.app[POOL], claims.user_id)
    return json_response({"items": [session.to_json(claims.session_id) for session in found]})


@routes.delete("/auth/sessions/{id}")
async def delete_session(request: web.Request) -> web.Response:
    """End one of the caller's sessions (the current one included): 204. Anything else, such
    as another user's session id, is 404 ``not_found``, so ids cannot be probed."""
    claims = await authenticate(request)
    session_id = request.match_info["id"]
    if not SESSION_ID.fullmatch(session_id):
        raise not_found("session not found")
    ended = await end_sessions(request.app, claims.user_id, [session_id], SESSION_ENDED)
    if not ended:
        raise not_found("session not found")
    return web.Response(status=204)
