"""Consent settings on the profile (``direct_policy``, ``group_policy``) and group invitations:
an add a user did not consent to is an invitation, not a membership (no events, no history)
until accepted; the "many groups with one victim" abuse fills no conversation list."""

from __future__ import annotations

from typing import Any

from tests.conftest import create_conversation, error_of, message_frame
from tests.test_contacts import next_event, request_contact


async def set_policy(client, user, **policies: str) -> dict[str, Any]:
    resp = await client.patch("/users/me", json=policies, headers=user.headers)
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def make_contacts(client, user, other) -> None:
    await request_contact(client, user, other.id)
    resp = await client.post(f"/contact-requests/incoming/{user.id}/accept", headers=other.headers)
    assert resp.status == 200


async def invitations(client, user) -> list[dict[str, Any]]:
    resp = await client.get("/invitations", headers=user.headers)
    assert resp.status == 200
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def test_profile_shows_and_changes_the_policies(client, make_user) -> None:
    alice = await make_user()
    me = await (await client.get("/users/me", headers=alice.headers)).json()
    assert (me["direct_policy"], me["group_policy"]) == ("anyone", "anyone")
    changed = await set_policy(client, alice, group_policy="contacts")
    assert (changed["direct_policy"], changed["group_policy"]) == ("anyone", "contacts")
    changed = await set_policy(client, alice, direct_policy="contacts", bio="hi")
    assert (changed["direct_policy"], changed["group_policy"], changed["bio"]) == (
        "contacts",
        "contacts",
        "hi",
    )
    for bad in ({"direct_policy": "nobody"}, {"group_policy": 1}, {"group_policy": None}):
        resp = await client.patch("/users/me", json=bad, headers=alice.headers)
        error = await error_of(resp, 422)
        assert error["field"] == next(iter(bad))
    # Others never see them.
    bob = await make_user()
    public = await (await client.get(f"/users/{alice.id}", headers=bob.headers)).json()
    assert "direct_policy" not in public


async def test_direct_policy_contacts_refuses_strangers_only(client, make_user) -> None:
    alice, stranger, friend = await make_user(), await make_user(), await make_user()
    await make_contacts(client, friend, alice)
    await set_policy(client, alice, direct_policy="contacts")
    resp = await client.post(
        "/conversations", json={"member_ids": [alice.id]}, headers=stranger.headers
    )
    assert (await error_of(resp, 403))["code"] == "not_allowed"
    direct = await create_conversation(client, friend, [alice.id])
    assert direct["kind"] == "direct"
    # Alice may still open one with the stranger (her setting is about others reaching her).
    await create_conversation(client, alice, [stranger.id])
    # And an existing conversation stays: the stranger finds it again.
    again = await client.post(
        "/conversations", json={"member_ids": [alice.id]}, headers=stranger.headers
    )
    assert again.status == 200


async def test_a_group_add_without_consent_is_an_invitation(client, make_user, connect, db) -> None:
    alice, owner, member = await make_user(), await make_user(), await make_user()
    await set_policy(client, alice, group_policy="contacts")
    alice_ws, member_ws = await connect(alice), await connect(member)

    group = await create_conversation(client, owner, [alice.id, member.id], "Invite only")
    cid = group["id"]
    assert [m["id"] for m in group["members"]] == [owner.id, member.id]
    assert group["invited"] == [alice.id]
    event = await next_event(alice_ws, "invitation")
    assert (event["change"], event["conversation_id"]) == ("invited", cid)
    assert event["invitation"]["title"] == "Invite only"
    assert event["invitation"]["inviter"]["id"] == owner.id
    (listed,) = await invitations(client, alice)
    assert (listed["conversation_id"], listed["inviter"]["id"]) == (cid, owner.id)

    # Not a member: 404 everywhere, no join, no messages.
    for path in (f"/conversations/{cid}", f"/conversations/{cid}/messages"):
        assert (await client.get(path, headers=alice.headers)).status == 404
    joined = await alice_ws.request({"type": "join", "conversation_id": cid})
    assert (joined["type"], joined["code"]) == ("error", "not_found")
    sent = await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": "early", "body": "before Alice joins"},
        headers=owner.headers,
    )
    assert sent.status == 201
    assert (await (await client.get("/conversations", headers=alice.headers)).json())["items"] == []

    # Accepting makes her a member; every member hears of it as of any add.
    resp = await client.post(f"/invitations/{cid}/accept", headers=alice.headers)
    assert resp.status == 200
    view = await resp.json()
    assert [m["id"] for m in view["members"]] == [owner.id, member.id, alice.id]
    accepted = await next_event(alice_ws, "invitation")
    assert (accepted["change"], accepted["conversation_id"]) == ("accepted", cid)
    created = await member_ws.recv_type("conversation")  # the group's creation
    assert alice.id not in [m["id"] for m in created["members"]]
    changed = await member_ws.recv_type("conversation_update")
    assert (changed["change"], [m["id"] for m in changed["members"]]) == (
        "members_added",
        [alice.id],
    )
    # Her first conversation event is this one: the group's creation never reached her.
    first = await alice_ws.recv_type("conversation")
    assert (first["id"], alice.id in [m["id"] for m in first["members"]]) == (cid, True)
    history = await client.get(f"/conversations/{cid}/messages", headers=alice.headers)
    assert [m["client_msg_id"] for m in (await history.json())["items"]] == ["early"]
    joined = await alice_ws.request({"type": "join", "conversation_id": cid})
    assert joined["type"] == "reply"
    await alice_ws.send(message_frame(cid, "hello"))
    assert (await alice_ws.recv_type("message"))["client_msg_id"] == "hello"
    assert await invitations(client, alice) == []
    # Spent: a second accept (or a decline) finds nothing.
    for action in ("accept", "decline"):
        resp = await client.post(f"/invitations/{cid}/{action}", headers=alice.headers)
        assert (await error_of(resp, 404))["message"] == "invitation not found"
    assert await db.fetchval("SELECT count(*) FROM group_invitations") == 0


