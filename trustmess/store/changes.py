"""Changing messages: edits, deletions for everyone and reactions, each an entry of the
conversation's stream with the next seq (see schema.message_changes).

A batch of changes runs in one transaction (the writer's, after the batch's new messages):
first every conversation it touches is locked, the lock a message append takes too, then each
change is checked and applied by one statement. Reading after the lock is held means each
change sees every entry committed before it, from any node, so two nodes editing and deleting
one message at once are applied one after the other, in seq order, and end in the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustmess.models import Change
from trustmess.store.history import DbConnection, entries_in_range
from trustmess.store.messages import NewMessage, append_messages


# Not frozen: built once per command, like NewMessage.
@dataclass(slots=True)
class NewChange:
    """A change to apply (already validated in shape): ``body`` for an edit, ``emoji`` for a
    reaction."""

    conversation_id: int
    user_id: int
    kind: str  # edit | delete | react | unreact
    target_seq: int
    client_change_id: str | None
    body: str | None = None
    emoji: str | None = None


@dataclass(slots=True)
class ChangeOutcome:
    """One change's outcome. ``status``: new (``change`` is the entry), duplicate (``change``
    is the entry stored under the same client_change_id), noop (nothing to change), or why it
    was refused: not_member, blocked, no_message, deleted, not_sender, not_allowed,
    window_closed, too_many_reactions."""

    status: str
    change: Change | None
    # A react of an emoji the user already has on the message: the entry that added it.
    existing_seq: int | None = None


LOCK_CONVERSATIONS = """
SELECT id FROM conversations WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE
"""

# $1 kind, $2 conversation, $3 user, $4 target seq, $5 client_change_id, $6 body (edit),
# $7 emoji (reactions), $8 the edit window in seconds (0: none), $9 most distinct emoji per
# message. Every data-changing CTE runs only when ``bumped`` took a seq, i.e. status is 'new'.
APPLY_CHANGE = """
WITH dup AS (
    SELECT seq FROM message_changes
    WHERE $5::text IS NOT NULL AND conversation_id = $2::bigint AND user_id = $3::bigint
        AND client_change_id = $5::text
),
member AS (
    SELECT cm.role, c.kind, c.blocked FROM conversation_members cm
    JOIN conversations c ON c.id = cm.conversation_id
    WHERE cm.conversation_id = $2::bigint AND cm.user_id = $3::bigint
),
target AS (
    SELECT sender_id, body, created_at, deleted_at FROM messages
    WHERE conversation_id = $2::bigint AND seq = $4::bigint
),
reactions AS (
    SELECT count(DISTINCT emoji) AS kinds,
           count(*) FILTER (WHERE emoji = $7::text) AS n,
           coalesce(bool_or(emoji = $7::text AND user_id = $3::bigint), false) AS mine,
           max(seq) FILTER (WHERE emoji = $7::text AND user_id = $3::bigint) AS mine_seq
    FROM message_reactions WHERE conversation_id = $2::bigint AND target_seq = $4::bigint
),
verdict AS (
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM dup) THEN 'duplicate'
        WHEN m.role IS NULL THEN 'not_member'
        -- A blocked direct conversation takes no new words: no edits, no reactions (deleting
        -- one's messages and taking reactions back stay possible).
        WHEN m.blocked AND $1::text IN ('edit', 'react') THEN 'blocked'
        WHEN t.sender_id IS NULL THEN 'no_message'
        WHEN t.deleted_at IS NOT NULL AND $1::text = 'delete' THEN 'noop'
        WHEN t.deleted_at IS NOT NULL THEN 'deleted'
        WHEN $1::text = 'edit' AND t.sender_id <> $3::bigint THEN 'not_sender'
        WHEN $1::text = 'edit' AND $8::float8 > 0
            AND t.created_at < now() - make_interval(secs => $8::float8) THEN 'window_closed'
        WHEN $1::text = 'edit' AND t.body = $6::text THEN 'noop'
        WHEN $1::text = 'delete' AND t.sender_id <> $3::bigint
            AND NOT (m.kind = 'group' AND m.role = 'owner') THEN 'not_allowed'
        WHEN $1::text = 'react' AND r.mine THEN 'noop'
        WHEN $1::text = 'react' AND r.n = 0 AND r.kinds >= $9::int THEN 'too_many_reactions'
        WHEN $1::text = 'unreact' AND NOT r.mine THEN 'noop'
        ELSE 'new'
    END AS status
    FROM reactions r LEFT JOIN member m ON true LEFT JOIN target t ON true
),
bumped AS (
    UPDATE conversations SET last_seq = last_seq + 1
    WHERE id = $2::bigint AND (SELECT status FROM verdict) = 'new'
    RETURNING last_seq AS seq
),
entry AS (
    INSERT INTO message_changes
        (conversation_id, seq, kind, target_seq, user_id, client_change_id, emoji)
    SELECT $2::bigint, b.seq, $1::text, $4::bigint, $3::bigint, $5::text, $7::text FROM bumped b
    RETURNING seq, created_at
),
edited AS (
    UPDATE messages SET body = $6::text, edited_at = now()
    WHERE $1::text = 'edit' AND conversation_id = $2::bigint AND seq = $4::bigint
        AND EXISTS (SELECT 1 FROM bumped)
    RETURNING edited_at
),
erased AS (
    UPDATE messages SET body = NULL, deleted_at = now()
    WHERE $1::text = 'delete' AND conversation_id = $2::bigint AND seq = $4::bigint
        AND EXISTS (SELECT 1 FROM bumped)
),
cleared AS (
    DELETE FROM message_reactions
    WHERE $1::text IN ('delete', 'unreact') AND conversation_id = $2::bigint
        AND target_seq = $4::bigint AND EXISTS (SELECT 1 FROM bumped)
        AND ($1::text = 'delete' OR (emoji = $7::text AND user_id = $3::bigint))
),
added AS (
    INSERT INTO message_reactions (conversation_id, target_seq, emoji, user_id, seq)
    SELECT $2::bigint, $4::bigint, $7::text, $3::bigint, b.seq FROM bumped b
    WHERE $1::text = 'react'
)
SELECT v.status, e.seq, e.created_at, (SELECT seq FROM dup) AS dup_seq, r.mine_seq,
       (SELECT edited_at FROM edited) AS edited_at,
       r.n + CASE $1::text WHEN 'react' THEN 1 WHEN 'unreact' THEN -1 ELSE 0 END AS count
