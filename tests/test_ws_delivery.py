"""Socket delivery: fan-out to every joined socket, idempotent resends, ordering under
concurrency, resume with ``since``, and leave."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import message_frame


async def test_message_reaches_every_joined_socket(connect, db, chat) -> None:
    alice, bob, cid = chat
    a, b = await connect(alice), await connect(bob)
    for sock in (a, b):
        reply = await sock.request({"type": "join", "conversation_id": cid})
        assert reply["type"] == "reply", reply
        assert reply["data"] == {
            "conversation_id": cid,
            "last_seq": 0,
            "read_seq": 0,
            "resumed": False,
        }
    reply = await a.request(message_frame(cid, "m1", " hi "))
    assert reply["type"] == "reply", reply
    assert reply["data"]["seq"] == 1 and reply["data"]["duplicate"] is False
    # The reply comes after commit: the row is there by the time we read it.
    stored = await db.fetchval("SELECT body FROM messages WHERE id = $1", reply["data"]["id"])
    assert stored == "hi"
    for sock in (a, b):
        event = await sock.recv_type("message")
        assert event["seq"] == 1 and event["body"] == "hi" and event["sender_id"] == alice.id
        assert event["client_msg_id"] == "m1" and event["reply_to"] is None
    # Exactly once: a ping round trip proves nothing else was queued before it.
    for sock in (a, b):
        assert (await sock.request({"type": "ping"}))["data"] == {}
        assert not [f for f in sock.backlog if f.get("type") == "message"]


async def test_resend_after_reconnect_is_duplicate_without_second_event(connect, db, chat) -> None:
    alice, bob, cid = chat
    b = await connect(bob)
    await b.request({"type": "join", "conversation_id": cid})
    a = await connect(alice)
    first = await a.request(message_frame(cid, "same-id", "once"))
    await a.ws.close()
    a2 = await connect(alice)
    again = await a2.request(message_frame(cid, "same-id", "once (resent)"))
    assert again["data"]["duplicate"] is True
    assert (again["data"]["id"], again["data"]["seq"]) == (first["data"]["id"], 1)
    await b.recv_type("message")
    await b.request({"type": "ping"})
    assert not [f for f in b.backlog if f.get("type") == "message"]
    assert await db.fetchval("SELECT count(*) FROM messages") == 1


async def test_reply_to_must_exist(connect, chat) -> None:
    alice, _, cid = chat
    a = await connect(alice)
    bad = await a.request(message_frame(cid, "r1", reply_to=5))
    assert bad["type"] == "error" and bad["code"] == "invalid" and bad["field"] == "reply_to"
    await a.request(message_frame(cid, "r2"))
    good = await a.request(message_frame(cid, "r3", reply_to=1))
    assert good["type"] == "reply" and good["data"]["seq"] == 2


async def test_concurrent_senders_every_receiver_sees_gapless_order(
    make_user, make_group, make_client, connect
) -> None:
    client = await make_client(ws_rate_per_s=100_000, ws_burst=100_000)
    senders = [await make_user() for _ in range(5)]
    watchers = [await make_user() for _ in range(2)]
    cid = await make_group(*senders, *watchers)
    socks = [await connect(u, test_client=client) for u in senders + watchers]
    for sock in socks:
        await sock.request({"type": "join", "conversation_id": cid})

    async def send_all(index: int) -> None:
        sock = socks[index]
        for n in range(200):
            await sock.send({**message_frame(cid, f"s{index}-{n}", f"{index}:{n}"), "ref": n})

    await asyncio.gather(*(send_all(i) for i in range(5)))

    async def collect(sock) -> list[int]:
        seqs: list[int] = []
        while len(seqs) < 1000:
            frame = await sock.recv_type("message", timeout=30)
            seqs.append(frame["seq"])
        return seqs

    results = await asyncio.gather(*(collect(s) for s in socks))
    for seqs in results:
        assert seqs == list(range(1, 1001))
    # Each sender's own messages keep their send order.
    for index, sock in enumerate(socks[:5]):
        replies = [f for f in sock.backlog if f.get("type") == "reply"]
        while len(replies) < 200:
            replies.append(await sock.recv_type("reply", timeout=30))
        by_ref = sorted(replies, key=lambda f: f["ref"])
        seqs = [f["data"]["seq"] for f in by_ref]
        assert seqs == sorted(seqs), f"sender {index} reordered"


async def test_resume_with_since_under_concurrent_sending(make_client, connect, chat) -> None:
    client = await make_client(ws_rate_per_s=100_000, ws_burst=100_000)
    alice, bob, cid = chat
    a = await connect(alice, test_client=client)
    for n in range(50):
        await a.send(message_frame(cid, f"pre{n}"))
    await a.request({"type": "ping"})
    b = await connect(bob, test_client=client)
    await b.request({"type": "join", "conversation_id": cid})
    # Bob "has" up to seq 20; while he resumes, Alice keeps sending 100 more.
    probe = await a.request(message_frame(cid, "probe"))
    assert probe["data"]["seq"] == 51
    b2 = await connect(bob, test_client=client)

    async def keep_sending() -> None:
        for n in range(100):
            await a.send(message_frame(cid, f"live{n}"))

    sender = asyncio.create_task(keep_sending())
    reply = await b2.request({"type": "join", "conversation_id": cid, "since": 20})
    assert reply["data"]["resumed"] is True
    await sender
    seqs = []
    while len(seqs) < 151 - 20:
        seqs.append((await b2.recv_type("message", timeout=15))["seq"])
    assert seqs == list(range(21, 152))
    await b2.request({"type": "ping"})
    assert not [f for f in b2.backlog if f.get("type") == "message"]


@pytest.mark.parametrize("replay_limit", [3])
async def test_resume_beyond_replay_limit_is_not_resumed(
    replay_limit, make_client, connect, chat
) -> None:
    client = await make_client(replay_limit=replay_limit)
    alice, bob, cid = chat
    a = await connect(alice, test_client=client)
    for n in range(5):
        await a.request(message_frame(cid, f"m{n}"))
    b = await connect(bob, test_client=client)
    reply = await b.request({"type": "join", "conversation_id": cid, "since": 1})
    assert reply["data"] == {
        "conversation_id": cid,
        "last_seq": 5,
        "read_seq": 0,
        "resumed": False,
    }
    # Nothing is replayed, but live events flow from the present.
    await a.request(message_frame(cid, "m5"))
    assert (await b.recv_type("message"))["seq"] == 6
    ok = await b.request({"type": "join", "conversation_id": cid, "since": 3})
    assert ok["data"]["resumed"] is True
    assert [(await b.recv_type("message"))["seq"] for _ in range(3)] == [4, 5, 6]


async def test_join_twice_is_idempotent_and_leave_stops_events(connect, chat) -> None:
    alice, bob, cid = chat
    a, b = await connect(alice), await connect(bob)
    await b.request({"type": "join", "conversation_id": cid})
    await b.request({"type": "join", "conversation_id": cid})
    await a.request(message_frame(cid, "x1"))
    assert (await b.recv_type("message"))["seq"] == 1
    await b.request({"type": "ping"})
    assert not [f for f in b.backlog if f.get("type") == "message"]
    left = await b.request({"type": "leave", "conversation_id": cid})
    assert left["data"] == {"conversation_id": cid}
    await a.request(message_frame(cid, "x2"))
    await b.request({"type": "ping"})
    assert not [f for f in b.backlog if f.get("type") == "message"]


async def test_non_member_gets_not_found_for_everything(make_user, make_group, connect) -> None:
    alice, bob, eve = await make_user(), await make_user(), await make_user()
    cid = await make_group(alice, bob)
    e = await connect(eve)
    for frame in (
        {"type": "join", "conversation_id": cid},
        message_frame(cid, "sneaky"),
        {"type": "ack", "conversation_id": cid, "seq": 0},
        {"type": "typing", "conversation_id": cid},
        {"type": "join", "conversation_id": 999_999},
    ):
        answer = await e.request(frame)
        assert answer["type"] == "error" and answer["code"] == "not_found", (frame, answer)
