"""Presence on one node: online/offline with ``last_seen`` pushed to subscribed sockets of the
users allowed to see it, the snapshot, the grace, ``presence_visibility`` (``nobody`` leaks
nothing, ``contacts`` limits the audience) and the profile fields over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.conftest import SocketClient, User, create_conversation, eventually
from trustmess.appkeys import PRESENCE

Presence = dict[str, Any]


async def make_contacts(db: asyncpg.Connection, a: User, b: User) -> None:
    """Make ``a`` and ``b`` contacts (both directions, the contacts table's contract)."""
    await db.executemany(
        "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2)", [(a.id, b.id), (b.id, a.id)]
    )


async def subscribe(sock: SocketClient) -> list[Presence]:
    """Send ``presence``; the snapshot it answers with."""
    reply = await sock.request({"type": "presence"})
    assert reply["type"] == "reply", reply
    users: list[Presence] = reply["data"]["users"]
    return users


async def presence_of(sock: SocketClient, user: User, timeout: float = 5.0) -> Presence:
    """The next ``presence`` event about ``user`` (others are kept for later)."""
    return await sock.recv_where(
        lambda f: f.get("type") == "presence" and f["user_id"] == user.id, timeout
    )


async def next_presence(sock: SocketClient, timeout: float = 5.0) -> Presence:
    return await sock.recv_type("presence", timeout)


async def nothing_pending(sock: SocketClient, about: int) -> None:
    """The socket holds no ``presence`` event about user ``about``, up to the answer to a ping
    (an event already queued is ahead of that answer)."""
    await sock.send({"type": "ping", "ref": "quiet"})
    await sock.recv_where(lambda f: f.get("ref") == "quiet")
    events = [f for f in sock.backlog if f.get("type") == "presence" and f["user_id"] == about]
    assert events == [], events


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def set_visibility(client: Any, user: User, visibility: str) -> dict[str, Any]:
    resp = await client.patch(
        "/users/me", json={"presence_visibility": visibility}, headers=user.headers
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def profile(client: Any, viewer: User, user: User) -> dict[str, Any]:
    resp = await client.get(f"/users/{user.id}", headers=viewer.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def set_block(client: Any, blocker: User, blocked: User, *, on: bool = True) -> None:
    """``blocker`` blocks (``on``) or unblocks ``blocked``."""
    send = client.put if on else client.delete
    resp = await send(f"/blocks/{blocked.id}", headers=blocker.headers)
    assert resp.status == 204, await resp.text()


@pytest.fixture
async def app_client(make_client: Any) -> Any:
    return await make_client(presence_grace_s=0.1)


@pytest.fixture
def open_socket(app_client: Any, connect: Any) -> Any:
    async def factory(user: User) -> SocketClient:
        sock: SocketClient = await connect(user, test_client=app_client)
        return sock

    return factory


async def test_members_of_a_conversation_see_each_other_go_online_and_offline(
    app_client, open_socket, chat, db
) -> None:
    alice, bob, _ = chat
    watcher = await open_socket(alice)
    assert await subscribe(watcher) == [{"user_id": bob.id, "status": "offline", "last_seen": None}]
    # Not online on HTTP either, and never seen.
    seen = await profile(app_client, alice, bob)
    assert (seen["presence"], seen["last_seen"]) == ("offline", None)

    bob_sock = await open_socket(bob)
    event = await next_presence(watcher)
    assert event == {"type": "presence", "user_id": bob.id, "status": "online", "last_seen": None}
    assert (await subscribe(bob_sock)) == [
        {"user_id": alice.id, "status": "online", "last_seen": None}
    ]
    seen = await profile(app_client, alice, bob)
    assert (seen["presence"], seen["last_seen"]) == ("online", None)

    before_close = datetime.now(UTC).replace(microsecond=0)
    await bob_sock.ws.close()
    event = await next_presence(watcher)
    assert event["user_id"] == bob.id and event["status"] == "offline", event
    last_seen = parse_ts(event["last_seen"])
    assert before_close <= last_seen <= datetime.now(UTC)
    # Written once, at the offline transition: what the profile shows from now on.
    assert await db.fetchval("SELECT last_seen FROM users WHERE id = $1", bob.id) == last_seen
    seen = await profile(app_client, alice, bob)
    assert (seen["presence"], seen["last_seen"]) == ("offline", event["last_seen"])

    # A later subscriber's snapshot has the last_seen too.
    other = await open_socket(alice)
    assert await subscribe(other) == [
        {"user_id": bob.id, "status": "offline", "last_seen": event["last_seen"]}
    ]


async def test_an_unsubscribed_socket_gets_no_presence_events(open_socket, chat) -> None:
    alice, bob, _ = chat
    quiet = await open_socket(alice)
    watcher = await open_socket(alice)
    await subscribe(watcher)
    await open_socket(bob)
    assert (await next_presence(watcher))["status"] == "online"
    await nothing_pending(quiet, about=bob.id)


async def test_a_reconnect_within_the_grace_is_no_offline_online_pair(
    make_client, connect, chat
) -> None:
    app_client = await make_client(presence_grace_s=2.0)
    alice, bob, _ = chat
    watcher = await connect(alice, test_client=app_client)
    await subscribe(watcher)
    first = await connect(bob, test_client=app_client)
    assert (await next_presence(watcher))["status"] == "online"
    changes = app_client.app[PRESENCE].changes
    await first.ws.close()
    second = await connect(bob, test_client=app_client)
    reconnected = datetime.now(UTC)
    await second.ws.close()
    # Only the final close is an event: its last_seen is after the reconnect.
    event = await next_presence(watcher, timeout=10)
    assert event["status"] == "offline", event
    assert parse_ts(event["last_seen"]) >= reconnected.replace(
        microsecond=reconnected.microsecond // 1000 * 1000
    )
    assert app_client.app[PRESENCE].changes == changes + 1  # only bob's offline
    await nothing_pending(watcher, about=bob.id)


async def test_nobody_leaks_nothing(app_client, open_socket, make_user, make_group, db) -> None:
    alice, bob, carol = [await make_user() for _ in range(3)]
    await make_group(alice, bob, carol)
    await make_contacts(db, alice, bob)
    me = await set_visibility(app_client, bob, "nobody")
    assert me["presence_visibility"] == "nobody"
    resp = await app_client.get("/users/me", headers=bob.headers)
    assert (await resp.json())["presence_visibility"] == "nobody"

    watcher = await open_socket(alice)
    snapshot = await subscribe(watcher)
    assert [s["user_id"] for s in snapshot] == [carol.id]
    bob_sock = await open_socket(bob)
    await bob_sock.ws.close()
    # Bob's offline was processed (its last_seen is stored) before Carol comes online...
    await eventually(
        lambda: db.fetchval("SELECT last_seen IS NOT NULL FROM users WHERE id = $1", bob.id),
        what="bob's last_seen written",
    )
    await open_socket(carol)
    # ...so the first event Alice gets is Carol's: none was sent about Bob.
    event = await next_presence(watcher)
    assert (event["user_id"], event["status"]) == (carol.id, "online")
    await nothing_pending(watcher, about=bob.id)
    seen = await profile(app_client, alice, bob)
    assert "presence" not in seen and "last_seen" not in seen, seen
    # The presence command does not list him either.
    assert bob.id not in [s["user_id"] for s in await subscribe(watcher)]


async def test_contacts_visibility_limits_the_audience_to_contacts(
    app_client, open_socket, make_user, make_group, db
) -> None:
    alice, bob, carol = [await make_user() for _ in range(3)]
    await make_group(alice, bob, carol)
    await make_contacts(db, alice, bob)
    await set_visibility(app_client, bob, "contacts")
    contact, member = await open_socket(alice), await open_socket(carol)
    assert bob.id in [s["user_id"] for s in await subscribe(contact)]
    assert bob.id not in [s["user_id"] for s in await subscribe(member)]
    await open_socket(bob)
    event = await presence_of(contact, bob)
    assert event["status"] == "online"
    # Delivered to every socket of the audience in one go: Carol's would be queued by now.
    await nothing_pending(member, about=bob.id)
    assert "presence" in await profile(app_client, alice, bob)
    assert "presence" not in await profile(app_client, carol, bob)


async def test_strangers_see_no_presence(app_client, open_socket, make_user) -> None:
    alice, stranger = await make_user(), await make_user()
    await open_socket(alice)
    seen = await profile(app_client, stranger, alice)
    assert "presence" not in seen and "last_seen" not in seen
    watcher = await open_socket(stranger)
    assert await subscribe(watcher) == []


async def test_narrowing_the_visibility_hides_and_widening_shows(
    app_client, open_socket, chat
) -> None:
    alice, bob, _ = chat
    watcher = await open_socket(alice)
    await subscribe(watcher)
    await open_socket(bob)
    assert (await next_presence(watcher))["status"] == "online"
    await set_visibility(app_client, bob, "nobody")
    event = await next_presence(watcher)
    assert event == {"type": "presence", "user_id": bob.id, "status": "hidden", "last_seen": None}
    await set_visibility(app_client, bob, "everyone")
    event = await next_presence(watcher)
    assert (event["user_id"], event["status"]) == (bob.id, "online")


async def test_the_presence_command_takes_no_fields(open_socket, chat) -> None:
    alice, _, _ = chat
    sock = await open_socket(alice)
    answer = await sock.request({"type": "presence", "user_ids": [1]})
    assert (answer["type"], answer["code"], answer["field"]) == ("error", "invalid", "user_ids")


async def test_a_bad_visibility_is_refused(app_client, chat) -> None:
    alice, _, _ = chat
    resp = await app_client.patch(
        "/users/me", json={"presence_visibility": "friends"}, headers=alice.headers
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", "presence_visibility")


async def test_a_user_with_1000_people_coming_online_costs_one_query(
    app_client, open_socket, make_user, db
) -> None:
    alice = await make_user()
    others = await db.fetch(
        "INSERT INTO users (username, password_hash, display_name) "
        "SELECT 'many' || n || '_' || $1, 'x', 'Many' FROM generate_series(1, 1000) n "
        "RETURNING id",
        str(alice.id),
    )
    await db.executemany(
        "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2)",
        [pair for row in others for pair in ((alice.id, row["id"]), (row["id"], alice.id))],
    )
    presence = app_client.app[PRESENCE]
    queries = presence.queries
    started = time.perf_counter()
    sock = await open_socket(alice)
    await eventually(lambda: presence.changes >= 1, what="alice online")
    assert presence.queries == queries + 1
    assert len(presence._cached_audience(alice.id) or []) == 1000
    assert time.perf_counter() - started < 5
    await sock.ws.close()
    await eventually(lambda: presence.changes >= 2, what="alice offline")
    # The audience was cached at connect: going offline needed no query.
    assert presence.queries == queries + 1


async def test_a_new_conversation_widens_the_cached_audience(
    app_client, open_socket, make_user
) -> None:
    alice, bob = await make_user(), await make_user()
    watcher = await open_socket(alice)
    bob_sock = await open_socket(bob)
    presence = app_client.app[PRESENCE]
    # Bob came online while he and Alice shared nothing: his cached audience is empty.
    await eventually(lambda: presence._cached_audience(bob.id) is not None, what="bob online")
    assert await subscribe(watcher) == []
    await create_conversation(app_client, alice, [bob.id])
    # The conversation_changed control operation made every node forget cached audiences:
    # Bob's offline reaches Alice.
    await bob_sock.ws.close()
    event = await presence_of(watcher, bob)
    assert event["status"] == "offline"


async def test_a_block_hides_presence_both_ways(app_client, open_socket, chat) -> None:
    alice, bob, _ = chat  # they share a conversation: each sees the other
    watcher = await open_socket(alice)
    assert [u["user_id"] for u in await subscribe(watcher)] == [bob.id]
    resp = await app_client.put(f"/blocks/{bob.id}", headers=alice.headers)
    assert resp.status == 204
    # From the block on: no snapshot entry, no profile fields, either way.
    assert await subscribe(await open_socket(alice)) == []
    bob_sock = await open_socket(bob)
    assert await subscribe(bob_sock) == []
    for viewer, user in ((alice, bob), (bob, alice)):
        seen = await profile(app_client, viewer, user)
        assert "presence" not in seen and "last_seen" not in seen
    # Unblocking shows it again.
    assert (await app_client.delete(f"/blocks/{bob.id}", headers=alice.headers)).status == 204
    assert [u["user_id"] for u in await subscribe(await open_socket(alice))] == [bob.id]


async def test_a_block_sends_hidden_at_once_and_unblocking_shows_again(
    app_client, open_socket, chat
) -> None:
    alice, bob, _ = chat  # they share a conversation: each sees the other
    alice_sock, bob_sock = await open_socket(alice), await open_socket(bob)
    await subscribe(alice_sock)
    await subscribe(bob_sock)
    assert (await presence_of(alice_sock, bob))["status"] == "online"
    await set_block(app_client, alice, bob)
    # What each was shown of the other is taken back at once, without asking again.
    hidden = {"type": "presence", "status": "hidden", "last_seen": None}
    assert await presence_of(alice_sock, bob) == {**hidden, "user_id": bob.id}
    assert await presence_of(bob_sock, alice) == {**hidden, "user_id": alice.id}
    # Unblocking shows each the other's presence now (both online).
    await set_block(app_client, alice, bob, on=False)
    online = {"type": "presence", "status": "online", "last_seen": None}
    assert await presence_of(alice_sock, bob) == {**online, "user_id": bob.id}
    assert await presence_of(bob_sock, alice) == {**online, "user_id": alice.id}


async def test_a_contact_shows_presence_when_accepted_and_hides_it_when_removed(
    app_client, open_socket, make_user
) -> None:
    """Nothing shared but the contact, Bob visible to contacts only: accepting shows each the
    other's presence at once, removing takes it back at once (no need to ask again)."""
    alice, bob = await make_user(), await make_user()
    await set_visibility(app_client, bob, "contacts")
    alice_sock, bob_sock = await open_socket(alice), await open_socket(bob)
    assert await subscribe(alice_sock) == [] and await subscribe(bob_sock) == []
    asked = await app_client.post(
        "/contact-requests", json={"user_id": bob.id}, headers=alice.headers
    )
    assert asked.status == 201, await asked.text()
    accepted = await app_client.post(
        f"/contact-requests/incoming/{alice.id}/accept", headers=bob.headers
    )
    assert accepted.status == 200, await accepted.text()
    online = {"type": "presence", "status": "online", "last_seen": None}
    assert await presence_of(alice_sock, bob) == {**online, "user_id": bob.id}
    assert await presence_of(bob_sock, alice) == {**online, "user_id": alice.id}
    removed = await app_client.delete(f"/contacts/{alice.id}", headers=bob.headers)
    assert removed.status == 204
    hidden = {"type": "presence", "status": "hidden", "last_seen": None}
    assert await presence_of(alice_sock, bob) == {**hidden, "user_id": bob.id}
    assert await presence_of(bob_sock, alice) == {**hidden, "user_id": alice.id}


async def test_a_membership_change_forgets_only_its_members_audiences(
    app_client, open_socket, make_user, chat
) -> None:
    """Who may see a user is cached per user; a group gaining a member changes its members'
    audiences, not an outsider's (it used to drop every user's, on every node)."""
    alice, _, cid = chat
    carol, dave = await make_user(), await make_user()
    presence = app_client.app[PRESENCE]
    for user in (alice, carol):
        await open_socket(user)

    def cached(user: User) -> bool:
        return presence._cached_audience(user.id) is not None

    await eventually(lambda: cached(alice) and cached(carol), what="audiences cached")
    added = await app_client.post(
        f"/conversations/{cid}/members", json={"user_ids": [dave.id]}, headers=alice.headers
    )
    assert added.status == 200, await added.text()
    await eventually(lambda: not cached(alice), what="the member's audience forgotten")
    assert cached(carol)


async def test_a_block_sends_nothing_to_who_could_not_see(
    app_client, open_socket, chat, make_user
) -> None:
    alice, bob, _ = chat
    stranger = await make_user()
    await set_visibility(app_client, bob, "nobody")  # Alice never saw Bob
    alice_sock, stranger_sock = await open_socket(alice), await open_socket(stranger)
    await subscribe(alice_sock)
    await subscribe(stranger_sock)
    bob_sock = await open_socket(bob)
    await subscribe(bob_sock)
    for blocked in (bob, stranger):
        await set_block(app_client, alice, blocked)
    # Bob, who saw Alice, is told; nobody who saw nothing learns of the block.
    assert (await presence_of(bob_sock, alice))["status"] == "hidden"
    await nothing_pending(alice_sock, about=bob.id)
    await nothing_pending(stranger_sock, about=alice.id)
    # Nor of the unblock: Bob's setting still hides him from Alice, a stranger sees nothing.
    for blocked in (bob, stranger):
        await set_block(app_client, alice, blocked, on=False)
    assert (await presence_of(bob_sock, alice))["status"] == "online"
    await nothing_pending(alice_sock, about=bob.id)
    await nothing_pending(stranger_sock, about=alice.id)
