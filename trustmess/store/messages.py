"""Writing messages: one statement appends a whole batch, assigning gapless per-conversation
seqs inside the database (group commit; see writer.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from trustmess.store.history import DbConnection


# Not frozen: built once per message on the hot path, where a frozen init costs 4x.
@dataclass(slots=True)
class NewMessage:
    """A message to append (already validated in shape)."""

    conversation_id: int
    sender_id: int
    client_msg_id: str
    body: str
    reply_to: int | None


# Not frozen: built once per message on the hot path, where a frozen init costs 4x.
@dataclass(slots=True)
class AppendResult:
    """One row of a batch's outcome: status is new, duplicate, not_member, blocked or
    bad_reply_to."""

    status: str
    id: int | None
    seq: int | None
    body: str | None  # None: a duplicate of a message deleted since
    reply_to: int | None
    created_at: datetime | None


# Per input row: a duplicate of a stored (conversation, sender, client_msg_id) returns the
# stored row; a sender who is not a member, a blocked direct conversation, or a reply_to that
# is not a stored seq is refused; the rest get seq = previous last_seq + their position among
# the batch's new rows of that conversation. Each conversation row is locked, so concurrent
# batches on other nodes queue behind it and seqs stay gapless in commit order. Locks are taken
# in one global order (conversations by id, then member rows by (conversation, user), as every
# other writer of these rows does): batches touching the same conversations in other orders,
# or a read-marker flush, queue instead of deadlocking (PostgreSQL breaks a deadlock only after
# 1 s). ``locked`` is MATERIALIZED so that its ordered FOR NO KEY UPDATE runs as written; the
# UPDATE joins it, so it touches no row before it is locked in that order. The sender's read
# marker is not moved here: the caller hands it to the coalesced marker flush (readbuffer.py),
# which costs one statement per flush interval instead of a locking UPDATE per batch.
APPEND_BATCH = """
WITH input AS (
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                         $6::bigint[])
        AS t(ord, conversation_id, sender_id, client_msg_id, body, reply_to_seq)
),
checked AS (
    SELECT i.*, e.id AS e_id, e.seq AS e_seq, e.body AS e_body,
        e.reply_to_seq AS e_reply_to_seq, e.created_at AS e_created_at,
        CASE
            WHEN e.id IS NOT NULL THEN 'duplicate'
            WHEN member.ok IS NULL THEN 'not_member'
            WHEN member.blocked THEN 'blocked'
            WHEN i.reply_to_seq IS NOT NULL AND replied.ok IS NULL THEN 'bad_reply_to'
            ELSE 'new'
        END AS status
    FROM input i
    -- LATERAL ... LIMIT 1: one index probe per row, whatever the planner's statistics say
    -- (a join here was planned as a scan of the whole table when they were stale).
    LEFT JOIN LATERAL (
        SELECT m.id, m.seq, m.body, m.reply_to_seq, m.created_at FROM messages m
        WHERE m.conversation_id = i.conversation_id AND m.sender_id = i.sender_id
            AND m.client_msg_id = i.client_msg_id
        LIMIT 1
    ) e ON true
    -- The conversation's blocked flag (a direct conversation with a block either way) comes
    -- with the membership probe: refusing those sends costs no statement of its own.
    LEFT JOIN LATERAL (
        SELECT true AS ok, c.blocked FROM conversation_members cm
        JOIN conversations c ON c.id = cm.conversation_id
        WHERE cm.conversation_id = i.conversation_id AND cm.user_id = i.sender_id
        LIMIT 1
    ) member ON true
    LEFT JOIN LATERAL (
        SELECT true AS ok FROM messages r
        WHERE i.reply_to_seq IS NOT NULL
            AND r.conversation_id = i.conversation_id AND r.seq = i.reply_to_seq
        LIMIT 1
    ) replied ON true
),
fresh AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.conversation_id ORDER BY c.ord) AS rn
    -- Not "status = 'new'": the planner would guess one row and join bumped by nested loop.
    FROM checked c WHERE c.status NOT IN ('duplicate', 'not_member', 'blocked', 'bad_reply_to')
),
counts AS (
    SELECT conversation_id, count(*) AS n FROM fresh GROUP BY conversation_id
),
locked AS MATERIALIZED (
    SELECT c.id FROM conversations c
    WHERE c.id IN (SELECT conversation_id FROM counts)
    ORDER BY c.id
    FOR NO KEY UPDATE
),
bumped AS (
    UPDATE conversations c SET last_seq = c.last_seq + counts.n, last_message_at = now()
    FROM counts JOIN locked l ON l.id = counts.conversation_id
    WHERE c.id = counts.conversation_id
    RETURNING c.id, c.last_seq - counts.n AS base
),
inserted AS (
    INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body, reply_to_seq)
    SELECT f.conversation_id, b.base + f.rn, f.sender_id, f.client_msg_id, f.body,
           f.reply_to_seq
    FROM fresh f JOIN bumped b ON b.id = f.conversation_id
    RETURNING conversation_id, seq, id, sender_id, client_msg_id, created_at
)
-- 'new' with nothing inserted: the conversation was deleted while this statement waited for
-- its row lock (the member rows went with it).
SELECT CASE WHEN c.status = 'new' AND n.id IS NULL THEN 'not_member' ELSE c.status END
           AS status,
       coalesce(n.id, c.e_id) AS id,
       coalesce(n.seq, c.e_seq) AS seq,
       -- A duplicate answers with the stored body: NULL if it was deleted meanwhile.
       CASE WHEN c.e_id IS NOT NULL THEN c.e_body ELSE c.body END AS body,
       CASE WHEN c.e_id IS NOT NULL THEN c.e_reply_to_seq ELSE c.reply_to_seq END
           AS reply_to_seq,
       coalesce(n.created_at, c.e_created_at) AS created_at
