"""Who is calling: the bearer-token check every authenticated view starts with."""

from __future__ import annotations

from aiohttp import web

from trustmess.appkeys import ACTIVE_USERS, REVOKED_SESSIONS, SETTINGS
from trustmess.auth import AccessClaims, bearer_token, decode_access_token, unauthenticated
from trustmess.http.accesslog import note_caller


async def authenticate(request: web.Request) -> AccessClaims:
    """Verify ``Authorization: Bearer``, that its session has not ended (in memory) and that
    the user is still active; else 401."""
    token = bearer_token(request.headers.get("Authorization"))
    secret = request.app[SETTINGS].jwt_secret
    assert secret is not None
    claims = check_session(request.app, decode_access_token(secret, token))
    if not await request.app[ACTIVE_USERS].is_active(claims.user_id):
        raise unauthenticated("account disabled or removed")
    note_caller(claims.user_id)  # for the access log
    return claims


def check_session(app: web.Application, claims: AccessClaims) -> AccessClaims:
    """The claims, unless their session has ended (signed out, revoked): then 401."""
    if claims.session_id in app[REVOKED_SESSIONS]:
        raise unauthenticated("session ended")
    return claims


async def current_user_id(request: web.Request) -> int:
    return (await authenticate(request)).user_id
