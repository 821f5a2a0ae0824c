"""Group commit (writer.py): batches of messages from many senders get gapless seqs, every
answer matches its stored row, and one bad row does not lose or mis-answer the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from tests.conftest import eventually
from trustmess.appkeys import WRITER
from trustmess.delivery.writer import MessageWriter, WriterClosed
from trustmess.errors import ApiError
from trustmess.models import ChangeResult, Message
from trustmess.store.changes import NewChange
from trustmess.store.messages import NewMessage, append_messages

EMOJI = ("👍", "🎉", "👀", "🔥")


async def test_concurrent_batches_are_gapless_and_answers_match_rows(
    client, make_user, make_group, db
) -> None:
    users = [await make_user() for _ in range(4)]
    groups = [await make_group(*users) for _ in range(3)]
    writer = client.app[WRITER]
    futures = [
        writer.submit(NewMessage(groups[n % 3], users[n % 4].id, f"c{n}", f"body {n}", None))
        for n in range(600)
    ]
    results = await asyncio.gather(*futures)
    assert writer.batches < 600, "messages were not batched"
    rows = {
        (r["conversation_id"], r["client_msg_id"]): r
        for r in await db.fetch("SELECT * FROM messages")
    }
    assert len(rows) == 600
    for n, result in enumerate(results):
        row = rows[(groups[n % 3], f"c{n}")]
        assert (result.message.id, result.message.seq) == (row["id"], row["seq"])
        assert result.message.body == row["body"] == f"body {n}"
        assert result.duplicate is False
    for cid in groups:
        seqs = sorted(r["seq"] for r in rows.values() if r["conversation_id"] == cid)
        assert seqs == list(range(1, 201))
    # Within one sender and conversation, seq follows submission order.
    by_sender: dict[tuple[int, int], list[int]] = {}
    for n, result in enumerate(results):
        by_sender.setdefault((groups[n % 3], users[n % 4].id), []).append(result.message.seq)
    assert all(seqs == sorted(seqs) for seqs in by_sender.values())


async def test_bad_row_does_not_sink_its_batch(client, make_user, make_group, db) -> None:
    alice, bob, eve = await make_user(), await make_user(), await make_user()
    cid = await make_group(alice, bob)
    writer = client.app[WRITER]
    # Submitted without yielding, so they share one batch. The NUL byte (which the views
    # refuse earlier) makes PostgreSQL reject the whole statement.
    good1 = writer.submit(NewMessage(cid, alice.id, "g1", "first", None))
    broken = writer.submit(NewMessage(cid, alice.id, "bad", "nul \x00 byte", None))
    outsider = writer.submit(NewMessage(cid, eve.id, "e1", "not a member", None))
    bad_reply = writer.submit(NewMessage(cid, bob.id, "r1", "reply", 99))
    twice_a = writer.submit(NewMessage(cid, bob.id, "same", "once", None))
    twice_b = writer.submit(NewMessage(cid, bob.id, "same", "once again", None))
    good2 = writer.submit(NewMessage(cid, bob.id, "g2", "second", None))
    with pytest.raises(ApiError) as failed:
        await broken
    assert failed.value.code == "internal"
    with pytest.raises(ApiError) as refused:
        await outsider
    assert refused.value.code == "not_found"
    with pytest.raises(ApiError) as bad:
        await bad_reply
    assert bad.value.code == "invalid" and bad.value.field == "reply_to"
    first, second = await good1, await good2
    a, b = await twice_a, await twice_b
    assert (a.duplicate, b.duplicate) == (False, True)
    assert a.message.id == b.message.id and b.message.body == "once"
    stored = [
        (r["seq"], r["client_msg_id"])
        for r in await db.fetch("SELECT seq, client_msg_id FROM messages ORDER BY seq")
    ]
    assert stored == [(1, "g1"), (2, "same"), (3, "g2")]
    assert (first.message.seq, a.message.seq, second.message.seq) == (1, 2, 3)


async def test_the_writer_keeps_one_connection_and_gives_it_back(
    database_url, db, make_user, make_group
) -> None:
    """Batches reuse the writer's connection; a failed batch returns it to the pool (which
    replaces a broken one), and close() returns it, so the pool closes without waiting."""
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    writer = MessageWriter(pool, lambda message: None)
    writer.start()

    def in_use() -> int:
        return pool.get_size() - pool.get_idle_size()

    pids = set()
    try:
        for n in range(3):
            await writer.submit(NewMessage(cid, alice.id, f"m{n}", "hello", None))
            assert in_use() == 1
            # The writer's connection: the one idle in this database besides ``db``.
            pids.add(
                await pool.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' "
                    "AND pid <> pg_backend_pid() AND pid <> ALL($1::int[])",
                    [db.get_server_pid()],
                )
            )
        assert len(pids) == 1, "one connection for every batch"
        # PostgreSQL refuses the NUL byte: the statement fails and the batch is retried.
        with pytest.raises(ApiError):
            await writer.submit(NewMessage(cid, alice.id, "bad", "nul \x00 byte", None))
        assert in_use() == 0, "a failed batch gives its connection back"
        stored = await writer.submit(NewMessage(cid, alice.id, "after", "still", None))
        assert stored.message.seq == 4
        assert in_use() == 1
    finally:
        await writer.close()
    assert in_use() == 0
    async with asyncio.timeout(5):
        await pool.close()


async def test_an_idle_writer_gives_its_connection_back(
    database_url, make_user, make_group
) -> None:
    alice = await make_user()
    cid = await make_group(alice)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    writer = MessageWriter(pool, lambda message: None, idle_release_s=0.2)
    writer.start()
    try:
        await writer.submit(NewMessage(cid, alice.id, "m1", "hello", None))
        assert pool.get_idle_size() == pool.get_size() - 1  # kept after the batch
        await eventually(lambda: pool.get_idle_size() == pool.get_size(), 5, "given back")
        second = await writer.submit(NewMessage(cid, alice.id, "m2", "again", None))
        assert second.message.seq == 2
    finally:
        await writer.close()
    async with asyncio.timeout(5):
        await pool.close()


async def test_a_dead_writer_gives_its_connection_back(database_url, make_user, make_group) -> None:
    """A writer task killed by a callback's BaseException still returns its connection, and
    close() after it returns at once: the pool then closes without waiting for it."""
    alice = await make_user()
    cid = await make_group(alice)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    writer = MessageWriter(pool, lambda message: None)
    writer.start()
    await writer.submit(NewMessage(cid, alice.id, "m1", "hello", None))

    def fatal(outcome: object) -> None:
        raise _Fatal

    writer.submit_with(NewMessage(cid, alice.id, "m2", "second", None), fatal)
    await eventually(lambda: pool.get_idle_size() == pool.get_size(), 5, "given back")
    async with asyncio.timeout(5):
        await writer.close()
        await pool.close()


async def test_the_commit_window_waits_only_when_the_rate_makes_it_pay(
    database_url, make_user, make_group
) -> None:
    """With a commit window, a lone message at a low rate is stored at once (waiting would
    only add latency); at a rate that brings another message within the window, the writer
    waits and both share one commit."""
    alice = await make_user()
    cid = await make_group(alice)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    writer = MessageWriter(pool, lambda message: None, window_s=30.0, rate_period_s=0.05)
    writer.start()
    try:
        # No rate yet: a 30 s window would time this out.
        async with asyncio.timeout(10):
            await writer.submit(NewMessage(cid, alice.id, "lone", "hello", None))
        # A burst sets the rate (30 messages in a few ms: far above one per 30 s)...
        await asyncio.gather(
            *(writer.submit(NewMessage(cid, alice.id, f"b{n}", "burst", None)) for n in range(30))
        )
        loop = asyncio.get_running_loop()
        period_over = loop.time() + 0.06
        await eventually(lambda: loop.time() >= period_over, 5, "the rate period ends")
        batches = writer.batches
        # ...so the next lone message waits for the window, and one sent meanwhile joins it.
        first = writer.submit(NewMessage(cid, alice.id, "w1", "first", None))
        await eventually(lambda: writer._queue.empty(), 5, "the writer holds the first")
        second = writer.submit(NewMessage(cid, alice.id, "w2", "second", None))
        assert not first.done()
        assert writer.batches == batches
    finally:
        # close() commits what waits in the window at once (it does not wait 30 s).
        async with asyncio.timeout(10):
            await writer.close()
    assert ((await first).message.seq, (await second).message.seq) == (32, 33)
    assert writer.batches == batches + 1
    async with asyncio.timeout(5):
        await pool.close()


async def test_resubmitting_a_stored_message_is_a_duplicate_across_batches(client, chat) -> None:
    alice, _, cid = chat
    writer = client.app[WRITER]
    first = await writer.submit(NewMessage(cid, alice.id, "x", "hello", None))
    again = await writer.submit(NewMessage(cid, alice.id, "x", "changed body", None))
    assert again.duplicate and again.message.id == first.message.id
    assert again.message.body == "hello" and again.message.seq == 1


async def test_a_resend_of_a_row_nobody_heard_of_publishes_it(client, db, connect, chat) -> None:
    """A row stored by an attempt whose answer (and so whose publish) was lost: the client's
    resend finds it as a duplicate, and that is when its receivers get it."""
    alice, bob, cid = chat
    b = await connect(bob)
    await b.request({"type": "join", "conversation_id": cid})
    [stored] = await append_messages(db, [NewMessage(cid, alice.id, "lost", "hello", None)])
    assert stored.status == "new"
    again = await client.app[WRITER].submit(NewMessage(cid, alice.id, "lost", "hello", None))
    assert again.duplicate
    event = await b.recv_type("message", timeout=5)
    assert (event["seq"], event["client_msg_id"]) == (1, "lost")
    # A duplicate the receiver already has is not delivered twice.
    await client.app[WRITER].submit(NewMessage(cid, alice.id, "lost", "hello", None))
    await client.app[WRITER].submit(NewMessage(cid, alice.id, "next", "after", None))
    assert (await b.recv_type("message", timeout=5))["client_msg_id"] == "next"


async def test_a_failing_answer_does_not_disturb_the_rest_of_its_batch(
    client, make_user, make_group, caplog
) -> None:
    alice = await make_user()
    cid = await make_group(alice)
    writer = client.app[WRITER]

    def explode(outcome: object) -> None:
        raise RuntimeError("the sender's callback broke")

    writer.submit_with(NewMessage(cid, alice.id, "x1", "first", None), explode)
    second = writer.submit(NewMessage(cid, alice.id, "x2", "second", None))
    result = await asyncio.wait_for(second, 5)
    assert result.message.seq == 2 and not result.duplicate
    assert "answering a sender failed" in caplog.text


async def test_messages_queued_behind_a_failing_batch_keep_submission_order(
    client, make_user, make_group
) -> None:
    alice = await make_user()
    cid = await make_group(alice)
    writer = client.app[WRITER]
    first = [
        writer.submit(NewMessage(cid, alice.id, "a1", "one", None)),
        writer.submit(NewMessage(cid, alice.id, "bad", "nul \x00 byte", None)),
        writer.submit(NewMessage(cid, alice.id, "a2", "two", None)),
    ]
    await asyncio.sleep(0)  # the writer takes these as one batch and sends it
    later = [writer.submit(NewMessage(cid, alice.id, f"b{n}", "later", None)) for n in range(3)]
    results = await asyncio.gather(*first, *later, return_exceptions=True)
    assert isinstance(results[1], ApiError)
    seqs = [r.message.seq for r in results if not isinstance(r, BaseException)]
    assert seqs == [1, 2, 3, 4, 5]


async def test_a_conversation_deleted_under_a_batch_is_not_found_for_its_rows(
    client, make_user, make_group, db, database_url
) -> None:
    alice = await make_user()
    doomed, other = await make_group(alice), await make_group(alice)
    writer = client.app[WRITER]
    deleter = await asyncpg.connect(database_url)
    try:
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute("DELETE FROM conversations WHERE id = $1", doomed)
        lost = writer.submit(NewMessage(doomed, alice.id, "x", "into the void", None))
        # The batch sees the conversation and its member, then waits for the deleter's lock on
        # it and finds it gone: nothing is stored for the row, and its sender is told so.
        await _until_waiting_for_a_lock(db)
        await deleting.commit()
    finally:
        await deleter.close()
    with pytest.raises(ApiError) as failed:
        await asyncio.wait_for(lost, 5)
    assert failed.value.code == "not_found"
    later = await asyncio.wait_for(writer.submit(NewMessage(other, alice.id, "y", "on", None)), 5)
    assert later.message.seq == 1 and not later.duplicate


async def test_a_batch_that_loses_a_deadlock_is_retried_whole(
    client, make_user, make_group, db, database_url, caplog
) -> None:
    """Another transaction (another node's batch, a read-marker flush) locks what the batch
    needs in the other order; PostgreSQL aborts the batch to break the deadlock. It is tried
    again as a whole, not row by row (a 1,024-row batch would take 1,024 round trips)."""
    alice = await make_user()
    first, second = sorted([await make_group(alice), await make_group(alice)])
    writer = client.app[WRITER]
    rival = await asyncpg.connect(database_url)
    try:
        racing = rival.transaction()
        await racing.start()
        await rival.execute("UPDATE conversations SET title = title WHERE id = $1", second)
        before = writer.batches
        sends = [
            writer.submit(NewMessage(cid, alice.id, f"d{n}", f"body {n}", None))
            for n, cid in enumerate([second, first, second])
        ]
        # The batch locks its conversations in id order: it holds the first and waits for the
        # second; the rival then asks for the first: a cycle, found after deadlock_timeout.
        await _until_waiting_for_a_lock(db)
        closing = asyncio.create_task(
            rival.execute("UPDATE conversations SET title = title WHERE id = $1", first)
        )
        await asyncio.wait_for(closing, 10)  # the batch was the one aborted
        await racing.commit()
    finally:
        await rival.close()
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 10)
    assert "DeadlockDetectedError" in caplog.text, "no deadlock happened"
    assert [r.message.seq for r in results if not isinstance(r, BaseException)] == [1, 1, 2]
    assert writer.batches == before + 1, "the batch was not retried as a whole"


class _Fatal(BaseException):
    """Gets past every ``except Exception``, as nothing should reach the writer task."""


async def test_a_dead_writer_fails_its_callers_instead_of_leaving_them_waiting(
    client, make_user, make_group, caplog
) -> None:
    alice = await make_user()
    cid = await make_group(alice)
    writer = client.app[WRITER]
    queued: list[asyncio.Future[object]] = []

    def fatal(outcome: object) -> None:
        # Queued while the writer is answering: still in the queue when the task ends.
        queued.append(writer.submit(NewMessage(cid, alice.id, "x3", "third", None)))
        raise _Fatal

    writer.submit_with(NewMessage(cid, alice.id, "x1", "first", None), fatal)
    same_batch = writer.submit(NewMessage(cid, alice.id, "x2", "second", None))
    with pytest.raises(ApiError) as unanswered:
        await asyncio.wait_for(same_batch, 5)
    assert unanswered.value.code == "internal"
    with pytest.raises(ApiError):
        await asyncio.wait_for(queued[0], 5)
    with pytest.raises(WriterClosed):
        writer.submit(NewMessage(cid, alice.id, "x4", "fourth", None))
    assert "message writer stopped" in caplog.text


async def test_closing_a_writer_that_dies_meanwhile_returns(client, make_user, make_group) -> None:
    alice = await make_user()
    cid = await make_group(alice)
    writer = client.app[WRITER]

    def fatal(outcome: object) -> None:
        raise _Fatal

    writer.submit_with(NewMessage(cid, alice.id, "z1", "first", None), fatal)
    await asyncio.wait_for(writer.close(), 5)  # the task ends with _Fatal; close still returns
    with pytest.raises(WriterClosed):
        writer.submit(NewMessage(cid, alice.id, "z2", "second", None))


@pytest.mark.parametrize("batch", [1, 3])
async def test_a_batch_stored_just_before_its_connection_dropped_is_answered_and_published(
    relayed_writer, make_user, make_group, db, batch
) -> None:
    relay, writer, published = relayed_writer
    alice = await make_user()
    cid = await make_group(alice)
    await asyncio.wait_for(writer.submit(NewMessage(cid, alice.id, "w", "warm-up", None)), 5)
    relay.cut_after_commit()
    sent = [writer.submit(NewMessage(cid, alice.id, f"m{n}", "body", None)) for n in range(batch)]
    results = await asyncio.wait_for(asyncio.gather(*sent), 10)
    assert relay.cut.is_set(), "the connection was not cut"
    assert await db.fetchval("SELECT count(*) FROM messages") == batch + 1
    assert [r.message.seq for r in results] == list(range(2, batch + 2))
    # Nobody heard of the lost attempt's rows: they are published after all.
    assert [m.seq for m in published] == list(range(1, batch + 2))


async def test_a_database_outage_fails_a_batch_at_once_not_row_by_row(
    relayed_writer, make_user, make_group
) -> None:
    relay, writer, published = relayed_writer
    alice = await make_user()
    cid = await make_group(alice)
    await asyncio.wait_for(writer.submit(NewMessage(cid, alice.id, "w", "warm-up", None)), 5)
    relay.go_down()
    opened = relay.connections
    sent = [writer.submit(NewMessage(cid, alice.id, f"m{n}", "body", None)) for n in range(50)]
    outcomes = await asyncio.wait_for(asyncio.gather(*sent, return_exceptions=True), 10)
    assert relay.connections - opened <= 2, "the batch was retried row by row"
    for outcome in outcomes:
        assert isinstance(outcome, ApiError), outcome
        # internal: "may or may not have taken effect; resend with the same client_msg_id".
        assert (outcome.status, outcome.code) == (503, "internal")
    relay.come_up()
    again = await asyncio.wait_for(writer.submit(NewMessage(cid, alice.id, "m0", "body", None)), 5)
    assert again.message.seq == 2 and not again.duplicate
    assert [m.seq for m in published] == [1, 2]


async def _until_waiting_for_a_lock(db: asyncpg.Connection, timeout: float = 5.0) -> None:
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    await eventually(lambda: db.fetchval(waiting), timeout, "a backend waiting for a lock")


class PostgresRelay:
    """A TCP relay between a pool and the test database that a test breaks on purpose.

    ``go_down`` cuts every open connection and drops new ones at once (counted in
    ``connections``) until ``come_up``; ``cut_after_commit`` lets the next statement commit,
    then cuts its connection before the client reads the outcome. Message framing is only
    followed while a cut is armed, so arm it between statements.
    """

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        self._host = query.get("host", [parts.hostname or "localhost"])[0]
        self._port = parts.port or int(query.get("port", ["5432"])[0])
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._armed = False
        self.cut = asyncio.Event()
        self.down = False
        self.connections = 0

    async def start(self) -> int:
        """Listen on a loopback port; returns it."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def cut_after_commit(self) -> None:
        self._armed = True

    def go_down(self) -> None:
        self.down = True
        for link in tuple(self._links):
            _abort(*link)

    def come_up(self) -> None:
        self.down = False

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        self.go_down()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.down:
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        if self._host.startswith("/"):
            up = await asyncio.open_unix_connection(f"{self._host}/.s.PGSQL.{self._port}")
        else:
            up = await asyncio.open_connection(self._host, self._port)
        link = (writer, up[1])
        self._links.add(link)
        try:
            await asyncio.gather(self._forward(reader, up[1]), self._backward(up[0], writer))
        finally:
            _abort(*link)
            self._links.discard(link)
            self._handlers.discard(task)

    async def _forward(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await _read(source):
            sink.write(data)
        sink.transport.abort()

    async def _backward(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        pending = b""
        completed = False
        while data := await _read(source):
            if not self._armed:
                sink.write(data)
                continue
            # Whole server messages (type byte, int32 length): pass them on up to the
            # statement's CommandComplete; its ReadyForQuery means it committed: cut there.
            pending += data
            while len(pending) >= 5 and len(pending) >= 1 + int.from_bytes(pending[1:5]):
                end = 1 + int.from_bytes(pending[1:5])
                message, pending = pending[:end], pending[end:]
                completed = completed or message[:1] == b"C"
                if completed and message[:1] == b"Z":
                    self._armed = False
                    self.cut.set()
                    sink.transport.abort()
                    return
                if not completed:
                    sink.write(message)
        sink.transport.abort()


async def _read(source: asyncio.StreamReader) -> bytes:
    try:
        return await source.read(65536)
    except ConnectionError:
        return b""


def _abort(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.transport.abort()


@pytest.fixture
async def relayed_writer(
    database_url: str,
) -> AsyncIterator[tuple[PostgresRelay, MessageWriter, list[Message]]]:
    """A writer of its own, on a one-connection pool that reaches the database through a
    ``PostgresRelay``; the list collects what it publishes."""
    relay = PostgresRelay(database_url)
    port = await relay.start()
    pool = await asyncpg.create_pool(
        database_url, host="127.0.0.1", port=port, ssl=False, min_size=1, max_size=1
    )
    published: list[Message] = []
    writer = MessageWriter(pool, published.append)
    writer.start()
    try:
        yield relay, writer, published
    finally:
        await writer.close()
        await pool.close()
        await relay.close()


async def test_a_batch_of_messages_and_changes_is_published_gapless_in_seq_order(
    client, make_user, make_group, db, connect
) -> None:
    """Changes share the batches with messages: one transaction appends the messages, then
    applies the changes; every entry of a conversation is published in seq order."""
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    watcher = await connect(bob)
    assert (await watcher.request({"type": "join", "conversation_id": cid}))["type"] == "reply"
    writer = client.app[WRITER]
    await writer.submit(NewMessage(cid, alice.id, "first", "first", None))
    futures: list[asyncio.Future[object]] = []
    for n in range(60):
        futures.append(writer.submit(NewMessage(cid, alice.id, f"m{n}", f"body {n}", None)))
        futures.append(writer.submit_change(NewChange(cid, alice.id, "edit", 1, None, f"v{n}")))
        futures.append(
            writer.submit_change(NewChange(cid, bob.id, "react", 1, f"r{n}", emoji=EMOJI[n % 4]))
        )
    batches = writer.batches
    results = await asyncio.gather(*futures)
    assert writer.batches - batches < len(futures), "changes were not batched"
    # 1 + 60 messages, 60 edits, 4 reacts: bob's later reacts repeat an emoji he already has
    # on the message, and are answered with the entry that added it.
    total = 1 + 60 + 60 + 4
    events = [await watcher.recv_where(lambda f: f["type"] in ("message", "change"))]
    while events[-1]["seq"] < total:
        events.append(await watcher.recv_where(lambda f: f["type"] in ("message", "change")))
    assert [e["seq"] for e in events] == list(range(1, total + 1))
    edits = [r for r in results[1::3] if isinstance(r, ChangeResult)]
    assert len({r.seq for r in edits}) == 60 and None not in {r.seq for r in edits}
    reacts = [r for r in results[2::3] if isinstance(r, ChangeResult)]
    assert len(reacts) == 60 and len({r.seq for r in reacts}) == 4
    assert await db.fetchval("SELECT body FROM messages WHERE seq = 1") == "v59"
    kinds = await db.fetch("SELECT kind, count(*) FROM message_changes GROUP BY kind")
    assert dict(kinds) == {"edit": 60, "react": 4}
    assert await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", cid) == total