FROM verdict v CROSS JOIN reactions r LEFT JOIN entry e ON true
"""


async def append_then_apply(
    conn: DbConnection,
    messages: list[NewMessage],
    changes: list[NewChange],
    edit_window_s: float,
    max_reactions: int,
) -> list[Any]:
    """Append ``messages``, then apply ``changes``; call inside a transaction. Results in
    that order.

    Every conversation of either is locked first, in id order: appending first and then
    locking the changes' conversations would hold one conversation while waiting for a
    smaller one, and another node doing the opposite would deadlock with this one.
    """
    touched = {m.conversation_id for m in messages} | {c.conversation_id for c in changes}
    await conn.execute(LOCK_CONVERSATIONS, sorted(touched))
    results: list[Any] = await append_messages(conn, messages) if messages else []
    return results + await apply_changes(conn, changes, edit_window_s, max_reactions)


async def apply_changes(
    conn: DbConnection, batch: list[NewChange], edit_window_s: float, max_reactions: int
) -> list[ChangeOutcome]:
    """Apply ``batch`` in order; call inside a transaction. Results are in input order."""
    await conn.execute(LOCK_CONVERSATIONS, sorted({c.conversation_id for c in batch}))
    # One statement per change, pipelined: sent together, run one after the other (each sees
    # the changes before it), one round trip for the batch. One row per change, in order.
    rows = await conn.fetchmany(
        APPLY_CHANGE,
        [
            (
                c.kind,
                c.conversation_id,
                c.user_id,
                c.target_seq,
                c.client_change_id,
                c.body,
                c.emoji,
                edit_window_s,
                max_reactions,
            )
            for c in batch
        ],
    )
    if len(rows) != len(batch):
        raise RuntimeError(f"{len(batch)} changes applied, {len(rows)} results")
    outcomes = []
    for c, row in zip(batch, rows, strict=True):
        status = row["status"]
        change = None
        if status == "new":
            change = Change(
                conversation_id=c.conversation_id,
                seq=row["seq"],
                kind=c.kind,
                target_seq=c.target_seq,
                user_id=c.user_id,
                client_change_id=c.client_change_id,
                created_at=row["created_at"],
                body=c.body,
                edited_at=row["edited_at"],
                emoji=c.emoji,
                count=row["count"],
            )
        elif status == "duplicate":
            seq = row["dup_seq"]
            [stored] = await entries_in_range(conn, c.conversation_id, seq - 1, seq)
            assert isinstance(stored, Change)
            change = stored
        existing = row["mine_seq"] if status == "noop" and c.kind == "react" else None
        outcomes.append(ChangeOutcome(status, change, existing))
    return outcomes
