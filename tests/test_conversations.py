"""Conversations over HTTP: creating direct and group conversations (with direct dedup under
concurrency), showing, listing by activity with keyset pages, renaming, and the 404 that hides
other people's conversations."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import create_conversation
from trustmess.appkeys import POOL

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CONVERSATION_KEYS = {
    "id",
    "kind",
    "title",
    "version",
    "members",
    "last_seq",
    "read_seq",
    "unread",
    "last_message",
    "created_at",
}


def member_json(user, role: str) -> dict:
    # conftest's make_user sets display_name to the title-cased username.
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.username.title(),
        "role": role,
    }


async def set_activity(db, conversation_id: int, at: datetime) -> None:
    await db.execute(
        "UPDATE conversations SET created_at = $2, last_message_at = NULL WHERE id = $1",
        conversation_id,
        at,
    )


async def list_all(client, user, limit: int) -> list[dict]:
    """Every conversation of ``user`` by following next_cursor (at most 100 pages)."""
    items: list[dict] = []
    params: dict = {"limit": str(limit)}
    for _ in range(100):
        resp = await client.get("/conversations", params=params, headers=user.headers)
        body = await resp.json()
        assert resp.status == 200, body
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        if body["next_cursor"] is None:
            return items
        params["cursor"] = body["next_cursor"]
    raise AssertionError("next_cursor never ran out")


# ---------------------------------------------------------------- creating


async def test_create_group_makes_caller_owner(client, make_user, db) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    body = await create_conversation(client, alice, [bob.id, carol.id], "  Lunch crew  ")
    # A group's creation also says whom it invited instead of adding (nobody here).
    assert set(body) == CONVERSATION_KEYS | {"invited"}
    assert body["invited"] == []
    assert body["kind"] == "group"
    assert body["title"] == "Lunch crew"
    assert body["members"] == [
        member_json(alice, "owner"),
        member_json(bob, "member"),
        member_json(carol, "member"),
    ]
    assert (body["last_seq"], body["read_seq"], body["unread"]) == (0, 0, 0)
    assert body["last_message"] is None
    assert TIMESTAMP.match(body["created_at"])
    row = await db.fetchrow("SELECT kind, title, direct_key, created_by FROM conversations")
    assert dict(row) == {
        "kind": "group",
        "title": "Lunch crew",
        "direct_key": None,
        "created_by": alice.id,
    }


async def test_create_direct_ignores_own_id(client, make_user, db) -> None:
    alice, bob = await make_user(), await make_user()
    body = await create_conversation(client, alice, [alice.id, bob.id])
    assert body["kind"] == "direct"
    assert body["title"] is None
    assert [(m["id"], m["role"]) for m in body["members"]] == [
        (alice.id, "member"),
        (bob.id, "member"),
    ]
    key = await db.fetchval("SELECT direct_key FROM conversations WHERE id = $1", body["id"])
    assert key == f"{min(alice.id, bob.id)}:{max(alice.id, bob.id)}"


async def test_direct_is_found_again_in_both_directions(client, make_user, db) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    first = await create_conversation(client, alice, [bob.id])
    again = await create_conversation(client, alice, [bob.id], status=200)
    reverse = await create_conversation(client, bob, [alice.id], status=200)
    assert first["id"] == again["id"] == reverse["id"]
    assert reverse["read_seq"] == 0
    other = await create_conversation(client, alice, [carol.id])
    assert other["id"] != first["id"]
    assert await db.fetchval("SELECT count(*) FROM conversations") == 2


async def test_concurrent_direct_creates_yield_one_conversation(client, make_user, db) -> None:
    alice, bob = await make_user(), await make_user()

    async def attempt(index: int) -> tuple[int, int]:
        caller, other = (alice, bob) if index % 2 else (bob, alice)
        resp = await client.post(
            "/conversations", json={"member_ids": [other.id]}, headers=caller.headers
        )
        return resp.status, (await resp.json())["id"]

    results = await asyncio.gather(*(attempt(i) for i in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 19 + [201]
    assert len({cid for _, cid in results}) == 1
    assert await db.fetchval("SELECT count(*) FROM conversations") == 1
    assert await db.fetchval("SELECT count(*) FROM conversation_members") == 2


async def test_one_member_with_title_is_a_group(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    body = await create_conversation(client, alice, [bob.id], "Project")
    assert body["kind"] == "group"
    assert body["title"] == "Project"
    again = await create_conversation(client, alice, [bob.id], "Project")
    assert again["id"] != body["id"]


async def test_blank_title_means_no_title(client, make_user) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    group = await create_conversation(client, alice, [bob.id, carol.id], "   ")
    assert (group["kind"], group["title"]) == ("group", None)
    direct = await create_conversation(client, alice, [bob.id], "")
    assert direct["kind"] == "direct"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "member_ids"),
        ({"member_ids": []}, "member_ids"),
        ({"member_ids": "2"}, "member_ids"),
        ({"member_ids": [0]}, "member_ids"),
        ({"member_ids": [-3]}, "member_ids"),
        ({"member_ids": [True]}, "member_ids"),
        ({"member_ids": ["2"]}, "member_ids"),
        ({"member_ids": [2.5]}, "member_ids"),
        ({"member_ids": [2], "title": "x" * 129}, "title"),
        ({"member_ids": [2], "title": 5}, "title"),
        ({"member_ids": [2], "title": "a\x00b"}, "title"),
        ({"member_ids": [2], "kind": "group"}, "kind"),
    ],
)
async def test_create_rejects_bad_fields(client, make_user, payload, field) -> None:
    alice = await make_user()
    await make_user()
    resp = await client.post("/conversations", json=payload, headers=alice.headers)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", field)


async def test_create_with_only_self_is_rejected(client, make_user, db) -> None:
    alice = await make_user()
    await create_conversation(client, alice, [alice.id], status=422)
    assert await db.fetchval("SELECT count(*) FROM conversations") == 0


async def test_create_names_unknown_and_inactive_users(client, make_user, db) -> None:
    alice, bob, gone = await make_user(), await make_user(), await make_user()
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", gone.id)
    unknown = gone.id + 1000
    body = await create_conversation(client, alice, [unknown, bob.id, gone.id], status=422)
    assert body["error"] == {
        "code": "invalid",
        "message": f"member_ids: unknown or inactive users: {gone.id}, {unknown}",
        "field": "member_ids",
    }
    body = await create_conversation(client, alice, [gone.id], status=422)
    assert body["error"]["message"] == f"member_ids: unknown or inactive users: {gone.id}"
    assert await db.fetchval("SELECT count(*) FROM conversations") == 0


async def test_group_of_1000_is_allowed_and_1001_is_not(client, make_user, db) -> None:
    alice = await make_user()
    rows = await db.fetch(
        "INSERT INTO users (username, password_hash, display_name) "
        "SELECT 'bulk' || g, 'x', 'Bulk ' || g FROM generate_series(1, 1000) AS g RETURNING id"
    )
    ids = [row["id"] for row in rows]
    body = await create_conversation(client, alice, ids, status=422)
    assert body["error"]["field"] == "member_ids"
    body = await create_conversation(client, alice, [*ids, alice.id], status=422)
    assert body["error"]["field"] == "member_ids"
    body = await create_conversation(client, alice, ids[:999], "Big")
    assert len(body["members"]) == 1000


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"null", b"42"])
async def test_body_that_is_not_an_object_is_400(client, make_user, raw) -> None:
    alice = await make_user()
    resp = await client.post(
        "/conversations",
        data=raw,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_request"


async def test_body_that_is_not_json_is_400(client, make_user) -> None:
    alice = await make_user()
    resp = await client.post("/conversations", data=b"{nope", headers=alice.headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_json"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/conversations"),
        ("GET", "/conversations"),
        ("GET", "/conversations/1"),
        ("PATCH", "/conversations/1"),
    ],
)
async def test_requires_a_token(client, method, path) -> None:
    resp = await client.request(method, path, json={})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"


# ---------------------------------------------------------------- showing


async def test_show_conversation(client, make_user, insert_messages) -> None:
    alice, bob = await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id], "Chat")
    await insert_messages(created["id"], bob.id, 3)
    resp = await client.get(f"/conversations/{created['id']}", headers=alice.headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == created["id"]
    assert (body["last_seq"], body["read_seq"], body["unread"]) == (3, 0, 3)
    last = body["last_message"]
    assert (last["seq"], last["sender_id"], last["body"]) == (3, bob.id, "message 3")
    assert last["conversation_id"] == created["id"]


async def test_other_peoples_conversation_looks_nonexistent(client, make_user) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id], "Private")
    hidden = await client.get(f"/conversations/{created['id']}", headers=mallory.headers)
    missing = await client.get("/conversations/999999", headers=mallory.headers)
    assert hidden.status == missing.status == 404
    assert await hidden.json() == await missing.json()
    assert (await hidden.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.5", "99999999999999999999", "%C2%B2"])
async def test_non_integer_conversation_id_is_404(client, make_user, raw) -> None:
    alice = await make_user()
    resp = await client.get(f"/conversations/{raw}", headers=alice.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


# ---------------------------------------------------------------- listing


async def test_list_contains_only_own_conversations(client, make_user) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    mine = await create_conversation(client, alice, [bob.id])
    await create_conversation(client, bob, [carol.id])
    resp = await client.get("/conversations", headers=alice.headers)
    body = await resp.json()
    assert [item["id"] for item in body["items"]] == [mine["id"]]
    assert body["next_cursor"] is None
    assert body["items"][0] == mine


async def test_list_orders_by_latest_activity(client, make_user, db) -> None:
    alice, bob = await make_user(), await make_user()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for index in range(3):
        conversation = await create_conversation(client, alice, [bob.id], f"c{index}")
        await set_activity(db, conversation["id"], base + timedelta(minutes=index))
        ids.append(conversation["id"])
    assert [c["id"] for c in await list_all(client, alice, 20)] == ids[::-1]
    # A message makes the oldest conversation the most recent one.
    resp = await client.post(
        f"/conversations/{ids[0]}/messages",
        json={"client_msg_id": "m1", "body": "bump"},
        headers=bob.headers,
    )
    assert resp.status == 201
    listed = await list_all(client, alice, 20)
    assert [c["id"] for c in listed] == [ids[0], ids[2], ids[1]]
    assert listed[0]["last_message"]["body"] == "bump"
    assert listed[0]["unread"] == 1


async def test_list_pages_without_gaps_or_duplicates(client, make_user, db) -> None:
    alice, bob = await make_user(), await make_user()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    expected = []
    for index in range(23):
        conversation = await create_conversation(client, alice, [bob.id], f"c{index}")
        # Groups of three share a timestamp, so the id must break ties.
        at = base + timedelta(seconds=index // 3, microseconds=7)
        await set_activity(db, conversation["id"], at)
        expected.append((at, conversation["id"]))
    expected.sort(reverse=True)
    for limit in (1, 5, 7, 23, 100):
        listed = await list_all(client, alice, limit)
        assert [c["id"] for c in listed] == [cid for _, cid in expected], limit


async def test_list_default_limit_is_20(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    for index in range(21):
        await create_conversation(client, alice, [bob.id], f"c{index}")
    body = await (await client.get("/conversations", headers=alice.headers)).json()
    assert len(body["items"]) == 20
    assert isinstance(body["next_cursor"], str)


def cursor_of(raw: str) -> str:
    """A cursor in the server's encoding (base64url, no padding) of any text."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=MQ", "cursor"),  # "1": no id part
        ("cursor=Ojo", "cursor"),  # "::"
        ("cursor=%00", "cursor"),
        # Well-formed but out of range or not canonical: never a 500 from the database.
        (f"cursor={cursor_of('0:9223372036854775808')}", "cursor"),  # id beyond bigint
        (f"cursor={cursor_of('0:0')}", "cursor"),
        (f"cursor={cursor_of('0:-1')}", "cursor"),
        (f"cursor={cursor_of('9' * 30 + ':1')}", "cursor"),  # beyond datetime
        (f"cursor={cursor_of('0:' + chr(0x0661))}", "cursor"),  # ARABIC-INDIC DIGIT ONE
        (f"cursor={cursor_of('0: 1')}", "cursor"),
        (f"cursor={cursor_of('0:1_0')}", "cursor"),
        (f"cursor={cursor_of('+0:1')}", "cursor"),
        ("limit=" + chr(0x0661) + chr(0x0660), "limit"),
        ("limit=%2B5", "limit"),
        ("limit=1_0", "limit"),
        ("limit=" + "9" * 5000, "limit"),
    ],
)
async def test_list_rejects_bad_query(client, make_user, query, field) -> None:
    alice = await make_user()
    resp = await client.get(f"/conversations?{query}", headers=alice.headers)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", field)


