"""Contacts, contact requests and blocks over HTTP.

Every path names the *other* user and is read relative to the caller: ``/contact-requests/
incoming/{user_id}`` is that user's request to the caller. There is no id to guess, and someone
else's requests cannot be addressed at all; a missing one is 404 whatever the reason.

What each side learns, decided here (protocol/README.md explains it to clients):

* a **decline** is never told: the requester keeps seeing the request as pending, and a new
  request from it is held (stored, never shown to the recipient) for
  ``TRUSTMESS_CONTACT_REQUEST_COOLDOWN_S``;
* a request to someone who **blocked** the sender is held in the same way, and looks the same;
* a request to someone who had requested the sender accepts theirs: both are contacts;
* contact requests and group invitations spend one per-user budget (429 when it is empty).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web

from trustmess.appkeys import NOTIFIER, POOL, PRESENCE, SETTINGS
from trustmess.delivery.notifications import Notifier
from trustmess.delivery.presence import Sight
from trustmess.errors import ApiError, ErrorCode, invalid, not_found
from trustmess.http.authn import current_user_id
from trustmess.http.conversations import decode_cursor, encode_cursor, spend_requests
from trustmess.http.jsonio import json_response, path_id, query_int, read_json_object
from trustmess.models import format_ts
from trustmess.store import blocks as block_store
from trustmess.store import contacts as contact_store
from trustmess.store.users import User, get_user
from trustmess.wire import events
from trustmess.wire.validation import check_fields, check_text, get_str, require_int

routes = web.RouteTableDef()

REQUEST_MESSAGE_MAX = 200
DEFAULT_PAGE = 20
MAX_PAGE = 100

T = TypeVar("T")


def page_query(request: web.Request) -> tuple[int, tuple[datetime, int] | None]:
    """``limit`` (1-100, default 20) and the decoded ``cursor`` of a list."""
    limit = query_int(request, "limit", lo=1, hi=MAX_PAGE) or DEFAULT_PAGE
    cursor = request.query.get("cursor")
    return limit, None if not cursor else decode_cursor(cursor)


def page_response(
    items: list[T],
    limit: int,
    key: Callable[[T], tuple[datetime, int]],
    to_json: Callable[[T], dict[str, Any]],
) -> web.Response:
    """``{items, next_cursor}`` from a page fetched with one extra row."""
    shown = items[:limit]
    next_cursor = encode_cursor(key(shown[-1])) if len(items) > limit else None
    return json_response({"items": [to_json(item) for item in shown], "next_cursor": next_cursor})


async def active_user(request: web.Request, user_id: int) -> User:
    """The other user of a request or block: 404 when unknown or disabled (as GET /users/{id})."""
    user = await get_user(request.app[POOL], user_id)
    if user is None or not user.is_active:
        raise not_found("user not found")
    return user


async def _me(request: web.Request, user_id: int) -> User:
    user = await get_user(request.app[POOL], user_id)
    if user is None:
        raise not_found("user not found")
    return user


# ---------------------------------------------------------------- contacts


@routes.get("/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    """The caller's contacts, newest first: ``{items, next_cursor}``."""
    user_id = await current_user_id(request)
    limit, after = page_query(request)
    found = await contact_store.contacts_page(request.app[POOL], user_id, limit + 1, after)
    return page_response(
        found, limit, lambda c: (c.since, c.user.id), contact_store.Contact.to_json
    )


@routes.delete("/contacts/{user_id}")
async def remove_contact(request: web.Request) -> web.Response:
    """End a contact (both sides are told: ``contact`` ``removed``); 204."""
    user_id = await current_user_id(request)
    other_id = path_id(request, "user_id")
    # Who saw whose presence as a contact: taken back at once (relationship_changed).
    sight_before = await request.app[PRESENCE].sight(user_id, other_id)
    async with request.app[POOL].acquire() as conn:
        if not await contact_store.remove_contact(conn, user_id, other_id):
            raise not_found("contact not found")
        me, other = await get_user(conn, user_id), await get_user(conn, other_id)
    if me is not None and other is not None:
        await request.app[NOTIFIER].relationship_changed(
            me, other, "removed", sight_before=sight_before
        )
    return web.Response(status=204)


# ---------------------------------------------------------------- requests


