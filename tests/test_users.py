"""Profiles, password changes, the user directory and account administration over HTTP."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest

from tests.conftest import TEST_PASSWORD, error_of, login
from trustmess.appkeys import ACTIVE_USERS
from trustmess.store import users

PUBLIC_FIELDS = {"id", "username", "display_name", "bio", "created_at"}


# --- /users/me ----------------------------------------------------------------------------


async def test_me_returns_the_profile(client, make_user) -> None:
    user = await make_user("alice")
    resp = await client.get("/users/me", headers=user.headers)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == PUBLIC_FIELDS | {
        "is_admin",
        "email",
        "email_verified",
        "direct_policy",
        "group_policy",
        "presence_visibility",
    }
    assert (body["direct_policy"], body["group_policy"]) == ("anyone", "anyone")
    assert body["presence_visibility"] == "everyone"  # the default
    assert body["id"] == user.id
    assert body["username"] == "alice"
    assert body["display_name"] == "Alice"
    assert body["is_admin"] is False


async def test_me_shows_admin_flag(client, make_user) -> None:
    admin = await make_user(is_admin=True)
    body = await (await client.get("/users/me", headers=admin.headers)).json()
    assert body["is_admin"] is True


@pytest.mark.parametrize("method", ["GET", "PATCH"])
async def test_me_needs_a_token(client, method) -> None:
    resp = await client.request(method, "/users/me", json={})
    assert (await error_of(resp, 401))["code"] == "unauthenticated"


async def test_patch_me_updates_profile_and_updated_at(client, make_user, db) -> None:
    user = await make_user()
    await db.execute("UPDATE users SET updated_at = now() - interval '1 day'")
    before = await db.fetchval("SELECT updated_at FROM users WHERE id = $1", user.id)
    resp = await client.patch(
        "/users/me", json={"display_name": "New Name", "bio": "hello"}, headers=user.headers
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["display_name"] == "New Name" and body["bio"] == "hello"
    assert "is_admin" in body
    after = await db.fetchval("SELECT updated_at FROM users WHERE id = $1", user.id)
    assert after > before
    # Absent fields keep their value.
    resp = await client.patch("/users/me", json={"bio": ""}, headers=user.headers)
    body = await resp.json()
    assert body["display_name"] == "New Name" and body["bio"] == ""


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE users; --",
        "Robert\"); DELETE FROM refresh_tokens WHERE ('1'='1",
        "%_\\ LIKE '%' OR 1=1",
        "Zoë 🧑‍🚀 Ωμέγα 漢字 עברית ﷽",
        "$1 $2 ::text",
    ],
)
async def test_sql_looking_and_unicode_text_round_trips(client, make_user, db, text) -> None:
    user = await make_user()
    resp = await client.patch(
        "/users/me", json={"display_name": text, "bio": text}, headers=user.headers
    )
    assert resp.status == 200
    for body in (
        await resp.json(),
        await (await client.get("/users/me", headers=user.headers)).json(),
    ):
        assert body["display_name"] == text and body["bio"] == text
    row = await db.fetchrow("SELECT display_name, bio FROM users WHERE id = $1", user.id)
    assert tuple(row) == (text, text)
    assert await db.fetchval("SELECT count(*) FROM users") == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": ""}, "display_name"),
        ({"display_name": "   "}, "display_name"),
        ({"display_name": "x" * 65}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"display_name": 3}, "display_name"),
        ({"display_name": "a\x00b"}, "display_name"),
        ({"bio": "b" * 501}, "bio"),
        ({"bio": None}, "bio"),
        ({"bio": "\x00"}, "bio"),
        ({"display_name": "\u202eroot"}, "display_name"),
        ({"display_name": "\u200b"}, "display_name"),
        ({"display_name": "\x1b[31mred"}, "display_name"),
        ({"bio": "\x1b]0;title\x07"}, "bio"),
        ({"bio": "\u202eevil"}, "bio"),
        ({"username": "renamed"}, "username"),
        ({"is_admin": True}, "is_admin"),
    ],
)
async def test_patch_me_rejects_bad_fields(client, make_user, body, field) -> None:
    user = await make_user()
    error = await error_of(await client.patch("/users/me", json=body, headers=user.headers), 422)
    assert error["code"] == "invalid"
    assert error["field"] == field


async def test_patch_me_limits_are_inclusive(client, make_user) -> None:
    user = await make_user()
    resp = await client.patch(
        "/users/me", json={"display_name": "x" * 64, "bio": "b" * 500}, headers=user.headers
    )
    assert resp.status == 200


async def test_patch_me_bad_bodies(client, make_user) -> None:
    user = await make_user()
    resp = await client.patch("/users/me", data=b"nope", headers=user.headers)
    assert (await error_of(resp, 400))["code"] == "bad_json"
    resp = await client.patch("/users/me", json="string", headers=user.headers)
    assert (await error_of(resp, 400))["code"] == "bad_request"
    resp = await client.patch(
        "/users/me", data=b'{"bio": "' + b"b" * 70_000 + b'"}', headers=user.headers
    )
    assert (await error_of(resp, 413))["code"] == "too_large"


# --- password change ----------------------------------------------------------------------


async def change_password(client, user, current: str, new: str):
    return await client.post(
        "/users/me/password",
        json={"current_password": current, "new_password": new},
        headers=user.headers,
    )


async def test_password_change_swaps_password_and_ends_sessions(client, make_user) -> None:
    user = await make_user()
    session = await (await login(client, user.username)).json()
    other = await make_user()
    others = await (await login(client, other.username)).json()
    resp = await change_password(client, user, TEST_PASSWORD, "a brand new secret")
    assert resp.status == 204
    assert (await login(client, user.username)).status == 401
    assert (await login(client, user.username, "a brand new secret")).status == 200
    refused = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert (await error_of(refused, 401))["code"] == "unauthenticated"
    kept = await client.post("/auth/refresh", json={"refresh_token": others["refresh_token"]})
    assert kept.status == 200


async def test_wrong_current_password_is_422_on_that_field(client, make_user, db) -> None:
    user = await make_user()
    before = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    error = await error_of(
        await change_password(client, user, "not it at all", "new password!"), 422
    )
    assert error["code"] == "invalid"
    assert error["field"] == "current_password"
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"current_password": TEST_PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": TEST_PASSWORD, "new_password": "n" * 129}, "new_password"),
        ({"current_password": TEST_PASSWORD, "new_password": "nul\x00password"}, "new_password"),
        ({"current_password": TEST_PASSWORD}, "new_password"),
        ({"new_password": "long enough"}, "current_password"),
        ({"current_password": 1, "new_password": "long enough"}, "current_password"),
        ({"current_password": TEST_PASSWORD, "new_password": "x" * 9, "x": 1}, "x"),
    ],
)
async def test_password_change_validates_fields(client, make_user, body, field) -> None:
    user = await make_user()
    resp = await client.post("/users/me/password", json=body, headers=user.headers)
    assert (await error_of(resp, 422))["field"] == field


async def test_new_password_must_not_be_the_username(client, make_user) -> None:
    user = await make_user("samantha")
    error = await error_of(await change_password(client, user, TEST_PASSWORD, "SAMANTHA"), 422)
    assert error["field"] == "new_password"


async def test_password_change_needs_a_token(client) -> None:
    resp = await client.post(
        "/users/me/password", json={"current_password": TEST_PASSWORD, "new_password": "x" * 10}
    )
    assert resp.status == 401


async def test_password_guessing_is_rate_limited_per_user(make_client, make_user) -> None:
    client = await make_client(auth_rate_per_s=0.001, auth_burst=2)
    user, other = await make_user(), await make_user()
    # Logins do not spend it (strangers can fail those as they like) ...
    for _ in range(3):
        assert (await login(client, user.username, "wrong guess!")).status in (401, 429)
    # ... and a right current password gives back what it paid.
    assert (await change_password(client, user, TEST_PASSWORD, "new password!")).status == 204
    user = replace(user, password="new password!")
    for _ in range(2):
        resp = await change_password(client, user, "wrong guess!", "newer password!")
        assert resp.status == 422
    resp = await change_password(client, user, user.password, "newer password!")
    assert (await error_of(resp, 429))["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) > 60
    # The budget is the user's own.
    assert (await change_password(client, other, TEST_PASSWORD, "new password!")).status == 204


# --- the directory ------------------------------------------------------------------------


async def search(client, user, **params):
    return await client.get("/users", params=params, headers=user.headers)


async def usernames(client, user, **params) -> list[str]:
    resp = await search(client, user, **params)
    assert resp.status == 200, await resp.text()
    return [item["username"] for item in (await resp.json())["items"]]


async def test_search_by_username_or_display_name_prefix(client, make_user, db) -> None:
    me = await make_user("zed")
    for name in ("anna", "annabel", "bob", "hannah"):
        await make_user(name)
    await db.execute("UPDATE users SET display_name = 'Annie B' WHERE username = 'bob'")
    assert await usernames(client, me, q="ANN") == ["anna", "annabel", "bob"]
    assert await usernames(client, me, q="annab") == ["annabel"]
    # A prefix, not a substring.
    assert await usernames(client, me, q="nnah") == []


async def test_search_items_are_public_profiles(client, make_user) -> None:
    me = await make_user("zed")
    body = await (await search(client, me)).json()
    assert body["next_cursor"] is None
    assert [set(item) for item in body["items"]] == [PUBLIC_FIELDS]


async def test_search_escapes_like_wildcards(client, make_user, db) -> None:
    me = await make_user("zed")
    await make_user("a_b")
    await make_user("axb")
    await make_user("percent")
    await db.execute("UPDATE users SET display_name = '100% real' WHERE username = 'percent'")
    await db.execute("UPDATE users SET display_name = 'back\\slash' WHERE username = 'axb'")
    assert await usernames(client, me, q="a_") == ["a_b"]
    assert await usernames(client, me, q="%") == []
    assert await usernames(client, me, q="100%") == ["percent"]
    assert await usernames(client, me, q="back\\s") == ["axb"]
    assert await usernames(client, me, q="back\\") == ["axb"]
    assert await usernames(client, me, q="\\") == []


async def test_empty_query_lists_every_active_user(client, make_user, db) -> None:
    me = await make_user("myself")
    others = [await make_user(name) for name in ("ccc", "bbb", "aaa")]
    gone = await make_user("disabled.one")
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", gone.id)
    expected = sorted([me.username] + [u.username for u in others])
    assert await usernames(client, me) == expected
    assert await usernames(client, me, q="") == expected
    assert await usernames(client, me, q="disabled") == []


async def test_pagination_walks_every_user_once(client, make_user) -> None:
    me = await make_user("aaa")
    for i in range(6):
        await make_user(f"user{i}")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "3"} if cursor is None else {"limit": "3", "cursor": cursor}
        body = await (await search(client, me, **params)).json()
        assert len(body["items"]) <= 3
        seen += [item["username"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(["aaa"] + [f"user{i}" for i in range(6)])


async def test_exactly_full_last_page_has_no_cursor(client, make_user) -> None:
    me = await make_user("aaa")
    await make_user("bbb")
    body = await (await search(client, me, limit="2")).json()
    assert len(body["items"]) == 2
    assert body["next_cursor"] is None


async def test_default_and_maximum_page_sizes(client, make_user, db) -> None:
    me = await make_user("aaa")
    await db.execute(
        "INSERT INTO users (username, password_hash, display_name) "
        "SELECT 'bulk' || lpad(i::text, 3, '0'), 'x', 'Bulk' FROM generate_series(1, 120) i"
    )
    body = await (await search(client, me)).json()
    assert len(body["items"]) == 20 and body["next_cursor"]
    body = await (await search(client, me, limit="100")).json()
    assert len(body["items"]) == 100 and body["next_cursor"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": " 5"}, "limit"),
        ({"limit": "+5"}, "limit"),
        ({"limit": "1_0"}, "limit"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"NOT A NAME").decode()}, "cursor"),
        ({"cursor": "ü"}, "cursor"),
        ({"q": "q" * 65}, "q"),
        ({"q": "a\x00"}, "q"),
    ],
)
async def test_bad_search_parameters_are_422(client, make_user, params, field) -> None:
    me = await make_user()
    error = await error_of(await search(client, me, **params), 422)
    assert error["code"] == "invalid"
    assert error["field"] == field


class RecordingConnection:
    """Passes ``fetch`` to a connection and keeps each query and its arguments."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.queries: list[tuple[str, tuple]] = []

    async def fetch(self, query: str, *args):
        self.queries.append((query, args))
        return await self.conn.fetch(query, *args)


