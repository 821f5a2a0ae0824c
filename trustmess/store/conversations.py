"""Conversations and their members: creation, membership, and the per-member view
(:class:`~trustmess.models.Conversation`) read in one query per page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeAlias

import asyncpg
import orjson

from trustmess.models import Conversation, Member
from trustmess.store.history import DbConnection, message_from_row

# Where a page of "my conversations" ends: (coalesce(last_message_at, created_at), id).
ActivityKey: TypeAlias = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class Membership:
    """What membership rules need to know about one member of one conversation."""

    kind: str
    role: str


def direct_key(user_a: int, user_b: int) -> str:
    """The unique key of the direct conversation between two users."""
    return f"{min(user_a, user_b)}:{max(user_a, user_b)}"


# ---------------------------------------------------------------- the member's view

# ``page`` (defined by the query that prepends it) holds the conversations to show with the
# viewer's read marker; members, unread count and last message are computed for those rows only.
# $1 is always the viewer.
_VIEW = """
SELECT p.id, p.kind, p.title, p.version, p.last_seq, p.read_seq, p.created_at, p.activity_at,
       mem.members, unread.n AS unread,
       lm.id AS lm_id, lm.conversation_id AS lm_conversation_id, lm.seq AS lm_seq,
       lm.sender_id AS lm_sender_id, lm.body AS lm_body, lm.reply_to_seq AS lm_reply_to_seq,
       lm.client_msg_id AS lm_client_msg_id, lm.created_at AS lm_created_at,
       lm.edited_at AS lm_edited_at, lm.deleted_at AS lm_deleted_at
