"""Group membership over HTTP: adding members, leaving, removal by the owner, ownership
hand-over, and that every change takes effect on the very next request."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import create_conversation


async def add(client, user, conversation_id, user_ids):
    return await client.post(
        f"/conversations/{conversation_id}/members",
        json={"user_ids": user_ids},
        headers=user.headers,
    )


async def remove(client, user, conversation_id, user_id):
    return await client.delete(
        f"/conversations/{conversation_id}/members/{user_id}", headers=user.headers
    )


async def roles(db, conversation_id: int) -> dict[int, str]:
    rows = await db.fetch(
        "SELECT user_id, role FROM conversation_members WHERE conversation_id = $1",
        conversation_id,
    )
    return {row["user_id"]: row["role"] for row in rows}


async def bulk_users(db, n: int) -> list[int]:
    rows = await db.fetch(
        "INSERT INTO users (username, password_hash, display_name) "
        "SELECT 'bulk' || g, 'x', 'Bulk ' || g FROM generate_series(1, $1) AS g RETURNING id",
        n,
    )
    return [row["id"] for row in rows]


# ---------------------------------------------------------------- adding


async def test_any_member_may_add_and_existing_members_are_ignored(
    client, make_user, db, insert_messages
) -> None:
    alice, bob, carol, dave = [await make_user() for _ in range(4)]
    group = await create_conversation(client, alice, [bob.id], "Group")
    await insert_messages(group["id"], alice.id, 4)
    resp = await add(client, bob, group["id"], [alice.id, carol.id, bob.id, dave.id, carol.id])
    assert resp.status == 200
    body = await resp.json()
    assert [m["id"] for m in body["members"]] == [alice.id, bob.id, carol.id, dave.id]
    assert await roles(db, group["id"]) == {
        alice.id: "owner",
        bob.id: "member",
        carol.id: "member",
        dave.id: "member",
    }
    # The newcomer sees the history, but what came before it joined is not unread.
    shown = await (await client.get(f"/conversations/{group['id']}", headers=carol.headers)).json()
    assert (shown["last_seq"], shown["read_seq"], shown["unread"]) == (4, 4, 0)
    history = await client.get(f"/conversations/{group['id']}/messages", headers=carol.headers)
    assert [m["seq"] for m in (await history.json())["items"]] == [1, 2, 3, 4]
    # Adding only existing members changes nothing.
    resp = await add(client, carol, group["id"], [alice.id, dave.id])
    assert resp.status == 200
    assert len((await resp.json())["members"]) == 4


async def test_add_names_unknown_and_inactive_users_and_adds_nobody(client, make_user, db) -> None:
    alice, bob, carol, gone = [await make_user() for _ in range(4)]
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", gone.id)
    group = await create_conversation(client, alice, [bob.id], "Group")
    unknown = gone.id + 500
    resp = await add(client, alice, group["id"], [carol.id, unknown, gone.id])
    assert resp.status == 422
    assert (await resp.json())["error"] == {
        "code": "invalid",
        "message": f"user_ids: unknown or inactive users: {gone.id}, {unknown}",
        "field": "user_ids",
    }
    assert set(await roles(db, group["id"])) == {alice.id, bob.id}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "user_ids"),
        ({"user_ids": []}, "user_ids"),
        ({"user_ids": 3}, "user_ids"),
        ({"user_ids": [0]}, "user_ids"),
        ({"user_ids": [3], "role": "owner"}, "role"),
    ],
)
async def test_add_rejects_bad_fields(client, make_user, payload, field) -> None:
    alice, bob = await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    resp = await client.post(
        f"/conversations/{group['id']}/members", json=payload, headers=alice.headers
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field


async def test_cannot_add_to_a_direct_conversation(client, make_user, db) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    direct = await create_conversation(client, alice, [bob.id])
    resp = await add(client, alice, direct["id"], [carol.id])
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", "user_ids")
    assert set(await roles(db, direct["id"])) == {alice.id, bob.id}


async def test_non_member_cannot_add(client, make_user, db) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    resp = await add(client, mallory, group["id"], [mallory.id])
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    assert mallory.id not in await roles(db, group["id"])


async def test_member_limit_is_1000(client, make_user, db) -> None:
    alice = await make_user()
    ids = await bulk_users(db, 1000)
    group = await create_conversation(client, alice, ids[:998], "Group")
    resp = await add(client, alice, group["id"], ids[998:])
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "user_ids"
    resp = await add(client, alice, group["id"], [ids[0], ids[998]])
    assert resp.status == 200
    assert len((await resp.json())["members"]) == 1000
    resp = await add(client, alice, group["id"], [ids[999]])
    assert resp.status == 422
    assert await db.fetchval("SELECT count(*) FROM conversation_members") == 1000


async def test_concurrent_adds_respect_the_limit(client, make_user, db) -> None:
    alice = await make_user()
    ids = await bulk_users(db, 1006)
    group = await create_conversation(client, alice, ids[:997], "Group")
    newcomers = ids[997:]
    responses = await asyncio.gather(
        *(add(client, alice, group["id"], [user_id]) for user_id in newcomers)
    )
    assert sorted(resp.status for resp in responses) == [200] * 2 + [422] * 7
    assert await db.fetchval("SELECT count(*) FROM conversation_members") == 1000


async def test_added_member_gets_access_at_once(client, make_user) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    path = f"/conversations/{group['id']}"
    assert (await client.get(path, headers=carol.headers)).status == 404
    assert (await add(client, bob, group["id"], [carol.id])).status == 200
    assert (await client.get(path, headers=carol.headers)).status == 200
    resp = await client.post(
        f"{path}/messages", json={"client_msg_id": "c1", "body": "hello"}, headers=carol.headers
    )
    assert resp.status == 201


# ---------------------------------------------------------------- leaving and removal


async def test_removed_member_loses_access_at_once(client, make_user, insert_messages) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id, carol.id], "Group")
    cid = group["id"]
    await insert_messages(cid, carol.id, 2)
    resp = await remove(client, alice, cid, carol.id)
    assert resp.status == 204
    assert await resp.read() == b""
    path = f"/conversations/{cid}"
    missing = await (await client.get("/conversations/999999", headers=carol.headers)).json()
    for method, url, payload in [
        ("GET", path, None),
        ("GET", f"{path}/messages", None),
        ("POST", f"{path}/messages", {"client_msg_id": "late", "body": "still here?"}),
        ("POST", f"{path}/read", {"seq": 1}),
        ("PATCH", path, {"title": "mine"}),
        ("POST", f"{path}/members", {"user_ids": [carol.id]}),
        ("DELETE", f"{path}/members/{carol.id}", None),
    ]:
        resp = await client.request(method, url, json=payload, headers=carol.headers)
        assert resp.status == 404, (method, url)
        assert await resp.json() == missing
    listed = await (await client.get("/conversations", headers=carol.headers)).json()
    assert listed["items"] == []
    # The others keep the whole history, the removed member's messages included.
    history = await (await client.get(f"{path}/messages", headers=bob.headers)).json()
    assert [(m["seq"], m["sender_id"]) for m in history["items"]] == [(1, carol.id), (2, carol.id)]
    shown = await (await client.get(path, headers=bob.headers)).json()
    assert [m["id"] for m in shown["members"]] == [alice.id, bob.id]


async def test_member_may_leave(client, make_user, db) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id, carol.id], "Group")
    resp = await remove(client, bob, group["id"], bob.id)
    assert resp.status == 204
    assert await roles(db, group["id"]) == {alice.id: "owner", carol.id: "member"}


async def test_only_the_owner_removes_others(client, make_user, db) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id, carol.id], "Group")
    resp = await remove(client, bob, group["id"], carol.id)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    resp = await remove(client, bob, group["id"], alice.id)
    assert resp.status == 403
    assert set(await roles(db, group["id"])) == {alice.id, bob.id, carol.id}
    assert (await remove(client, alice, group["id"], bob.id)).status == 204
    assert set(await roles(db, group["id"])) == {alice.id, carol.id}


async def test_removing_a_non_member_is_404(client, make_user) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    resp = await remove(client, alice, group["id"], carol.id)
    assert resp.status == 404
    resp = await remove(client, carol, group["id"], carol.id)
    assert resp.status == 404


async def test_owner_leaving_hands_ownership_to_longest_standing_member(
    client, make_user, db
) -> None:
    alice, bob, carol, dave = [await make_user() for _ in range(4)]
    group = await create_conversation(client, alice, [bob.id, carol.id, dave.id], "Group")
    cid = group["id"]
    # Carol joined first, then dave, then bob (ids alone would pick bob).
    for user, minutes in ((carol, 1), (dave, 2), (bob, 3)):
        await db.execute(
            "UPDATE conversation_members SET joined_at = now() - make_interval(mins => $3) "
            "WHERE conversation_id = $1 AND user_id = $2",
            cid,
            user.id,
            10 - minutes,
        )
    assert (await remove(client, alice, cid, alice.id)).status == 204
    assert await roles(db, cid) == {carol.id: "owner", dave.id: "member", bob.id: "member"}
    # The new owner may now remove others.
    assert (await remove(client, carol, cid, bob.id)).status == 204
    shown = await (await client.get(f"/conversations/{cid}", headers=dave.headers)).json()
    assert [(m["id"], m["role"]) for m in shown["members"]] == [
        (carol.id, "owner"),
        (dave.id, "member"),
    ]


async def test_last_member_leaving_keeps_the_history(
    client, make_user, db, insert_messages
) -> None:
    alice, bob = await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    cid = group["id"]
    await insert_messages(cid, bob.id, 3)
    assert (await remove(client, bob, cid, bob.id)).status == 204
    assert await roles(db, cid) == {alice.id: "owner"}
    assert (await remove(client, alice, cid, alice.id)).status == 204
    assert await roles(db, cid) == {}
    assert await db.fetchval("SELECT count(*) FROM conversations WHERE id = $1", cid) == 1
    assert await db.fetchval("SELECT count(*) FROM messages WHERE conversation_id = $1", cid) == 3
    for user in (alice, bob):
        assert (await client.get(f"/conversations/{cid}", headers=user.headers)).status == 404


async def test_direct_conversation_cannot_be_left(client, make_user, db) -> None:
    alice, bob = await make_user(), await make_user()
    direct = await create_conversation(client, alice, [bob.id])
    for target in (alice.id, bob.id):
        resp = await remove(client, alice, direct["id"], target)
        # Nothing the client sent is at fault, only the conversation's kind: 409, no field.
        assert resp.status == 409
        error = (await resp.json())["error"]
        assert error["code"] == "conflict" and "field" not in error, error
    assert set(await roles(db, direct["id"])) == {alice.id, bob.id}


@pytest.mark.parametrize("raw", ["me", "0", "-2", "1e3", "99999999999999999999"])
async def test_non_integer_user_id_in_path_is_404(client, make_user, raw) -> None:
    alice, bob = await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    resp = await client.delete(f"/conversations/{group['id']}/members/{raw}", headers=alice.headers)
    assert resp.status == 404


async def test_readded_member_sees_the_conversation_again(
    client, make_user, insert_messages
) -> None:
    alice, bob = await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    cid = group["id"]
    assert (await remove(client, alice, cid, bob.id)).status == 204
    await insert_messages(cid, alice.id, 2)
    assert (await add(client, alice, cid, [bob.id])).status == 200
    shown = await (await client.get(f"/conversations/{cid}", headers=bob.headers)).json()
    assert (shown["last_seq"], shown["read_seq"]) == (2, 2)


# ---------------------------------------------------------------- live events


async def test_removed_member_and_the_rest_are_told(client, make_user, connect) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id, carol.id], "Group")
    bob_socket, carol_socket = await connect(bob), await connect(carol)
    assert (await remove(client, alice, group["id"], carol.id)).status == 204
    removed = await carol_socket.recv_type("removed")
    assert removed == {"type": "removed", "conversation_id": group["id"]}
    changed = await bob_socket.recv_type("conversation_update")
    assert changed == {
        "type": "conversation_update",
        "conversation_id": group["id"],
        "version": 2,
        "change": "members_removed",
        "user_ids": [carol.id],
        "owner_id": alice.id,
    }


async def test_added_member_is_told(client, make_user, connect) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    carol_socket = await connect(carol)
    assert (await add(client, alice, group["id"], [carol.id])).status == 200
    event = await carol_socket.recv_type("conversation")
    assert event["id"] == group["id"] and event["version"] == 2
    assert [m["id"] for m in event["members"]] == [alice.id, bob.id, carol.id]


async def test_each_added_member_is_told_its_own_read_marker_and_unread_count(
    client, make_user, connect, insert_messages, db
) -> None:
    alice, bob, carol, dave = [await make_user() for _ in range(4)]
    group = await create_conversation(client, alice, [bob.id], "Group")
    cid = group["id"]
    assert (await remove(client, alice, cid, bob.id)).status == 204
    await insert_messages(cid, alice.id, 3)
    bob_socket, carol_socket = await connect(bob), await connect(carol)
    assert (await add(client, alice, cid, [bob.id, carol.id, dave.id])).status == 200
    for_bob = await bob_socket.recv_type("conversation")
    for_carol = await carol_socket.recv_type("conversation")
    # Newcomers start with everything read; each view is the member's own.
    assert (for_bob["read_seq"], for_bob["unread"]) == (3, 0)
    assert for_bob["members"] == for_carol["members"] and len(for_bob["members"]) == 4
    own_view = await client.get(f"/conversations/{cid}", headers=bob.headers)
    assert for_bob == {"type": "conversation", **(await own_view.json())}


async def test_a_rename_sends_members_only_the_new_title(client, make_user, connect) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id, carol.id], "Group")
    alice_socket, bob_socket = await connect(alice), await connect(bob)
    resp = await client.patch(
        f"/conversations/{group['id']}", json={"title": "Renamed"}, headers=bob.headers
    )
    assert resp.status == 200 and (await resp.json())["version"] == 2
    expected = {
        "type": "conversation_update",
        "conversation_id": group["id"],
        "version": 2,
        "change": "title",
        "title": "Renamed",
    }
    assert await alice_socket.recv_type("conversation_update") == expected
    assert await bob_socket.recv_type("conversation_update") == expected


async def test_others_hear_who_was_added_and_the_owner_moving_on(
    client, make_user, connect
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id], "Group")
    cid = group["id"]
    assert group["version"] == 1
    bob_socket = await connect(bob)
    assert (await add(client, alice, cid, [carol.id])).status == 200
    added = await bob_socket.recv_type("conversation_update")
    assert added["change"] == "members_added" and added["version"] == 2
    assert added["members"] == [
        {
            "id": carol.id,
            "username": carol.username,
            "display_name": carol.username.title(),
            "role": "member",
        }
    ]
    assert (await remove(client, alice, cid, alice.id)).status == 204  # the owner leaves
    left = await bob_socket.recv_type("conversation_update")
    assert (left["change"], left["version"]) == ("members_removed", 3)
    assert (left["user_ids"], left["owner_id"]) == ([alice.id], bob.id)
    shown = await (await client.get(f"/conversations/{cid}", headers=bob.headers)).json()
    assert shown["version"] == 3
    assert {m["id"]: m["role"] for m in shown["members"]} == {bob.id: "owner", carol.id: "member"}
