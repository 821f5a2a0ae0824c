"""Messages over HTTP: history pages, sending, and the read marker.

History: ``GET /conversations/{id}/messages`` without ``before``/``after`` is the newest page;
``before=SEQ`` pages back, ``after=SEQ`` forwards; items are always in ascending seq and
``has_more`` says whether more exist beyond the page in the paging direction. ``limit`` is
1-200 (default 50): larger is 422 rather than silently cut, so a client never mistakes a short
page for the end. Newest and ``before`` pages are messages in their current state, with the
caller's view of their reactions; ``after`` pages are the stream: messages and the changes
(edits, deletions, reactions) made since, each with its own seq, exactly what a resuming socket
would have been sent.

Changes: ``PATCH``/``DELETE /conversations/{id}/messages/{seq}`` edit and delete for everyone,
``PUT``/``DELETE …/reactions/{emoji}`` react and unreact; all go through the writer like a send,
and answer ``{conversation_id, target_seq, seq, duplicate}`` as the socket commands do.
``GET /messages/search`` searches the caller's conversations.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from trustmess.appkeys import NOTIFIER, POOL, READ_MARKERS, SEND_BUDGET, WRITER
from trustmess.delivery.sending import send_change, send_message
from trustmess.errors import conversation_not_found, invalid, rate_limited
from trustmess.http.authn import current_user_id
from trustmess.http.conversations import read_conversation_request
from trustmess.http.jsonio import json_response, path_id, query_int, read_json_object
from trustmess.store.changes import NewChange
from trustmess.store.conversations import is_member
from trustmess.store.history import Entry, member_entries_after, member_page
from trustmess.store.messages import NewMessage
from trustmess.store.readmarkers import advance_read_marker, members_read_markers
from trustmess.store.search import search_messages, search_terms
from trustmess.wire.validation import (
    BIGINT_MAX,
    check_fields,
    client_change_id,
    client_msg_id,
    get_int,
    get_str,
    message_body,
    reaction,
    require_int,
)

routes = web.RouteTableDef()

DEFAULT_PAGE = 50
MAX_PAGE = 200
_SEND_FIELDS = frozenset({"client_msg_id", "body", "reply_to"})


@routes.get("/conversations/{id}/messages")
async def message_history(request: web.Request) -> web.Response:
    """A page of history: ``{items, has_more}``."""
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    limit = query_int(request, "limit", lo=1, hi=MAX_PAGE) or DEFAULT_PAGE
    before = query_int(request, "before", lo=0, hi=BIGINT_MAX)
    after = query_int(request, "after", lo=0, hi=BIGINT_MAX)
    if before is not None and after is not None:
        raise invalid("after", "cannot be combined with before")
    # One row more than asked tells whether the page is the last in its direction.
    entries: Sequence[Entry] | None
    async with request.app[POOL].acquire() as conn:
        if after is not None:
            entries = await member_entries_after(conn, conversation_id, user_id, after, limit + 1)
        else:
            entries = await member_page(
                conn, conversation_id, user_id, limit + 1, before_seq=before
            )
    if entries is None:
        raise conversation_not_found()
    has_more = len(entries) > limit
    # after: the oldest `limit` of them; newest and before: the newest `limit`.
    entries = entries[:limit] if after is not None else entries[-limit:]
    return json_response({"items": [e.to_json() for e in entries], "has_more": has_more})


@routes.post("/conversations/{id}/messages")
async def post_message(request: web.Request) -> web.Response:
    """Send a message: 201 with the stored message, 200 with the original on a retry.

    Spends from the sender's message budget on this node (shared with its sockets) before the
    body is read: 429 with Retry-After when it is empty.
    """
    user_id = await current_user_id(request)
    budget = request.app[SEND_BUDGET]
    if not budget.take(user_id):
        raise rate_limited(budget.retry_after(user_id))
    conversation_id = path_id(request, "id")
    data = await read_json_object(request)
    check_fields(data, _SEND_FIELDS, required=("client_msg_id", "body"))
    message = NewMessage(
        conversation_id,
        user_id,
        client_msg_id(data),
        message_body(data),
        get_int(data, "reply_to", lo=1),
    )
    result = await send_message(request.app[WRITER], message)
    return json_response(result.message.to_json(), status=200 if result.duplicate else 201)


@routes.post("/conversations/{id}/read")
async def mark_read(request: web.Request) -> web.Response:
    """Move the caller's cumulative read marker forward: ``{read_seq}`` (never lower)."""
    user_id, conversation_id, data = await read_conversation_request(
        request, allowed=("seq",), required=("seq",)
    )
    seq = require_int(data, "seq", lo=0)
    await request.app[READ_MARKERS].flush_user(user_id)  # answer with the caller's own acks
    async with request.app[POOL].acquire() as conn:
        read_seq, moved = await advance_read_marker(conn, conversation_id, user_id, seq)
    if moved:
        request.app[NOTIFIER].read_moved(conversation_id, user_id, read_seq)
    return json_response({"read_seq": read_seq})