@routes.post("/contact-requests")
async def send_request(request: web.Request) -> web.Response:
    """Ask ``user_id`` to become contacts, with an optional ``message``.

    201 ``{state: "pending", request}`` for a new request, 200 with the same for one already
    pending, 200 ``{state: "accepted", contact}`` when they had asked the caller first.
    """
    user_id = await current_user_id(request)
    data = await read_json_object(request)
    check_fields(data, allowed=("user_id", "message"), required=("user_id",))
    other_id = require_int(data, "user_id", lo=1)
    message = get_str(data, "message", max_len=REQUEST_MESSAGE_MAX, strip=True)
    if message is not None:
        message = check_text("message", message) or None
    if other_id == user_id:
        raise invalid("user_id", "cannot be yourself")
    spend_requests(request, user_id)
    other = await active_user(request, other_id)
    me = await _me(request, user_id)
    sight_before = await request.app[PRESENCE].sight(user_id, other_id)
    async with request.app[POOL].acquire() as conn:
        outcome = await contact_store.send_request(
            conn, me, other, message, request.app[SETTINGS].contact_request_cooldown_s
        )
    notifier = request.app[NOTIFIER]
    if outcome.state == "already_contacts":
        raise ApiError(409, ErrorCode.CONFLICT, "already a contact")
    if outcome.state == "blocking":
        raise ApiError(409, ErrorCode.CONFLICT, "you have blocked this user; unblock first")
    if outcome.state == "accepted":
        assert outcome.since is not None
        await notifier.relationship_changed(me, other, "accepted", sight_before=sight_before)
        contact = contact_store.Contact(other, outcome.since)
        return json_response({"state": "accepted", "contact": contact.to_json()})
    assert outcome.request is not None
    mine = outcome.request
    if outcome.state in ("sent", "held"):
        notifier.to_user(
            me.id, events.contact("requested", other.public_json(), request=mine.to_json())
        )
    if outcome.state == "sent":
        theirs = mine.seen_by_other(me)
        notifier.to_user(
            other.id, events.contact("requested", me.public_json(), request=theirs.to_json())
        )
    status = 200 if outcome.state == "repeated" else 201
    return json_response({"state": "pending", "request": mine.to_json()}, status=status)


async def _list_requests(request: web.Request, direction: str) -> web.Response:
    user_id = await current_user_id(request)
    limit, after = page_query(request)
    found = await contact_store.requests_page(
        request.app[POOL], user_id, direction, limit + 1, after
    )
    return page_response(
        found, limit, lambda r: (r.created_at, r.user.id), contact_store.ContactRequest.to_json
    )


@routes.get("/contact-requests/incoming")
async def incoming_requests(request: web.Request) -> web.Response:
    """Requests to the caller waiting for an answer, newest first."""
    return await _list_requests(request, "incoming")


@routes.get("/contact-requests/outgoing")
async def outgoing_requests(request: web.Request) -> web.Response:
    """The caller's requests not accepted yet (declined ones included: they look pending)."""
    return await _list_requests(request, "outgoing")


def _request_not_found() -> ApiError:
    return not_found("contact request not found")


@routes.post("/contact-requests/incoming/{user_id}/accept")
async def accept_request(request: web.Request) -> web.Response:
    """Accept ``user_id``'s request: the new contact (both sides hear ``accepted``)."""
    user_id = await current_user_id(request)
    other_id = path_id(request, "user_id")
    sight_before = await request.app[PRESENCE].sight(user_id, other_id)
    async with request.app[POOL].acquire() as conn:
        since = await contact_store.accept_request(conn, user_id, other_id)
        if since is None:
            raise _request_not_found()
        me, other = await get_user(conn, user_id), await get_user(conn, other_id)
    if me is None or other is None:
        raise _request_not_found()
    # Who may now see the other's presence as a contact is shown it at once.
    await request.app[NOTIFIER].relationship_changed(
        me, other, "accepted", sight_before=sight_before
    )
    return json_response(contact_store.Contact(other, since).to_json())


@routes.post("/contact-requests/incoming/{user_id}/decline")
async def decline_request(request: web.Request) -> web.Response:
    """Decline ``user_id``'s request; 204. Only the caller's own devices are told: the
    requester keeps seeing it as pending."""
    user_id = await current_user_id(request)
    other_id = path_id(request, "user_id")
    pool = request.app[POOL]
    if not await contact_store.decline_request(pool, user_id, other_id):
        raise _request_not_found()
    other = await get_user(pool, other_id)
    if other is not None:
        request.app[NOTIFIER].to_user(
            user_id, events.contact("declined", other.public_json(), direction="incoming")
        )
    return web.Response(status=204)


