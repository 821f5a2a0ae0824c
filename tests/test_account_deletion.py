"""Deleting an account (``DELETE /users/me``, ``DELETE /admin/users/{id}``): the password is
checked, sessions end and sockets close with 4001, the user leaves every conversation (the
others hear of it), no personal data is left in the database (queried directly), messages stay
with the deleted account's id, and the username can never be taken by someone else."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from tests.conftest import TEST_PASSWORD, create_conversation, error_of, eventually, login
from tests.test_consent import set_policy
from tests.test_contacts import next_event, request_contact
from tests.test_presence import nothing_pending, presence_of, subscribe
from tests.test_sessions import closed_with, open_socket, sign_in
from trustmess.appkeys import PRESENCE
from trustmess.store.messages import NewMessage, append_messages


async def delete_me(client, headers, password: str = TEST_PASSWORD):
    return await client.delete("/users/me", json={"password": password}, headers=headers)


async def test_a_wrong_or_missing_password_deletes_nothing(client, make_user, db) -> None:
    alice = await make_user()
    body = await error_of(await delete_me(client, alice.headers, "not my password"), 422)
    assert (body["code"], body["field"]) == ("invalid", "password")
    missing = await client.delete("/users/me", json={}, headers=alice.headers)
    assert (await error_of(missing, 422))["field"] == "password"
    assert (await client.delete("/users/me", json={"password": TEST_PASSWORD})).status == 401
    assert await db.fetchval("SELECT deleted_at FROM users WHERE id = $1", alice.id) is None
    assert (await client.get("/users/me", headers=alice.headers)).status == 200


async def test_deletion_leaves_no_personal_data_and_keeps_the_history(
    client, make_user, make_group, connect, db
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await db.execute(
        "UPDATE users SET bio = 'my secret bio', email = 'alice@example.org', "
        "email_verified_at = now() WHERE id = $1",
        alice.id,
    )
    dave = await make_user()
    # Alice's people: a contact (Carol), a pending request to Dave (with a message); an
    # unrelated block between others that must stay.
    await db.execute(
        "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2), ($2, $1)", alice.id, carol.id
    )
    assert (
        await client.post(
            "/contact-requests", json={"user_id": dave.id, "message": "hi"}, headers=alice.headers
        )
    ).status == 201
    assert (await client.put(f"/blocks/{carol.id}", headers=dave.headers)).status in (200, 204)
    await db.execute(
        "INSERT INTO email_tokens (user_id, purpose, token_hash, email, expires_at) "
        "VALUES ($1, 'verify', repeat('a', 64), 'alice@example.org', now() + interval '1 hour')",
        alice.id,
    )
    group = await make_group(alice, bob, carol)  # Alice owns it
    direct = await client.post(
        "/conversations", json={"member_ids": [bob.id]}, headers=alice.headers
    )
    direct_id = (await direct.json())["id"]
    device = await sign_in(client, alice.username)
    alice_sock = await open_socket(client, device)
    sent = await client.post(
        f"/conversations/{group}/messages",
        json={"client_msg_id": "m1", "body": "hello from alice"},
        headers=alice.headers,
    )
    assert sent.status == 201
    assert (
        await client.post(f"/conversations/{group}/read", json={"seq": 1}, headers=alice.headers)
    ).status in (200, 204)
    bob_sock = await connect(bob)

    assert (await delete_me(client, device.headers)).status == 204

    assert await closed_with(alice_sock) == (4001, "account deleted")
    # Bob hears that Alice left the group (with its new owner) and the direct conversation.
    for cid in (group, direct_id):
        event = await bob_sock.recv_where(
            lambda f, cid=cid: (
                f.get("type") == "conversation_update" and f.get("conversation_id") == cid
            )
        )
        assert (event["change"], event["user_ids"]) == ("members_removed", [alice.id])
    row = await db.fetchrow(
        "SELECT username, display_name, bio, password_hash, is_active, is_admin, deleted_at, "
        "email, email_verified_at FROM users WHERE id = $1",
        alice.id,
    )
    assert row["email"] is None and row["email_verified_at"] is None
    for table, columns in (
        ("email_tokens", ("user_id",)),
        ("contacts", ("user_id", "contact_id")),
        ("contact_requests", ("requester_id", "recipient_id")),
        ("blocks", ("blocker_id", "blocked_id")),
        ("group_invitations", ("user_id", "inviter_id")),
    ):
        where = " OR ".join(f"{column} = $1" for column in columns)
        count = await db.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", alice.id)
        assert count == 0, table
    # Others' rows stay: Dave's block of Carol.
    assert await db.fetchval("SELECT count(*) FROM blocks WHERE blocker_id = $1", dave.id) == 1
    assert row["username"] == alice.username  # reserved
    assert row["display_name"] is None and row["password_hash"] is None and row["bio"] == ""
    assert row["is_active"] is False and row["deleted_at"] is not None
    for table in ("sessions", "refresh_tokens", "conversation_members"):
        count = await db.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", alice.id)
        assert count == 0, table
    # The group has a new owner; the message stays, with Alice's id as its sender.
    owner = await db.fetchval(
        "SELECT user_id FROM conversation_members WHERE conversation_id = $1 AND role = 'owner'",
        group,
    )
    assert owner in (bob.id, carol.id)
    history = await client.get(f"/conversations/{group}/messages", headers=bob.headers)
    [message] = [m for m in (await history.json())["items"] if m.get("body")]
    assert (message["sender_id"], message["body"]) == (alice.id, "hello from alice")


async def test_the_deleted_users_people_hear_that_it_is_gone(
    make_client, make_user, make_group, connect, db
) -> None:
    """Its contact hears ``removed``, people with a request to or from it ``cancelled``, the
    invitee of its invitation ``withdrawn``, and whoever saw its presence ``hidden``."""
    client = await make_client(presence_grace_s=0.1)
    alice, carol, dave, erin, frank, gina = [await make_user() for _ in range(6)]
    await db.execute(
        "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2), ($2, $1)", alice.id, carol.id
    )
    await request_contact(client, alice, dave.id)
    await request_contact(client, erin, alice.id)
    await make_group(alice, frank)
    await set_policy(client, gina, group_policy="contacts")
    invited_to = (await create_conversation(client, alice, [gina.id], "Lunch"))["id"]
    socks = {u.id: await connect(u, test_client=client) for u in (carol, dave, erin, frank, gina)}
    watchers = (socks[carol.id], socks[frank.id])
    for sock in watchers:
        await subscribe(sock)
    alice_sock = await connect(alice, test_client=client)
    for sock in watchers:
        assert (await presence_of(sock, alice))["status"] == "online"

    assert (await delete_me(client, alice.headers)).status == 204

    removed = await next_event(socks[carol.id], "contact")
    assert (removed["change"], removed["user"]["id"]) == ("removed", alice.id)
    for user, direction in ((dave, "incoming"), (erin, "outgoing")):
        cancelled = await next_event(socks[user.id], "contact")
        assert (cancelled["change"], cancelled["direction"]) == ("cancelled", direction)
        assert cancelled["user"]["id"] == alice.id
    withdrawn = await next_event(socks[gina.id], "invitation")
    assert (withdrawn["change"], withdrawn["conversation_id"]) == ("withdrawn", invited_to)
    for sock in watchers:
        assert await presence_of(sock, alice) == {
            "type": "presence",
            "user_id": alice.id,
            "status": "hidden",
            "last_seen": None,
        }
    assert (await closed_with(alice_sock))[0] == 4001


async def test_a_deleted_account_goes_hidden_never_offline(
    make_client, make_user, connect, db
) -> None:
    """With only a contact (no conversation, whose change would reset audiences anyway)."""
    client = await make_client(presence_grace_s=0.1)
    alice, carol = await make_user(), await make_user()
    await db.execute(
        "INSERT INTO contacts (user_id, contact_id) VALUES ($1, $2), ($2, $1)", alice.id, carol.id
    )
    watcher = await connect(carol, test_client=client)
    await subscribe(watcher)
    alice_sock = await connect(alice, test_client=client)
    assert (await presence_of(watcher, alice))["status"] == "online"
    presence = client.app[PRESENCE]
    changes = presence.changes
    assert (await delete_me(client, alice.headers)).status == 204
    assert (await presence_of(watcher, alice))["status"] == "hidden"
    # Her socket closed and the grace ran out: the step that took her offline (the second
    # change since the deletion, after the hidden) ran, and told nobody.
    assert (await closed_with(alice_sock))[0] == 4001
    await eventually(lambda: presence.changes >= changes + 2, what="alice's offline step")
    await nothing_pending(watcher, about=alice.id)


async def test_a_deleted_account_is_gone_for_good(client, make_user, make_group) -> None:
    alice, bob = await make_user(), await make_user()
    group = await make_group(bob, await make_user())
    assert (await delete_me(client, alice.headers)).status == 204
    # Its tokens, its password, its name.
    assert (await client.get("/users/me", headers=alice.headers)).status == 401
    refused = await login(client, alice.username)
    assert (await error_of(refused, 401))["code"] == "invalid_credentials"
    taken = await client.post(
        "/auth/signup", json={"username": alice.username.upper(), "password": "another secret"}
    )
    assert (await error_of(taken, 409))["code"] == "username_taken"
    # Nobody finds it or adds it anywhere.
    assert (await client.get(f"/users/{alice.id}", headers=bob.headers)).status == 404
    found = await client.get("/users", params={"q": alice.username}, headers=bob.headers)
    assert (await found.json())["items"] == []
    added = await client.post(
        f"/conversations/{group}/members", json={"user_ids": [alice.id]}, headers=bob.headers
    )
    assert (await error_of(added, 422))["field"] == "user_ids"
    direct = await client.post(
        "/conversations", json={"member_ids": [alice.id]}, headers=bob.headers
    )
    assert direct.status == 422


async def test_the_last_admin_cannot_delete_their_account(client, make_user) -> None:
    admin = await make_user(is_admin=True)
    body = await error_of(await delete_me(client, admin.headers), 409)
    assert body["code"] == "conflict"
    other = await make_user(is_admin=True)
    assert (await delete_me(client, admin.headers)).status == 204
    # Now the other one is the last.
    assert (await delete_me(client, other.headers)).status == 409


async def test_deletions_never_deadlock_with_message_batches(
    client, make_user, make_group, database_url
) -> None:
    # Deletion locks the conversations it leaves in id order before any member row, as message
    # batches and marker flushes do; a batch's foreign-key check on the sender does not wait
    # for the deleted user's row lock. Any other order deadlocks here (PostgreSQL breaks it
    # after 1 s: a 500 for the deletion or an error for the batch).
    senders = [await make_user() for _ in range(3)]
    leaving = [await make_user() for _ in range(4)]
    cids = [await make_group(*senders, *leaving) for _ in range(6)]
    pool = await asyncpg.create_pool(database_url, min_size=4, max_size=4)
    deadlocks = 0
    stop = asyncio.Event()

    async def batches(worker: int) -> None:
        nonlocal deadlocks
        rng = random.Random(worker)
        n = 0
        while not stop.is_set():
            batch = []
            for cid in rng.sample(cids, len(cids)):
                n += 1
                # Messages from the leaving users too: their foreign-key checks on users.
                sender = rng.choice(senders + leaving)
                batch.append(NewMessage(cid, sender.id, f"w{worker}-{n}", "hi", None))
            async with pool.acquire() as conn:
                try:
                    await append_messages(conn, batch)
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

    workers = [asyncio.create_task(batches(w)) for w in range(3)]
    try:
        answers = await asyncio.gather(*(delete_me(client, user.headers) for user in leaving))
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await pool.close()
    assert [answer.status for answer in answers] == [204] * len(leaving)
    assert deadlocks == 0
