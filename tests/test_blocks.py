"""Blocking in every path: a direct conversation's creation, an existing direct conversation
(HTTP and socket sends, edits, reactions), group adds, contact requests; what a block undoes;
and what the blocked side can and cannot tell."""

from __future__ import annotations

from urllib.parse import quote

from tests.conftest import create_conversation, error_of, message_frame
from tests.test_contacts import ids, next_contact_event, request_contact


async def block(client, user, other_id: int, status: int = 204) -> None:
    resp = await client.put(f"/blocks/{other_id}", headers=user.headers)
    assert resp.status == status, await resp.text()


async def send(client, user, cid: int, cmid: str):
    return await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": cmid, "body": f"body of {cmid}"},
        headers=user.headers,
    )


async def test_a_blocked_user_cannot_open_a_direct_conversation(client, make_user, db) -> None:
    alice, mallory, carol = await make_user(), await make_user(), await make_user()
    await block(client, alice, mallory.id)
    refused = await client.post(
        "/conversations", json={"member_ids": [alice.id]}, headers=mallory.headers
    )
    blocked_error = await error_of(refused, 403)
    assert blocked_error["code"] == "not_allowed"
    # The very answer a privacy setting gives: the blocked side cannot tell them apart.
    await client.patch("/users/me", json={"direct_policy": "contacts"}, headers=carol.headers)
    policy = await client.post(
        "/conversations", json={"member_ids": [carol.id]}, headers=mallory.headers
    )
    assert await error_of(policy, 403) == blocked_error
    # The blocker is told it is its own block.
    mine = await client.post(
        "/conversations", json={"member_ids": [mallory.id]}, headers=alice.headers
    )
    assert (await error_of(mine, 409))["code"] == "conflict"
    assert await db.fetchval("SELECT count(*) FROM conversations WHERE kind = 'direct'") == 0


async def test_an_existing_direct_conversation_takes_no_new_messages(
    client, make_user, connect
) -> None:
    alice, mallory = await make_user(), await make_user()
    direct = await create_conversation(client, mallory, [alice.id])
    cid = direct["id"]
    assert (await send(client, mallory, cid, "before")).status == 201
    await block(client, alice, mallory.id)

    # HTTP send, either side.
    for user in (mallory, alice):
        error = await error_of(await send(client, user, cid, f"after-{user.id}"), 403)
        assert error["code"] == "blocked"
    # Socket send.
    mallory_ws = await connect(mallory)
    answer = await mallory_ws.request(message_frame(cid, "socket-after"))
    assert (answer["type"], answer["code"]) == ("error", "blocked")
    # Typing (a start) too; a stop is harmless.
    typing = await mallory_ws.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert (typing["type"], typing["code"]) == ("error", "blocked")
    stop = await mallory_ws.request({"type": "typing", "conversation_id": cid, "state": "stop"})
    assert stop["type"] == "reply"
    # Edits and reactions are refused too; deleting one's own message is not.
    edit = await client.patch(
        f"/conversations/{cid}/messages/1", json={"body": "changed"}, headers=mallory.headers
    )
    assert (await error_of(edit, 403))["code"] == "blocked"
    react = await client.put(
        f"/conversations/{cid}/messages/1/reactions/{quote('👍')}", headers=mallory.headers
    )
    assert (await error_of(react, 403))["code"] == "blocked"
    history = await client.get(f"/conversations/{cid}/messages", headers=alice.headers)
    assert [m["client_msg_id"] for m in (await history.json())["items"]] == ["before"]
    delete = await client.delete(f"/conversations/{cid}/messages/1", headers=mallory.headers)
    assert delete.status == 200
    # The conversation is found again (not a second one), and unblocking reopens it.
    again = await client.post(
        "/conversations", json={"member_ids": [alice.id]}, headers=mallory.headers
    )
    assert again.status == 200
    resp = await client.delete(f"/blocks/{mallory.id}", headers=alice.headers)
    assert resp.status == 204
    assert (await send(client, mallory, cid, "unblocked")).status == 201
    answer = await mallory_ws.request(message_frame(cid, "socket-unblocked"))
    assert answer["type"] == "reply", answer
    typing = await mallory_ws.request({"type": "typing", "conversation_id": cid, "state": "start"})
    assert typing["type"] == "reply", typing
    # A block either way closes it: Mallory blocking Alice does too.
    await block(client, mallory, alice.id)
    assert (await error_of(await send(client, alice, cid, "x"), 403))["code"] == "blocked"


async def test_group_messages_are_not_affected(client, make_user) -> None:
    alice, mallory = await make_user(), await make_user()
    group = await create_conversation(client, alice, [mallory.id], "Shared")
    await block(client, alice, mallory.id)
    assert (await send(client, mallory, group["id"], "in-group")).status == 201


