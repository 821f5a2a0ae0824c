"""Sessions (devices) and instant revocation on one node: the list with ``current``, ending one,
logout, logout-all, a password change and an administrator's disable stop the affected access
tokens at once (401) and close their sockets with 4001; re-enabling revives nothing; a fresh
node (a restart) and a resync rebuild the revocations from PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import WSMsgType

from tests.conftest import JWT_SECRET, TEST_PASSWORD, SocketClient, error_of
from tests.test_ws_auth import UPGRADE
from trustmess.appkeys import REVOKED_SESSIONS
from trustmess.gateway import control

# Revocation must reach a socket within this (the bound).
CLOSE_WITHIN_S = 1.0


@dataclass(frozen=True)
class Device:
    """One login: its tokens and session id."""

    access_token: str
    refresh_token: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def session_of(access_token: str) -> str:
    claims = jwt.decode(access_token, JWT_SECRET, algorithms=["HS256"], issuer="trustmess")
    sid: str = claims["sid"]
    return sid


async def sign_in(client, username: str, user_agent: str = "test-client/1.0") -> Device:
    resp = await client.post(
        "/auth/login",
        json={"username": username, "password": TEST_PASSWORD},
        headers={"User-Agent": user_agent},
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return Device(body["access_token"], body["refresh_token"], session_of(body["access_token"]))


async def open_socket(client, device: Device) -> SocketClient:
    sock = SocketClient(await client.ws_connect("/ws", headers=device.headers))
    assert (await sock.recv())["type"] == "hello"
    return sock


async def closed_with(sock: SocketClient, timeout: float = CLOSE_WITHIN_S) -> tuple[int, str]:
    """The close code and reason the server sent, within ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await sock.ws.receive()
            if msg.type == WSMsgType.CLOSE:
                return msg.data, msg.extra
            assert msg.type == WSMsgType.TEXT, msg


async def status_of(client, device: Device) -> int:
    status: int = (await client.get("/users/me", headers=device.headers)).status
    return status


async def sessions_of(client, device: Device) -> list[dict[str, Any]]:
    resp = await client.get("/auth/sessions", headers=device.headers)
    assert resp.status == 200, await resp.text()
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def test_each_login_is_a_session_listed_with_the_current_one_marked(
    client, make_user
) -> None:
    alice = await make_user()
    phone = await sign_in(client, alice.username, "TrustMess/1.0 (Android 15)")
    laptop = await sign_in(client, alice.username, "x" * 300)
    assert phone.session_id != laptop.session_id
    listed = {item["id"]: item for item in await sessions_of(client, phone)}
    assert {phone.session_id, laptop.session_id} <= set(listed)
    assert listed[phone.session_id]["current"] is True
    assert [sid for sid, item in listed.items() if item["current"]] == [phone.session_id]
    assert listed[phone.session_id]["user_agent"] == "TrustMess/1.0 (Android 15)"
    assert listed[laptop.session_id]["user_agent"] == "x" * 256  # capped
    assert listed[phone.session_id]["address"] == "127.0.0.1"
    # Asked from the laptop, the laptop is current.
    current = [item["id"] for item in await sessions_of(client, laptop) if item["current"]]
    assert current == [laptop.session_id]
    # Nobody else's sessions are listed.
    bob = await make_user()
    bobs = await sign_in(client, bob.username)
    assert {item["id"] for item in await sessions_of(client, bobs)} & set(listed) == set()


async def test_a_refresh_keeps_the_session_and_marks_it_used(client, make_user, db) -> None:
    alice = await make_user()
    device = await sign_in(client, alice.username)
    await db.execute(
        "UPDATE sessions SET last_used_at = now() - interval '1 hour' WHERE id = $1",
        device.session_id,
    )
    resp = await client.post("/auth/refresh", json={"refresh_token": device.refresh_token})
    assert resp.status == 200
    refreshed = (await resp.json())["access_token"]
    assert session_of(refreshed) == device.session_id
    age = await db.fetchval(
        "SELECT now() - last_used_at < interval '1 minute' FROM sessions WHERE id = $1",
        device.session_id,
    )
    assert age is True


