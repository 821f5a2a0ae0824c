"""``GET /messages/search``: full-text search over the caller's conversations only, newest
first, paged; deleted messages are never found, membership is checked when searching."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import error_of, message_frame


async def search(client: Any, user: Any, q: str, **params: Any) -> dict[str, Any]:
    resp = await client.get("/messages/search", params={"q": q, **params}, headers=user.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def bodies(page: dict[str, Any]) -> list[str]:
    return [item["body"] for item in page["items"]]


async def post(client: Any, user: Any, cid: int, cmid: str, body: str) -> dict[str, Any]:
    resp = await client.post(
        f"/conversations/{cid}/messages",
        json={"client_msg_id": cmid, "body": body},
        headers=user.headers,
    )
    assert resp.status == 201
    message: dict[str, Any] = await resp.json()
    return message


async def test_finds_words_in_the_callers_conversations_newest_first(
    client, make_user, make_group
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    ours = await make_group(alice, bob)
    theirs = await make_group(bob, carol)
    await post(client, alice, ours, "a1", "Lunch at noon?")
    await post(client, bob, ours, "a2", "lunch is great, NOON works")
    await post(client, bob, theirs, "b1", "lunch without alice at noon")
    await post(client, alice, ours, "a3", "dinner instead")
    assert bodies(await search(client, alice, "noon lunch")) == [
        "lunch is great, NOON works",
        "Lunch at noon?",
    ]
    assert len((await search(client, bob, "noon"))["items"]) == 3
    # Whole words only, every one of them.
    assert bodies(await search(client, alice, "lun")) == []
    assert bodies(await search(client, alice, "lunch dinner")) == []
    assert bodies(await search(client, carol, "lunch")) == ["lunch without alice at noon"]
    item = (await search(client, alice, "dinner"))["items"][0]
    assert set(item) == {
        "id",
        "conversation_id",
        "seq",
        "sender_id",
        "body",
        "reply_to",
        "client_msg_id",
        "created_at",
    }


async def test_pages_and_one_conversation(client, make_user, make_group) -> None:
    alice, bob = await make_user(), await make_user()
    first, second = await make_group(alice, bob), await make_group(alice)
    for n in range(5):
        await post(client, alice, first, f"f{n}", f"report number {n}")
        await post(client, alice, second, f"s{n}", f"report copy {n}")
    page = await search(client, alice, "report", limit=4)
    assert page["has_more"] is True
    seen = [item["id"] for item in page["items"]]
    while page["has_more"]:
        page = await search(client, alice, "report", limit=4, before_id=seen[-1])
        seen += [item["id"] for item in page["items"]]
    assert len(seen) == 10 and seen == sorted(seen, reverse=True)
    only = await search(client, alice, "report", conversation_id=first)
    assert {item["conversation_id"] for item in only["items"]} == {first}
    assert len(only["items"]) == 5
    # Bob may not search a conversation he is not in: the same 404 as for one that is not.
    resp = await client.get(
        "/messages/search", params={"q": "report", "conversation_id": second}, headers=bob.headers
    )
    assert (await error_of(resp, 404))["message"] == "conversation not found"


async def test_removed_members_and_deleted_messages_are_not_found(
    client, make_user, make_group, connect
) -> None:
    owner, member = await make_user(), await make_user()
    cid = await make_group(owner, member)
    gone = await post(client, owner, cid, "m1", "the launch code is swordfish")
    await post(client, owner, cid, "m2", "swordfish for dinner")
    assert len((await search(client, member, "swordfish"))["items"]) == 2
    resp = await client.delete(
        f"/conversations/{cid}/messages/{gone['seq']}", headers=owner.headers
    )
    assert resp.status == 200
    assert bodies(await search(client, member, "swordfish")) == ["swordfish for dinner"]
    assert bodies(await search(client, member, "launch")) == []
    # An edited message is found by its new text only.
    sock = await connect(owner)
    reply = await sock.request(
        {"type": "edit", "conversation_id": cid, "target_seq": 2, "body": "tuna for dinner"}
    )
    assert reply["type"] == "reply", reply
    assert bodies(await search(client, member, "swordfish")) == []
    assert bodies(await search(client, member, "tuna")) == ["tuna for dinner"]
    resp = await client.delete(f"/conversations/{cid}/members/{member.id}", headers=owner.headers)
    assert resp.status == 204, await resp.text()
    assert bodies(await search(client, member, "tuna")) == []
    assert bodies(await search(client, owner, "tuna")) == ["tuna for dinner"]
    reply = await sock.request(message_frame(cid, "m3", "still here"))
    assert reply["type"] == "reply"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "  ,;!  "}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "ok", "limit": "0"}, "limit"),
        ({"q": "ok", "before_id": "zero"}, "before_id"),
        ({"q": "ok", "conversation_id": "-1"}, "conversation_id"),
    ],
)
async def test_bad_queries(client, make_user, params, field) -> None:
    user = await make_user()
    resp = await client.get("/messages/search", params=params, headers=user.headers)
    assert (await error_of(resp, 422))["field"] == field


async def test_search_needs_a_token(client) -> None:
    resp = await client.get("/messages/search", params={"q": "x"})
    assert resp.status == 401
