"""Views for profiles, the user directory and account administration.

The handlers are mounted by ``accounts.routes`` (the one table ``app.py`` adds for accounts).
Every view here needs a valid access token. Administration is in admin.py.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from typing import Any

from aiohttp import web

from trustmess.appkeys import (
    LOGIN_GUARD,
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
from trustmess.errors import invalid, not_found, rate_limited
from trustmess.http.accountdeletion import delete_account
from trustmess.http.authn import authenticate, current_user_id
from trustmess.http.clientaddr import client_key
from trustmess.http.jsonio import json_response, path_id, query_int, read_json_object
from trustmess.http.sessions import ALL_SESSIONS, PASSWORD_CHANGED, end_sessions
from trustmess.http.verification import start_verification
from trustmess.models import format_ts
from trustmess.store import consent, emailtokens, presence, users
from trustmess.wire.emailaddress import check_email
from trustmess.wire.validation import (
    check_fields,
    check_name,
    check_text,
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
    """``GET /users/me``: the caller's profile, with ``is_admin``, the consent settings and
    ``presence_visibility``."""
    user_id = await current_user_id(request)
    pool = request.app[POOL]
    user = await users.get_user(pool, user_id)
    found = await consent.get_consent(pool, user_id)
    visibility = await presence.get_visibility(pool, user_id)
    if user is None or found is None or visibility is None:
        raise not_found("user not found")
    return json_response(
        {**user.profile_json(), **found.to_json(), "presence_visibility": visibility}
    )


def _policy(data: dict[str, Any], name: str) -> str | None:
    """``direct_policy`` / ``group_policy``: ``anyone`` or ``contacts``."""
    value = get_str(data, name, max_len=16)
    if value is not None and value not in consent.POLICIES:
        raise invalid(name, "must be anyone or contacts")
    return value


async def update_me(request: web.Request) -> web.Response:
    """``PATCH /users/me`` ``{display_name?, bio?, email?, current_password?, direct_policy?,
    group_policy?}``: change the caller's profile and consent settings.

    ``display_name`` is 1-64 characters (surrounding whitespace stripped), ``bio`` 0-500 kept
    verbatim, ``presence_visibility`` one of ``everyone``, ``contacts``, ``nobody``. Absent
    fields keep their value; ``updated_at`` is set either way. ``email`` (an address, or null
    to remove it) needs ``current_password``, checked like a password change's; a new address
    starts unverified and a verification mail is queued. An address another account verified
    is answered the same (its owner gets a notice instead), so the answer never tells whether
    an address is in use.
    """
    user_id = await current_user_id(request)
    data = await read_fields(
        request,
        {
            "display_name",
            "bio",
            "email",
            "current_password",
            "direct_policy",
            "group_policy",
            "presence_visibility",
        },
    )
    display_name = display_name_field(data)
    bio = get_str(data, "bio", max_len=BIO_MAX)
    if bio is not None:
        bio = check_text("bio", bio)
    direct_policy, group_policy = _policy(data, "direct_policy"), _policy(data, "group_policy")
    visibility = get_str(data, "presence_visibility", max_len=8)
    if visibility is not None and visibility not in presence.VISIBILITIES:
        raise invalid("presence_visibility", "must be 'everyone', 'contacts' or 'nobody'")
    changes_email = "email" in data
    email = None if data.get("email") is None else check_email("email", data["email"])
    if changes_email:
        if "current_password" not in data:
            raise invalid("current_password", "is required to change email")
        current = require_str(data, "current_password", max_len=PASSWORD_MAX_CHARS)
        credentials = await users.get_credentials_by_id(request.app[POOL], user_id)
        if credentials is None or credentials.password_hash is None:
            raise not_found("user not found")
        await _check_own_password(
            request, user_id, current, credentials.password_hash, "current_password"
        )
    elif "current_password" in data:
        raise invalid("current_password", "is only used to change email")
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction():
        user = await users.update_profile(conn, user_id, display_name=display_name, bio=bio)
        found = await consent.update_consent(
            conn, user_id, direct_policy=direct_policy, group_policy=group_policy
        )
        if user is None or found is None:
            raise not_found("user not found")
        if visibility is None:
            old = new = await presence.get_visibility(conn, user_id)
        else:
            old, new = await presence.set_visibility(conn, user_id, visibility), visibility
        before = user.email
        if changes_email:
            user = await users.set_email(conn, user_id, email)
            assert user is not None
        new_address = changes_email and (email or "").lower() != (before or "").lower()
        if new_address:
            # Links mailed to the old address must not outlive it.
            await emailtokens.spend_user_tokens(conn, user_id)
    assert old is not None and new is not None
    if old != new:
        await request.app[PRESENCE].visibility_changed(user_id, old, new)
    if new_address and email is not None:
        start_verification(request.app, user_id, email)
    return json_response({**user.profile_json(), **found.to_json(), "presence_visibility": new})


async def change_password(request: web.Request) -> web.Response:
    """``POST /users/me/password`` ``{current_password, new_password}`` → 204.

    A wrong ``current_password`` is 422 ``invalid`` naming that field, not 401: the access token
    is fine, and a 401 would make clients throw the session away. Success ends every other
    session of the user (refresh and access tokens stop, sockets close with 4001); the session
    making the change stays signed in. Wrong current passwords spend from a budget of the
    user's own (not the login limits, which strangers can spend), so a stolen access token
    cannot be used to guess the password at speed; bcrypt waits its turn in the PasswordQueue
    like a login's.
    """
    claims = await authenticate(request)
    user_id = claims.user_id
    data = await read_fields(
        request, {"current_password", "new_password"}, {"current_password", "new_password"}
    )
    current = require_str(data, "current_password", max_len=PASSWORD_MAX_CHARS)
    pool = request.app[POOL]
    credentials = await users.get_credentials_by_id(pool, user_id)
    if credentials is None or credentials.password_hash is None:
        raise not_found("user not found")
    new = require_new_password(data, "new_password", username=credentials.user.username)
    await _check_own_password(
        request, user_id, current, credentials.password_hash, "current_password"
    )
    new_hash = await request.app[PASSWORDS].hash(
        client_key(request), new, request.app[SETTINGS].bcrypt_rounds
    )
    # Compare-and-set: a concurrent change wins, and this one's "current" is then stale.
    if not await users.replace_password_hash(pool, user_id, credentials.password_hash, new_hash):
        raise invalid("current_password", "is not your current password")
    await end_sessions(request.app, user_id, ALL_SESSIONS, PASSWORD_CHANGED, keep=claims.session_id)
    return no_content()


async def _check_own_password(
    request: web.Request, user_id: int, password: str, password_hash: str, field: str
) -> None:
    """422 ``invalid`` naming ``field`` unless ``password`` is the caller's password.

    Wrong guesses spend from the user's own budget (LoginGuard.before_password_change), not
    the login limits strangers can spend.
    """
    guard = request.app[LOGIN_GUARD]
    guard.before_password_change(user_id)
    try:
        right = await request.app[PASSWORDS].verify(client_key(request), password, password_hash)
    except BaseException:
        guard.password_change_checked(user_id)
        raise
    if not right:
        raise invalid(field, f"is not your {field.replace('_', ' ')}")
    guard.password_change_checked(user_id)


async def delete_me(request: web.Request) -> web.Response:
    """``DELETE /users/me`` ``{password}`` → 204: delete the caller's account (see
    ``accountdeletion.delete_account``). A wrong password is 422 ``invalid`` (``password``),
    with the password-change budget; the last administrator cannot delete themselves (409)."""
    claims = await authenticate(request)
    data = await read_fields(request, {"password"}, {"password"})
    password = require_str(data, "password", max_len=PASSWORD_MAX_CHARS)
    credentials = await users.get_credentials_by_id(request.app[POOL], claims.user_id)
    if credentials is None or credentials.password_hash is None:
        raise not_found("user not found")
    await _check_own_password(
        request, claims.user_id, password, credentials.password_hash, "password"
    )
    await delete_account(request.app, claims.user_id)
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
