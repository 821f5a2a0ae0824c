"""Read markers (``ack`` → ``read`` events, never backwards) and typing indicators (throttle,
automatic stop, stop on leave and on disconnect) over real sockets."""

from __future__ import annotations

from tests.conftest import eventually, message_frame


async def frames_until_message(sock) -> list[dict]:
    """Frames received before the next ``message`` event (which is consumed too)."""
    seen = []
    while True:
        frame = await sock.recv()
        if frame["type"] == "message":
            return seen
        seen.append(frame)


async def test_ack_moves_marker_and_tells_the_others(connect, db, chat) -> None:
    alice, bob, cid = chat
    a, b, b_phone = await connect(alice), await connect(bob), await connect(bob)
    for sock in (a, b, b_phone):
        await sock.request({"type": "join", "conversation_id": cid})
    for n in range(3):
        await a.request(message_frame(cid, f"m{n}"))
    answer = await b.request({"type": "ack", "conversation_id": cid, "seq": 2})
    assert answer["data"] == {"conversation_id": cid, "read_seq": 2}
    expected = {"type": "read", "conversation_id": cid, "user_id": bob.id, "seq": 2}
    assert await a.recv_type("read") == expected
    assert await b_phone.recv_type("read") == expected

    # Acks are written behind (coalesced, read_flush_ms): wait for the row to catch up.
    async def marker_stored() -> bool:
        query = (
            "SELECT last_read_seq FROM conversation_members "
            "WHERE conversation_id = $1 AND user_id = $2"
        )
        return await db.fetchval(query, cid, bob.id) == 2

    await eventually(marker_stored, 5, "Bob's marker at 2 in the database")
    # Never backwards, and no event when the marker does not move.
    back = await b.request({"type": "ack", "conversation_id": cid, "seq": 1})
    assert back["data"]["read_seq"] == 2
    await a.request(message_frame(cid, "after"))
    assert [f for f in await frames_until_message(a) if f["type"] == "read"] == []
    # The acking connection itself gets no read event.
    await b.request({"type": "ping"})
    assert [f for f in b.backlog if f["type"] == "read"] == []


async def test_ack_beyond_last_seq_is_invalid(connect, chat) -> None:
    _, bob, cid = chat
    b = await connect(bob)
    answer = await b.request({"type": "ack", "conversation_id": cid, "seq": 1})
    assert answer["type"] == "error" and answer["code"] == "invalid" and answer["field"] == "seq"


async def test_typing_forwarded_once_per_throttle_window(connect, chat) -> None:
    alice, bob, cid = chat
    a, b = await connect(alice), await connect(bob)
    for sock in (a, b):
        await sock.request({"type": "join", "conversation_id": cid})
    for _ in range(3):
        assert (await b.request({"type": "typing", "conversation_id": cid}))["data"] == {}
    assert (await b.request(message_frame(cid, "done-typing")))["type"] == "reply"
    before = await frames_until_message(a)
    assert before == [
        {"type": "typing", "conversation_id": cid, "user_id": bob.id, "state": "start"}
    ]
    # The typer does not hear itself.
    await b.request({"type": "ping"})
    assert [f for f in b.backlog if f["type"] == "typing"] == []


async def test_typing_stops_by_itself(make_client, connect, chat) -> None:
    client = await make_client(typing_timeout_s=0.3)
    alice, bob, cid = chat
    a, b = await connect(alice, test_client=client), await connect(bob, test_client=client)
    await a.request({"type": "join", "conversation_id": cid})
    await b.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (await a.recv_type("typing"))["state"] == "start"
    assert (await a.recv_type("typing", timeout=5))["state"] == "stop"


async def test_typing_stops_on_explicit_stop_leave_and_disconnect(
    make_client, connect, chat
) -> None:
    client = await make_client(typing_timeout_s=60, typing_throttle_s=0)
    alice, bob, cid = chat
    a = await connect(alice, test_client=client)
    await a.request({"type": "join", "conversation_id": cid})
    b = await connect(bob, test_client=client)
    await b.request({"type": "join", "conversation_id": cid})

    await b.request({"type": "typing", "conversation_id": cid})
    assert (await a.recv_type("typing"))["state"] == "start"
    await b.request({"type": "typing", "conversation_id": cid, "state": "stop"})
    assert (await a.recv_type("typing"))["state"] == "stop"

    await b.request({"type": "typing", "conversation_id": cid})
    assert (await a.recv_type("typing"))["state"] == "start"
    await b.request({"type": "leave", "conversation_id": cid})
    assert (await a.recv_type("typing"))["state"] == "stop"

    await b.request({"type": "typing", "conversation_id": cid})
    assert (await a.recv_type("typing"))["state"] == "start"
    await b.ws.close()
    stop = await a.recv_type("typing")
    assert stop == {"type": "typing", "conversation_id": cid, "user_id": bob.id, "state": "stop"}
