"""The process-wide heartbeat (heartbeat.py): idle sockets that answer pings stay, the
server answers clients' pings, and a peer that stops answering is dropped (see also
test_ws_errors.test_client_that_stops_answering_pings_is_dropped)."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType

from tests.conftest import SocketClient, eventually
from trustmess.appkeys import GATEWAY


async def test_an_idle_socket_that_answers_pings_stays_open(make_client, make_user) -> None:
    client = await make_client(ws_heartbeat_s=0.2)
    alice = await make_user()
    ws = await client.ws_connect("/ws", headers=alice.headers, autoping=True)
    sock = SocketClient(ws)
    assert (await sock.recv())["type"] == "hello"
    heartbeat = client.app[GATEWAY].heartbeat
    receiving = asyncio.create_task(ws.receive())  # aiohttp answers pings while it reads
    await eventually(lambda: heartbeat.pings >= 3, 10, "three heartbeat pings")
    assert heartbeat.dropped == 0 and not receiving.done()
    receiving.cancel()
    assert client.app[GATEWAY].user_connections(alice.id)


async def test_the_server_answers_a_client_ping(client, make_user) -> None:
    alice = await make_user()
    ws = await client.ws_connect("/ws", headers=alice.headers, autoping=False)
    assert (await ws.receive(timeout=5)).type == WSMsgType.TEXT  # hello
    await ws.ping(b"are you there")
    pong = await ws.receive(timeout=5)
    assert (pong.type, pong.data) == (WSMsgType.PONG, b"are you there")
    await ws.close()


async def test_a_sweep_pings_silent_sockets_and_drops_those_that_stay_silent(
    client, make_user
) -> None:
    alice, bob = await make_user(), await make_user()
    quiet = await client.ws_connect("/ws", headers=alice.headers, autoping=False)
    chatty = await client.ws_connect("/ws", headers=bob.headers, autoping=False)
    for ws in (quiet, chatty):
        assert (await ws.receive(timeout=5)).type == WSMsgType.TEXT  # hello
    gateway = client.app[GATEWAY]
    [quiet_conn] = gateway.user_connections(alice.id)
    heartbeat = gateway.heartbeat
    heartbeat.sweep()  # the hello exchange counts as heard
    heartbeat.sweep()  # silent once
    heartbeat.sweep()  # silent twice: both are pinged
    assert (await quiet.receive(timeout=5)).type == WSMsgType.PING
    assert (await chatty.receive(timeout=5)).type == WSMsgType.PING
    await chatty.pong(b"")
    [chatty_conn] = gateway.user_connections(bob.id)
    await eventually(lambda: chatty_conn.heard, 5, "the chatty socket's pong")
    heartbeat.sweep()  # the quiet one never answered: dropped without a close handshake
    assert quiet_conn.closing and not chatty_conn.closing
    assert (await quiet.receive(timeout=5)).type in (WSMsgType.CLOSED, WSMsgType.ERROR)
    await eventually(lambda: not gateway.user_connections(alice.id), 5, "the quiet one to go")
    assert heartbeat.dropped == 1
    await chatty.close()


async def test_a_socket_awaiting_a_command_is_not_silent(make_client, make_user) -> None:
    """While the reader loop awaits a command (say, a join behind a busy pool), the peer's
    pongs wait unread: the sweep must not count that as silence and drop a live client."""
    client = await make_client(ws_heartbeat_s=3600.0)  # sweeps driven by hand below
    alice = await make_user()
    ws = await client.ws_connect("/ws", headers=alice.headers)
    assert (await SocketClient(ws).recv())["type"] == "hello"
    gateway = client.app[GATEWAY]
    (conn,) = gateway.user_connections(alice.id)
    heartbeat = gateway.heartbeat
    conn.busy = True
    for _ in range(5):
        heartbeat.sweep()
    assert heartbeat.dropped == 0 and not conn.closing
    conn.busy = False
    for _ in range(3):
        heartbeat.sweep()
    assert heartbeat.dropped == 1 and conn.closing
