"""Reading the stream: history pages and seq ranges, all keyset scans of the primary keys
``(conversation_id, seq)``; results are always in ascending seq.

A conversation's stream is its messages and its changes (edits, deletions, reactions, in
``message_changes``), which share one gapless seq counter. Timeline pages (newest, ``before``)
are messages in their current state; ranges (join's replay, the sequencer's gap fill, HTTP
``after``) are every entry, both kinds merged by seq.
"""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from trustmess.models import Change, Message, Reaction

# What store functions take: a connection of its own or one acquired from the pool.
DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
Entry: TypeAlias = Message | Change


def message_from_row(row: asyncpg.Record, prefix: str = "") -> Message:
    """A message from a row's columns, named ``prefix`` + the column name."""
    return Message(
        id=row[prefix + "id"],
        conversation_id=row[prefix + "conversation_id"],
        seq=row[prefix + "seq"],
        sender_id=row[prefix + "sender_id"],
        body=row[prefix + "body"],
        reply_to=row[prefix + "reply_to_seq"],
        client_msg_id=row[prefix + "client_msg_id"],
        created_at=row[prefix + "created_at"],
        edited_at=row[prefix + "edited_at"],
        deleted=row[prefix + "deleted_at"] is not None,
    )


def change_from_row(row: asyncpg.Record) -> Change:
    return Change(
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        kind=row["kind"],
        target_seq=row["target_seq"],
        user_id=row["user_id"],
        client_change_id=row["client_change_id"],
        created_at=row["created_at"],
        body=row["body"],
        edited_at=row["edited_at"],
        emoji=row["emoji"],
        count=row["count"],
    )


LATEST = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at,
       edited_at, deleted_at
FROM messages
WHERE conversation_id = $1
ORDER BY seq DESC LIMIT $2
"""

BEFORE = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at,
       edited_at, deleted_at
FROM messages
WHERE conversation_id = $1 AND seq < $2
ORDER BY seq DESC LIMIT $3
"""

IN_RANGE = """
SELECT id, conversation_id, seq, sender_id, body, reply_to_seq, client_msg_id, created_at,
       edited_at, deleted_at
FROM messages
WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
ORDER BY seq
"""

# A change as its event shows it: with the target's body now (edits) and the emoji's count now
# (reactions).
_CHANGES = """
SELECT ch.conversation_id, ch.seq, ch.kind, ch.target_seq, ch.user_id, ch.client_change_id,
       ch.created_at, ch.emoji,
       CASE WHEN ch.kind = 'edit' THEN t.body END AS body,
       CASE WHEN ch.kind = 'edit' THEN t.edited_at END AS edited_at,
       CASE WHEN ch.emoji IS NULL THEN 0 ELSE (
           SELECT count(*) FROM message_reactions r
           WHERE r.conversation_id = ch.conversation_id AND r.target_seq = ch.target_seq
               AND r.emoji = ch.emoji
       ) END AS count
FROM message_changes ch
JOIN messages t ON t.conversation_id = ch.conversation_id AND t.seq = ch.target_seq
"""

CHANGES_AFTER = (
    _CHANGES
    + """
WHERE ch.conversation_id = $1 AND ch.seq > $2
ORDER BY ch.seq LIMIT $3
"""
)

CHANGES_IN_RANGE = (
    _CHANGES
    + """
WHERE ch.conversation_id = $1 AND ch.seq > $2 AND ch.seq <= $3
ORDER BY ch.seq
"""
)

# A member's page for ``GET /conversations/{id}/messages``, in one round trip: the member's row
# drives it (no row: not a member; one row with NULL columns: a member, no messages), the page
# is a keyset scan of the key, and each message's reactions (first reacted first, as the viewer
# sees them) come with it. Separate statements for the member check, the page and the reactions
# cost two more round trips, most of such a request's time (bench/RESULTS.md, "Read paths").
# {bound} and {order} make the newest page, ``before`` and ``after``.
_MEMBER_PAGE = """
SELECT m.id, m.conversation_id, m.seq, m.sender_id, m.body, m.reply_to_seq, m.client_msg_id,
       m.created_at, m.edited_at, m.deleted_at, r.reactions
FROM conversation_members me
LEFT JOIN LATERAL (
    SELECT * FROM messages x
    WHERE x.conversation_id = me.conversation_id{bound}
    ORDER BY x.seq {order} LIMIT $3
) m ON true
LEFT JOIN LATERAL (
    SELECT json_agg(json_build_array(g.emoji, g.n, g.me) ORDER BY g.first, g.emoji) AS reactions
    FROM (
        SELECT emoji, count(*) AS n, bool_or(user_id = $2) AS me, min(created_at) AS first
        FROM message_reactions
        WHERE conversation_id = m.conversation_id AND target_seq = m.seq
        GROUP BY emoji
    ) g
) r ON true
WHERE me.conversation_id = $1 AND me.user_id = $2
ORDER BY m.seq
"""
MEMBER_LATEST = _MEMBER_PAGE.format(bound="", order="DESC")
MEMBER_BEFORE = _MEMBER_PAGE.format(bound=" AND x.seq < $4", order="DESC")
MEMBER_AFTER = _MEMBER_PAGE.format(bound=" AND x.seq > $4", order="")


