"""Sending over HTTP (``POST /conversations/{id}/messages``): 201 with the stored message, 200
with the original on an idempotent retry, gapless seqs under concurrency, and the body checks."""

from __future__ import annotations

import asyncio
import re

import pytest

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def send(client, user, conversation_id, payload):
    return await client.post(
        f"/conversations/{conversation_id}/messages", json=payload, headers=user.headers
    )


async def test_send_stores_and_returns_the_message(client, chat, db) -> None:
    alice, bob, cid = chat
    resp = await send(client, alice, cid, {"client_msg_id": "m-1", "body": "  hi there \n"})
    assert resp.status == 201
    message = await resp.json()
    row = await db.fetchrow("SELECT * FROM messages")
    assert message == {
        "id": row["id"],
        "conversation_id": cid,
        "seq": 1,
        "sender_id": alice.id,
        "body": "hi there",
        "reply_to": None,
        "client_msg_id": "m-1",
        "created_at": message["created_at"],
    }
    assert TIMESTAMP.match(message["created_at"])
    assert row["body"] == "hi there"
    # The sender has read its own message; the other member has one unread.
    mine = await (await client.get(f"/conversations/{cid}", headers=alice.headers)).json()
    assert (mine["last_seq"], mine["read_seq"], mine["unread"]) == (1, 1, 0)
    assert mine["last_message"] == message
    theirs = await (await client.get(f"/conversations/{cid}", headers=bob.headers)).json()
    assert (theirs["read_seq"], theirs["unread"]) == (0, 1)


async def test_retry_returns_the_original_with_200(client, chat, db) -> None:
    alice, _, cid = chat
    first = await send(client, alice, cid, {"client_msg_id": "once", "body": "hello"})
    assert first.status == 201
    retry = await send(client, alice, cid, {"client_msg_id": "once", "body": "hello again"})
    assert retry.status == 200
    assert await retry.json() == await first.json()
    assert await db.fetchval("SELECT count(*) FROM messages") == 1
    assert await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", cid) == 1


async def test_client_msg_id_is_scoped_to_the_sender(client, chat) -> None:
    alice, bob, cid = chat
    a = await send(client, alice, cid, {"client_msg_id": "same", "body": "from alice"})
    b = await send(client, bob, cid, {"client_msg_id": "same", "body": "from bob"})
    assert (a.status, b.status) == (201, 201)
    assert [(await a.json())["seq"], (await b.json())["seq"]] == [1, 2]


async def test_concurrent_sends_get_gapless_seqs(client, chat, db) -> None:
    alice, bob, cid = chat

    async def one(index: int) -> dict:
        user = alice if index % 2 else bob
        resp = await send(client, user, cid, {"client_msg_id": f"c{index}", "body": f"n{index}"})
        assert resp.status == 201
        return await resp.json()

    messages = await asyncio.gather(*(one(i) for i in range(50)))
    assert sorted(m["seq"] for m in messages) == list(range(1, 51))
    assert len({m["id"] for m in messages}) == 50
    stored = await db.fetch("SELECT seq, body FROM messages ORDER BY seq")
    by_seq = {m["seq"]: m["body"] for m in messages}
    assert [(row["seq"], row["body"]) for row in stored] == sorted(by_seq.items())
    assert await db.fetchval("SELECT last_seq FROM conversations WHERE id = $1", cid) == 50


