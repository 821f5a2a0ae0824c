"""One message budget per user on a node, spent by HTTP sends and by every socket of the user:
429 with Retry-After over HTTP, the ``rate_limited`` error frame on the socket."""

from __future__ import annotations

import asyncio

from tests.conftest import message_frame


async def post(client, user, cid, cmid: str):
    return await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": cmid, "body": f"body {cmid}"},
        headers=user.headers,
    )


async def test_concurrent_http_sends_beyond_the_budget_are_429(make_client, chat, db) -> None:
    # The review's run: 600 concurrent POSTs all succeeded in 0.2 s.
    client = await make_client(send_rate_per_s=1, send_burst=20)
    alice, bob, cid = chat
    responses = await asyncio.gather(*(post(client, alice, cid, f"m{i}") for i in range(600)))
    statuses = [r.status for r in responses]
    created = statuses.count(201)
    assert 20 <= created <= 22, created  # the burst, and what trickled in meanwhile
    assert statuses.count(429) == 600 - created
    refused = next(r for r in responses if r.status == 429)
    assert (await refused.json())["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert await db.fetchval("SELECT count(*) FROM messages") == created
    # Bob's budget is his own.
    assert (await post(client, bob, cid, "bob-1")).status == 201


async def test_sockets_and_http_share_the_users_budget(
    make_client, chat, connect, make_user
) -> None:
    client = await make_client(send_rate_per_s=0.01, send_burst=4)
    alice, bob, cid = chat
    phone = await connect(alice, test_client=client)
    laptop = await connect(alice, test_client=client)
    assert (await phone.request(message_frame(cid, "p1")))["type"] == "reply"
    assert (await laptop.request(message_frame(cid, "l1")))["type"] == "reply"
    assert (await post(client, alice, cid, "h1")).status == 201
    assert (await phone.request(message_frame(cid, "p2")))["type"] == "reply"
    # The budget of 4 is spent, whichever way the next message comes.
    refused = await laptop.request(message_frame(cid, "l2"))
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert (await post(client, alice, cid, "h2")).status == 429
    # Other commands are not messages: they still work.
    assert (await phone.request({"type": "ping"}))["type"] == "reply"
    # Bob is not affected.
    bob_socket = await connect(bob, test_client=client)
    assert (await bob_socket.request(message_frame(cid, "b1")))["type"] == "reply"
