"""Message history over HTTP (``GET /conversations/{id}/messages``): newest page, paging back with
``before`` and forward with ``after``, ``has_more``, bounds on the query, and the store's seq-range
reads the socket gateway reuses."""

from __future__ import annotations

import re

import pytest

from trustmess.store.history import (
    entries_after_many,
    latest_messages,
    messages_before,
    messages_in_range,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def page(client, user, conversation_id: int, **params) -> dict:
    resp = await client.get(
        f"/conversations/{conversation_id}/messages",
        params={k: str(v) for k, v in params.items()},
        headers=user.headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    return body


def seqs(body: dict) -> list[int]:
    return [message["seq"] for message in body["items"]]


async def test_empty_conversation(client, chat) -> None:
    alice, _, cid = chat
    assert await page(client, alice, cid) == {"items": [], "has_more": False}
    assert await page(client, alice, cid, after=0) == {"items": [], "has_more": False}
    assert await page(client, alice, cid, before=1) == {"items": [], "has_more": False}


async def test_message_objects(client, chat, db) -> None:
    alice, bob, cid = chat
    resp = await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": "first", "body": "  Hello, ünïcode 🎉  "},
        headers=bob.headers,
    )
    assert resp.status == 201
    resp = await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": "second", "body": "reply", "reply_to": 1},
        headers=alice.headers,
    )
    assert resp.status == 201
    body = await page(client, alice, cid)
    first, second = body["items"]
    stored_id = await db.fetchval("SELECT id FROM messages WHERE seq = 1")
    assert first == {
        "id": stored_id,
        "conversation_id": cid,
        "seq": 1,
        "sender_id": bob.id,
        "body": "Hello, ünïcode 🎉",
        "reply_to": None,
        "client_msg_id": "first",
        "created_at": first["created_at"],
        "reactions": [],
    }
    assert TIMESTAMP.match(first["created_at"])
    assert (second["seq"], second["reply_to"], second["sender_id"]) == (2, 1, alice.id)


async def test_latest_page_and_default_limit(client, chat, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 120)
    body = await page(client, alice, cid)
    assert seqs(body) == list(range(71, 121))
    assert body["has_more"] is True
    body = await page(client, alice, cid, limit=120)
    assert seqs(body) == list(range(1, 121))
    assert body["has_more"] is False
    body = await page(client, alice, cid, limit=200)
    assert seqs(body) == list(range(1, 121))


async def test_paging_backwards_over_500_returns_each_once(client, chat, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 500)
    pages = [await page(client, alice, cid, limit=73)]
    while pages[-1]["has_more"] and len(pages) < 20:
        oldest = seqs(pages[-1])[0]
        pages.append(await page(client, alice, cid, limit=73, before=oldest))
    # ceil(500 / 73) pages: only the last one is short and says there is no more.
    assert [len(p["items"]) for p in pages] == [73] * 6 + [62]
    assert [p["has_more"] for p in pages] == [True] * 6 + [False]
    collected = [seq for p in reversed(pages) for seq in seqs(p)]
    assert collected == list(range(1, 501))


async def test_paging_forwards_over_500_returns_each_once(client, chat, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 500)
    pages = [await page(client, alice, cid, after=0, limit=50)]
    while pages[-1]["has_more"] and len(pages) < 20:
        newest = seqs(pages[-1])[-1]
        pages.append(await page(client, alice, cid, after=newest, limit=50))
    # Exactly 50 left after 450: the last page is full and has_more is already false.
    assert [len(p["items"]) for p in pages] == [50] * 10
    assert [p["has_more"] for p in pages] == [True] * 9 + [False]
    assert [seq for p in pages for seq in seqs(p)] == list(range(1, 501))