FROM checked c
LEFT JOIN inserted n ON n.conversation_id = c.conversation_id
    AND n.sender_id = c.sender_id AND n.client_msg_id = c.client_msg_id
ORDER BY c.ord
"""


# APPEND_BATCH for a batch of one, the everyday case (at 200 messages/s nearly every batch): the
# same outcomes, from scalar parameters, without the unnest, the window function, the counts
# and the ordered lock of several conversations (one conversation row is locked by the UPDATE
# itself). Backend CPU per statement on PostgreSQL 15: 230 µs against 335 µs for APPEND_BATCH
# with one row (bench/RESULTS.md, issue 20, fourth round). $5 is cast wherever it is used, so
# that every use has the one type.
APPEND_ONE = """
WITH checked AS (
    SELECT e.id AS e_id, e.seq AS e_seq, e.body AS e_body,
        e.reply_to_seq AS e_reply_to_seq, e.created_at AS e_created_at,
        CASE
            WHEN e.id IS NOT NULL THEN 'duplicate'
            WHEN member.ok IS NULL THEN 'not_member'
            WHEN member.blocked THEN 'blocked'
            WHEN $5::bigint IS NOT NULL AND replied.ok IS NULL THEN 'bad_reply_to'
            ELSE 'new'
        END AS status
    FROM (VALUES (1)) AS one(x)
    LEFT JOIN LATERAL (
        SELECT m.id, m.seq, m.body, m.reply_to_seq, m.created_at FROM messages m
        WHERE m.conversation_id = $1 AND m.sender_id = $2 AND m.client_msg_id = $3
        LIMIT 1
    ) e ON true
    LEFT JOIN LATERAL (
        SELECT true AS ok, c.blocked FROM conversation_members cm
        JOIN conversations c ON c.id = cm.conversation_id
        WHERE cm.conversation_id = $1 AND cm.user_id = $2
        LIMIT 1
    ) member ON true
    LEFT JOIN LATERAL (
        SELECT true AS ok FROM messages r
        WHERE $5::bigint IS NOT NULL AND r.conversation_id = $1 AND r.seq = $5::bigint
        LIMIT 1
    ) replied ON true
),
bumped AS (
    UPDATE conversations c SET last_seq = c.last_seq + 1, last_message_at = now()
    FROM checked k
    WHERE c.id = $1 AND k.status = 'new'
    RETURNING c.last_seq AS seq
),
inserted AS (
    INSERT INTO messages (conversation_id, seq, sender_id, client_msg_id, body, reply_to_seq)
    SELECT $1, b.seq, $2, $3, $4, $5::bigint FROM bumped b
    RETURNING id, seq, created_at
)
SELECT CASE WHEN c.status = 'new' AND n.id IS NULL THEN 'not_member' ELSE c.status END
           AS status,
       coalesce(n.id, c.e_id) AS id,
       coalesce(n.seq, c.e_seq) AS seq,
       CASE WHEN c.e_id IS NOT NULL THEN c.e_body ELSE $4::text END AS body,
       CASE WHEN c.e_id IS NOT NULL THEN c.e_reply_to_seq ELSE $5::bigint END AS reply_to_seq,
       coalesce(n.created_at, c.e_created_at) AS created_at
FROM checked c LEFT JOIN inserted n ON true
"""


async def append_messages(conn: DbConnection, batch: list[NewMessage]) -> list[AppendResult]:
    """Append ``batch`` in one statement; results are in input order.

    Keys (conversation, sender, client_msg_id) must be distinct within the batch.
    """
    if len(batch) == 1:
        m = batch[0]
        # fetch, not fetchrow: fetchrow's row limit ends the portal suspended instead of
        # complete (the statement still runs whole; the protocol exchange differs).
        [row] = await conn.fetch(
            APPEND_ONE, m.conversation_id, m.sender_id, m.client_msg_id, m.body, m.reply_to
        )
        return [AppendResult(*row)]
    # One pass over the batch, transposed into the statement's column arrays.
    columns = zip(
        *[(m.conversation_id, m.sender_id, m.client_msg_id, m.body, m.reply_to) for m in batch],
        strict=True,
    )
    rows = await conn.fetch(APPEND_BATCH, range(len(batch)), *columns)
    # The statement's columns are AppendResult's fields, in order.
    return [AppendResult(*row) for row in rows]
