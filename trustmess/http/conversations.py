"""Conversations over HTTP: create (direct or group), list, show, rename, add and remove members.

Anyone who is not a member gets the same 404 as for a conversation that does not exist. Rules
the issue left open, decided here:

* ``title`` that is empty after stripping is no title, so ``{member_ids: [b], title: ""}`` is the
  direct conversation with b.
* A direct conversation has neither a title nor a changeable member list: renaming it or adding
  to it is 422 ``invalid`` naming the field; leaving it (or removing its other member) is 409
  ``conflict``, since no input is at fault, only the conversation's kind.
* Adding members: ids already in the group are ignored; only the new ones must be active users.
  New members see the whole history, and their read marker starts at the newest message.
* Consent (store/consent.py): a direct conversation is created only if the other user's
  ``direct_policy`` allows it (an existing one is always found again); a group add makes a
  user whose ``group_policy`` asks for it an invitee, not a member (``invited`` in the
  answer), and each invitation spends from the adder's contact-request budget.
* When the owner leaves, the longest-standing member (earliest ``joined_at``, then lowest id)
  becomes the owner. When the last member leaves the rows stay; nobody can see them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from trustmess.appkeys import (
    CONTACT_REQUEST_LIMIT,
    CONVERSATION_CHANGE_LIMIT,
    NOTIFIER,
    POOL,
    READ_MARKERS,
    SETTINGS,
)
from trustmess.errors import (
    ApiError,
    ErrorCode,
    conversation_not_found,
    invalid,
    not_allowed,
    not_found,
    rate_limited,
)
from trustmess.http.authn import current_user_id
from trustmess.http.jsonio import json_response, path_id, query_int, read_json_object
from trustmess.models import Conversation
from trustmess.store.consent import GroupAdds, direct_refusal, sort_group_adds
from trustmess.store.conversations import (
    ActivityKey,
    Membership,
    add_members,
    bump_version,
    conversations_page,
    create_direct,
    create_group,
    direct_conversation_id,
    get_conversation_for,
    lock_membership,
    member_count,
    non_members_among,
    owner_of,
    promote_longest_standing,
    remove_member,
    set_title,
    unknown_or_inactive_users,
)
from trustmess.store.history import DbConnection
from trustmess.store.invitations import drop_invitations, invitation_for, invite
from trustmess.wire import events
from trustmess.wire.validation import (
    BIGINT_MAX,
    check_fields,
    check_name,
    get_str,
    parse_decimal,
    require_id_list,
)

routes = web.RouteTableDef()

MAX_MEMBERS = 1000
MAX_TITLE_CHARS = 128
DEFAULT_PAGE = 20
MAX_PAGE = 100

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _title(data: dict[str, Any]) -> str | None:
    """The optional ``title`` field: stripped, at most 128 characters; null or empty is none."""
    if data.get("title") is None:
        return None
    title = get_str(data, "title", max_len=MAX_TITLE_CHARS, strip=True)
    if not title:
        return None
    check_name("title", title)
    return title


def _too_many_members(field: str) -> ApiError:
    return invalid(field, f"a group has at most {MAX_MEMBERS} members")


async def _require_active_users(conn: DbConnection, field: str, user_ids: list[int]) -> None:
    missing = await unknown_or_inactive_users(conn, user_ids)
    if missing:
        names = ", ".join(str(user_id) for user_id in missing)
        raise invalid(field, f"unknown or inactive users: {names}")


async def read_conversation_request(
    request: web.Request, allowed: Collection[str], required: Collection[str]
) -> tuple[int, int, dict[str, Any]]:
    """What a write under ``/conversations/{id}`` starts with: the caller's id (401 without a
    valid token), the conversation id (404 if malformed) and the JSON object body with only
    ``allowed`` fields and the ``required`` ones present (422)."""
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    data = await read_json_object(request)
    check_fields(data, allowed, required)
    return user_id, conversation_id, data


async def _lock_group(
    conn: DbConnection, conversation_id: int, user_id: int, if_direct: ApiError
) -> Membership:
    """The caller's membership of a group, locked for a membership change (in a transaction):
    404 for a non-member, ``if_direct`` for a direct conversation."""
    membership = await lock_membership(conn, conversation_id, user_id)
    if membership is None:
        raise conversation_not_found()
    if membership.kind == "direct":
        raise if_direct
    return membership


async def _conversation_for(conn: DbConnection, conversation_id: int, user_id: int) -> Conversation:
    conversation = await get_conversation_for(conn, conversation_id, user_id)
    if conversation is None:
        raise conversation_not_found()
    return conversation


def encode_cursor(key: ActivityKey) -> str:
    """An opaque cursor for ``key``: exact microseconds since the epoch and the id."""
    at, conversation_id = key
    raw = f"{(at - _EPOCH) // _MICROSECOND}:{conversation_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> ActivityKey:
    """The key of a cursor made by :func:`encode_cursor`; 422 for anything else."""
    bad = invalid("cursor", "is not a cursor returned by this endpoint")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    micros_text, _, id_text = raw.partition(":")
    micros, conversation_id = parse_decimal(micros_text), parse_decimal(id_text)
    # Both parts go to the database: out of range would fail there (a 500), not here.
    if micros is None or conversation_id is None or not 1 <= conversation_id <= BIGINT_MAX:
        raise bad
    try:
        return _EPOCH + micros * _MICROSECOND, conversation_id
    except OverflowError:
        raise bad from None


def spend_requests(request: web.Request, user_id: int, count: int = 1) -> None:
    """Spend ``count`` from the caller's budget of contact requests and group invitations,
    all or nothing; 429 when it does not hold them (before anything is stored)."""
    limiter = request.app[CONTACT_REQUEST_LIMIT]
    key = str(user_id)
    for spent in range(count):
        wait = limiter.take(key)
        if wait is not None:
            for _ in range(spent):
                limiter.refund(key)
            raise rate_limited(wait)


def _spend_change(request: web.Request, conversation_id: int) -> None:
    """A member's change to the conversation: within its budget, or 429. Checked after the
    membership, so strangers cannot spend it."""
    wait = request.app[CONVERSATION_CHANGE_LIMIT].take(str(conversation_id))
    if wait is not None:
        raise rate_limited(wait)


async def _open_direct(conn: DbConnection, user_id: int, other_id: int) -> tuple[int, bool]:
    """The direct conversation with ``other_id``: found (either side may), or created if their
    consent allows it (403 ``not_allowed`` otherwise, whether policy or block refused)."""
    existing = await direct_conversation_id(conn, user_id, other_id)
    if existing is not None:
        return existing, False
    refusal = await direct_refusal(conn, user_id, other_id)
    if refusal == "blocked_other":
        raise ApiError(409, ErrorCode.CONFLICT, "you have blocked this user; unblock first")
    if refusal is not None:
        raise not_allowed("this user does not accept direct conversations from you")
    return await create_direct(conn, user_id, other_id)


@dataclass(frozen=True, slots=True)
class Invitations:
    """The invitations a group add made (``sent``), and whom the adder is told it invited
    (``reported``: also those their block or a full invitation list dropped, so that neither
    shows)."""

    sent: list[int]
    reported: list[int]


async def _invite(
    request: web.Request, conn: DbConnection, conversation_id: int, user_id: int, adds: GroupAdds
) -> Invitations:
    sent = await invite(
        conn,
        conversation_id,
        user_id,
        adds.invited,
        request.app[SETTINGS].invitations_pending_max,
    )
    return Invitations(sent, sorted(adds.invited + adds.refused))


async def _announce_invitations(
    request: web.Request, conversation_id: int, user_ids: list[int]
) -> None:
    """Tell each newly invited user (``invitation`` ``invited``) on every device."""
    if not user_ids:
        return
    notifier = request.app[NOTIFIER]
    async with request.app[POOL].acquire() as conn:
        for invitee in user_ids:
            found = await invitation_for(conn, conversation_id, invitee)
            if found is not None:
                notifier.to_user(
                    invitee, events.invitation("invited", conversation_id, found.to_json())
                )


@routes.post("/conversations")
async def create_conversation(request: web.Request) -> web.Response:
    """A direct conversation (one other member, no title; 200 if it already exists) or a group
    owned by the caller (201)."""
    user_id = await current_user_id(request)
    data = await read_json_object(request)
    check_fields(data, allowed=("member_ids", "title"), required=("member_ids",))
    requested = require_id_list(data, "member_ids", max_items=MAX_MEMBERS)
    others = [member_id for member_id in requested if member_id != user_id]
    title = _title(data)
    if not others:
        raise invalid("member_ids", "must name at least one other user")
    if len(others) + 1 > MAX_MEMBERS:
        raise _too_many_members("member_ids")
    invitations = Invitations([], [])
    await request.app[READ_MARKERS].flush_user(user_id)  # the answer shows read_seq
    async with request.app[POOL].acquire() as conn:
        await _require_active_users(conn, "member_ids", others)
        if len(others) == 1 and title is None:
            conversation_id, created = await _open_direct(conn, user_id, others[0])
        else:
            adds = await sort_group_adds(conn, user_id, others)
            spend_requests(request, user_id, len(adds.invited) + len(adds.refused))
            async with conn.transaction():
                conversation_id = await create_group(conn, user_id, adds.members, title)
                invitations = await _invite(request, conn, conversation_id, user_id, adds)
            created = True
        conversation = await _conversation_for(conn, conversation_id, user_id)
    if created:
        await request.app[NOTIFIER].conversation_created(conversation_id)
    await _announce_invitations(request, conversation_id, invitations.sent)
    body = conversation.to_json()
    if conversation.kind == "group":
        body["invited"] = invitations.reported
    return json_response(body, status=201 if created else 200)


@routes.get("/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    """The caller's conversations, latest activity first, in keyset pages."""
    user_id = await current_user_id(request)
    limit = query_int(request, "limit", lo=1, hi=MAX_PAGE) or DEFAULT_PAGE
    cursor = request.query.get("cursor")
    # Empty is the first page, as for GET /users: a client may always send `cursor=<last>`.
    after = None if not cursor else decode_cursor(cursor)
    await request.app[READ_MARKERS].flush_user(user_id)  # show the caller's own acks
    async with request.app[POOL].acquire() as conn:
        items, next_key = await conversations_page(conn, user_id, limit, after)
    return json_response(
        {
            "items": [conversation.to_json() for conversation in items],
            "next_cursor": None if next_key is None else encode_cursor(next_key),
        }
    )


