"""Deleting an account: what ``DELETE /users/me`` and ``DELETE /admin/users/{id}`` both do.

What stays: the users row as a tombstone (``deleted: true``, no password hash, no display name,
empty bio, no email), so the user ids in message history still resolve, and the username stays
taken, so nobody can sign up under it to pass for the deleted user. Their messages and
reactions stay in the conversations (the other members keep the whole history), shown with the
deleted account's id. What goes: the password hash, profile and email (with every link mailed
to it), every session and refresh token, every membership (with its read marker), contacts,
contact requests, blocks and invitations either way; the user's
sockets close with 4001 ``account deleted``.
"""

from __future__ import annotations

from aiohttp import web

from trustmess.appkeys import ACTIVE_USERS, NOTIFIER, POOL
from trustmess.errors import ApiError, ErrorCode, not_found
from trustmess.http.sessions import ACCOUNT_DELETED, announce_ended
from trustmess.store import contacts, conversations, emailtokens, presence, sessions, tokens, users


def last_admin() -> ApiError:
    return ApiError(
        409,
        ErrorCode.CONFLICT,
        "you are the last administrator: promote someone else first",
    )


async def delete_account(app: web.Application, user_id: int) -> None:
    """Delete the account (404 if unknown or already deleted; 409 if it is the last active
    administrator), then tell every node and every conversation it was in."""
    async with app[POOL].acquire() as conn, conn.transaction():
        user = await users.lock_live_user(conn, user_id)
        if user is None:
            raise not_found("user not found")
        if user.is_admin and user.is_active and not await users.other_active_admins(conn, user_id):
            raise last_admin()
        # Read while its conversations and contacts still show who they are.
        watchers = await presence.watchers_of(conn, user_id)
        # (conversation, its version after the change, its owner now), for the announcements
        left: list[tuple[int, int, int | None]] = []
        for conversation_id in await conversations.lock_memberships_of(conn, user_id):
            role = await conversations.remove_member(conn, conversation_id, user_id)
            if role == "owner":
                owner_id = await conversations.promote_longest_standing(conn, conversation_id)
            else:
                owner_id = await conversations.owner_of(conn, conversation_id)
            version = await conversations.bump_version(conn, conversation_id)
            left.append((conversation_id, version, owner_id))
        ended = await sessions.end_sessions(conn, user_id, None)
        await sessions.delete_user_sessions(conn, user_id)
        await tokens.delete_user_tokens(conn, user_id)
        await emailtokens.delete_user_tokens(conn, user_id)
        people = await contacts.forget_user(conn, user_id)
        await users.tombstone_user(conn, user_id)
    app[ACTIVE_USERS].forget(user_id)
    notifier = app[NOTIFIER]
    # Before its sockets close: their offline must find the forgotten audience.
    notifier.account_deleted(user, people, watchers)
    announce_ended(app, user_id, ended, ACCOUNT_DELETED, everything=True)
    notifier.user_disabled(user_id)  # every node forgets the account's active flag
    for conversation_id, version, owner_id in left:
        await notifier.members_removed(conversation_id, version, [user_id], owner_id)
