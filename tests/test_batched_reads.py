"""Reads that arrive together share a statement (store/batching.py), and what a batch of joins
reads (store/joins.py): the catch-up of a node that takes over another node's sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from tests.conftest import GroupFactory, MessageInserter, UserFactory, eventually
from trustmess.store.activeusers import active_flags
from trustmess.store.batching import BatchedLookup
from trustmess.store.history import DbConnection
from trustmess.store.joins import JoinRequest, read_joins


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


class Recorder:
    """``active_flags`` that records each batch it reads, and how many ran at once."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_next = False

    async def __call__(self, conn: DbConnection, keys: Sequence[int]) -> list[bool]:
        self.batches.append(list(keys))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.fail_next:
                self.fail_next = False
                await conn.fetch("SELECT no_such_column FROM users")
            # A round trip long enough for the other batches to be started meanwhile.
            await conn.fetch("SELECT pg_sleep(0.02)")
            return await active_flags(conn, keys)
        finally:
            self.in_flight -= 1


async def test_lookups_asked_together_share_one_statement(
    pool: asyncpg.Pool, make_user: UserFactory, db: asyncpg.Connection
) -> None:
    alice, bob = await make_user(), await make_user()
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", bob.id)
    recorder = Recorder()
    lookup = BatchedLookup(pool, recorder)
    keys = [alice.id, bob.id, 10**9] * 40
    found = await asyncio.gather(*(lookup.get(key) for key in keys))
    assert found == [True, False, False] * 40
    assert recorder.batches == [keys]
    # Alone, a lookup is still one statement.
    assert await lookup.get(alice.id) is True
    assert recorder.batches[1:] == [[alice.id]]


async def test_a_burst_is_split_into_batches_read_side_by_side(
    pool: asyncpg.Pool, make_user: UserFactory
) -> None:
    alice = await make_user()
    recorder = Recorder()
    lookup = BatchedLookup(pool, recorder, batch_max=10, concurrency=3)
    found = await asyncio.gather(*(lookup.get(alice.id) for _ in range(55)))
    assert found == [True] * 55
    assert sorted(len(batch) for batch in recorder.batches) == [5, 10, 10, 10, 10, 10]
    assert recorder.most_in_flight == 3


async def test_a_failed_batch_fails_its_waiters_and_the_next_one_runs(
    pool: asyncpg.Pool, make_user: UserFactory
) -> None:
    alice = await make_user()
    recorder = Recorder()
    recorder.fail_next = True
    lookup = BatchedLookup(pool, recorder)
    failed = await asyncio.gather(*(lookup.get(alice.id) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(e, asyncpg.UndefinedColumnError) for e in failed), failed
    assert await lookup.get(alice.id) is True


async def test_a_waiter_that_gives_up_leaves_the_others_their_answer(
    pool: asyncpg.Pool, make_user: UserFactory
) -> None:
    alice = await make_user()
    lookup = BatchedLookup(pool, Recorder())
    gone, kept = lookup.get(alice.id), lookup.get(alice.id)
    gone.cancel()
    assert await asyncio.wait_for(kept, 5) is True


async def test_close_cancels_what_waits(pool: asyncpg.Pool, make_user: UserFactory) -> None:
    alice = await make_user()
    recorder = Recorder()
    lookup = BatchedLookup(pool, recorder, concurrency=1)
    first = lookup.get(alice.id)
    await eventually(lambda: recorder.in_flight, what="the first batch in flight")
    second = lookup.get(alice.id)
    await lookup.close()
    assert first.cancelled() and second.cancelled()
    assert lookup.get(alice.id).cancelled()  # and what is asked for after it


async def test_read_joins_positions_and_replays(
    db: asyncpg.Connection,
    make_user: UserFactory,
    make_group: GroupFactory,
    insert_messages: MessageInserter,
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await make_group(alice, bob)
    other = await make_group(alice, carol)
    await insert_messages(group, alice.id, 8)
    await db.execute(
        "UPDATE conversation_members SET last_read_seq = 5 WHERE conversation_id = $1 "
        "AND user_id = $2",
        group,
        bob.id,
    )
    # An edit of seq 2 is entry 9 of the stream.
    await db.execute("UPDATE conversations SET last_seq = 9 WHERE id = $1", group)
    await db.execute(
        "UPDATE messages SET body = 'edited', edited_at = now() "
        "WHERE conversation_id = $1 AND seq = 2",
        group,
    )
    await db.execute(
        "INSERT INTO message_changes (conversation_id, seq, kind, target_seq, user_id, "
        "client_change_id) VALUES ($1, 9, 'edit', 2, $2, 'e-1')",
        group,
        alice.id,
    )
    requests = [
        JoinRequest(group, alice.id, None),  # from the present
        JoinRequest(group, bob.id, 6),  # resumes: 7, 8 and the edit
        JoinRequest(group, alice.id, 6),  # the same range, read once
        JoinRequest(group, bob.id, 1),  # too far behind for a limit of 4
        JoinRequest(group, carol.id, 0),  # not a member
        JoinRequest(other, carol.id, 0),  # nothing missed
        JoinRequest(group, bob.id, 9),  # up to date
    ]
    reads = await read_joins(db, requests, replay_limit=4)
    present, bob_resumes, alice_resumes, too_far, stranger, empty, current = reads
    assert present is not None and (present.last_seq, present.resumed) == (9, False)
    assert present.replay == []
    assert bob_resumes is not None and bob_resumes.read_seq == 5 and bob_resumes.resumed
    assert [entry.seq for entry in bob_resumes.replay] == [7, 8, 9]
    edit = bob_resumes.replay[-1]
    assert getattr(edit, "kind", None) == "edit" and getattr(edit, "body", None) == "edited"
    assert alice_resumes is not None and alice_resumes.replay == bob_resumes.replay
    assert too_far is not None and not too_far.resumed and too_far.replay == []
    assert stranger is None
    assert empty is not None and empty.resumed and empty.replay == []
    assert current is not None and current.resumed and current.replay == []