async def member_page(
    conn: DbConnection,
    conversation_id: int,
    viewer_id: int,
    limit: int,
    *,
    before_seq: int | None = None,
    after_seq: int | None = None,
) -> list[Message] | None:
    """Up to ``limit`` messages with their reactions, ascending: the newest, those just before
    ``before_seq`` or just after ``after_seq``; None when ``viewer_id`` is not a member."""
    if after_seq is not None:
        rows = await conn.fetch(MEMBER_AFTER, conversation_id, viewer_id, limit, after_seq)
    elif before_seq is not None:
        rows = await conn.fetch(MEMBER_BEFORE, conversation_id, viewer_id, limit, before_seq)
    else:
        rows = await conn.fetch(MEMBER_LATEST, conversation_id, viewer_id, limit)
    if not rows:
        return None
    messages = []
    for row in rows:
        if row["id"] is None:  # a member, and no message in the page
            break
        message = message_from_row(row)
        reactions = row["reactions"]
        message.reactions = (
            [Reaction(emoji, count, me) for emoji, count, me in orjson.loads(reactions)]
            if reactions
            else []
        )
        messages.append(message)
    return messages


async def member_entries_after(
    conn: DbConnection, conversation_id: int, viewer_id: int, after_seq: int, limit: int
) -> list[Entry] | None:
    """The oldest ``limit`` stream entries with seq > ``after_seq``, messages with their
    reactions; None when ``viewer_id`` is not a member."""
    messages = await member_page(conn, conversation_id, viewer_id, limit, after_seq=after_seq)
    if messages is None:
        return None
    rows = await conn.fetch(CHANGES_AFTER, conversation_id, after_seq, limit)
    return _merged(messages, [change_from_row(row) for row in rows])[:limit]


async def latest_messages(conn: DbConnection, conversation_id: int, limit: int) -> list[Message]:
    """The newest ``limit`` messages, ascending."""
    rows = await conn.fetch(LATEST, conversation_id, limit)
    return [message_from_row(row) for row in reversed(rows)]


async def messages_before(
    conn: DbConnection, conversation_id: int, before_seq: int, limit: int
) -> list[Message]:
    """The newest ``limit`` messages with seq < ``before_seq``, ascending."""
    rows = await conn.fetch(BEFORE, conversation_id, before_seq, limit)
    return [message_from_row(row) for row in reversed(rows)]


async def messages_in_range(
    conn: DbConnection, conversation_id: int, after_seq: int, through_seq: int
) -> list[Message]:
    """Every message with ``after_seq`` < seq <= ``through_seq``, ascending."""
    rows = await conn.fetch(IN_RANGE, conversation_id, after_seq, through_seq)
    return [message_from_row(row) for row in rows]


def _merged(messages: list[Message], changes: list[Change]) -> list[Entry]:
    if not changes:
        return list(messages)
    entries: list[Entry] = [*messages, *changes]
    entries.sort(key=_seq)  # two sorted runs: timsort merges them in one pass
    return entries


def _seq(entry: Entry) -> int:
    return entry.seq


# The oldest entries after each of many seqs, each a keyset scan of the primary key; ``i`` names the
# range.
MANY_AFTER = """
SELECT p.i, x.id, x.conversation_id, x.seq, x.sender_id, x.body, x.reply_to_seq,
       x.client_msg_id, x.created_at, x.edited_at, x.deleted_at
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS p(c, after, i)
CROSS JOIN LATERAL (
    SELECT * FROM messages WHERE conversation_id = p.c AND seq > p.after ORDER BY seq LIMIT $3
) x
ORDER BY p.i, x.seq
"""

CHANGES_MANY_AFTER = (
    """
SELECT p.i, x.*
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS p(c, after, i)
CROSS JOIN LATERAL ("""
    + _CHANGES
    + """
    WHERE ch.conversation_id = p.c AND ch.seq > p.after
    ORDER BY ch.seq LIMIT $3
) x
ORDER BY p.i, x.seq
"""
)


async def entries_after_many(
    conn: DbConnection, ranges: list[tuple[int, int]], limit: int
) -> dict[tuple[int, int], list[Entry]]:
    """The oldest ``limit`` stream entries (messages and changes) after each
    ``(conversation_id, after_seq)`` range's seq, in two statements for all of them."""
    args = ([c for c, _ in ranges], [after for _, after in ranges], limit)
    messages: list[list[Message]] = [[] for _ in ranges]
    for row in await conn.fetch(MANY_AFTER, *args):
        messages[row["i"] - 1].append(message_from_row(row))
    changes: list[list[Change]] = [[] for _ in ranges]
    for row in await conn.fetch(CHANGES_MANY_AFTER, *args):
        changes[row["i"] - 1].append(change_from_row(row))
    return {
        key: _merged(messages[index], changes[index])[:limit] for index, key in enumerate(ranges)
    }


async def entries_in_range(
    conn: DbConnection, conversation_id: int, after_seq: int, through_seq: int
) -> list[Entry]:
    """Every stream entry with ``after_seq`` < seq <= ``through_seq``, ascending."""
    messages = await messages_in_range(conn, conversation_id, after_seq, through_seq)
    rows = await conn.fetch(CHANGES_IN_RANGE, conversation_id, after_seq, through_seq)
    return _merged(messages, [change_from_row(row) for row in rows])