FROM page p
CROSS JOIN LATERAL (
    SELECT json_agg(
               json_build_object('id', u.id, 'username', u.username,
                                 'display_name', u.display_name, 'role', m.role)
               ORDER BY m.joined_at, m.user_id) AS members
    FROM conversation_members m JOIN users u ON u.id = m.user_id
    WHERE m.conversation_id = p.id
) mem
-- Unread: new messages of others only. Edits and reactions are stream entries of their own
-- table and never count; a message deleted for everyone no longer does either.
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM messages x
    WHERE x.conversation_id = p.id AND x.seq > p.read_seq AND x.sender_id <> $1
        AND x.deleted_at IS NULL
) unread
-- The newest message, which is not the newest seq when a change came after it.
LEFT JOIN LATERAL (
    SELECT * FROM messages x WHERE x.conversation_id = p.id ORDER BY x.seq DESC LIMIT 1
) lm ON true
ORDER BY p.activity_at DESC, p.id DESC
"""

# $2/$3: the cursor (activity, id) the page continues after, or NULL for the first page.
# Each of the user's conversations is fetched by its key (OFFSET 0 keeps the planner from
# turning that into a join): the cost then grows with the user's conversations, not with all of
# them. As a join, for a user in 1,000 of 100,000 conversations the planner chose to read the
# whole conversations table into a hash join (34 ms against 4 ms, bench/RESULTS.md).
_PAGE_FOR_USER = """
WITH page AS (
    SELECT c.id, c.kind, c.title, c.version, c.last_seq, c.created_at, me.last_read_seq AS read_seq,
           coalesce(c.last_message_at, c.created_at) AS activity_at
    FROM conversation_members me
    CROSS JOIN LATERAL (SELECT * FROM conversations c WHERE c.id = me.conversation_id OFFSET 0) c
    WHERE me.user_id = $1
      AND ($2::timestamptz IS NULL
           OR (coalesce(c.last_message_at, c.created_at), c.id) < ($2::timestamptz, $3::bigint))
    ORDER BY activity_at DESC, c.id DESC
    LIMIT $4
)"""

_ONE_FOR_USER = """
WITH page AS (
    SELECT c.id, c.kind, c.title, c.version, c.last_seq, c.created_at, me.last_read_seq AS read_seq,
           coalesce(c.last_message_at, c.created_at) AS activity_at
    FROM conversation_members me JOIN conversations c ON c.id = me.conversation_id
    WHERE me.user_id = $1 AND me.conversation_id = $2
)"""

PAGE_FOR_USER = _PAGE_FOR_USER + _VIEW
ONE_FOR_USER = _ONE_FOR_USER + _VIEW


def _conversation_from_row(row: asyncpg.Record) -> Conversation:
    return Conversation(
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        version=row["version"],
        members=tuple(Member(**member) for member in orjson.loads(row["members"])),
        last_seq=row["last_seq"],
        read_seq=row["read_seq"],
        unread=row["unread"],
        last_message=None if row["lm_id"] is None else message_from_row(row, "lm_"),
        created_at=row["created_at"],
    )


async def get_conversation_for(
    conn: DbConnection, conversation_id: int, user_id: int
) -> Conversation | None:
    """The conversation as ``user_id`` sees it; None when it is not a member."""
    row = await conn.fetchrow(ONE_FOR_USER, user_id, conversation_id)
    return None if row is None else _conversation_from_row(row)


async def get_conversation_for_members(
    conn: DbConnection, conversation_id: int, user_ids: list[int]
) -> list[tuple[int, Conversation]]:
    """The conversation as each of ``user_ids`` sees it (members among them only), in two
    queries whatever their number: only ``read_seq`` and ``unread`` differ between members."""
    if not user_ids:
        return []
    # One snapshot for both reads: the shared view and each member's counts agree, and the
    # member the shared view is read for is still one.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT m.user_id, m.last_read_seq, (SELECT count(*) FROM messages x "
            "  WHERE x.conversation_id = m.conversation_id AND x.seq > m.last_read_seq "
            "  AND x.sender_id <> m.user_id AND x.deleted_at IS NULL) AS unread "
            "FROM conversation_members m WHERE m.conversation_id = $1 AND m.user_id = ANY($2)",
            conversation_id,
            user_ids,
        )
        if not rows:
            return []
        base = await get_conversation_for(conn, conversation_id, rows[0]["user_id"])
    assert base is not None  # a member in this snapshot
    return [
        (row["user_id"], replace(base, read_seq=row["last_read_seq"], unread=row["unread"]))
        for row in rows
    ]


async def conversations_page(
    conn: DbConnection, user_id: int, limit: int, after: ActivityKey | None = None
) -> tuple[list[Conversation], ActivityKey | None]:
    """``user_id``'s conversations, latest activity first, continuing after the key ``after``.

    Returns the page and the key to continue from, or None when this is the last page.
    """
    at, conversation_id = after if after is not None else (None, None)
    rows = await conn.fetch(PAGE_FOR_USER, user_id, at, conversation_id, limit + 1)
    next_key = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_key = (rows[-1]["activity_at"], rows[-1]["id"])
    return [_conversation_from_row(row) for row in rows], next_key


# ---------------------------------------------------------------- membership reads


async def is_member(conn: DbConnection, conversation_id: int, user_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM conversation_members "
            "WHERE conversation_id = $1 AND user_id = $2)",
            conversation_id,
            user_id,
        )
    )


async def member_standings(
    conn: DbConnection, pairs: Sequence[tuple[int, int]]
) -> list[tuple[bool, bool]]:
    """(member?, the conversation blocked?) of each ``(conversation_id, user_id)`` pair, for the
    membership cache, in one statement."""
    rows = await conn.fetch(
        "SELECT p.i, c.blocked FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY "
        "AS p(c, u, i) "
        "JOIN conversation_members m ON m.conversation_id = p.c AND m.user_id = p.u "
        "JOIN conversations c ON c.id = p.c",
        [c for c, _ in pairs],
        [u for _, u in pairs],
    )
    standings = [(False, False)] * len(pairs)
    for row in rows:
        standings[row["i"] - 1] = (True, bool(row["blocked"]))
    return standings


async def non_members_among(
    conn: DbConnection, pairs: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Which (conversation_id, user_id) pairs are not (or no longer) memberships."""
    rows = await conn.fetch(
        "SELECT p.c, p.u FROM unnest($1::bigint[], $2::bigint[]) AS p(c, u) "
        "WHERE NOT EXISTS (SELECT 1 FROM conversation_members m "
        "WHERE m.conversation_id = p.c AND m.user_id = p.u)",
        [c for c, _ in pairs],
        [u for _, u in pairs],
    )
    return [(row["c"], row["u"]) for row in rows]