@routes.get("/conversations/{id}")
async def show_conversation(request: web.Request) -> web.Response:
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    await request.app[READ_MARKERS].flush_user(user_id)  # show the caller's own acks
    async with request.app[POOL].acquire() as conn:
        conversation = await _conversation_for(conn, conversation_id, user_id)
    return json_response(conversation.to_json())


@routes.patch("/conversations/{id}")
async def rename_conversation(request: web.Request) -> web.Response:
    """Set or clear (null or empty) a group's title; any member may."""
    user_id, conversation_id, data = await read_conversation_request(
        request, allowed=("title",), required=("title",)
    )
    title = _title(data)
    await request.app[READ_MARKERS].flush_user(user_id)  # the answer shows read_seq
    async with request.app[POOL].acquire() as conn:
        async with conn.transaction():
            no_title = invalid("title", "a direct conversation has no title")
            await _lock_group(conn, conversation_id, user_id, if_direct=no_title)
            _spend_change(request, conversation_id)
            version = await set_title(conn, conversation_id, title)
        conversation = await _conversation_for(conn, conversation_id, user_id)
    await request.app[NOTIFIER].title_changed(conversation_id, version, title)
    return json_response(conversation.to_json())


@routes.post("/conversations/{id}/members")
async def add_conversation_members(request: web.Request) -> web.Response:
    """Add users to a group; any member may. Ids already in the group are ignored."""
    user_id, conversation_id, data = await read_conversation_request(
        request, allowed=("user_ids",), required=("user_ids",)
    )
    requested = require_id_list(data, "user_ids", max_items=MAX_MEMBERS)
    if not requested:
        raise invalid("user_ids", "must name at least one user")
    await request.app[READ_MARKERS].flush_user(user_id)  # the answer shows read_seq
    async with request.app[POOL].acquire() as conn:
        async with conn.transaction():
            no_adding = invalid("user_ids", "members cannot be added to a direct conversation")
            await _lock_group(conn, conversation_id, user_id, if_direct=no_adding)
            # The requested ids and a count, not the member list: adding to a big group costs
            # what is added (issue 20).
            pairs = [(conversation_id, member_id) for member_id in requested]
            absent = {member_id for _, member_id in await non_members_among(conn, pairs)}
            new = [member_id for member_id in requested if member_id in absent]
            await _require_active_users(conn, "user_ids", new)
            if await member_count(conn, conversation_id) + len(new) > MAX_MEMBERS:
                raise _too_many_members("user_ids")
            if new:
                _spend_change(request, conversation_id)
            adds = await sort_group_adds(conn, user_id, new)
            spend_requests(request, user_id, len(adds.invited) + len(adds.refused))
            added = await add_members(conn, conversation_id, adds.members)
            await drop_invitations(conn, conversation_id, added)
            invitations = await _invite(request, conn, conversation_id, user_id, adds)
            version = await bump_version(conn, conversation_id) if added else 0
        conversation = await _conversation_for(conn, conversation_id, user_id)
    if added:
        await request.app[NOTIFIER].members_added(conversation_id, version, added)
    await _announce_invitations(request, conversation_id, invitations.sent)
    return json_response({**conversation.to_json(), "invited": invitations.reported})


@routes.delete("/conversations/{id}/members/{user_id}")
async def remove_conversation_member(request: web.Request) -> web.Response:
    """Leave a group (any member) or remove someone from it (the owner only); 204."""
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    target_id = path_id(request, "user_id")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        no_leaving = ApiError(
            409, ErrorCode.CONFLICT, "the members of a direct conversation cannot change"
        )
        membership = await _lock_group(conn, conversation_id, user_id, if_direct=no_leaving)
        if target_id != user_id and membership.role != "owner":
            raise ApiError(403, ErrorCode.FORBIDDEN, "only the owner may remove other members")
        if target_id != user_id:
            _spend_change(request, conversation_id)  # leaving is always possible
        role = await remove_member(conn, conversation_id, target_id)
        if role is None:
            raise not_found("member not found")
        if role == "owner":
            owner_id = await promote_longest_standing(conn, conversation_id)
        else:
            owner_id = await owner_of(conn, conversation_id)
        version = await bump_version(conn, conversation_id)
    await request.app[NOTIFIER].members_removed(conversation_id, version, [target_id], owner_id)
    return web.Response(status=204)
