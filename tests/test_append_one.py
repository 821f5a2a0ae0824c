"""The writer's two append statements agree: a batch of one (APPEND_ONE, scalar parameters)
and the same row inside a larger batch (APPEND_BATCH) give the same outcome and store the same
thing, for every outcome a row can have."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from trustmess.store.messages import AppendResult, NewMessage, append_messages

# (case, the row to append as (sender, client_msg_id, body, reply_to), the status expected)
CASES = [
    ("new", ("alice", "fresh", "hello", None), "new"),
    ("new reply", ("alice", "fresh", "hello", 1), "new"),
    ("duplicate", ("alice", "first", "other body", None), "duplicate"),
    ("duplicate of a deleted", ("alice", "gone", "other body", None), "duplicate"),
    ("not a member", ("eve", "fresh", "hello", None), "not_member"),
    ("blocked", ("alice", "fresh", "hello", None), "blocked"),
    ("bad reply_to", ("alice", "fresh", "hello", 99), "bad_reply_to"),
]


async def outcome(
    db: asyncpg.Connection, cid: int, other: int, message: NewMessage, alone: bool
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], int]:
    """Append ``message`` (alone, or second in a batch of three), then read what it left,
    and roll it all back."""
    tx = db.transaction()
    await tx.start()
    try:
        if alone:
            [result] = await append_messages(db, [message])
        else:
            pad = [NewMessage(other, message.sender_id, f"pad{n}", "pad", None) for n in (1, 2)]
            results = await append_messages(db, [pad[0], message, pad[1]])
            assert [r.status for r in (results[0], results[2])] == ["new", "new"]
            result = results[1]
        rows = await db.fetch(
            "SELECT seq, sender_id, client_msg_id, body, reply_to_seq FROM messages "
            "WHERE conversation_id = $1 ORDER BY seq",
            cid,
        )
        last_seq = await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", cid)
    finally:
        await tx.rollback()
    return shape(result), [tuple(r) for r in rows], last_seq


def shape(result: AppendResult) -> tuple[Any, ...]:
    """What must agree: the id and created_at of a new row differ between two inserts."""
    new = result.status == "new"
    return (
        result.status,
        result.seq,
        result.body,
        result.reply_to,
        (result.id is not None, result.created_at is not None) if new else result.id,
    )


@pytest.mark.parametrize(("case", "row", "status"), CASES, ids=[c[0] for c in CASES])
async def test_one_row_and_batch_statements_agree(
    db, make_user, make_group, case, row, status
) -> None:
    # As on the writer's own connections (runtime/pool.py).
    await db.execute("SET plan_cache_mode = force_generic_plan")
    alice, bob, eve = await make_user(), await make_user(), await make_user()
    users = {"alice": alice, "bob": bob, "eve": eve}
    cid = await make_group(alice, bob)
    other = await make_group(alice, bob, eve)
    for client_msg_id in ("first", "gone"):
        [stored] = await append_messages(
            db, [NewMessage(cid, alice.id, client_msg_id, f"body of {client_msg_id}", None)]
        )
        assert stored.status == "new"
    await db.execute(
        "UPDATE messages SET body = NULL, deleted_at = now() "
        "WHERE conversation_id = $1 AND client_msg_id = 'gone'",
        cid,
    )
    if case == "blocked":
        await db.execute("UPDATE conversations SET blocked = true WHERE id = $1", cid)
    sender, client_msg_id, body, reply_to = row
    message = NewMessage(cid, users[sender].id, client_msg_id, body, reply_to)

    alone = await outcome(db, cid, other, message, alone=True)
    in_batch = await outcome(db, cid, other, message, alone=False)

    assert alone == in_batch
    result, rows, last_seq = alone
    assert result[0] == status
    if status == "new":
        assert result[1] == last_seq == 3 and rows[-1] == (3, alice.id, "fresh", "hello", reply_to)
    else:
        assert last_seq == 2 and len(rows) == 2
    if case == "duplicate":
        assert result[1:4] == (1, "body of first", None)
    if case == "duplicate of a deleted":
        assert result[1:4] == (2, None, None)