@pytest.mark.parametrize(
    ("params", "expected", "has_more"),
    [
        ({"before": 1}, [], False),
        ({"before": 2}, [1], False),
        ({"before": 5, "limit": 3}, [2, 3, 4], True),
        ({"before": 4, "limit": 3}, [1, 2, 3], False),
        ({"before": 10**6, "limit": 2}, [9, 10], True),
        ({"after": 10}, [], False),
        ({"after": 10**6}, [], False),
        ({"after": 0, "limit": 10}, list(range(1, 11)), False),
        ({"after": 0, "limit": 9}, list(range(1, 10)), True),
        ({"after": 7}, [8, 9, 10], False),
        ({"limit": 1}, [10], True),
    ],
)
async def test_page_edges(client, chat, insert_messages, params, expected, has_more) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 10)
    body = await page(client, alice, cid, **params)
    assert (seqs(body), body["has_more"]) == (expected, has_more)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("before=x", "before"),
        ("before=-1", "before"),
        ("before=2.0", "before"),
        ("after=", "after"),
        ("after=-1", "after"),
        ("after=99999999999999999999", "after"),
        ("before=5&after=1", "after"),
        ("before=9223372036854775808", "before"),
        ("after=" + chr(0x0661), "after"),  # ARABIC-INDIC DIGIT ONE
        ("after=%201", "after"),
        ("limit=1_0", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        # int() would take all of these; the API takes plain ASCII digits only.
        ("limit=%205", "limit"),
        ("limit=5%20", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=1_0", "limit"),
        ("limit=%D9%A5", "limit"),  # ARABIC-INDIC DIGIT FIVE
        ("before=0x10", "before"),
        ("after=%E2%80%8B7", "after"),  # a zero-width space first
        ("after=" + "9" * 5000, "after"),  # beyond int()'s digit limit: still a clean 422
    ],
)
async def test_bad_query_is_422(client, chat, query, field) -> None:
    alice, _, cid = chat
    resp = await client.get(f"/conversations/{cid}/messages?{query}", headers=alice.headers)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", field)


async def test_non_member_gets_404(client, chat, make_user, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 3)
    mallory = await make_user()
    hidden = await client.get(f"/conversations/{cid}/messages", headers=mallory.headers)
    missing = await client.get("/conversations/424242/messages", headers=mallory.headers)
    assert hidden.status == missing.status == 404
    assert await hidden.json() == await missing.json()
    resp = await client.get("/conversations/nope/messages", headers=alice.headers)
    assert resp.status == 404


async def test_history_of_one_conversation_only(client, chat, insert_messages, make_group) -> None:
    alice, bob, cid = chat
    other = await make_group(alice, bob)
    await insert_messages(cid, bob.id, 3)
    await insert_messages(other, alice.id, 5)
    body = await page(client, alice, cid)
    assert {m["conversation_id"] for m in body["items"]} == {cid}
    assert seqs(body) == [1, 2, 3]


async def test_store_reads_for_the_gateway(chat, db, insert_messages, make_group) -> None:
    alice, bob, cid = chat
    other = await make_group(alice, bob)
    await insert_messages(cid, bob.id, 10)
    await insert_messages(other, alice.id, 3)
    ranges = [(cid, 3), (other, 0), (cid, 8), (other, 3)]
    found = await entries_after_many(db, ranges, 4)
    after = found[(cid, 3)]
    assert [m.seq for m in after] == [4, 5, 6, 7]
    assert after[0].conversation_id == cid and after[0].sender_id == bob.id
    assert after[0].body == "message 4" and after[0].client_msg_id == "sql-4"
    assert [m.seq for m in found[(cid, 8)]] == [9, 10]
    assert [(m.conversation_id, m.seq) for m in found[(other, 0)]] == [
        (other, s) for s in (1, 2, 3)
    ]
    assert found[(other, 3)] == []
    assert [m.seq for m in await messages_in_range(db, cid, 2, 5)] == [3, 4, 5]
    assert await messages_in_range(db, cid, 5, 5) == []
    assert [m.seq for m in await messages_before(db, cid, 4, 2)] == [2, 3]
    assert [m.seq for m in await latest_messages(db, cid, 3)] == [8, 9, 10]
