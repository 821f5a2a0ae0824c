"""Group commit (writer.py): batches of messages from many senders get gapless seqs, every
answer matches its stored row, and one bad row does not lose or mis-answer the rest."""

from __future__ import annotations

import asyncio

import pytest

from trustmess.appkeys import WRITER
from trustmess.errors import ApiError
from trustmess.store.messages import NewMessage


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


async def test_resubmitting_a_stored_message_is_a_duplicate_across_batches(
    client, make_user, make_group
) -> None:
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    writer = client.app[WRITER]
    first = await writer.submit(NewMessage(cid, alice.id, "x", "hello", None))
    again = await writer.submit(NewMessage(cid, alice.id, "x", "changed body", None))
    assert again.duplicate and again.message.id == first.message.id
    assert again.message.body == "hello" and again.message.seq == 1


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
