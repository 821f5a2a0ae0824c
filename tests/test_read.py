"""Read markers (``POST /conversations/{id}/read`` and the store's ``advance_read_marker``):
cumulative, never backwards, bounded by the last message, and the unread counts they drive."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import eventually
from trustmess.appkeys import READ_MARKERS
from trustmess.errors import ApiError
from trustmess.store.readmarkers import advance_read_marker


async def mark_read(client, user, conversation_id, seq):
    return await client.post(
        f"/conversations/{conversation_id}/read", json={"seq": seq}, headers=user.headers
    )


async def state(client, user, conversation_id) -> tuple[int, int, int]:
    resp = await client.get(f"/conversations/{conversation_id}", headers=user.headers)
    body = await resp.json()
    assert resp.status == 200, body
    return body["last_seq"], body["read_seq"], body["unread"]


async def test_read_moves_the_marker(client, chat, db, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 5)
    resp = await mark_read(client, alice, cid, 3)
    assert resp.status == 200
    assert await resp.json() == {"read_seq": 3}
    assert await state(client, alice, cid) == (5, 3, 2)
    stored = await db.fetchval(
        "SELECT last_read_seq FROM conversation_members WHERE user_id = $1", alice.id
    )
    assert stored == 3
    assert await state(client, bob, cid) == (5, 0, 0)  # bob wrote them all


async def test_marker_never_moves_backwards(client, chat, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 5)
    assert await (await mark_read(client, alice, cid, 4)).json() == {"read_seq": 4}
    for lower in (4, 2, 0):
        resp = await mark_read(client, alice, cid, lower)
        assert resp.status == 200
        assert await resp.json() == {"read_seq": 4}
    assert await state(client, alice, cid) == (5, 4, 1)


async def test_zero_on_an_empty_conversation(client, chat) -> None:
    alice, _, cid = chat
    resp = await mark_read(client, alice, cid, 0)
    assert resp.status == 200
    assert await resp.json() == {"read_seq": 0}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"seq": 6}, "seq"),
        ({"seq": 10**12}, "seq"),
        ({"seq": -1}, "seq"),
        ({"seq": "3"}, "seq"),
        ({"seq": 2.5}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": None}, "seq"),
        ({}, "seq"),
        ({"seq": 1, "until": 2}, "until"),
    ],
)
async def test_bad_seq_is_422(client, chat, insert_messages, payload, field) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 5)
    resp = await client.post(f"/conversations/{cid}/read", json=payload, headers=alice.headers)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", field)
    assert await state(client, alice, cid) == (5, 0, 5)


async def test_body_that_is_not_an_object_is_400(client, chat) -> None:
    alice, _, cid = chat
    resp = await client.post(
        f"/conversations/{cid}/read",
        data=b"3",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert resp.status == 400


async def test_non_member_gets_404(client, chat, make_user, insert_messages) -> None:
    _, bob, cid = chat
    await insert_messages(cid, bob.id, 2)
    mallory = await make_user()
    hidden = await mark_read(client, mallory, cid, 1)
    missing = await mark_read(client, mallory, 5555, 1)
    assert hidden.status == missing.status == 404
    assert await hidden.json() == await missing.json()
    # Even a seq that would be invalid for a member does not reveal the conversation.
    assert (await mark_read(client, mallory, cid, 99)).status == 404
    resp = await client.post("/conversations/-1/read", json={"seq": 1}, headers=bob.headers)
    assert resp.status == 404


async def test_unread_counts_others_messages_only(
    client, make_user, make_group, insert_messages
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    cid = await make_group(alice, bob, carol)
    await insert_messages(cid, bob.id, 3)  # 1-3 from bob
    await insert_messages(cid, alice.id, 2)  # 4-5 from alice (marker not moved by SQL)
    await insert_messages(cid, carol.id, 4)  # 6-9 from carol
    assert await state(client, alice, cid) == (9, 0, 7)
    assert await state(client, bob, cid) == (9, 0, 6)
    assert await state(client, carol, cid) == (9, 0, 5)
    assert (await mark_read(client, alice, cid, 5)).status == 200
    assert await state(client, alice, cid) == (9, 5, 4)
    # Sending moves the sender's own marker to its message: everything before it is read.
    resp = await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": "late", "body": "caught up"},
        headers=bob.headers,
    )
    assert resp.status == 201
    assert await state(client, bob, cid) == (10, 10, 0)
    assert await state(client, alice, cid) == (10, 5, 5)
    listed = await (await client.get("/conversations", headers=alice.headers)).json()
    assert [(c["id"], c["read_seq"], c["unread"]) for c in listed["items"]] == [(cid, 5, 5)]


async def test_concurrent_reads_keep_the_highest(client, chat, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 40)
    order = [17, 3, 40, 22, 1, 39, 8, 40, 12, 30] * 2
    responses = await asyncio.gather(*(mark_read(client, alice, cid, seq) for seq in order))
    assert all(resp.status == 200 for resp in responses)
    assert await state(client, alice, cid) == (40, 40, 0)


async def test_read_is_announced_to_the_conversation(
    client, chat, insert_messages, connect
) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 3)
    sock = await connect(bob)
    assert (await sock.request({"type": "join", "conversation_id": cid}))["type"] == "reply"
    assert (await mark_read(client, alice, cid, 2)).status == 200
    event = await sock.recv_type("read")
    assert event == {"type": "read", "conversation_id": cid, "user_id": alice.id, "seq": 2}


async def test_store_advance_read_marker(chat, db, insert_messages) -> None:
    alice, bob, cid = chat
    await insert_messages(cid, bob.id, 5)
    assert await advance_read_marker(db, cid, alice.id, 2) == (2, True)
    assert await advance_read_marker(db, cid, alice.id, 2) == (2, False)
    assert await advance_read_marker(db, cid, alice.id, 1) == (2, False)
    assert await advance_read_marker(db, cid, alice.id, 5) == (5, True)
    with pytest.raises(ApiError) as beyond:
        await advance_read_marker(db, cid, alice.id, 6)
    assert (beyond.value.status, beyond.value.code, beyond.value.field) == (422, "invalid", "seq")
    with pytest.raises(ApiError) as outsider:
        await advance_read_marker(db, cid, alice.id + 1000, 1)
    assert (outsider.value.status, outsider.value.code) == (404, "not_found")


# --- read-your-writes: a socket ack, then HTTP ----------------------------------------------


async def test_an_ack_is_seen_by_the_next_http_read(
    make_client, make_user, make_group, insert_messages, aiohttp_client
) -> None:
    # Markers are written behind (readbuffer.py); a minute makes the write-behind certain to
    # be pending when the reads below run.
    client = await make_client(read_flush_ms=60_000)
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    await insert_messages(cid, bob.id, 5)
    ws = await client.ws_connect("/ws", headers=alice.headers)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.send_json({"type": "ack", "ref": 1, "conversation_id": cid, "seq": 3})
    reply = await ws.receive_json()
    assert reply == {"type": "reply", "ref": 1, "data": {"conversation_id": cid, "read_seq": 3}}
    assert await state(client, alice, cid) == (5, 3, 2)
    listed = await (await client.get("/conversations", headers=alice.headers)).json()
    assert [(c["id"], c["read_seq"], c["unread"]) for c in listed["items"]] == [(cid, 3, 2)]
    # The same for the HTTP read endpoint's answer, and a later socket ack.
    assert await (await mark_read(client, alice, cid, 1)).json() == {"read_seq": 3}
    await ws.send_json({"type": "ack", "ref": 2, "conversation_id": cid, "seq": 4})
    assert (await ws.receive_json())["data"]["read_seq"] == 4
    # Another socket's join reports it (without waiting for the write).
    other = await client.ws_connect("/ws", headers=alice.headers)
    assert (await other.receive_json())["type"] == "hello"
    await other.send_json({"type": "join", "ref": "j", "conversation_id": cid})
    assert (await other.receive_json())["data"]["read_seq"] == 4
    assert await state(client, alice, cid) == (5, 4, 1)
    await ws.close()
    await other.close()


async def test_a_send_moves_the_senders_marker_for_every_read_on_its_node(
    make_client, make_user, make_group, insert_messages, db
) -> None:
    """The sender's marker is written behind, like an ack (readbuffer.py): a minute of
    write-behind makes it certain to be pending while every view below reads it."""
    client = await make_client(read_flush_ms=60_000)
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    cid = await make_group(alice, bob, carol)
    await insert_messages(cid, bob.id, 5)
    ws = await client.ws_connect("/ws", headers=alice.headers)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.send_json(
        {"type": "message", "ref": 1, "conversation_id": cid, "client_msg_id": "m", "body": "hi"}
    )
    while (frame := await ws.receive_json())["type"] != "reply":
        pass
    assert frame["data"]["seq"] == 6
    stored = "SELECT last_read_seq FROM conversation_members WHERE user_id = $1"
    assert await db.fetchval(stored, alice.id) == 0  # not written yet
    # Another socket's join, then a rename's answer (each view writes it before it reads).
    other = await client.ws_connect("/ws", headers=alice.headers)
    assert (await other.receive_json())["type"] == "hello"
    await other.send_json({"type": "join", "ref": "j", "conversation_id": cid})
    assert (await other.receive_json())["data"]["read_seq"] == 6
    renamed = await client.patch(
        f"/conversations/{cid}", json={"title": "renamed"}, headers=alice.headers
    )
    assert ((await renamed.json())["read_seq"], (await renamed.json())["unread"]) == (6, 0)
    assert await db.fetchval(stored, alice.id) == 6  # the rename wrote it
    # Carol sends, then Alice again: the add's answer, the conversation and the list.
    await insert_messages(cid, carol.id, 1)
    await ws.send_json(
        {"type": "message", "ref": 3, "conversation_id": cid, "client_msg_id": "n", "body": "!"}
    )
    while (frame := await ws.receive_json())["type"] != "reply":
        pass
    dave = await make_user()
    added = await client.post(
        f"/conversations/{cid}/members", json={"user_ids": [dave.id]}, headers=alice.headers
    )
    assert ((await added.json())["read_seq"], (await added.json())["unread"]) == (8, 0)
    assert await state(client, alice, cid) == (8, 8, 0)
    listed = await (await client.get("/conversations", headers=alice.headers)).json()
    assert [(c["id"], c["read_seq"], c["unread"]) for c in listed["items"]] == [(cid, 8, 0)]
    # An ack below it changes nothing and announces nothing.
    await ws.send_json({"type": "ack", "ref": 2, "conversation_id": cid, "seq": 3})
    while (frame := await ws.receive_json())["type"] != "reply":
        pass
    assert frame["data"]["read_seq"] == 8
    await ws.close()
    await other.close()


async def test_senders_markers_are_written_together_not_one_flush_each(
    make_client, make_user, make_group, db
) -> None:
    """At saturation nearly every message moves its sender's marker: they wait for one flush a
    second (readbuffer.SENT_FLUSH_S) instead of each taking the next ack flush."""
    client = await make_client(read_flush_ms=1)  # an ack would be written within 1 ms
    alice, bob = await make_user(), await make_user()
    cid = await make_group(alice, bob)
    markers = client.app[READ_MARKERS]
    sockets = []
    for user in (alice, bob):
        ws = await client.ws_connect("/ws", headers=user.headers)
        assert (await ws.receive_json())["type"] == "hello"
        sockets.append(ws)
    for n in range(20):  # one at a time: each its own commit
        ws = sockets[n % 2]
        await ws.send_json(
            {
                "type": "message",
                "ref": n,
                "conversation_id": cid,
                "client_msg_id": f"m{n}",
                "body": "hi",
            }
        )
        while (await ws.receive_json())["type"] != "reply":
            pass
    stored = (
        "SELECT array_agg(last_read_seq ORDER BY user_id) FROM conversation_members "
        "WHERE conversation_id = $1"
    )

    async def written() -> bool:
        return list(await db.fetchval(stored, cid)) == [19, 20]

    await eventually(written, what="the senders' markers written")
    assert markers.flushes <= 2, markers.flushes
    for ws in sockets:
        await ws.close()


async def test_every_members_marker_for_read_receipts(
    make_client, make_user, make_group, insert_messages
) -> None:
    """GET /conversations/{id}/read: each member's marker, pending acks counted, members only."""
    client = await make_client(read_flush_ms=60_000)  # acks stay pending on this node
    alice, bob, carol, mallory = [await make_user() for _ in range(4)]
    cid = await make_group(alice, bob, carol)
    await insert_messages(cid, alice.id, 4)
    assert (await mark_read(client, bob, cid, 3)).status == 200
    ws = await client.ws_connect("/ws", headers=carol.headers)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.send_json({"type": "ack", "ref": 1, "conversation_id": cid, "seq": 2})
    assert (await ws.receive_json())["data"]["read_seq"] == 2
    resp = await client.get(f"/conversations/{cid}/read", headers=alice.headers)
    assert resp.status == 200
    assert await resp.json() == {
        "items": sorted(
            [
                {"user_id": alice.id, "read_seq": 0},
                {"user_id": bob.id, "read_seq": 3},
                {"user_id": carol.id, "read_seq": 2},
            ],
            key=lambda item: item["user_id"],
        )
    }
    hidden = await client.get(f"/conversations/{cid}/read", headers=mallory.headers)
    missing = await client.get("/conversations/999999999/read", headers=mallory.headers)
    assert hidden.status == missing.status == 404
    assert await hidden.json() == await missing.json()
    assert (await client.get(f"/conversations/{cid}/read")).status == 401
    await ws.close()