async def test_empty_cursor_is_the_first_page(client, make_user) -> None:
    """As for GET /users: a client can always send `cursor=<the last next_cursor>`."""
    alice, bob = await make_user(), await make_user()
    for index in range(3):
        await create_conversation(client, alice, [bob.id], f"c{index}")
    first = await (await client.get("/conversations?limit=2", headers=alice.headers)).json()
    empty = await (await client.get("/conversations?limit=2&cursor=", headers=alice.headers)).json()
    assert empty == first and first["next_cursor"]


async def test_list_is_one_query_per_page(make_client, make_user, insert_messages) -> None:
    client = await make_client(pool_min=1, pool_max=1)
    alice = await make_user()
    others = [await make_user() for _ in range(4)]
    for index, other in enumerate(others):
        conversation = await create_conversation(client, alice, [other.id], f"c{index}")
        await insert_messages(conversation["id"], other.id, 2)
    queries: list[str] = []
    async with client.app[POOL].acquire() as conn:
        conn.add_query_logger(lambda record: queries.append(record.query))
    resp = await client.get("/conversations", headers=alice.headers)
    assert resp.status == 200
    assert len((await resp.json())["items"]) == 4
    touching = [q for q in queries if "conversation" in q or "messages" in q]
    assert len(touching) == 1, touching