async def test_declining_and_adding_members_and_contacts(client, make_user, connect) -> None:
    alice, owner, friend = await make_user(), await make_user(), await make_user()
    await set_policy(client, alice, group_policy="contacts")
    await make_contacts(client, friend, alice)
    alice_ws = await connect(alice)
    group = await create_conversation(client, owner, [friend.id], "Later")
    cid = group["id"]
    resp = await client.post(
        f"/conversations/{cid}/members", json={"user_ids": [alice.id]}, headers=owner.headers
    )
    body = await resp.json()
    assert (resp.status, body["invited"]) == (200, [alice.id])
    assert alice.id not in [m["id"] for m in body["members"]]
    assert (await next_event(alice_ws, "invitation"))["change"] == "invited"
    # Adding again while invited: still invited, no second invitation.
    resp = await client.post(
        f"/conversations/{cid}/members", json={"user_ids": [alice.id]}, headers=owner.headers
    )
    assert (await resp.json())["invited"] == [alice.id]
    assert len(await invitations(client, alice)) == 1

    resp = await client.post(f"/invitations/{cid}/decline", headers=alice.headers)
    assert resp.status == 204
    assert (await next_event(alice_ws, "invitation"))["change"] == "declined"
    assert await invitations(client, alice) == []
    assert (await client.get(f"/conversations/{cid}", headers=alice.headers)).status == 404

    # Invited again, then a contact adds her at once, whatever her policy: the invitation
    # has served its purpose and goes.
    resp = await client.post(
        f"/conversations/{cid}/members", json={"user_ids": [alice.id]}, headers=owner.headers
    )
    assert (await resp.json())["invited"] == [alice.id]
    assert len(await invitations(client, alice)) == 1
    resp = await client.post(
        f"/conversations/{cid}/members", json={"user_ids": [alice.id]}, headers=friend.headers
    )
    body = await resp.json()
    assert body["invited"] == []
    assert alice.id in [m["id"] for m in body["members"]]
    assert await invitations(client, alice) == []


async def test_nobody_can_answer_anothers_invitation(client, make_user) -> None:
    alice, owner, mallory = await make_user(), await make_user(), await make_user()
    await set_policy(client, alice, group_policy="contacts")
    group = await create_conversation(client, owner, [alice.id, mallory.id], "Private")
    for action in ("accept", "decline"):
        resp = await client.post(f"/invitations/{group['id']}/{action}", headers=mallory.headers)
        assert (await error_of(resp, 404))["message"] == "invitation not found"
        resp = await client.post(f"/invitations/{group['id'] + 50}/{action}", headers=alice.headers)
        assert (await error_of(resp, 404))["message"] == "invitation not found"
    assert await invitations(client, mallory) == []
    assert len(await invitations(client, alice)) == 1


async def test_many_groups_from_a_stranger_fill_no_conversation_list(
    make_client, make_user, db
) -> None:
    """The issue's abuse in small: a stranger creates group after group with the victim in
    it. With group_policy contacts she gets invitations only, at most a few of them, and the
    stranger runs out of budget."""
    client = await make_client(
        contact_request_burst=6, contact_request_rate_per_hour=0.001, invitations_pending_max=3
    )
    victim, stranger = await make_user(), await make_user()
    crowd = [await make_user() for _ in range(3)]
    await set_policy(client, victim, group_policy="contacts")
    created = 0
    refused = None
    for n in range(10):
        resp = await client.post(
            "/conversations",
            json={"member_ids": [victim.id, *[u.id for u in crowd]], "title": f"spam {n}"},
            headers=stranger.headers,
        )
        if resp.status == 429:
            refused = resp
            break
        body = await resp.json()
        assert resp.status == 201, body
        assert body["invited"] == [victim.id]
        created += 1
    assert created == 6
    assert refused is not None and "Retry-After" in refused.headers
    listed = await (await client.get("/conversations", headers=victim.headers)).json()
    assert listed["items"] == []
    assert len(await invitations(client, victim)) == 3
    assert (
        await db.fetchval("SELECT count(*) FROM conversation_members WHERE user_id = $1", victim.id)
        == 0
    )
    # The crowd (group_policy anyone) were added to each group made.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM conversation_members WHERE user_id = $1", crowd[0].id
        )
        == created
    )