async def test_a_blocked_user_cannot_add_the_blocker_to_a_group(client, make_user, db) -> None:
    alice, mallory, bob = await make_user(), await make_user(), await make_user()
    await block(client, alice, mallory.id)
    created = await create_conversation(client, mallory, [alice.id, bob.id], "Trap")
    assert [m["id"] for m in created["members"]] == [mallory.id, bob.id]
    # Told "invited", like a user whose policy asks for invitations; nothing is stored.
    assert created["invited"] == [alice.id]
    group = await create_conversation(client, mallory, [bob.id], "Later")
    resp = await client.post(
        f"/conversations/{group['id']}/members",
        json={"user_ids": [alice.id]},
        headers=mallory.headers,
    )
    body = await resp.json()
    assert resp.status == 200
    assert (body["invited"], len(body["members"])) == ([alice.id], 2)
    assert await db.fetchval("SELECT count(*) FROM group_invitations") == 0
    listed = await client.get("/conversations", headers=alice.headers)
    assert (await listed.json())["items"] == []
    # Anybody else may still add Alice.
    ok = await create_conversation(client, bob, [alice.id], "Friends")
    assert alice.id in [m["id"] for m in ok["members"]]


async def test_a_blocked_users_contact_request_never_arrives(client, make_user, connect) -> None:
    alice, mallory, carol = await make_user(), await make_user(), await make_user()
    alice_ws = await connect(alice)
    await block(client, alice, mallory.id)
    held = await request_contact(client, mallory, alice.id, "let me in")
    assert held["state"] == "pending"
    assert await ids(client, mallory, "/contact-requests/outgoing") == [alice.id]
    assert await ids(client, alice, "/contact-requests/incoming") == []
    await request_contact(client, carol, alice.id)
    event = await next_contact_event(alice_ws)
    assert (event["change"], event["user"]["id"]) == ("requested", carol.id)
    # The blocker cannot request the blocked user without unblocking.
    resp = await client.post(
        "/contact-requests", json={"user_id": mallory.id}, headers=alice.headers
    )
    assert (await error_of(resp, 409))["code"] == "conflict"


async def test_blocking_ends_the_contact_and_the_requests(client, make_user, connect) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await request_contact(client, bob, alice.id)
    await client.post(f"/contact-requests/incoming/{bob.id}/accept", headers=alice.headers)
    await request_contact(client, carol, alice.id)
    await request_contact(client, alice, carol.id, status=200)  # crossing: contacts now
    await client.delete(f"/contacts/{carol.id}", headers=alice.headers)
    await request_contact(client, carol, alice.id)  # pending again
    alice_ws, bob_ws, carol_ws = await connect(alice), await connect(bob), await connect(carol)

    await block(client, alice, bob.id)
    for sock, other in ((alice_ws, bob), (bob_ws, alice)):
        event = await next_contact_event(sock)
        assert (event["change"], event["user"]["id"]) == ("removed", other.id)
    assert await ids(client, alice, "/contacts") == []
    assert await ids(client, bob, "/contacts") == []

    await block(client, alice, carol.id)
    declined = await next_contact_event(alice_ws)
    assert (declined["change"], declined["direction"]) == ("declined", "incoming")
    assert await ids(client, alice, "/contact-requests/incoming") == []
    # Carol's request still looks pending to her, as after any decline.
    assert await ids(client, carol, "/contact-requests/outgoing") == [alice.id]
    await block(client, alice, carol.id)  # again: nothing changes
    blocked = await client.get("/blocks", headers=alice.headers)
    assert [b["user"]["id"] for b in (await blocked.json())["items"]] == [carol.id, bob.id]
    # Carol heard nothing: her next contact event is one she causes herself.
    dave_id = bob.id
    await request_contact(client, carol, dave_id)
    event = await next_contact_event(carol_ws)
    assert (event["change"], event["user"]["id"]) == ("requested", dave_id)


async def test_blocks_bad_requests(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    error = await error_of(await client.put(f"/blocks/{alice.id}", headers=alice.headers), 422)
    assert error["field"] == "user_id"
    error = await error_of(await client.put(f"/blocks/{bob.id + 99}", headers=alice.headers), 404)
    assert error["message"] == "user not found"
    error = await error_of(await client.delete(f"/blocks/{bob.id}", headers=alice.headers), 404)
    assert error["message"] == "block not found"
    await error_of(await client.put(f"/blocks/{bob.id}"), 401)
    # Only one's own blocks are listed.
    await block(client, bob, alice.id)
    assert (await (await client.get("/blocks", headers=alice.headers)).json())["items"] == []
