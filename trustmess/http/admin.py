"""Views for account administration: listing accounts, promoting, demoting, disabling,
enabling and deleting them.

Administrators only (403 ``forbidden`` for anyone else), recognised from the database on each
request, never from the token. An administrator cannot disable, demote or delete themselves
here (409 ``conflict``): the caller stays an active administrator, so no change made here can
leave the server without one. (Deleting one's own account is ``DELETE /users/me``, refused to
the last active administrator.)
"""

from __future__ import annotations

import re

from aiohttp import web

from trustmess.appkeys import ACTIVE_USERS, NOTIFIER, POOL
from trustmess.errors import ApiError, ErrorCode, invalid, not_found
from trustmess.http.accountdeletion import delete_account
from trustmess.http.authn import current_user_id
from trustmess.http.jsonio import json_response, path_id, query_int
from trustmess.http.sessions import ACCOUNT_DISABLED, ALL_SESSIONS, end_sessions
from trustmess.http.users import (
    PAGE_DEFAULT,
    PAGE_MAX,
    decode_cursor,
    encode_cursor,
    no_content,
    read_fields,
)
from trustmess.store import users
from trustmess.wire.validation import get_bool

routes = web.RouteTableDef()

# The start of a username, in any case (the usernames are stored lower-cased).
USERNAME_PREFIX = re.compile(r"[A-Za-z0-9_.]{0,32}", re.ASCII)


async def _require_admin(request: web.Request) -> int:
    """The caller's id if they are an active administrator; 401 or 403 otherwise."""
    caller_id = await current_user_id(request)
    if not await users.is_active_admin(request.app[POOL], caller_id):
        raise ApiError(403, ErrorCode.FORBIDDEN, "administrators only")
    return caller_id


def _not_yourself(what: str) -> ApiError:
    return ApiError(409, ErrorCode.CONFLICT, f"you cannot {what} yourself")


@routes.get("/admin/users")
async def admin_list_users(request: web.Request) -> web.Response:
    """``GET /admin/users?q=&state=&limit=&cursor=``: every account, deleted ones included,
    by username.

    ``q`` matches the start of the username (any case); ``state`` is ``active``, ``disabled``
    (not deleted), ``deleted`` or ``admin``; ``limit`` 1-100 (default 20); ``next_cursor`` is
    null on the last page, else passed as ``cursor`` for the next.
    """
    await _require_admin(request)
    prefix = request.query.get("q", "")
    if not USERNAME_PREFIX.fullmatch(prefix):
        raise invalid("q", "must be the start of a username: up to 32 of a-z, 0-9, '_' and '.'")
    state = request.query.get("state") or None
    if state is not None and state not in users.ADMIN_STATES:
        raise invalid("state", "must be one of " + ", ".join(users.ADMIN_STATES))
    limit = query_int(request, "limit", lo=1, hi=PAGE_MAX, default=PAGE_DEFAULT)
    assert limit is not None
    cursor = request.query.get("cursor")
    after = None if not cursor else decode_cursor(cursor)
    found = await users.admin_users_page(
        request.app[POOL], prefix, state, after_username=after, limit=limit + 1
    )
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].username) if len(found) > limit else None
    return json_response(
        {"items": [user.admin_json() for user in page], "next_cursor": next_cursor}
    )


@routes.patch("/admin/users/{id}")
async def admin_update_user(request: web.Request) -> web.Response:
    """``PATCH /admin/users/{id}`` ``{is_active?, is_admin?}``: enable, disable, promote,
    demote.

    Disabling ends every session of the user: refresh and access tokens stop at once on every
    node and sockets close with 4001. Enabling again revives none of them: the user signs in
    anew. A deleted account is 409 ``conflict``; an unknown one 404.
    """
    caller_id = await _require_admin(request)
    user_id = path_id(request, "id")
    data = await read_fields(request, {"is_active", "is_admin"})
    is_active = get_bool(data, "is_active")
    is_admin = get_bool(data, "is_admin")
    if user_id == caller_id and False in (is_active, is_admin):
        raise _not_yourself("disable or demote")
    pool = request.app[POOL]
    user = await users.update_flags(pool, user_id, is_active=is_active, is_admin=is_admin)
    if user is None:
        existing = await users.get_user(pool, user_id)
        if existing is not None and existing.deleted:
            raise ApiError(409, ErrorCode.CONFLICT, "this account is deleted")
        raise not_found("user not found")
    if is_active is not None:
        request.app[ACTIVE_USERS].forget(user_id)
    if not user.is_active:
        await end_sessions(request.app, user_id, ALL_SESSIONS, ACCOUNT_DISABLED)
        request.app[NOTIFIER].user_disabled(user_id)
    return json_response(user.admin_json())


@routes.delete("/admin/users/{id}")
async def admin_delete_user(request: web.Request) -> web.Response:
    """``DELETE /admin/users/{id}`` → 204: delete an account as ``DELETE /users/me`` does
    (accountdeletion.py). 404 for an unknown or already deleted account; 409 for oneself."""
    caller_id = await _require_admin(request)
    user_id = path_id(request, "id")
    if user_id == caller_id:
        raise _not_yourself("delete")
    await delete_account(request.app, user_id)
    return no_content()