async def test_another_users_session_id_is_404_and_stays_alive(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    alices = await sign_in(client, alice.username)
    bobs = await sign_in(client, bob.username)
    resp = await client.delete(f"/auth/sessions/{alices.session_id}", headers=bobs.headers)
    assert (await error_of(resp, 404))["code"] == "not_found"
    for bad in ("nonsense", "0" * 32, alices.session_id.upper()):
        resp = await client.delete(f"/auth/sessions/{bad}", headers=bobs.headers)
        assert (await error_of(resp, 404))["code"] == "not_found"
    assert await status_of(client, alices) == 200


async def test_ending_a_session_stops_its_tokens_and_closes_its_socket(client, make_user) -> None:
    alice = await make_user()
    phone = await sign_in(client, alice.username)
    laptop = await sign_in(client, alice.username)
    phone_sock, laptop_sock = await open_socket(client, phone), await open_socket(client, laptop)
    resp = await client.delete(f"/auth/sessions/{phone.session_id}", headers=laptop.headers)
    assert resp.status == 204
    assert await closed_with(phone_sock) == (4001, "session ended")
    assert await status_of(client, phone) == 401
    refused = await client.post("/auth/refresh", json={"refresh_token": phone.refresh_token})
    assert refused.status == 401
    # The rest of the user's devices are untouched.
    assert await status_of(client, laptop) == 200
    assert (await laptop_sock.request({"type": "ping"}))["type"] == "reply"
    assert phone.session_id not in {item["id"] for item in await sessions_of(client, laptop)}
    # Ended already: 404 the second time.
    again = await client.delete(f"/auth/sessions/{phone.session_id}", headers=laptop.headers)
    assert again.status == 404


async def test_a_session_can_end_itself(client, make_user) -> None:
    alice = await make_user()
    device = await sign_in(client, alice.username)
    resp = await client.delete(f"/auth/sessions/{device.session_id}", headers=device.headers)
    assert resp.status == 204
    assert await status_of(client, device) == 401


async def test_logout_stops_the_access_token_at_once_and_closes_its_socket(
    client, make_user
) -> None:
    alice = await make_user()
    device, other = await sign_in(client, alice.username), await sign_in(client, alice.username)
    sock, other_sock = await open_socket(client, device), await open_socket(client, other)
    resp = await client.post("/auth/logout", json={"refresh_token": device.refresh_token})
    assert resp.status == 204
    assert await closed_with(sock) == (4001, "logged out")
    body = await error_of(await client.get("/users/me", headers=device.headers), 401)
    assert body["code"] == "unauthenticated"
    # A socket opened with the dead token is refused, by header and by first-frame auth.
    refused = await client.get("/ws", headers={**device.headers, **UPGRADE})
    assert refused.status == 401
    late = SocketClient(await client.ws_connect("/ws"))
    await late.send({"type": "auth", "token": device.access_token})
    assert await late.closed() == 4001
    # The other device, and a re-auth with its token, are fine; re-auth with the dead one not.
    assert await status_of(client, other) == 200
    answer = await other_sock.request({"type": "auth", "token": device.access_token})
    assert answer["type"] == "error" and answer["code"] == "unauthenticated"


async def test_logout_all_ends_every_session_of_the_caller(client, make_user) -> None:
    alice, bob = await make_user(), await make_user()
    devices = [await sign_in(client, alice.username) for _ in range(3)]
    socks = [await open_socket(client, device) for device in devices]
    bobs = await sign_in(client, bob.username)
    bob_sock = await open_socket(client, bobs)
    assert (await client.post("/auth/logout-all", headers=devices[0].headers)).status == 204
    for sock in socks:
        assert await closed_with(sock) == (4001, "signed out everywhere")
    for device in devices:
        assert await status_of(client, device) == 401
        refresh = await client.post("/auth/refresh", json={"refresh_token": device.refresh_token})
        assert refresh.status == 401
    assert await status_of(client, bobs) == 200
    assert (await bob_sock.request({"type": "ping"}))["type"] == "reply"


async def test_a_password_change_ends_every_other_session(client, make_user) -> None:
    alice = await make_user()
    here, elsewhere = await sign_in(client, alice.username), await sign_in(client, alice.username)
    here_sock, elsewhere_sock = (
        await open_socket(client, here),
        await open_socket(client, elsewhere),
    )
    resp = await client.post(
        "/users/me/password",
        json={"current_password": TEST_PASSWORD, "new_password": "a brand new secret"},
        headers=here.headers,
    )
    assert resp.status == 204
    assert await closed_with(elsewhere_sock) == (4001, "password changed")
    assert await status_of(client, elsewhere) == 401
    refused = await client.post("/auth/refresh", json={"refresh_token": elsewhere.refresh_token})
    assert refused.status == 401
    # The device that changed it stays signed in: token, socket and refresh token.
    assert await status_of(client, here) == 200
    assert (await here_sock.request({"type": "ping"}))["type"] == "reply"
    kept = await client.post("/auth/refresh", json={"refresh_token": here.refresh_token})
    assert kept.status == 200
    assert [item["id"] for item in await sessions_of(client, here)] == [here.session_id]


async def test_disable_stops_everything_and_enabling_revives_nothing(client, make_user) -> None:
    admin, alice = await make_user(is_admin=True), await make_user()
    device = await sign_in(client, alice.username)
    sock = await open_socket(client, device)
    resp = await client.patch(
        f"/admin/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )
    assert resp.status == 200
    code, _ = await closed_with(sock)
    assert code == 4001
    assert await status_of(client, device) == 401
    resp = await client.patch(
        f"/admin/users/{alice.id}", json={"is_active": True}, headers=admin.headers
    )
    assert resp.status == 200
    # Old access and refresh tokens stay dead; make_user's session too.
    assert await status_of(client, device) == 401
    assert (await client.get("/users/me", headers=alice.headers)).status == 401
    refused = await client.post("/auth/refresh", json={"refresh_token": device.refresh_token})
    assert refused.status == 401
    fresh = await sign_in(client, alice.username)
    assert await status_of(client, fresh) == 200


async def test_a_reused_refresh_token_ends_its_session_at_once(client, make_user) -> None:
    alice = await make_user()
    device = await sign_in(client, alice.username)
    first = await client.post("/auth/refresh", json={"refresh_token": device.refresh_token})
    assert first.status == 200
    thief = (await first.json())["access_token"]
    sock = await open_socket(client, Device(thief, "", device.session_id))
    again = await client.post("/auth/refresh", json={"refresh_token": device.refresh_token})
    assert again.status == 401
    assert await closed_with(sock) == (4001, "refresh token reused")
    assert (
        await client.get("/users/me", headers={"Authorization": f"Bearer {thief}"})
    ).status == 401


async def test_revocations_survive_a_restart(make_client, make_user) -> None:
    first = await make_client()
    alice = await make_user()
    device = await sign_in(first, alice.username)
    assert (
        await first.post("/auth/logout", json={"refresh_token": device.refresh_token})
    ).status == 204
    # A node started afterwards (a restart) heard no control operation: the database tells it.
    restarted = await make_client()
    assert len(restarted.app[REVOKED_SESSIONS]) >= 1
    assert await status_of(restarted, device) == 401
    refused = await restarted.get("/ws", headers={**device.headers, **UPGRADE})
    assert refused.status == 401


async def test_resync_closes_sockets_of_sessions_ended_while_the_bus_was_down(
    client, make_user, db
) -> None:
    alice = await make_user()
    device = await sign_in(client, alice.username)
    sock = await open_socket(client, device)
    # Ended by another node whose control operation never arrived here.
    await db.execute("UPDATE sessions SET ended_at = now() WHERE id = $1", device.session_id)
    assert await status_of(client, device) == 200
    await control.resync(client.app)
    assert await closed_with(sock) == (4001, "session ended")
    assert await status_of(client, device) == 401


async def test_ended_sessions_are_forgotten_once_their_tokens_expired(
    make_client, make_user, db
) -> None:
    alice = await make_user()
    first = await make_client()
    device = await sign_in(first, alice.username)
    await first.post("/auth/logout", json={"refresh_token": device.refresh_token})
    # Pretend it ended long ago: longer than any access token lives.
    await db.execute(
        "UPDATE sessions SET ended_at = now() - interval '2 days' WHERE id = $1",
        device.session_id,
    )
    restarted = await make_client()
    assert device.session_id not in restarted.app[REVOKED_SESSIONS]
    gone = await db.fetchval("SELECT count(*) FROM sessions WHERE id = $1", device.session_id)
    assert gone == 0


async def test_sessions_need_a_token(client) -> None:
    assert (await client.get("/auth/sessions")).status == 401
    assert (await client.delete("/auth/sessions/" + "a" * 32)).status == 401


async def test_revocation_set_is_checked_without_the_database(client, make_user) -> None:
    # The socket path reads the set, never the table: a revoked id refuses even if PostgreSQL
    # still thought the session live (as for a node told by the bus before its own query).
    alice = await make_user()
    device = await sign_in(client, alice.username)
    client.app[REVOKED_SESSIONS].revoke([device.session_id])
    assert await status_of(client, device) == 401


async def test_a_refresh_racing_the_end_of_its_session_fails(client, make_user, db) -> None:
    # The session ended between the refresh spending its token and continuing the family (the
    # end's revocation of the refresh tokens not yet visible): the refresh must not revive it.
    alice = await make_user()
    device = await sign_in(client, alice.username)
    await db.execute("UPDATE sessions SET ended_at = now() WHERE id = $1", device.session_id)
    resp = await client.post("/auth/refresh", json={"refresh_token": device.refresh_token})
    assert (await error_of(resp, 401))["code"] == "unauthenticated"
    ended = await db.fetchval("SELECT ended_at FROM sessions WHERE id = $1", device.session_id)
    assert ended is not None
