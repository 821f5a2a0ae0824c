"""Presence across server processes on one database and one Redis: online/offline and
``last_seen`` cross nodes, a reconnect to another node within the grace is no event, and the
users of a SIGKILLed (or stopped) node go offline within the documented bound (4/3 of
``TRUSTMESS_PRESENCE_TTL_S``)."""

from __future__ import annotations

import signal
import time
from collections.abc import Awaitable
from datetime import UTC, datetime

import aiohttp
import redis.asyncio as aioredis

from tests.conftest import eventually
from tests.test_cluster import open_socket, start_nodes
from tests.test_presence import nothing_pending, parse_ts, presence_of, subscribe
from trustmess.cluster.redis_broker import channel_prefix

__all__ = ["start_nodes"]  # the fixture, used by name

TTL_S = 1.5
BOUND_S = TTL_S * 4 / 3
# What a loaded test machine may add to the bound: the event's way through Redis and sockets.
SLACK_S = 1.5


async def test_presence_crosses_nodes(start_nodes, chat, db) -> None:
    nodes = await start_nodes(2, presence_grace_s="0.1")
    alice, bob, _ = chat
    async with aiohttp.ClientSession() as session:
        watcher = await open_socket(session, nodes[0], alice)
        assert (await subscribe(watcher))[0]["status"] == "offline"
        bob_sock = await open_socket(session, nodes[1], bob)
        assert (await presence_of(watcher, bob))["status"] == "online"
        # The snapshot on Bob's node knows Alice is online on the other one.
        assert await subscribe(bob_sock) == [
            {"user_id": alice.id, "status": "online", "last_seen": None}
        ]
        async with session.get(f"{nodes[0].url}/users/{bob.id}", headers=alice.headers) as resp:
            assert (await resp.json())["presence"] == "online"
        await bob_sock.ws.close()
        event = await presence_of(watcher, bob)
        assert event["status"] == "offline", event
        stored = await db.fetchval("SELECT last_seen FROM users WHERE id = $1", bob.id)
        assert stored == parse_ts(event["last_seen"])
        async with session.get(f"{nodes[1].url}/users/{bob.id}", headers=alice.headers) as resp:
            body = await resp.json()
        assert (body["presence"], body["last_seen"]) == ("offline", event["last_seen"])


async def test_moving_to_another_node_within_the_grace_is_no_event(start_nodes, chat) -> None:
    nodes = await start_nodes(2, presence_grace_s="3")
    alice, bob, _ = chat
    async with aiohttp.ClientSession() as session:
        watcher = await open_socket(session, nodes[0], alice)
        await subscribe(watcher)
        first = await open_socket(session, nodes[1], bob)
        assert (await presence_of(watcher, bob))["status"] == "online"
        await first.ws.close()
        second = await open_socket(session, nodes[0], bob)
        moved = datetime.now(UTC).replace(microsecond=0)
        await second.ws.close()
        # The first event after "online" is the final offline: nothing when Bob moved.
        event = await presence_of(watcher, bob, timeout=15)
        assert event["status"] == "offline", event
        assert parse_ts(event["last_seen"]) >= moved


async def test_the_users_of_a_killed_node_go_offline_within_the_bound(
    start_nodes, chat, db
) -> None:
    nodes = await start_nodes(2, presence_grace_s="0.1", presence_ttl_s=str(TTL_S))
    alice, bob, _ = chat
    async with aiohttp.ClientSession() as session:
        watcher = await open_socket(session, nodes[0], alice)
        await subscribe(watcher)
        await open_socket(session, nodes[1], bob)
        assert (await presence_of(watcher, bob))["status"] == "online"
        killed_at = time.time()
        await nodes[1].kill()  # SIGKILL: no goodbye, its claim just stops being renewed
        event = await presence_of(watcher, bob, timeout=BOUND_S + 10)
        took = time.time() - killed_at
        assert event["status"] == "offline", event
        assert took <= BOUND_S + SLACK_S, f"offline after {took:.2f} s"
        # last_seen is the dead node's last sign of life: before it died, within a renewal.
        last_seen = parse_ts(event["last_seen"]).timestamp()
        assert killed_at - TTL_S / 3 - 0.5 <= last_seen <= killed_at + 0.01
        await eventually(
            lambda: db.fetchval("SELECT last_seen IS NOT NULL FROM users WHERE id = $1", bob.id),
            what="bob's last_seen written",
        )
        async with session.get(f"{nodes[0].url}/users/{bob.id}", headers=alice.headers) as resp:
            assert (await resp.json())["presence"] == "offline"


async def test_the_users_of_a_stopped_node_are_handed_over_quickly(start_nodes, chat) -> None:
    nodes = await start_nodes(2, presence_grace_s="0.1", presence_ttl_s="9")
    alice, bob, _ = chat
    async with aiohttp.ClientSession() as session:
        watcher = await open_socket(session, nodes[0], alice)
        await subscribe(watcher)
        await open_socket(session, nodes[1], bob)
        assert (await presence_of(watcher, bob))["status"] == "online"
        stopped_at = time.time()
        assert await nodes[1].stop(signal.SIGTERM) == 0
        # A third of the TTL (the next sweep of the node still running), not the whole TTL.
        event = await presence_of(watcher, bob, timeout=9 / 3 + 10)
        assert event["status"] == "offline", event
        assert time.time() - stopped_at <= 9 / 3 + SLACK_S


async def test_a_user_who_moves_off_a_killed_node_stays_online(
    start_nodes, chat, redis_url
) -> None:
    nodes = await start_nodes(2, presence_grace_s="0.1", presence_ttl_s=str(TTL_S))
    alice, bob, _ = chat
    bob_nodes = aioredis.Redis.from_url(redis_url)
    key = f"{channel_prefix(redis_url)}presence:user:{bob.id}"
    try:
        async with aiohttp.ClientSession() as session:
            watcher = await open_socket(session, nodes[0], alice)
            await subscribe(watcher)
            await open_socket(session, nodes[1], bob)
            assert (await presence_of(watcher, bob))["status"] == "online"
            await nodes[1].kill()
            await open_socket(session, nodes[0], bob)  # his client reconnects elsewhere
            # Registered on node 0 while the dead node 1 still holds him...
            await eventually(lambda: _equals(bob_nodes.scard(key), 2), what="bob on node 0")
            # ...until node 1's claim is swept (Bob is then on one node only)...
            await eventually(
                lambda: _equals(bob_nodes.scard(key), 1),
                timeout=BOUND_S + 10,
                what="the dead node swept",
            )
            # ...and Alice heard nothing about Bob: he never went offline.
            await nothing_pending(watcher, about=bob.id)
    finally:
        await bob_nodes.aclose()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
