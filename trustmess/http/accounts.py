"""Views for signing up, logging in, refreshing and logging out; the route table for accounts.

Login and signup are rate limited by the LoginGuard (loginguard.py: attempts per client address,
failures per username and address, and per username for unfamiliar addresses), and every bcrypt
call waits its turn in the PasswordQueue (auth.py), bounded per address and in total, off the
event loop. Request bodies, passwords and tokens are never logged.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from trustmess.appkeys import LOGIN_GUARD, PASSWORDS, POOL, SETTINGS
from trustmess.auth import (
    USERNAME_PATTERN,
    account_disabled,
    hash_refresh_token,
    invalid_credentials,
    issue_access_token,
    new_refresh_token,
    require_new_password,
    require_username,
    unauthenticated,
)
from trustmess.errors import ApiError, ErrorCode
from trustmess.http import users as user_views
from trustmess.http.authn import current_user_id
from trustmess.http.clientaddr import client_address, client_key
from trustmess.http.jsonio import json_response
from trustmess.http.sessions import (
    ALL_SESSIONS,
    LOGGED_OUT,
    SIGNED_OUT_EVERYWHERE,
    TOKEN_REUSED,
    end_sessions,
)
from trustmess.http.users import display_name_field, no_content, read_fields
from trustmess.http.verification import start_verification
from trustmess.store import sessions, tokens, users
from trustmess.store.users import Conn, Credentials, Db, User
from trustmess.wire.emailaddress import check_email
from trustmess.wire.validation import require_str

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# Long enough for any password that could have been set; longer input is refused unread.
LOGIN_FIELD_MAX = 1024
REFRESH_TOKEN_MAX = 512


def _bad_refresh_token() -> ApiError:
    return unauthenticated("refresh token is invalid, expired or revoked")


class _SessionEnded(Exception):
    """A refresh lost the race with the end of its session."""


async def _start_session(
    db: Db, request: web.Request, user: User, family_id: str
) -> dict[str, Any]:
    """Note the session ``family_id`` as used now (created by a login), issue an access token
    for it and store a fresh refresh token in its family."""
    settings = request.app[SETTINGS]
    assert settings.jwt_secret is not None
    user_agent = request.headers.get("User-Agent")
    live = await sessions.touch_session(
        db,
        session_id=family_id,
        user_id=user.id,
        ttl_s=settings.refresh_token_ttl_s,
        user_agent=user_agent,
        address=client_address(request),
    )
    if not live:
        raise _SessionEnded
    refresh_token = new_refresh_token()
    await tokens.insert_refresh_token(
        db,
        user_id=user.id,
        token_hash=hash_refresh_token(refresh_token),
        family_id=family_id,
        ttl_s=settings.refresh_token_ttl_s,
        user_agent=user_agent,
    )
    access_token, _ = issue_access_token(
        settings.jwt_secret, user.id, settings.access_token_ttl_s, session_id=family_id
    )
    return {
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": settings.access_token_ttl_s,
        "user": user.profile_json(),
    }


@routes.post("/auth/signup")
async def signup(request: web.Request) -> web.Response:
    """``{username, password, display_name?, email?}`` → 201 the public profile.

    The username is stored lower-cased and must be unique in any case (409 ``username_taken``);
    ``display_name`` defaults to the username. Only the address's attempts are spent: a signup
    for a taken name costs its owner nothing (and, being refused before bcrypt, little to us).
    An ``email`` is stored unverified and a verification mail queued (verification.py).
    """
    address = client_key(request)
    request.app[LOGIN_GUARD].attempt(address)
    data = await read_fields(
        request, {"username", "password", "display_name", "email"}, {"username", "password"}
    )
    username = require_username(data)
    password = require_new_password(data, "password", username=username)
    display_name = display_name_field(data, default=username)
    assert display_name is not None
    email = None if data.get("email") is None else check_email("email", data["email"])
    pool = request.app[POOL]
    # 409 says the name exists anyway; saying it before hashing saves a bcrypt call.
    if await users.get_credentials(pool, username) is not None:
        raise _username_taken()
    passwords = request.app[PASSWORDS]
    password_hash = await passwords.hash(address, password, request.app[SETTINGS].bcrypt_rounds)
    user = await users.insert_user(pool, username, password_hash, display_name, email=email)
    if user is None:  # taken meanwhile
        raise _username_taken()
    if email is not None:
        start_verification(request.app, user.id, email)
    return json_response(user.public_json(), status=201)


def _username_taken() -> ApiError:
    return ApiError(409, ErrorCode.USERNAME_TAKEN, "username is taken", field="username")


@routes.post("/auth/login")
async def login(request: web.Request) -> web.Response:
    """``{username, password}`` → a token pair and the profile.

    An unknown username and a wrong password get the same 401 ``invalid_credentials`` after the
    same bcrypt work, in the same queue; a disabled account is 403 ``account_disabled``, said
    only to someone who knows its password.
    """
    address = client_key(request)
    guard = request.app[LOGIN_GUARD]
    guard.attempt(address)
    data = await read_fields(request, {"username", "password"}, {"username", "password"})
    username = require_str(data, "username", max_len=LOGIN_FIELD_MAX).lower()
    password = require_str(data, "password", max_len=LOGIN_FIELD_MAX)
    ticket = guard.before_check(username, address)
    try:
        credentials = await _check_password(request, address, username, password)
    except BaseException:
        guard.refund(ticket)  # no verdict on the password (busy, cancelled, database down)
        raise
    if credentials is None:
        raise invalid_credentials()
    guard.refund(ticket)
    guard.signed_in(username, address)
    if not credentials.user.is_active:
        raise account_disabled()
    # A new session (device): its id is the new refresh-token family's.
    session = await _start_session(request.app[POOL], request, credentials.user, uuid.uuid4().hex)
    return json_response(session)


async def _check_password(
    request: web.Request, address: str, username: str, password: str
) -> Credentials | None:
    """The account if ``password`` is its password, else None after the same work."""
    passwords, rounds = request.app[PASSWORDS], request.app[SETTINGS].bcrypt_rounds
    credentials = None
    if USERNAME_PATTERN.fullmatch(username):
        credentials = await users.get_credentials(request.app[POOL], username)
    # A deleted account (no password hash) is answered like an unknown name.
    if credentials is None or credentials.password_hash is None:
        await passwords.burn(address, password, rounds)
        return None
    if not await passwords.verify(address, password, credentials.password_hash):
        return None
    return credentials


@routes.post("/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    """``{refresh_token}`` → a new token pair (same shape as login); the old token is spent.

    Unknown, expired, revoked or spent tokens are 401 ``unauthenticated``; a spent one also
    revokes its whole family, since someone else is using a copy. 403 ``account_disabled`` for a
    disabled user.
    """
    data = await read_fields(request, {"refresh_token"}, {"refresh_token"})
    token_hash = hash_refresh_token(require_str(data, "refresh_token", max_len=REFRESH_TOKEN_MAX))
    async with request.app[POOL].acquire() as conn:
        try:
            session = await _rotate(conn, request, token_hash)
        except _SessionEnded:
            raise _bad_refresh_token() from None
    return json_response(session)


async def _rotate(db: Conn, request: web.Request, token_hash: str) -> dict[str, Any]:
    """Spend the token and store its successor in one transaction, or raise 401/403."""
    async with db.transaction():
        spent = await tokens.spend_refresh_token(db, token_hash)
        user = None if spent is None else await users.get_user(db, spent.user_id)
        if spent is not None and user is not None and user.is_active:
            session = await _start_session(db, request, user, spent.family_id)
            # Holding a session proves as much as a password: this address is familiar now.
            request.app[LOGIN_GUARD].signed_in(user.username, client_key(request))
            return session
    if spent is not None:
        raise account_disabled()
    # Outside the transaction above, so the revocation is committed whatever happens next.
    reused = await tokens.revoke_family_if_spent(db, token_hash)
    if reused is not None:
        log.warning("refresh token reused; ended its session (user %s)", reused.user_id)
        # The family is one session: its access tokens (a thief's too) stop now.
        await end_sessions(request.app, reused.user_id, [reused.family_id], TOKEN_REUSED)
    raise _bad_refresh_token()


@routes.post("/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """``{refresh_token}`` → 204; ends the token's session: its refresh tokens are revoked,
    its access tokens refused and its sockets closed (4001) at once. Unknown tokens are 204
    too."""
    data = await read_fields(request, {"refresh_token"}, {"refresh_token"})
    token = require_str(data, "refresh_token", max_len=REFRESH_TOKEN_MAX)
    found = await tokens.family_of(request.app[POOL], hash_refresh_token(token))
    if found is not None:
        await end_sessions(request.app, found.user_id, [found.family_id], LOGGED_OUT)
    return no_content()


@routes.post("/auth/logout-all")
async def logout_all(request: web.Request) -> web.Response:
    """Authenticated → 204; ends every session of the caller, this one included (all
    devices): refresh and access tokens stop working and sockets close (4001) at once."""
    user_id = await current_user_id(request)
    await end_sessions(request.app, user_id, ALL_SESSIONS, SIGNED_OUT_EVERYWHERE)
    return no_content()


# Profiles, the directory and administration live in users.py; one table mounts them all.
routes.get("/users/me")(user_views.get_me)
routes.patch("/users/me")(user_views.update_me)
routes.delete("/users/me")(user_views.delete_me)
routes.post("/users/me/password")(user_views.change_password)
routes.get("/users")(user_views.list_users)
routes.get("/users/{id}")(user_views.get_user)