# ---------------------------------------------------------------- renaming


async def test_any_member_may_rename_a_group(client, make_user, db) -> None:
    alice, bob = await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id], "Old")
    resp = await client.patch(
        f"/conversations/{created['id']}", json={"title": "  New  "}, headers=bob.headers
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["title"] == "New"
    assert body["read_seq"] == 0 and body["members"] == created["members"]
    assert await db.fetchval("SELECT title FROM conversations") == "New"


@pytest.mark.parametrize("cleared", [None, "", "   "])
async def test_rename_to_nothing_clears_the_title(client, make_user, db, cleared) -> None:
    alice, bob = await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id], "Old")
    resp = await client.patch(
        f"/conversations/{created['id']}", json={"title": cleared}, headers=alice.headers
    )
    assert resp.status == 200
    assert (await resp.json())["title"] is None
    assert await db.fetchval("SELECT title FROM conversations") is None


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("\u202eevil", "must not contain bidirectional formatting characters (U+202E)"),
        ("\u200b\u200b", "must contain a visible character"),
        ("\x1b[5mblink", "must not contain control characters (U+001B)"),
        ("two\nlines", "must not contain control characters (U+000A)"),
    ],
)
async def test_titles_refuse_controls_bidi_and_invisible_text(
    client, make_user, title, message
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    resp = await client.post(
        "/conversations",
        json={"member_ids": [bob.id, carol.id], "title": title},
        headers=alice.headers,
    )
    error = (await resp.json())["error"]
    assert (resp.status, error["code"], error["field"]) == (422, "invalid", "title")
    assert error["message"] == f"title: {message}"
    group = await create_conversation(client, alice, [bob.id, carol.id], "Lunch")
    resp = await client.patch(
        f"/conversations/{group['id']}", json={"title": title}, headers=alice.headers
    )
    assert (resp.status, (await resp.json())["error"]["field"]) == (422, "title")


@pytest.mark.parametrize(
    "title",
    [
        "'; DROP TABLE conversations; --",
        "Robert'); DELETE FROM messages;--",
        '$1 %s {0} \\x00 "quoted"',
        "日本語のタイトル 🎉",
        "Ünïcödé ñ ﷽",
        "x" * 128,
        "🎉" * 128,
    ],
)
async def test_titles_round_trip(client, make_user, db, title) -> None:
    alice, bob = await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id, (await make_user()).id], title)
    assert created["title"] == title
    resp = await client.patch(
        f"/conversations/{created['id']}", json={"title": title[::-1]}, headers=alice.headers
    )
    assert (await resp.json())["title"] == title[::-1]
    shown = await (await client.get(f"/conversations/{created['id']}", headers=bob.headers)).json()
    assert shown["title"] == title[::-1]
    assert await db.fetchval("SELECT title FROM conversations") == title[::-1]
    assert await db.fetchval("SELECT count(*) FROM conversation_members") == 3


async def test_direct_cannot_be_renamed(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id])
    resp = await client.patch(
        f"/conversations/{created['id']}", json={"title": "Us"}, headers=alice.headers
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid", "title")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "title"),
        ({"title": "x" * 129}, "title"),
        ({"title": 1}, "title"),
        ({"title": "\x00"}, "title"),
        ({"kind": "x"}, "kind"),
    ],
)
async def test_rename_rejects_bad_fields(client, make_user, payload, field) -> None:
    alice, bob = await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id], "Old")
    resp = await client.patch(
        f"/conversations/{created['id']}", json=payload, headers=alice.headers
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field


async def test_non_member_cannot_rename(client, make_user, db) -> None:
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    created = await create_conversation(client, alice, [bob.id], "Old")
    resp = await client.patch(
        f"/conversations/{created['id']}", json={"title": "Mine"}, headers=mallory.headers
    )
    assert resp.status == 404
    assert await db.fetchval("SELECT title FROM conversations") == "Old"