async def member_count(conn: DbConnection, conversation_id: int) -> int:
    """How many members the conversation has (one row back, whatever its size)."""
    count = await conn.fetchval(
        "SELECT count(*) FROM conversation_members WHERE conversation_id = $1", conversation_id
    )
    return int(count)


async def member_ids(conn: DbConnection, conversation_id: int) -> list[int]:
    """The members' user ids, longest-standing first."""
    rows = await conn.fetch(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 "
        "ORDER BY joined_at, user_id",
        conversation_id,
    )
    return [row["user_id"] for row in rows]


async def conversation_state(
    conn: DbConnection, conversation_id: int, user_id: int
) -> tuple[int, int] | None:
    """(last_seq, the member's read_seq); None when ``user_id`` is not a member."""
    row = await conn.fetchrow(
        "SELECT c.last_seq, m.last_read_seq FROM conversation_members m "
        "JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.conversation_id = $1 AND m.user_id = $2",
        conversation_id,
        user_id,
    )
    return None if row is None else (row["last_seq"], row["last_read_seq"])


async def lock_membership(
    conn: DbConnection, conversation_id: int, user_id: int
) -> Membership | None:
    """Lock the conversation row for a membership change (in a transaction) and return the
    caller's membership; None when ``user_id`` is not a member.

    The lock (the one a send's ``UPDATE conversations`` takes) serialises changes of one
    conversation's members, so the member limit and the single owner hold under concurrent
    requests.
    """
    kind: str | None = await conn.fetchval(
        "SELECT kind FROM conversations WHERE id = $1 FOR NO KEY UPDATE", conversation_id
    )
    if kind is None:
        return None
    # Read after the lock is held, so a change that committed while we waited is seen.
    role: str | None = await conn.fetchval(
        "SELECT role FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
        conversation_id,
        user_id,
    )
    return None if role is None else Membership(kind=kind, role=role)


async def unknown_or_inactive_users(conn: DbConnection, user_ids: list[int]) -> list[int]:
    """Those of ``user_ids`` that do not exist or are disabled, ascending."""
    rows = await conn.fetch(
        "SELECT id FROM users WHERE id = ANY($1::bigint[]) AND is_active", user_ids
    )
    return sorted(set(user_ids) - {row["id"] for row in rows})


# ---------------------------------------------------------------- changes


async def add_members(
    conn: DbConnection, conversation_id: int, user_ids: list[int], role: str = "member"
) -> list[int]:
    """Add users (existing members are left as they are); returns the ids actually added.

    A new member's read marker starts at the conversation's last message: history stays
    readable, but what was said before they joined does not count as unread.
    """
    rows = await conn.fetch(
        "INSERT INTO conversation_members (conversation_id, user_id, role, last_read_seq) "
        "SELECT c.id, u.user_id, $3, c.last_seq "
        "FROM conversations c, unnest($2::bigint[]) AS u(user_id) WHERE c.id = $1 "
        "ON CONFLICT (conversation_id, user_id) DO NOTHING RETURNING user_id",
        conversation_id,
        user_ids,
        role,
    )
    return [row["user_id"] for row in rows]