def plan_nodes(plan: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(plan_nodes(child))
    return found


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_directory_search_uses_indexes_not_a_table_scan(db, plan_cache_mode) -> None:
    # 100,000 users, names spread over the alphabet, statistics up to date.
    await db.execute(
        "INSERT INTO users (username, password_hash, display_name) "
        "SELECT 'u' || g, 'x', 'Name ' || md5(g::text) FROM generate_series(1, 100000) AS g"
    )
    await db.execute("ANALYZE users")
    # asyncpg prepares every statement: after five runs PostgreSQL may use a generic plan,
    # which cannot look inside the parameters. Both kinds must find the index.
    await db.execute(f"SET plan_cache_mode = {plan_cache_mode}")
    for prefix, after in (("u4242", None), ("NAME 0A", None), ("name 0a", "u5"), ("q", None)):
        recording = RecordingConnection(db)
        found = await users.search_active_users(recording, prefix, after_username=after, limit=21)
        ((query, args),) = recording.queries
        plan = await db.fetchval("EXPLAIN (FORMAT JSON) " + query, *args)
        nodes = plan_nodes(json.loads(plan)[0]["Plan"])
        scans = {node["Node Type"] for node in nodes if node.get("Relation Name") == "users"}
        assert "Seq Scan" not in scans, (prefix, plan)
        # Not a walk of every username in order either (the LIMIT trap): each half of the OR
        # is a range of its own index.
        used = {node.get("Index Name") for node in nodes}
        assert {"ix_users_username_prefix", "ix_users_display_name_prefix"} <= used, plan
        assert all(
            u.username.startswith(prefix.lower())
            or u.display_name.lower().startswith(prefix.lower())
            for u in found
        )
    assert len(await users.search_active_users(db, "u4242", after_username=None, limit=50)) == 11


async def test_directory_search_is_rate_limited_per_user(make_client, make_user) -> None:
    client = await make_client(search_rate_per_s=0.01, search_burst=3)
    me, other = await make_user(), await make_user()
    for prefix in ("a", "al", "ali"):
        assert (await search(client, me, q=prefix)).status == 200
    resp = await search(client, me, q="alic")
    assert (await error_of(resp, 429))["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 90
    # Someone else, even from the same address, still searches.
    assert (await search(client, other, q="alice")).status == 200


async def test_directory_needs_a_token(client) -> None:
    assert (await client.get("/users")).status == 401
    assert (await client.get("/users/1")).status == 401


# --- /users/{id} --------------------------------------------------------------------------


async def test_get_user_returns_only_public_fields(client, make_user) -> None:
    me = await make_user()
    other = await make_user("other", is_admin=True)
    resp = await client.get(f"/users/{other.id}", headers=me.headers)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == PUBLIC_FIELDS
    assert body["id"] == other.id and body["username"] == "other"


@pytest.mark.parametrize("path", ["/users/999999", "/users/0", "/users/abc", "/users/-1"])
async def test_unknown_users_are_404(client, make_user, path) -> None:
    me = await make_user()
    error = await error_of(await client.get(path, headers=me.headers), 404)
    assert error["code"] == "not_found"


async def test_disabled_users_are_404(client, make_user, db) -> None:
    me = await make_user()
    other = await make_user()
    await db.execute("UPDATE users SET is_active = false WHERE id = $1", other.id)
    assert (await client.get(f"/users/{other.id}", headers=me.headers)).status == 404


# --- administration -----------------------------------------------------------------------


async def admin_patch(client, admin, user_id, body):
    return await client.patch(f"/admin/users/{user_id}", json=body, headers=admin.headers)


async def test_admin_disables_a_user_with_immediate_effect(client, make_user) -> None:
    admin = await make_user(is_admin=True)
    user = await make_user()
    session = await (await login(client, user.username)).json()
    # Cache "active" for this user, as a busy server would have.
    assert (await client.get("/users/me", headers=user.headers)).status == 200
    resp = await admin_patch(client, admin, user.id, {"is_active": False})
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == PUBLIC_FIELDS | {"is_active", "is_admin", "deleted"}
    assert body["is_active"] is False and body["is_admin"] is False
    assert (await client.get("/users/me", headers=user.headers)).status == 401
    refused = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refused.status == 401
    assert (await error_of(await login(client, user.username), 403))["code"] == "account_disabled"


async def test_admin_reenables_a_user(client, make_user) -> None:
    admin = await make_user(is_admin=True)
    user = await make_user()
    assert (await admin_patch(client, admin, user.id, {"is_active": False})).status == 200
    assert (await client.get("/users/me", headers=user.headers)).status == 401
    resp = await admin_patch(client, admin, user.id, {"is_active": True})
    assert (await resp.json())["is_active"] is True
    # Nothing issued before the disable comes back: the user logs in anew.
    assert (await client.get("/users/me", headers=user.headers)).status == 401
    fresh = await login(client, user.username)
    assert fresh.status == 200
    headers = {"Authorization": f"Bearer {(await fresh.json())['access_token']}"}
    assert (await client.get("/users/me", headers=headers)).status == 200


async def test_disabling_forgets_the_cached_active_flag(client, make_user, monkeypatch) -> None:
    admin = await make_user(is_admin=True)
    user = await make_user()
    forgotten: list[int] = []
    cache = client.app[ACTIVE_USERS]
    real_forget = cache.forget
    monkeypatch.setattr(cache, "forget", lambda uid: (forgotten.append(uid), real_forget(uid)))
    await admin_patch(client, admin, user.id, {"is_active": False})
    # Forgotten here (and again by the control operation every node applies).
    assert forgotten and set(forgotten) == {user.id}


async def test_admin_promotes_and_demotes(client, make_user, db) -> None:
    admin = await make_user(is_admin=True)
    user = await make_user()
    body = await (await admin_patch(client, admin, user.id, {"is_admin": True})).json()
    assert body["is_admin"] is True and body["is_active"] is True
    assert await db.fetchval("SELECT is_admin FROM users WHERE id = $1", user.id)
    # The new admin's old token works for admin routes: the flag is read from the database.
    assert (await admin_patch(client, user, admin.id, {})).status == 200
    body = await (await admin_patch(client, admin, user.id, {"is_admin": False})).json()
    assert body["is_admin"] is False


async def test_empty_admin_patch_returns_the_admin_view(client, make_user) -> None:
    admin = await make_user(is_admin=True)
    user = await make_user("target")
    body = await (await admin_patch(client, admin, user.id, {})).json()
    assert body["username"] == "target" and body["is_active"] is True


async def test_non_admins_are_forbidden(client, make_user, db) -> None:
    user = await make_user()
    other = await make_user()
    for target in (other.id, 999999):
        error = await error_of(await admin_patch(client, user, target, {"is_active": False}), 403)
        assert error["code"] == "forbidden"
    assert await db.fetchval("SELECT is_active FROM users WHERE id = $1", other.id)


async def test_admin_rights_are_checked_in_the_database(client, make_user, db) -> None:
    admin = await make_user(is_admin=True)
    other = await make_user()
    await db.execute("UPDATE users SET is_admin = false WHERE id = $1", admin.id)
    resp = await admin_patch(client, admin, other.id, {"is_active": False})
    assert (await error_of(resp, 403))["code"] == "forbidden"


async def test_admin_routes_need_a_token(client, make_user) -> None:
    user = await make_user()
    resp = await client.patch(f"/admin/users/{user.id}", json={"is_active": False})
    assert (await error_of(resp, 401))["code"] == "unauthenticated"


@pytest.mark.parametrize("path", ["/admin/users/999999", "/admin/users/nope"])
async def test_admin_patch_of_unknown_user_is_404(client, make_user, path) -> None:
    admin = await make_user(is_admin=True)
    resp = await client.patch(path, json={"is_active": False}, headers=admin.headers)
    assert (await error_of(resp, 404))["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"is_active": "false"}, "is_active"),
        ({"is_admin": 1}, "is_admin"),
        ({"username": "x"}, "username"),
    ],
)
async def test_admin_patch_validates_fields(client, make_user, body, field) -> None:
    admin = await make_user(is_admin=True)
    user = await make_user()
    error = await error_of(await admin_patch(client, admin, user.id, body), 422)
    assert error["field"] == field


@pytest.mark.parametrize("body", [{"is_active": False}, {"is_admin": False}])
async def test_admins_cannot_lock_themselves_out(client, make_user, body) -> None:
    admin = await make_user(is_admin=True)
    error = await error_of(await admin_patch(client, admin, admin.id, body), 409)
    assert error["code"] == "conflict"
    assert (await admin_patch(client, admin, admin.id, {"is_admin": True})).status == 200