async def test_concurrent_retries_store_once(client, chat, db) -> None:
    alice, _, cid = chat
    payload = {"client_msg_id": "dup", "body": "only once"}
    responses = await asyncio.gather(*(send(client, alice, cid, payload) for _ in range(10)))
    statuses = sorted(resp.status for resp in responses)
    assert statuses == [200] * 9 + [201]
    assert len({(await resp.json())["id"] for resp in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM messages") == 1


async def test_reply_to_an_existing_message(client, chat) -> None:
    alice, bob, cid = chat
    assert (await send(client, alice, cid, {"client_msg_id": "q", "body": "?"})).status == 201
    resp = await send(client, bob, cid, {"client_msg_id": "a", "body": "!", "reply_to": 1})
    assert resp.status == 201
    assert (await resp.json())["reply_to"] == 1
    resp = await send(client, bob, cid, {"client_msg_id": "b", "body": "!", "reply_to": 7})
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", "reply_to")


async def test_reply_to_a_message_of_another_conversation_is_invalid(
    client, chat, make_group
) -> None:
    alice, bob, cid = chat
    other = await make_group(alice, bob)
    assert (await send(client, alice, other, {"client_msg_id": "x", "body": "x"})).status == 201
    resp = await send(client, alice, cid, {"client_msg_id": "y", "body": "y", "reply_to": 1})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "reply_to"


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"body": "x"}, "invalid", "client_msg_id"),
        ({"client_msg_id": "", "body": "x"}, "invalid", "client_msg_id"),
        ({"client_msg_id": "has space", "body": "x"}, "invalid", "client_msg_id"),
        ({"client_msg_id": "x" * 65, "body": "x"}, "invalid", "client_msg_id"),
        ({"client_msg_id": 5, "body": "x"}, "invalid", "client_msg_id"),
        ({"client_msg_id": "m"}, "invalid", "body"),
        ({"client_msg_id": "m", "body": ""}, "invalid", "body"),
        ({"client_msg_id": "m", "body": " \n\t "}, "invalid", "body"),
        ({"client_msg_id": "m", "body": ["x"]}, "invalid", "body"),
        ({"client_msg_id": "m", "body": "x" * 4001}, "too_large", "body"),
        ({"client_msg_id": "m", "body": "\x1b[2Jcleared"}, "invalid", "body"),
        ({"client_msg_id": "m", "body": "gnp.\u202eexe"}, "invalid", "body"),
        ({"client_msg_id": "m", "body": "\u200b"}, "invalid", "body"),
        ({"client_msg_id": "m", "body": "x", "reply_to": 0}, "invalid", "reply_to"),
        ({"client_msg_id": "m", "body": "x", "reply_to": "1"}, "invalid", "reply_to"),
        ({"client_msg_id": "m", "body": "x", "reply_to": True}, "invalid", "reply_to"),
        ({"client_msg_id": "m", "body": "x", "to": 1}, "invalid", "to"),
    ],
)
async def test_bad_fields_are_422(client, chat, db, payload, code, field) -> None:
    alice, _, cid = chat
    resp = await send(client, alice, cid, payload)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert await db.fetchval("SELECT count(*) FROM messages") == 0


async def test_longest_body_is_accepted(client, chat) -> None:
    alice, _, cid = chat
    resp = await send(client, alice, cid, {"client_msg_id": "long", "body": "é" * 4000})
    assert resp.status == 201
    assert len((await resp.json())["body"]) == 4000


async def test_body_keeps_newlines_and_stores_crlf_as_lf(client, chat) -> None:
    alice, _, cid = chat
    body = "first\r\nsecond\n\tindented \U0001f469\u200d\U0001f4bb"
    resp = await send(client, alice, cid, {"client_msg_id": "lines", "body": body})
    assert resp.status == 201
    assert (await resp.json())["body"] == body.replace("\r\n", "\n")


async def test_body_that_is_not_an_object_is_400(client, chat) -> None:
    alice, _, cid = chat
    resp = await client.post(
        f"/conversations/{cid}/messages",
        data=b'["hi"]',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert resp.status == 400


async def test_non_member_gets_404(client, chat, make_user, db) -> None:
    mallory = await make_user()
    _, _, cid = chat
    payload = {"client_msg_id": "sneak", "body": "let me in"}
    hidden = await send(client, mallory, cid, payload)
    missing = await send(client, mallory, 777777, payload)
    assert hidden.status == missing.status == 404
    assert await hidden.json() == await missing.json()
    assert await db.fetchval("SELECT count(*) FROM messages") == 0
    resp = await client.post("/conversations/x/messages", json=payload, headers=mallory.headers)
    assert resp.status == 404


async def test_sent_message_reaches_joined_sockets(client, chat, connect) -> None:
    alice, bob, cid = chat
    sock = await connect(bob)
    reply = await sock.request({"type": "join", "conversation_id": cid})
    assert reply["type"] == "reply", reply
    resp = await send(client, alice, cid, {"client_msg_id": "live", "body": "hey"})
    assert resp.status == 201
    event = await sock.recv_type("message")
    assert event == {"type": "message", **(await resp.json())}
