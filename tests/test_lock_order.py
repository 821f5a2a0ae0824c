"""Lock order: message batches from several nodes, change entries and read-marker flushes run
concurrently on the same rows; each takes its row locks in one global order (conversations by
id, then member rows by (conversation, user)), so none can wait for another in a cycle.

PostgreSQL breaks a deadlock only after ``deadlock_timeout`` (1 s), a stall of every message of
both batches; the writer then retries, so a deadlock costs latency rather than messages, which is
why only a test that counts them can show the order holds.
"""

from __future__ import annotations

import asyncio
import random

import asyncpg

from tests.conftest import User
from trustmess.store.changes import NewChange, append_then_apply
from trustmess.store.messages import NewMessage, append_messages
from trustmess.store.readmarkers import advance_read_markers

ROUNDS = 60
CONVERSATIONS = 6


async def test_concurrent_batches_and_marker_flushes_never_deadlock(
    database_url: str, make_user, make_group
) -> None:
    users: list[User] = [await make_user() for _ in range(4)]
    cids = [await make_group(*users) for _ in range(CONVERSATIONS)]
    pool = await asyncpg.create_pool(database_url, min_size=7, max_size=7)
    deadlocks = 0
    counter = 0

    async def batches(worker: int) -> None:
        nonlocal deadlocks, counter
        rng = random.Random(worker)
        for _ in range(ROUNDS):
            order = rng.sample(cids, len(cids))  # every batch touches all, in another order
            batch = []
            for cid in order:
                counter += 1
                sender = rng.choice(users)
                batch.append(NewMessage(cid, sender.id, f"w{worker}-{counter}", "hi", None))
            async with pool.acquire() as conn:
                try:
                    await append_messages(conn, batch)
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

    async def flushes(worker: int) -> None:
        nonlocal deadlocks
        rng = random.Random(100 + worker)
        for _ in range(ROUNDS):
            markers = [(cid, u.id, 10**6) for cid in cids for u in users]
            rng.shuffle(markers)
            async with pool.acquire() as conn:
                try:
                    await advance_read_markers(conn, markers)
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

    async def mixed(worker: int) -> None:
        # The writer's path for a batch with changes: messages in some conversations, edits
        # (each an entry with a seq) in others, one transaction.
        nonlocal deadlocks, counter
        rng = random.Random(200 + worker)
        for _ in range(ROUNDS):
            order = rng.sample(cids, len(cids))
            half = len(order) // 2
            messages = []
            for cid in order[:half]:
                counter += 1
                messages.append(NewMessage(cid, users[1].id, f"m{worker}-{counter}", "hi", None))
            edits = [
                NewChange(cid, users[0].id, "edit", 1, None, body="edited") for cid in order[half:]
            ]
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await append_then_apply(conn, messages, edits, 0, 20)
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

    async with pool.acquire() as conn:  # seq 1 of every conversation: what the edits change
        await append_messages(
            conn, [NewMessage(cid, users[0].id, f"first-{cid}", "first", None) for cid in cids]
        )
    try:
        await asyncio.gather(
            *(batches(w) for w in range(3)),
            *(flushes(w) for w in range(2)),
            *(mixed(w) for w in range(2)),
        )
    finally:
        await pool.close()
    assert deadlocks == 0
    stored = await asyncpg.connect(database_url)
    try:
        total = await stored.fetchval("SELECT count(*) FROM messages")
    finally:
        await stored.close()
    # The first messages, every batch's, and the mixed batches' half.
    assert total == CONVERSATIONS + 3 * ROUNDS * CONVERSATIONS + 2 * ROUNDS * (CONVERSATIONS // 2)
