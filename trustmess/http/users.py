"""Views for profiles, the user directory and account administration.

The handlers are mounted by ``accounts.routes`` (the one table ``app.py`` adds for accounts).
Every view here needs a valid access token; administrators are recognised from the database on
each request, never from the token.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from typing import Any

from aiohttp import web

from trustmess.appkeys import (
    ACTIVE_USERS,
    LOGIN_GUARD,
    NOTIFIER,
    PASSWORDS,
    POOL,
    PRESENCE,
    SEARCH_LIMIT_BY_USER,
    SETTINGS,
)
from trustmess.auth import (
    PASSWORD_MAX_CHARS,
    USERNAME_PATTERN,
    require_new_password,
)
from trustmess.errors import ApiError, ErrorCode, invalid, not_found, rate_limited
from trustmess.http.authn import current_user_id
from trustmess.http.clientaddr import client_key
from trustmess.http.jsonio import json_response, path_id, query_int, read_json_object
from trustmess.models import format_ts
from trustmess.store import presence, tokens, users
from trustmess.wire.validation import (
    check_fields,
    check_name,
    check_text,
    get_bool,
    get_str,
    require_str,
)

DISPLAY_NAME_MAX = 64
BIO_MAX = 500
SEARCH_PREFIX_MAX = 64
PAGE_DEFAULT = 20
PAGE_MAX = 100


async def read_fields(
    request: web.Request, allowed: Collection[str], required: Collection[str] = ()
) -> dict[str, Any]:
    """The JSON object body with only ``allowed`` fields, ``required`` present, and no string
    value holding a NUL character (PostgreSQL cannot store one)."""
    data = await read_json_object(request)
    check_fields(data, allowed, required)
    for name, value in data.items():
        if isinstance(value, str) and "\x00" in value:
            raise invalid(name, "must not contain NUL characters")
    return data


def display_name_field(data: dict[str, Any], default: str | None = None) -> str | None:
    """``display_name``: 1-64 characters once surrounding whitespace is stripped, with a visible
    one and no control, bidi or zero-width spacing character (``check_name``)."""
    value = get_str(
        data, "display_name", min_len=1, max_len=DISPLAY_NAME_MAX, strip=True, default=default
    )
    if value is not None:
        check_name("display_name", value)
    return value


def no_content() -> web.Response:
    """204 with no body."""
    return web.Response(status=204)


async def get_me(request: web.Request) -> web.Response:
    """``GET /users/me``: the caller's profile, with ``is_admin`` and ``presence_visibility``."""
    user_id = await current_user_id(request)
    pool = request.app[POOL]
    user = await users.get_user(pool, user_id)
    visibility = await presence.get_visibility(pool, user_id)
    if user is None or visibility is None:
        raise not_found("user not found")
    return json_response({**user.profile_json(), "presence_visibility": visibility})


async def update_me(request: web.Request) -> web.Response:
    """``PATCH /users/me`` ``{display_name?, bio?}``: change the caller's profile.

    ``display_name`` is 1-64 characters (surrounding whitespace stripped), ``bio`` 0-500 kept
    verbatim, ``presence_visibility`` one of ``everyone``, ``contacts``, ``nobody``. Absent
    fields keep their value; ``updated_at`` is set either way.
    """
    user_id = await current_user_id(request)
    data = await read_fields(request, {"display_name", "bio", "presence_visibility"})
    display_name = display_name_field(data)
    bio = get_str(data, "bio", max_len=BIO_MAX)
    if bio is not None:
        bio = check_text("bio", bio)
    visibility = get_str(data, "presence_visibility", max_len=8)
    if visibility is not None and visibility not in presence.VISIBILITIES:
        raise invalid("presence_visibility", "must be 'everyone', 'contacts' or 'nobody'")
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        user = await users.update_profile(conn, user_id, display_name=display_name, bio=bio)
        if user is None:
            raise not_found("user not found")
        if visibility is None:
            old = new = await presence.get_visibility(conn, user_id)
        else:
            old, new = await presence.set_visibility(conn, user_id, visibility), visibility
    assert old is not None and new is not None
    if old != new:
        await request.app[PRESENCE].visibility_changed(user_id, old, new)
    return json_response({**user.profile_json(), "presence_visibility": new})


