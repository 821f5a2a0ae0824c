"""Account administration: the paged, filtered list of every account, promotion and demotion,
deleting an account, and the rules that keep an administrator from removing themselves."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import error_of
from tests.test_sessions import closed_with, open_socket, sign_in


async def admin_list(client, admin, **params: str) -> dict[str, Any]:
    resp = await client.get("/admin/users", params=params, headers=admin.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_admin_routes_are_403_for_everyone_else(client, make_user) -> None:
    user, other = await make_user(), await make_user()
    for method, path, body in (
        ("GET", "/admin/users", None),
        ("PATCH", f"/admin/users/{other.id}", {"is_admin": True}),
        ("DELETE", f"/admin/users/{other.id}", None),
    ):
        resp = await client.request(method, path, json=body, headers=user.headers)
        assert (await error_of(resp, 403))["code"] == "forbidden", (method, path)
        assert (await client.request(method, path, json=body)).status == 401
    assert (await client.get("/users/me", headers=other.headers)).status == 200


async def test_the_list_pages_by_username_and_filters(client, make_user) -> None:
    admin = await make_user("zz_admin", is_admin=True)
    names = ["pg_alpha", "pg_bravo", "pg_charlie", "pg_delta", "pg_echo"]
    made = {name: await make_user(name) for name in names}
    await client.patch(
        f"/admin/users/{made['pg_bravo'].id}", json={"is_active": False}, headers=admin.headers
    )
    await client.patch(
        f"/admin/users/{made['pg_charlie'].id}", json={"is_admin": True}, headers=admin.headers
    )
    assert (
        await client.delete(f"/admin/users/{made['pg_delta'].id}", headers=admin.headers)
    ).status == 204

    seen: list[str] = []
    page = await admin_list(client, admin, q="PG_", limit="2")
    while True:
        assert len(page["items"]) <= 2
        seen += [item["username"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        page = await admin_list(client, admin, q="pg_", limit="2", cursor=page["next_cursor"])
    assert seen == names

    def usernames(body: dict[str, Any]) -> list[str]:
        return [item["username"] for item in body["items"]]

    assert usernames(await admin_list(client, admin, q="pg_", state="disabled")) == ["pg_bravo"]
    assert usernames(await admin_list(client, admin, q="pg_", state="admin")) == ["pg_charlie"]
    deleted = await admin_list(client, admin, q="pg_", state="deleted")
    assert usernames(deleted) == ["pg_delta"]
    assert deleted["items"][0]["deleted"] is True and deleted["items"][0]["display_name"] is None
    active = usernames(await admin_list(client, admin, q="pg_", state="active"))
    assert active == ["pg_alpha", "pg_charlie", "pg_echo"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "sleeping"}, "state"),
        ({"q": "not a prefix!"}, "q"),
        ({"q": "x" * 33}, "q"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_422(client, make_user, params, field) -> None:
    admin = await make_user(is_admin=True)
    resp = await client.get("/admin/users", params=params, headers=admin.headers)
    assert (await error_of(resp, 422))["field"] == field


async def test_promote_and_demote(client, make_user) -> None:
    admin, user = await make_user(is_admin=True), await make_user()
    resp = await client.patch(
        f"/admin/users/{user.id}", json={"is_admin": True}, headers=admin.headers
    )
    assert (await resp.json())["is_admin"] is True
    # The new administrator may now administer, and demote the first one.
    resp = await client.patch(
        f"/admin/users/{admin.id}", json={"is_admin": False}, headers=user.headers
    )
    assert (await resp.json())["is_admin"] is False
    assert (await client.get("/admin/users", headers=admin.headers)).status == 403


async def test_an_admin_cannot_remove_themselves(client, make_user) -> None:
    admin = await make_user(is_admin=True)
    for body in ({"is_admin": False}, {"is_active": False}):
        resp = await client.patch(f"/admin/users/{admin.id}", json=body, headers=admin.headers)
        assert (await error_of(resp, 409))["code"] == "conflict"
    resp = await client.delete(f"/admin/users/{admin.id}", headers=admin.headers)
    assert (await error_of(resp, 409))["code"] == "conflict"
    assert (await client.get("/admin/users", headers=admin.headers)).status == 200


async def test_an_admin_deletes_an_account(client, make_user, db) -> None:
    admin, user = await make_user(is_admin=True), await make_user()
    device = await sign_in(client, user.username)
    sock = await open_socket(client, device)
    assert (await client.delete(f"/admin/users/{user.id}", headers=admin.headers)).status == 204
    assert await closed_with(sock) == (4001, "account deleted")
    assert (await client.get("/users/me", headers=device.headers)).status == 401
    row = await db.fetchrow(
        "SELECT display_name, password_hash FROM users WHERE id = $1 AND deleted_at IS NOT NULL",
        user.id,
    )
    assert row is not None and row["display_name"] is None and row["password_hash"] is None
    # Deleted is final: not again, not re-enabled.
    again = await client.delete(f"/admin/users/{user.id}", headers=admin.headers)
    assert (await error_of(again, 404))["code"] == "not_found"
    revive = await client.patch(
        f"/admin/users/{user.id}", json={"is_active": True}, headers=admin.headers
    )
    assert (await error_of(revive, 409))["code"] == "conflict"
    unknown = await client.delete("/admin/users/999999999", headers=admin.headers)
    assert unknown.status == 404
