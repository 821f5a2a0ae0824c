"""Group invitations over HTTP: list the caller's, accept (become a member) or decline.

Only the invitee sees an invitation; the group's members see the newcomer when it accepts,
as for any add. Paths name the group (``/invitations/{conversation_id}``) relative to the
caller, so nobody else's invitation can be addressed: a missing one is 404.
"""

from __future__ import annotations

from aiohttp import web

from trustmess.appkeys import NOTIFIER, POOL
from trustmess.errors import ApiError, ErrorCode, not_found
from trustmess.http.authn import current_user_id
from trustmess.http.contacts import page_query, page_response
from trustmess.http.conversations import MAX_MEMBERS
from trustmess.http.jsonio import json_response, path_id
from trustmess.store.conversations import (
    add_members,
    bump_version,
    get_conversation_for,
    member_count,
)
from trustmess.store.invitations import Invitation, invitations_page, take_invitation
from trustmess.wire import events

routes = web.RouteTableDef()


def _invitation_not_found() -> ApiError:
    return not_found("invitation not found")


@routes.get("/invitations")
async def list_invitations(request: web.Request) -> web.Response:
    """The caller's pending invitations, newest first: ``{items, next_cursor}``."""
    user_id = await current_user_id(request)
    limit, after = page_query(request)
    found = await invitations_page(request.app[POOL], user_id, limit + 1, after)
    return page_response(
        found, limit, lambda i: (i.created_at, i.conversation_id), Invitation.to_json
    )


@routes.post("/invitations/{id}/accept")
async def accept_invitation(request: web.Request) -> web.Response:
    """Join the group: its view as for a member (the members hear of it as of any add)."""
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    async with request.app[POOL].acquire() as conn:
        async with conn.transaction():
            # The lock a member change takes (store/conversations.py lock_membership).
            await conn.execute(
                "SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE", conversation_id
            )
            if not await take_invitation(conn, conversation_id, user_id):
                raise _invitation_not_found()
            if await member_count(conn, conversation_id) >= MAX_MEMBERS:
                raise ApiError(
                    409, ErrorCode.CONFLICT, f"the group is full ({MAX_MEMBERS} members)"
                )
            added = await add_members(conn, conversation_id, [user_id])
            version = await bump_version(conn, conversation_id) if added else 0
        conversation = await get_conversation_for(conn, conversation_id, user_id)
    if conversation is None:
        raise _invitation_not_found()
    notifier = request.app[NOTIFIER]
    notifier.to_user(user_id, events.invitation("accepted", conversation_id))
    if added:
        await notifier.members_added(conversation_id, version, added)
    return json_response(conversation.to_json())


@routes.post("/invitations/{id}/decline")
async def decline_invitation(request: web.Request) -> web.Response:
    """Decline; 204. Nobody but the caller's own devices is told."""
    user_id = await current_user_id(request)
    conversation_id = path_id(request, "id")
    async with request.app[POOL].acquire() as conn:
        if not await take_invitation(conn, conversation_id, user_id):
            raise _invitation_not_found()
    request.app[NOTIFIER].to_user(user_id, events.invitation("declined", conversation_id))
    return web.Response(status=204)