async def change_password(request: web.Request) -> web.Response:
    """``POST /users/me/password`` ``{current_password, new_password}`` → 204.

    A wrong ``current_password`` is 422 ``invalid`` naming that field, not 401: the access token
    is fine, and a 401 would make clients throw the session away. Success revokes every refresh
    token of the user (access tokens already issued live out their short lifetime). Wrong
    current passwords spend from a budget of the user's own (not the login limits, which
    strangers can spend), so a stolen access token cannot be used to guess the password at
    speed; bcrypt waits its turn in the PasswordQueue like a login's.
    """
    user_id = await current_user_id(request)
    data = await read_fields(
        request, {"current_password", "new_password"}, {"current_password", "new_password"}
    )
    current = require_str(data, "current_password", max_len=PASSWORD_MAX_CHARS)
    pool = request.app[POOL]
    credentials = await users.get_credentials_by_id(pool, user_id)
    if credentials is None:
        raise not_found("user not found")
    new = require_new_password(data, "new_password", username=credentials.user.username)
    guard, passwords, address = (
        request.app[LOGIN_GUARD],
        request.app[PASSWORDS],
        client_key(request),
    )
    guard.before_password_change(user_id)
    try:
        right = await passwords.verify(address, current, credentials.password_hash)
    except BaseException:
        guard.password_change_checked(user_id)
        raise
    if not right:
        raise invalid("current_password", "is not your current password")
    guard.password_change_checked(user_id)
    new_hash = await passwords.hash(address, new, request.app[SETTINGS].bcrypt_rounds)
    async with pool.acquire() as conn, conn.transaction():
        # Compare-and-set: a concurrent change wins, and this one's "current" is then stale.
        if not await users.replace_password_hash(
            conn, user_id, credentials.password_hash, new_hash
        ):
            raise invalid("current_password", "is not your current password")
        await tokens.revoke_user_tokens(conn, user_id)
    return no_content()


def encode_cursor(username: str) -> str:
    """An opaque page cursor: the last username of the page, base64url without padding."""
    return base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The username a page ended with; 422 ``invalid`` for anything this server did not make."""
    try:
        username = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise invalid("cursor", "is not a cursor from a previous page") from None
    if not USERNAME_PATTERN.fullmatch(username) or username != username.lower():
        raise invalid("cursor", "is not a cursor from a previous page")
    return username


async def list_users(request: web.Request) -> web.Response:
    """``GET /users?q=&limit=&cursor=``: the directory of active users, by username.

    ``q`` matches the start of the username or the display name in any case (``%``, ``_`` and
    ``\\`` are literal); empty or absent lists everyone. ``limit`` is 1-100 (default 20).
    ``next_cursor`` is null on the last page, else passed as ``cursor`` for the next.
    """
    user_id = await current_user_id(request)
    wait = request.app[SEARCH_LIMIT_BY_USER].take(str(user_id))
    if wait is not None:
        raise rate_limited(wait)
    prefix = request.query.get("q", "")
    if len(prefix) > SEARCH_PREFIX_MAX:
        raise invalid("q", f"must be at most {SEARCH_PREFIX_MAX} characters")
    if "\x00" in prefix:
        raise invalid("q", "must not contain NUL characters")
    limit = query_int(request, "limit", lo=1, hi=PAGE_MAX, default=PAGE_DEFAULT)
    assert limit is not None
    cursor = request.query.get("cursor")
    after = None if not cursor else decode_cursor(cursor)
    # One extra row tells whether there is a next page.
    found = await users.search_active_users(
        request.app[POOL], prefix, after_username=after, limit=limit + 1
    )
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].username) if len(found) > limit else None
    return json_response(
        {"items": [user.public_json() for user in page], "next_cursor": next_cursor}
    )


async def get_user(request: web.Request) -> web.Response:
    """``GET /users/{id}``: a public profile. Disabled users are 404, as if they did not exist,
    matching the directory, which lists only active users."""
    viewer_id = await current_user_id(request)
    pool = request.app[POOL]
    user = await users.get_user(pool, path_id(request, "id"))
    if user is None or not user.is_active:
        raise not_found("user not found")
    body = user.public_json()
    # Presence only for viewers the user's presence_visibility allows: for anyone else the
    # fields are absent, as for a user who shows it to nobody.
    view = await presence.view_of(pool, user.id, viewer_id)
    if view.visible:
        online = await request.app[PRESENCE].is_online(user.id)
        body["presence"] = "online" if online else "offline"
        body["last_seen"] = None if online or view.last_seen is None else format_ts(view.last_seen)
    return json_response(body)


async def admin_update_user(request: web.Request) -> web.Response:
    """``PATCH /admin/users/{id}`` ``{is_active?, is_admin?}``: administrators only (403).

    Disabling revokes the user's refresh tokens and drops them from this node's active-user
    cache, so their access tokens are refused at once here (within the cache lifetime
    elsewhere). An administrator cannot disable or demote themselves (409 ``conflict``), so the
    last one cannot lock everybody out.
    """
    caller_id = await current_user_id(request)
    pool = request.app[POOL]
    if not await users.is_active_admin(pool, caller_id):
        raise ApiError(403, ErrorCode.FORBIDDEN, "administrators only")
    user_id = path_id(request, "id")
    data = await read_fields(request, {"is_active", "is_admin"})
    is_active = get_bool(data, "is_active")
    is_admin = get_bool(data, "is_admin")
    if user_id == caller_id and False in (is_active, is_admin):
        raise ApiError(409, ErrorCode.CONFLICT, "you cannot disable or demote yourself")
    async with pool.acquire() as conn, conn.transaction():
        user = await users.update_flags(conn, user_id, is_active=is_active, is_admin=is_admin)
        if user is None:
            raise not_found("user not found")
        if not user.is_active:
            await tokens.revoke_user_tokens(conn, user_id)
    if is_active is not None:
        request.app[ACTIVE_USERS].forget(user_id)
    if not user.is_active:
        request.app[NOTIFIER].user_disabled(user_id)
    return json_response(user.admin_json())
