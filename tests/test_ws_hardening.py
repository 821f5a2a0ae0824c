"""Socket hardening (#14): a non-member's join never reaches the hub, frames are rate-checked
before they are decoded, and the delayed abort of a closed socket's transport is quiet."""

from __future__ import annotations

import asyncio
import logging

import orjson

from tests.conftest import eventually, message_frame
from tests.test_ws_errors import RawSocket
from trustmess.appkeys import GATEWAY, HUB, METRICS
from trustmess.gateway import connection, endpoint, linger
from trustmess.wire import frames


async def test_a_non_member_join_never_subscribes(client, make_user, make_group, connect) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    cid = await make_group(alice, bob)
    hub = client.server.app[HUB]
    subscribed: list[tuple[int, int]] = []
    original = hub.subscribe

    async def recording(conversation_id, subscriber):  # type: ignore[no-untyped-def]
        subscribed.append((conversation_id, subscriber.user_id))
        await original(conversation_id, subscriber)

    hub.subscribe = recording
    intruder = await connect(mallory)
    for _ in range(3):
        error = await intruder.request({"type": "join", "conversation_id": cid})
        assert error["type"] == "error" and error["code"] == "not_found", error
    assert (cid, mallory.id) not in subscribed
    assert cid not in hub.rooms()
    # A member still joins, and still subscribes before the read.
    member = await connect(alice)
    reply = await member.request({"type": "join", "conversation_id": cid})
    assert reply["type"] == "reply", reply
    assert (cid, alice.id) in subscribed


async def test_a_frame_over_the_rate_is_refused_before_it_is_decoded(
    make_user, make_client, connect, monkeypatch
) -> None:
    client = await make_client(ws_rate_per_s=1, ws_burst=2)
    sock = await connect(await make_user(), test_client=client)
    decoded = 0
    original = frames.decode

    def counting(data):  # type: ignore[no-untyped-def]
        nonlocal decoded
        decoded += 1
        return original(data)

    monkeypatch.setattr(endpoint.frames, "decode", counting)
    refused = client.app[METRICS].errors
    for n in range(12):
        await sock.send({"type": "ping", "ref": f"p{n}"})
    await eventually(lambda: decoded + refused["rate_limited"] == 12)
    # The refused frames were never parsed; the one error they got cannot carry a ref.
    assert 2 <= decoded <= 3 and refused["rate_limited"] >= 9
    error = await sock.recv_type("error")
    assert error["code"] == "rate_limited" and "ref" not in error
    replies = [f for f in sock.backlog if f["type"] == "reply"]
    assert [f["ref"] for f in replies] == [f"p{n}" for n in range(len(replies))]


async def test_the_delayed_abort_of_a_closed_socket_logs_nothing(
    make_user, make_group, make_client, connect, monkeypatch, caplog
) -> None:
    """A socket closed with unsent bytes in its transport (a slow consumer's backlog) is let
    go once the peer reads them; the abort scheduled for a peer that never would then finds a
    finished transport, and must not fail on it."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(connection, "ABORT_AFTER_S", 1.5)
    monkeypatch.setattr(linger, "LINGER_S", 0.5)
    client = await make_client(
        ws_queue_frames=1000, ws_queue_bytes=64 * 1024, ws_rate_per_s=1e5, ws_burst=100_000
    )
    alice, slow = await make_user(), await make_user()
    cid = await make_group(alice, slow)
    lazy = await RawSocket.open(client.host, client.port, slow.headers)
    lazy.send_text(orjson.dumps({"type": "join", "conversation_id": cid}))
    sender = await connect(alice, test_client=client)
    await sender.request({"type": "join", "conversation_id": cid})
    gateway = client.app[GATEWAY]
    sent = 0
    async with asyncio.timeout(60):
        while gateway.user_connections(slow.id) and not all(
            c.closing for c in gateway.user_connections(slow.id)
        ):
            sent += 1
            await sender.request(message_frame(cid, f"m{sent}", "y" * 3900))
    # The server gives up waiting for the close reply and lets go of the socket, its backlog
    # and close frame still in the transport's buffer...
    await eventually(lambda: not gateway.user_connections(slow.id), 10, "the slow one to go")
    # ...which the peer now reads, so the transport finishes before the abort is due.
    assert await lazy.close_code() == 4009
    await asyncio.sleep(1.5)  # past the abort's fixed delay: there is no event to wait on
    assert "AttributeError" not in caplog.text, caplog.text
    assert "Exception in callback" not in caplog.text, caplog.text
