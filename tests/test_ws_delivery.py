"""Socket basics: hello, join, message fan-out to every joined socket, reply after commit."""

from __future__ import annotations


async def make_group(db, *users) -> int:
    cid = await db.fetchval(
        "INSERT INTO conversations (kind, created_by) VALUES ('group', $1) RETURNING id",
        users[0].id,
    )
    for index, user in enumerate(users):
        await db.execute(
            "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1,$2,$3)",
            cid,
            user.id,
            "owner" if index == 0 else "member",
        )
    return cid


async def test_message_reaches_every_joined_socket(make_user, connect, db) -> None:
    alice, bob = await make_user(), await make_user()
    cid = await make_group(db, alice, bob)
    a, b = await connect(alice), await connect(bob)
    for sock in (a, b):
        reply = await sock.request({"type": "join", "conversation_id": cid})
        assert reply["type"] == "reply", reply
        assert reply["data"] == {
            "conversation_id": cid, "last_seq": 0, "read_seq": 0, "resumed": False
        }
    reply = await a.request(
        {"type": "message", "conversation_id": cid, "client_msg_id": "m1", "body": " hi "}
    )
    assert reply["type"] == "reply", reply
    assert reply["data"]["seq"] == 1 and reply["data"]["duplicate"] is False
    stored = await db.fetchval("SELECT body FROM messages WHERE id = $1", reply["data"]["id"])
    assert stored == "hi"
    for sock in (a, b):
        event = await sock.recv_type("message")
        assert event["seq"] == 1 and event["body"] == "hi" and event["sender_id"] == alice.id
