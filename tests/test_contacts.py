"""Contacts and contact requests over HTTP, with the live ``contact`` events on both sides'
sockets: request, accept, decline (never told), cancel, remove, crossing requests, the cooldown
after a decline, the per-user rate limit, and that nobody can address another's requests."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import error_of
from tests.openapi_contract import load_document
from tests.test_protocol_schema import payload_validator
from trustmess.http import contacts
from trustmess.store import consent


async def request_contact(client, user, other_id: int, message: str | None = None, *, status=201):
    payload: dict[str, Any] = {"user_id": other_id}
    if message is not None:
        payload["message"] = message
    resp = await client.post("/contact-requests", json=payload, headers=user.headers)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def listing(client, user, path: str) -> list[dict[str, Any]]:
    resp = await client.get(path, headers=user.headers)
    assert resp.status == 200, await resp.text()
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def ids(client, user, path: str) -> list[int]:
    return [item["user"]["id"] for item in await listing(client, user, path)]


async def next_event(sock, kind: str) -> dict[str, Any]:
    """The next ``kind`` event, which must match its protocol/asyncapi.yaml schema."""
    event: dict[str, Any] = await sock.recv_type(kind)
    errors = [e.message for e in payload_validator(f"server.{kind}").iter_errors(event)]
    assert errors == [], (event, errors)
    return event


async def next_contact_event(sock) -> dict[str, Any]:
    return await next_event(sock, "contact")


async def test_request_accept_and_remove_with_live_events(client, make_user, connect) -> None:
    alice, bob = await make_user(), await make_user()
    alice_ws, bob_ws = await connect(alice), await connect(bob)

    sent = await request_contact(client, alice, bob.id, "  hello from the conference  ")
    assert sent["state"] == "pending"
    assert sent["request"]["direction"] == "outgoing"
    assert sent["request"]["user"]["id"] == bob.id
    assert sent["request"]["message"] == "hello from the conference"

    seen_by_bob = await next_contact_event(bob_ws)
    assert seen_by_bob["change"] == "requested"
    assert seen_by_bob["user"]["id"] == alice.id
    assert seen_by_bob["request"]["direction"] == "incoming"
    assert seen_by_bob["request"]["message"] == "hello from the conference"
    seen_by_alice = await next_contact_event(alice_ws)
    assert (seen_by_alice["change"], seen_by_alice["user"]["id"]) == ("requested", bob.id)
    assert seen_by_alice["request"]["direction"] == "outgoing"

    assert await ids(client, bob, "/contact-requests/incoming") == [alice.id]
    assert await ids(client, alice, "/contact-requests/outgoing") == [bob.id]
    assert await ids(client, alice, "/contact-requests/incoming") == []

    # Asking again changes nothing: 200 with the same request.
    again = await request_contact(client, alice, bob.id, "other words", status=200)
    assert again["request"]["message"] == "hello from the conference"

    resp = await client.post(f"/contact-requests/incoming/{alice.id}/accept", headers=bob.headers)
    assert resp.status == 200
    assert (await resp.json())["user"]["id"] == alice.id
    for sock, other in ((alice_ws, bob), (bob_ws, alice)):
        event = await next_contact_event(sock)
        assert (event["change"], event["user"]["id"]) == ("accepted", other.id)
    assert await ids(client, alice, "/contacts") == [bob.id]
    assert await ids(client, bob, "/contacts") == [alice.id]
    assert await ids(client, bob, "/contact-requests/incoming") == []
    assert await ids(client, alice, "/contact-requests/outgoing") == []

    # A request to a contact is a conflict.
    error = await error_of(
        await client.post("/contact-requests", json={"user_id": alice.id}, headers=bob.headers),
        409,
    )
    assert error["code"] == "conflict"

    resp = await client.delete(f"/contacts/{alice.id}", headers=bob.headers)
    assert resp.status == 204
    for sock, other in ((alice_ws, bob), (bob_ws, alice)):
        event = await next_contact_event(sock)
        assert (event["change"], event["user"]["id"]) == ("removed", other.id)
    assert await ids(client, alice, "/contacts") == []
    error = await error_of(await client.delete(f"/contacts/{alice.id}", headers=bob.headers), 404)
    assert error["message"] == "contact not found"


async def test_a_decline_is_not_told_and_holds_new_requests_for_the_cooldown(
    client, make_user, connect
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    alice_ws, bob_ws = await connect(alice), await connect(bob)
    await request_contact(client, alice, bob.id)
    assert (await next_contact_event(alice_ws))["change"] == "requested"
    assert (await next_contact_event(bob_ws))["change"] == "requested"

    resp = await client.post(f"/contact-requests/incoming/{alice.id}/decline", headers=bob.headers)
    assert resp.status == 204
    declined = await next_contact_event(bob_ws)
    assert (declined["change"], declined["direction"]) == ("declined", "incoming")
    assert await ids(client, bob, "/contact-requests/incoming") == []
    # Alice still sees it pending, and hears nothing: her next contact event is Carol's.
    assert await ids(client, alice, "/contact-requests/outgoing") == [bob.id]
    await request_contact(client, carol, alice.id)
    event = await next_contact_event(alice_ws)
    assert (event["change"], event["user"]["id"]) == ("requested", carol.id)
    # Declining twice: there is nothing pending any more.
    await error_of(
        await client.post(f"/contact-requests/incoming/{alice.id}/decline", headers=bob.headers),
        404,
    )

    # She withdraws it and asks again at once: it looks new to her, Bob never sees it.
    resp = await client.delete(f"/contact-requests/outgoing/{bob.id}", headers=alice.headers)
    assert resp.status == 204
    cancelled = await next_contact_event(alice_ws)
    assert (cancelled["change"], cancelled["direction"]) == ("cancelled", "outgoing")
    assert await ids(client, alice, "/contact-requests/outgoing") == []
    held = await request_contact(client, alice, bob.id, "please")
    assert held["state"] == "pending"
    assert (await next_contact_event(alice_ws))["change"] == "requested"
    assert await ids(client, bob, "/contact-requests/incoming") == []
    assert await ids(client, alice, "/contact-requests/outgoing") == [bob.id]
    # Bob's socket heard nothing of it: his next contact event is Carol's request.
    await request_contact(client, carol, bob.id)
    event = await next_contact_event(bob_ws)
    assert (event["change"], event["user"]["id"]) == ("requested", carol.id)


async def test_after_the_cooldown_a_declined_request_can_be_made_again(
    make_client, make_user, connect
) -> None:
    client = await make_client(contact_request_cooldown_s=0)
    alice, bob = await make_user(), await make_user()
    bob_ws = await connect(bob, test_client=client)
    await request_contact(client, alice, bob.id)
    await client.post(f"/contact-requests/incoming/{alice.id}/decline", headers=bob.headers)
    assert (await next_contact_event(bob_ws))["change"] == "requested"
    assert (await next_contact_event(bob_ws))["change"] == "declined"
    # Still pending in Alice's eyes; asking again once the cooldown is over sends it anew.
    await request_contact(client, alice, bob.id, "second try", status=201)
    event = await next_contact_event(bob_ws)
    assert (event["change"], event["request"]["message"]) == ("requested", "second try")
    assert await ids(client, bob, "/contact-requests/incoming") == [alice.id]


async def test_crossing_requests_make_contacts(client, make_user, connect) -> None:
    alice, bob = await make_user(), await make_user()
    bob_ws = await connect(bob)
    await request_contact(client, alice, bob.id)
    assert (await next_contact_event(bob_ws))["change"] == "requested"
    accepted = await request_contact(client, bob, alice.id, status=200)
    assert accepted["state"] == "accepted"
    assert accepted["contact"]["user"]["id"] == alice.id
    event = await next_contact_event(bob_ws)
    assert (event["change"], event["user"]["id"]) == ("accepted", alice.id)
    assert await ids(client, alice, "/contacts") == [bob.id]
    assert await ids(client, alice, "/contact-requests/outgoing") == []


async def test_cancelling_a_pending_request_tells_both(client, make_user, connect) -> None:
    alice, bob = await make_user(), await make_user()
    alice_ws, bob_ws = await connect(alice), await connect(bob)
    await request_contact(client, alice, bob.id)
    assert (await next_contact_event(bob_ws))["change"] == "requested"
    assert (await next_contact_event(alice_ws))["change"] == "requested"
    resp = await client.delete(f"/contact-requests/outgoing/{bob.id}", headers=alice.headers)
    assert resp.status == 204
    for sock, direction in ((alice_ws, "outgoing"), (bob_ws, "incoming")):
        event = await next_contact_event(sock)
        assert (event["change"], event["direction"]) == ("cancelled", direction)
    assert await ids(client, bob, "/contact-requests/incoming") == []
    await error_of(
        await client.post(f"/contact-requests/incoming/{alice.id}/accept", headers=bob.headers),
        404,
    )


async def test_nobody_can_answer_or_cancel_anothers_request(client, make_user) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    await request_contact(client, alice, bob.id)
    # Mallory tries every path that names Alice or Bob: the same 404 as for nothing at all.
    for path in (
        f"/contact-requests/incoming/{alice.id}/accept",
        f"/contact-requests/incoming/{alice.id}/decline",
        f"/contact-requests/incoming/{bob.id}/accept",
        f"/contact-requests/incoming/{mallory.id + 1000}/accept",
    ):
        error = await error_of(await client.post(path, headers=mallory.headers), 404)
        assert error["message"] == "contact request not found"
    for other in (bob.id, alice.id):
        error = await error_of(
            await client.delete(f"/contact-requests/outgoing/{other}", headers=mallory.headers),
            404,
        )
        assert error["message"] == "contact request not found"
    # The sender cannot accept its own request either.
    await error_of(
        await client.post(f"/contact-requests/incoming/{bob.id}/accept", headers=alice.headers),
        404,
    )
    assert await ids(client, bob, "/contact-requests/incoming") == [alice.id]
    assert await ids(client, mallory, "/contact-requests/incoming") == []
    await error_of(await client.get("/contacts"), 401)


async def test_bad_requests(client, db, make_user) -> None:
    alice, gone = await make_user(), await make_user()
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", gone.id)
    cases = [
        ({"user_id": alice.id}, 422, "user_id"),
        ({"user_id": "7"}, 422, "user_id"),
        ({}, 422, "user_id"),
        ({"user_id": alice.id + 1, "extra": 1}, 422, "extra"),
        ({"user_id": gone.id, "message": "x" * 201}, 422, "message"),
        ({"user_id": gone.id, "message": "evil \u202e text"}, 422, "message"),
        ({"user_id": gone.id, "message": 5}, 422, "message"),
    ]
    for payload, status, field in cases:
        resp = await client.post("/contact-requests", json=payload, headers=alice.headers)
        error = await error_of(resp, status)
        assert error.get("field") == field, (payload, error)
    for target in (gone.id, gone.id + 1000):
        resp = await client.post(
            "/contact-requests", json={"user_id": target}, headers=alice.headers
        )
        assert (await error_of(resp, 404))["message"] == "user not found"
    error = await error_of(
        await client.get("/contacts?cursor=nonsense", headers=alice.headers), 422
    )
    assert error["field"] == "cursor"


async def test_requests_are_rate_limited_per_user(make_client, make_user) -> None:
    client = await make_client(contact_request_burst=2, contact_request_rate_per_hour=0.001)
    alice, *others = [await make_user() for _ in range(4)]
    await request_contact(client, alice, others[0].id)
    await request_contact(client, alice, others[1].id)
    resp = await client.post(
        "/contact-requests", json={"user_id": others[2].id}, headers=alice.headers
    )
    assert (await error_of(resp, 429))["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1
    assert await ids(client, others[2], "/contact-requests/incoming") == []
    # The budget is Alice's own: Bob is not held back by her.
    await request_contact(client, others[2], others[0].id)


async def test_contacts_page_by_cursor(client, make_user) -> None:
    alice = await make_user()
    friends = [await make_user() for _ in range(3)]
    for friend in friends:
        await request_contact(client, friend, alice.id)
        resp = await client.post(
            f"/contact-requests/incoming/{friend.id}/accept", headers=alice.headers
        )
        assert resp.status == 200
    first = await client.get("/contacts?limit=2", headers=alice.headers)
    page = await first.json()
    assert [c["user"]["id"] for c in page["items"]] == [friends[2].id, friends[1].id]
    rest = await client.get(
        f"/contacts?limit=2&cursor={page['next_cursor']}", headers=alice.headers
    )
    last = await rest.json()
    assert [c["user"]["id"] for c in last["items"]] == [friends[0].id]
    assert last["next_cursor"] is None


def test_documented_limits_are_the_servers() -> None:
    document = load_document()
    schemas = document["components"]["schemas"]
    message = schemas["ContactRequestCreate"]["properties"]["message"]
    assert message["maxLength"] == contacts.REQUEST_MESSAGE_MAX
    assert schemas["ContactRequest"]["properties"]["message"]["oneOf"][0]["maxLength"] == (
        contacts.REQUEST_MESSAGE_MAX
    )
    limit = document["components"]["parameters"]["PageLimit"]["schema"]
    assert (limit["default"], limit["maximum"]) == (contacts.DEFAULT_PAGE, contacts.MAX_PAGE)
    for page in ("ContactPage", "ContactRequestPage", "BlockPage", "InvitationPage"):
        assert schemas[page]["properties"]["items"]["maxItems"] == contacts.MAX_PAGE
    policy = schemas["Policy"]["enum"]
    assert tuple(policy) == consent.POLICIES


async def test_requests_crossing_at_the_same_moment_make_one_contact(client, make_user, db) -> None:
    for _ in range(5):
        alice, bob = await make_user(), await make_user()
        first, second = await asyncio.gather(
            client.post("/contact-requests", json={"user_id": bob.id}, headers=alice.headers),
            client.post("/contact-requests", json={"user_id": alice.id}, headers=bob.headers),
        )
        states = sorted([(await first.json())["state"], (await second.json())["state"]])
        assert states == ["accepted", "pending"]
        assert await ids(client, alice, "/contacts") == [bob.id]
        assert await ids(client, bob, "/contacts") == [alice.id]
        left = await db.fetchval(
            "SELECT count(*) FROM contact_requests WHERE requester_id = ANY($1)",
            [alice.id, bob.id],
        )
        assert left == 0