@routes.delete("/contact-requests/outgoing/{user_id}")
async def cancel_request(request: web.Request) -> web.Response:
    """Withdraw the caller's request to ``user_id``; 204."""
    user_id = await current_user_id(request)
    other_id = path_id(request, "user_id")
    async with request.app[POOL].acquire() as conn:
        result = await contact_store.cancel_request(conn, user_id, other_id)
        if result is None:
            raise _request_not_found()
        me, other = await get_user(conn, user_id), await get_user(conn, other_id)
    notifier = request.app[NOTIFIER]
    if me is not None and other is not None:
        notifier.to_user(
            me.id, events.contact("cancelled", other.public_json(), direction="outgoing")
        )
        if result == "withdrawn":
            notifier.to_user(
                other.id, events.contact("cancelled", me.public_json(), direction="incoming")
            )
    return web.Response(status=204)


# ---------------------------------------------------------------- blocks


@routes.get("/blocks")
async def list_blocks(request: web.Request) -> web.Response:
    """The users the caller blocked, newest first: ``{items, next_cursor}``."""
    user_id = await current_user_id(request)
    limit, after = page_query(request)
    found = await block_store.blocks_page(request.app[POOL], user_id, limit + 1, after)
    return page_response(
        found,
        limit,
        lambda b: (b.created_at, b.user.id),
        lambda b: {"user": b.user.public_json(), "created_at": format_ts(b.created_at)},
    )


@routes.put("/blocks/{user_id}")
async def block_user(request: web.Request) -> web.Response:
    """Block ``user_id`` (204, also when already blocked). The blocked user is not told."""
    user_id = await current_user_id(request)
    other_id = path_id(request, "user_id")
    if other_id == user_id:
        raise invalid("user_id", "cannot be yourself")
    other = await active_user(request, other_id)
    me = await _me(request, user_id)
    sight_before = await request.app[PRESENCE].sight(user_id, other_id)
    async with request.app[POOL].acquire() as conn:
        outcome = await block_store.block_user(conn, user_id, other_id)
    if outcome is not None:
        if outcome.direct_conversation_id is not None:
            request.app[NOTIFIER].conversation_blocked_changed(outcome.direct_conversation_id)
        await _announce_block(request.app[NOTIFIER], me, other, outcome, sight_before)
    return web.Response(status=204)


async def _announce_block(
    notifier: Notifier,
    me: User,
    other: User,
    outcome: block_store.BlockOutcome,
    sight_before: Sight,
) -> None:
    """What a block changed, told as those changes are told anyway: nothing the blocked user
    would not have learned from a removal, a withdrawal or a narrower ``presence_visibility``
    (``hidden`` goes only to a side that could see the other)."""
    change = "removed" if outcome.contact_removed else None
    await notifier.relationship_changed(me, other, change, sight_before=sight_before)
    if outcome.own_request_removed:
        notifier.to_user(
            me.id, events.contact("cancelled", other.public_json(), direction="outgoing")
        )
    if outcome.own_request_was_seen:
        notifier.to_user(
            other.id, events.contact("cancelled", me.public_json(), direction="incoming")
        )
    if outcome.request_declined:
        notifier.to_user(
            me.id, events.contact("declined", other.public_json(), direction="incoming")
        )
    for conversation_id in outcome.invitations_dropped:
        notifier.to_user(me.id, events.invitation("withdrawn", conversation_id))


@routes.delete("/blocks/{user_id}")
async def unblock_user(request: web.Request) -> web.Response:
    """Unblock ``user_id``; 204, 404 when not blocked."""
    user_id = await current_user_id(request)
    other_id = path_id(request, "user_id")
    async with request.app[POOL].acquire() as conn:
        found, direct_conversation_id = await block_store.unblock_user(conn, user_id, other_id)
        if not found:
            raise not_found("block not found")
        me, other = await get_user(conn, user_id), await get_user(conn, other_id)
    notifier = request.app[NOTIFIER]
    if direct_conversation_id is not None:
        notifier.conversation_blocked_changed(direct_conversation_id)
    if me is not None and other is not None:
        # The block hid each from the other: nobody could see anybody before.
        await notifier.relationship_changed(me, other, sight_before={})
    return web.Response(status=204)
