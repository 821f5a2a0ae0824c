"""Blocks: who blocked whom, and what a block undoes.

Blocking ends the pair's contact, withdraws the blocker's own request, declines the blocked
user's request (which, as every decline, still looks pending to its sender), drops the blocked
user's pending invitations of the blocker, and marks their direct conversation ``blocked`` (the
flag the append statement reads, so a send costs no extra query). Unblocking restores none of
that except the flag, which stays while either of them blocks the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from trustmess.store.contacts import OTHER_USER_COLUMNS, lock_pair, other_user
from trustmess.store.conversations import direct_key
from trustmess.store.users import Conn, Db, User


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    """What a new block changed, for the live events: the contact ended, the blocker's request
    was withdrawn, the blocked user's request was declined, these invitations were dropped."""

    contact_removed: bool = False
    own_request_removed: bool = False
    # It was pending, so the blocked user saw it: its removal is theirs to hear of too.
    own_request_was_seen: bool = False
    request_declined: bool = False
    invitations_dropped: list[int] = field(default_factory=list)
    # Their direct conversation, now blocked (caches that hold its flag must forget it).
    direct_conversation_id: int | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """A user the caller blocked, and when."""

    user: User
    created_at: datetime


async def _set_direct_flag(conn: Conn, user_a: int, user_b: int) -> int | None:
    """Set the pair's direct conversation's flag; its id, if they have one."""
    found: int | None = await conn.fetchval(
        "UPDATE conversations SET blocked = EXISTS (SELECT 1 FROM blocks "
        "  WHERE (blocker_id = $2 AND blocked_id = $3) OR (blocker_id = $3 AND blocked_id = $2)) "
        "WHERE direct_key = $1 RETURNING id",
        direct_key(user_a, user_b),
        user_a,
        user_b,
    )
    return found


async def block_user(conn: Conn, blocker_id: int, blocked_id: int) -> BlockOutcome | None:
    """Block; None when already blocked (nothing changes)."""
    async with conn.transaction():
        await lock_pair(conn, blocker_id, blocked_id)
        added = await conn.fetchval(
            "INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            blocker_id,
            blocked_id,
        )
        if added is None:
            return None
        removed = await conn.execute(
            "DELETE FROM contacts WHERE (user_id = $1 AND contact_id = $2) "
            "OR (user_id = $2 AND contact_id = $1)",
            blocker_id,
            blocked_id,
        )
        # Visible to the blocked user only while it was pending (declined ones look pending
        # but it never saw them answered, so their disappearing would tell the decline).
        withdrawn = await conn.fetchval(
            "DELETE FROM contact_requests WHERE requester_id = $1 AND recipient_id = $2 "
            "RETURNING declined_at IS NULL",
            blocker_id,
            blocked_id,
        )
        declined = await conn.execute(
            "UPDATE contact_requests SET declined_at = now() "
            "WHERE requester_id = $2 AND recipient_id = $1 AND declined_at IS NULL",
            blocker_id,
            blocked_id,
        )
        dropped = await conn.fetch(
            "DELETE FROM group_invitations WHERE user_id = $1 AND inviter_id = $2 "
            "RETURNING conversation_id",
            blocker_id,
            blocked_id,
        )
        direct = await _set_direct_flag(conn, blocker_id, blocked_id)
    return BlockOutcome(
        contact_removed=removed != "DELETE 0",
        own_request_removed=withdrawn is not None,
        own_request_was_seen=bool(withdrawn),
        request_declined=declined == "UPDATE 1",
        invitations_dropped=sorted(row["conversation_id"] for row in dropped),
        direct_conversation_id=direct,
    )


async def unblock_user(conn: Conn, blocker_id: int, blocked_id: int) -> tuple[bool, int | None]:
    """Unblock: (was there such a block?, the pair's direct conversation id if any)."""
    async with conn.transaction():
        await lock_pair(conn, blocker_id, blocked_id)
        status: str = await conn.execute(
            "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2",
            blocker_id,
            blocked_id,
        )
        if status == "DELETE 0":
            return False, None
        return True, await _set_direct_flag(conn, blocker_id, blocked_id)


_BLOCKS_PAGE = f"""
SELECT b.created_at, {OTHER_USER_COLUMNS}
FROM blocks b JOIN users o ON o.id = b.blocked_id
WHERE b.blocker_id = $1
  AND ($2::timestamptz IS NULL OR (b.created_at, b.blocked_id) < ($2::timestamptz, $3::bigint))
ORDER BY b.created_at DESC, b.blocked_id DESC LIMIT $4
"""  # noqa: S608


async def blocks_page(
    db: Db, blocker_id: int, limit: int, after: tuple[datetime, int] | None
) -> list[Block]:
    """The users ``blocker_id`` blocked, newest first, continuing after (created_at, id)."""
    at, after_id = after if after is not None else (None, None)
    rows = await db.fetch(_BLOCKS_PAGE, blocker_id, at, after_id, limit)
    return [Block(other_user(row), row["created_at"]) for row in rows]
