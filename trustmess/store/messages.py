"""Writing messages: one statement appends a whole batch, assigning gapless per-conversation
seqs inside the database (group commit; see writer.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from trustmess.store.history import DbConnection


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append (already validated in shape)."""

    conversation_id: int
    sender_id: int
    client_msg_id: str
    body: str
    reply_to: int | None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """One row of a batch's outcome: status is new, duplicate, not_member or bad_reply_to."""

    status: str
    id: int | None
    seq: int | None
    body: str
    reply_to: int | None
    created_at: datetime | None


# Per input row: a duplicate of a stored (conversation, sender, client_msg_id) returns the
# stored row; a sender who is not a member or a reply_to that is not a stored seq is refused;
# the rest get seq = previous last_seq + their position among the batch's new rows of that
# conversation. The UPDATE locks each conversation row, so concurrent batches on other nodes
# queue behind it and seqs stay gapless in commit order.
APPEND_BATCH = """
WITH input AS (
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                         $6::bigint[])
        AS t(ord, conversation_id, sender_id, client_msg_id, body, reply_to_seq)
),
existing AS (
    SELECT i.ord, m.id, m.seq, m.body, m.reply_to_seq, m.created_at
    FROM input i
    JOIN messages m ON m.conversation_id = i.conversation_id
        AND m.sender_id = i.sender_id AND m.client_msg_id = i.client_msg_id
),
checked AS (
    SELECT i.*,
        CASE
            WHEN e.ord IS NOT NULL THEN 'duplicate'
            WHEN NOT EXISTS (
                SELECT 1 FROM conversation_members cm
                WHERE cm.conversation_id = i.conversation_id AND cm.user_id = i.sender_id
            ) THEN 'not_member'
            WHEN i.reply_to_seq IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM messages r
                WHERE r.conversation_id = i.conversation_id AND r.seq = i.reply_to_seq
            ) THEN 'bad_reply_to'
            ELSE 'new'
        END AS status
    FROM input i LEFT JOIN existing e ON e.ord = i.ord
),
fresh AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.conversation_id ORDER BY c.ord) AS rn
    FROM checked c WHERE c.status = 'new'
),
counts AS (
    SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id
),
bumped AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n, last_message_at = now()
    FROM counts WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq - counts.n AS base
),
inserted AS (
    INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body, reply_to_seq)
    SELECT f.conversation_id, b.base + f.rn, f.sender_id, f.client_msg_id, f.body,
           f.reply_to_seq
    FROM fresh f JOIN bumped b ON b.id = f.conversation_id
    RETURNING conversation_id, seq, id, sender_id, client_msg_id, created_at
),
marks AS (
    UPDATE conversation_members cm SET last_read_seq = GREATEST(cm.last_read_seq, x.seq)
    FROM (SELECT conversation_id, sender_id, max(seq) AS seq FROM inserted GROUP BY 1, 2) x
    WHERE cm.conversation_id = x.conversation_id AND cm.user_id = x.sender_id
)
SELECT c.ord, c.status,
       coalesce(n.id, e.id) AS id,
       coalesce(n.seq, e.seq) AS seq,
       coalesce(e.body, c.body) AS body,
       CASE WHEN e.ord IS NOT NULL THEN e.reply_to_seq ELSE c.reply_to_seq END AS reply_to_seq,
       coalesce(n.created_at, e.created_at) AS created_at
FROM checked c
LEFT JOIN existing e ON e.ord = c.ord
LEFT JOIN inserted n ON n.conversation_id = c.conversation_id
    AND n.sender_id = c.sender_id AND n.client_msg_id = c.client_msg_id
ORDER BY c.ord
"""


async def append_messages(conn: DbConnection, batch: list[NewMessage]) -> list[AppendResult]:
    """Append ``batch`` in one statement; results are in input order.

    Keys (conversation, sender, client_msg_id) must be distinct within the batch.
    """
    rows = await conn.fetch(
        APPEND_BATCH,
        list(range(len(batch))),
        [m.conversation_id for m in batch],
        [m.sender_id for m in batch],
        [m.client_msg_id for m in batch],
        [m.body for m in batch],
        [m.reply_to for m in batch],
    )
    return [
        AppendResult(
            status=row["status"],
            id=row["id"],
            seq=row["seq"],
            body=row["body"],
            reply_to=row["reply_to_seq"],
            created_at=row["created_at"],
        )
        for row in rows
    ]