@routes.get("/conversations/{id}/read")
async def members_read_markers_view(request: web.Request) -> web.Response:
    """Every member's read marker (what read receipts show after a reload; ``read`` events
    keep it current): ``{items: [{user_id, read_seq}]}``, by user id. Members only (404)."""
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    async with request.app[POOL].acquire() as conn:
        stored = await members_read_markers(conn, conversation_id, user_id)
    if not stored:
        raise conversation_not_found()
    # Acks and sends this node has not written yet count too (readbuffer.py).
    markers = request.app[READ_MARKERS]
    items = [
        {"user_id": member, "read_seq": max(seq, markers.current(conversation_id, member))}
        for member, seq in stored
    ]
    return json_response({"items": items})


def _query_change_id(request: web.Request) -> str | None:
    return client_change_id(dict(request.query))


async def _change(request: web.Request, change: NewChange) -> web.Response:
    result = await send_change(request.app[WRITER], change)
    return json_response(result.to_json())


async def _target(request: web.Request) -> tuple[int, int, int]:
    """(caller, conversation id, target seq) of a change route."""
    user_id = await current_user_id(request)
    return user_id, path_id(request, "id"), path_id(request, "seq")


@routes.patch("/conversations/{id}/messages/{seq}")
async def edit_message(request: web.Request) -> web.Response:
    """Edit the caller's message: ``{body, client_change_id?}``."""
    user_id, conversation_id, data = await read_conversation_request(
        request, allowed=("body", "client_change_id"), required=("body",)
    )
    seq = path_id(request, "seq")
    change = NewChange(
        conversation_id, user_id, "edit", seq, client_change_id(data), body=message_body(data)
    )
    return await _change(request, change)


@routes.delete("/conversations/{id}/messages/{seq}")
async def delete_message(request: web.Request) -> web.Response:
    """Delete a message for everyone (its sender, or the group's owner)."""
    user_id, conversation_id, seq = await _target(request)
    change = NewChange(conversation_id, user_id, "delete", seq, _query_change_id(request))
    return await _change(request, change)


@routes.put("/conversations/{id}/messages/{seq}/reactions/{emoji}")
async def add_reaction(request: web.Request) -> web.Response:
    """React to a message with one emoji (percent-encoded in the path)."""
    user_id, conversation_id, seq = await _target(request)
    emoji = reaction(request.match_info["emoji"])
    change = NewChange(
        conversation_id, user_id, "react", seq, _query_change_id(request), emoji=emoji
    )
    return await _change(request, change)


@routes.delete("/conversations/{id}/messages/{seq}/reactions/{emoji}")
async def remove_reaction(request: web.Request) -> web.Response:
    """Take back the caller's reaction with that emoji."""
    user_id, conversation_id, seq = await _target(request)
    emoji = reaction(request.match_info["emoji"])
    change = NewChange(
        conversation_id, user_id, "unreact", seq, _query_change_id(request), emoji=emoji
    )
    return await _change(request, change)


MAX_QUERY_CHARS = 200


@routes.get("/messages/search")
async def search(request: web.Request) -> web.Response:
    """Messages of the caller's conversations matching ``q``, newest first: ``{items,
    has_more}``; the next page is ``before_id=<id of the last item>``."""
    user_id = await current_user_id(request)
    text = get_str(dict(request.query), "q", max_len=MAX_QUERY_CHARS) or ""
    terms = search_terms(text)
    if not terms:
        raise invalid("q", "must contain at least one word")
    limit = query_int(request, "limit", lo=1, hi=MAX_PAGE) or DEFAULT_PAGE
    conversation_id = query_int(request, "conversation_id", lo=1, hi=BIGINT_MAX)
    before_id = query_int(request, "before_id", lo=1, hi=BIGINT_MAX)
    async with request.app[POOL].acquire() as conn:
        if conversation_id is not None and not await is_member(conn, conversation_id, user_id):
            raise conversation_not_found()
        items = await search_messages(
            conn, user_id, terms, limit + 1, conversation_id=conversation_id, before_id=before_id
        )
    has_more = len(items) > limit
    return json_response({"items": [m.to_json() for m in items[:limit]], "has_more": has_more})
