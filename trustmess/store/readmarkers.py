"""Read markers: a member's cumulative "read everything up to seq", which only moves forward."""

from __future__ import annotations

from trustmess.errors import conversation_not_found, invalid
from trustmess.store.history import DbConnection

# The member row is locked first, so the marker read and the forward-only update see the same
# value even when the same user's devices (or its own send) move the marker at the same time.
ADVANCE = """
WITH current AS (
    SELECT m.last_read_seq, c.last_seq
    FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id
    WHERE m.conversation_id = $1 AND m.user_id = $2
    FOR UPDATE OF m
),
moved AS (
    UPDATE conversation_members m SET last_read_seq = $3
    FROM current
    WHERE m.conversation_id = $1 AND m.user_id = $2
      AND $3 > current.last_read_seq AND $3 <= current.last_seq
    RETURNING m.last_read_seq
)
SELECT current.last_read_seq, current.last_seq, EXISTS (SELECT 1 FROM moved) AS moved
FROM current
"""


async def advance_read_marker(
    conn: DbConnection, conversation_id: int, user_id: int, seq: int
) -> tuple[int, bool]:
    """Move ``user_id``'s marker forward to ``seq``; returns (read_seq after, whether it moved).

    A seq at or below the current marker changes nothing and returns the current marker.
    Raises ApiError ``not_found`` when the user is not a member and ``invalid`` (field ``seq``)
    when ``seq`` is beyond the conversation's last message.
    """
    row = await conn.fetchrow(ADVANCE, conversation_id, user_id, seq)
    if row is None:
        raise conversation_not_found()
    if seq > row["last_seq"]:
        raise invalid("seq", f"is beyond the last message ({row['last_seq']})")
    if row["moved"]:
        return seq, True
    return int(row["last_read_seq"]), False


# Coalesced acks: one statement moves many markers forward, never backwards and never past the
# conversation's last message. The member rows are locked in (conversation, user) order first,
# the order message batches lock them in too, so a flush and a batch never deadlock.
ADVANCE_MANY = """
WITH x AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
        AS x(conversation_id, user_id, seq)
),
locked AS MATERIALIZED (
    SELECT m.conversation_id, m.user_id FROM conversation_members m
    JOIN x ON m.conversation_id = x.conversation_id AND m.user_id = x.user_id
    ORDER BY m.conversation_id, m.user_id
    FOR NO KEY UPDATE OF m
)
UPDATE conversation_members m
SET last_read_seq = GREATEST(m.last_read_seq, LEAST(x.seq, c.last_seq))
FROM x JOIN locked l ON l.conversation_id = x.conversation_id AND l.user_id = x.user_id,
     conversations c
WHERE m.conversation_id = x.conversation_id AND m.user_id = x.user_id
  AND c.id = x.conversation_id
"""


async def advance_read_markers(conn: DbConnection, markers: list[tuple[int, int, int]]) -> None:
    """Apply many ``(conversation_id, user_id, seq)`` acks in one round trip."""
    ordered = sorted(markers)
    await conn.execute(
        ADVANCE_MANY,
        [m[0] for m in ordered],
        [m[1] for m in ordered],
        [m[2] for m in ordered],
    )


async def members_read_markers(
    conn: DbConnection, conversation_id: int, user_id: int
) -> list[tuple[int, int]]:
    """Every member's ``(user_id, read_seq)`` when ``user_id`` is a member; [] when not."""
    rows = await conn.fetch(
        "SELECT m.user_id, m.last_read_seq FROM conversation_members m "
        "WHERE m.conversation_id = $1 AND EXISTS (SELECT 1 FROM conversation_members me "
        "WHERE me.conversation_id = $1 AND me.user_id = $2) ORDER BY m.user_id",
        conversation_id,
        user_id,
    )
    return [(row["user_id"], row["last_read_seq"]) for row in rows]