async def create_direct(conn: DbConnection, user_id: int, other_id: int) -> tuple[int, bool]:
    """The direct conversation between two users: (id, True) if this call created it, else
    the existing one's (id, False). Safe under concurrent calls for the same pair."""
    key = direct_key(user_id, other_id)
    async with conn.transaction():
        # Waits for a concurrent insert of the same key, then does nothing if it committed.
        # blocked: a block made while this request was on its way (store/blocks.py).
        created = await conn.fetchval(
            "INSERT INTO conversations (kind, created_by, direct_key, blocked) "
            "VALUES ('direct', $1, $2, EXISTS (SELECT 1 FROM blocks WHERE "
            "  (blocker_id = $1 AND blocked_id = $3) OR (blocker_id = $3 AND blocked_id = $1))) "
            "ON CONFLICT (direct_key) DO NOTHING RETURNING id",
            user_id,
            key,
            other_id,
        )
        if created is not None:
            await add_members(conn, created, sorted({user_id, other_id}))
            return int(created), True
        existing = await conn.fetchval("SELECT id FROM conversations WHERE direct_key = $1", key)
    return int(existing), False


async def direct_conversation_id(conn: DbConnection, user_id: int, other_id: int) -> int | None:
    """The id of the direct conversation between two users, if there is one."""
    found: int | None = await conn.fetchval(
        "SELECT id FROM conversations WHERE direct_key = $1", direct_key(user_id, other_id)
    )
    return found


async def create_group(
    conn: DbConnection, owner_id: int, other_ids: list[int], title: str | None
) -> int:
    """A new group owned by ``owner_id`` with ``other_ids`` as members; returns its id."""
    async with conn.transaction():
        conversation_id = int(
            await conn.fetchval(
                "INSERT INTO conversations (kind, title, created_by) "
                "VALUES ('group', $2, $1) RETURNING id",
                owner_id,
                title,
            )
        )
        await add_members(conn, conversation_id, [owner_id], role="owner")
        await add_members(conn, conversation_id, other_ids)
    return conversation_id


async def set_title(conn: DbConnection, conversation_id: int, title: str | None) -> int:
    """Set or clear the title; returns the conversation's new version."""
    version: int = await conn.fetchval(
        "UPDATE conversations SET title = $2, version = version + 1 WHERE id = $1 "
        "RETURNING version",
        conversation_id,
        title,
    )
    return version


async def bump_version(conn: DbConnection, conversation_id: int) -> int:
    """Count a membership change (in the caller's transaction); returns the new version."""
    version: int = await conn.fetchval(
        "UPDATE conversations SET version = version + 1 WHERE id = $1 RETURNING version",
        conversation_id,
    )
    return version


async def remove_member(conn: DbConnection, conversation_id: int, user_id: int) -> str | None:
    """Remove a member; returns the role it had, or None if it was not a member.

    Its messages stay: the others keep the whole history.
    """
    role: str | None = await conn.fetchval(
        "DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2 "
        "RETURNING role",
        conversation_id,
        user_id,
    )
    return role


async def owner_of(conn: DbConnection, conversation_id: int) -> int | None:
    """The group's owner, or None when it has no member left."""
    owner: int | None = await conn.fetchval(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 AND role = 'owner'",
        conversation_id,
    )
    return owner


async def promote_longest_standing(conn: DbConnection, conversation_id: int) -> int | None:
    """Make the longest-standing member (earliest joined, then lowest id) the owner; returns
    its id, or None when no member is left."""
    promoted: int | None = await conn.fetchval(
        "UPDATE conversation_members SET role = 'owner' "
        "WHERE conversation_id = $1 AND user_id = ("
        "    SELECT user_id FROM conversation_members WHERE conversation_id = $1 "
        "    ORDER BY joined_at, user_id LIMIT 1"
        ") RETURNING user_id",
        conversation_id,
    )
    return promoted


async def lock_memberships_of(conn: DbConnection, user_id: int) -> list[int]:
    """The conversations ``user_id`` is a member of, locked (in a transaction) as a membership
    change locks them, to leave them all (account deletion).

    All of them first, in id order, before any member row: the global lock order of message
    batches and marker flushes (conversations by id, then member rows), so none can deadlock
    with this.
    """
    rows = await conn.fetch(
        "SELECT c.id FROM conversations c JOIN conversation_members m ON m.conversation_id = c.id "
        "WHERE m.user_id = $1 ORDER BY c.id FOR NO KEY UPDATE OF c",
        user_id,
    )
    return [row["id"] for row in rows]
