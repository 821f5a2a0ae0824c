"""Revocation across nodes (real server processes, one PostgreSQL, one Redis): a session ended
on node A is refused on node B at once and its socket on node B closes with 4001 within a
second; a node that missed the news while its bus was down catches up when it reconnects."""

from __future__ import annotations

import time

import aiohttp

from tests.conftest import TEST_PASSWORD, SocketClient, User
from tests.test_cluster import open_socket, start_nodes, wait_ready
from tests.test_sessions import CLOSE_WITHIN_S, Device, session_of

__all__ = ["start_nodes"]  # the fixture, used by name


async def sign_in_at(session: aiohttp.ClientSession, url: str, user: User) -> Device:
    async with session.post(
        url + "/auth/login", json={"username": user.username, "password": TEST_PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return Device(body["access_token"], body["refresh_token"], session_of(body["access_token"]))


async def me_status(session: aiohttp.ClientSession, url: str, device: Device) -> int:
    async with session.get(url + "/users/me", headers=device.headers) as resp:
        return resp.status


async def close_code_within(sock: SocketClient, seconds: float) -> int | None:
    started = time.monotonic()
    code = await sock.closed(timeout=seconds)
    assert time.monotonic() - started <= seconds
    return code


async def test_a_session_ended_on_one_node_stops_at_once_on_another(start_nodes, make_user) -> None:
    node_a, node_b = await start_nodes(2)
    alice = await make_user()
    async with aiohttp.ClientSession() as http:
        device = await sign_in_at(http, node_a.url, alice)
        other = await sign_in_at(http, node_b.url, alice)
        # Warm node B's caches for the token, as a busy node would have them.
        assert await me_status(http, node_b.url, device) == 200
        user = User(alice.id, alice.username, TEST_PASSWORD, device.access_token)
        sock_b = await open_socket(http, node_b, user)
        other_sock = await open_socket(
            http, node_b, User(alice.id, alice.username, TEST_PASSWORD, other.access_token)
        )
        async with http.post(
            node_a.url + "/auth/logout", json={"refresh_token": device.refresh_token}
        ) as resp:
            assert resp.status == 204
        assert await close_code_within(sock_b, CLOSE_WITHIN_S) == 4001
        # By the time the socket closed, node B refuses the token too.
        assert await me_status(http, node_b.url, device) == 401
        # The other session is untouched on both nodes.
        assert await me_status(http, node_b.url, other) == 200
        assert (await other_sock.request({"type": "ping"}))["type"] == "reply"


async def test_an_admin_disable_on_one_node_closes_sockets_on_another(
    start_nodes, make_user
) -> None:
    node_a, node_b = await start_nodes(2)
    admin, alice = await make_user(is_admin=True), await make_user()
    async with aiohttp.ClientSession() as http:
        device = await sign_in_at(http, node_b.url, alice)
        sock_b = await open_socket(
            http, node_b, User(alice.id, alice.username, TEST_PASSWORD, device.access_token)
        )
        async with http.patch(
            f"{node_a.url}/admin/users/{alice.id}", json={"is_active": False}, headers=admin.headers
        ) as resp:
            assert resp.status == 200
        assert await close_code_within(sock_b, CLOSE_WITHIN_S) == 4001
        assert await me_status(http, node_b.url, device) == 401
        async with http.patch(
            f"{node_a.url}/admin/users/{alice.id}", json={"is_active": True}, headers=admin.headers
        ) as resp:
            assert resp.status == 200
        # Re-enabled: still nothing from before works, on either node.
        for node in (node_a, node_b):
            assert await me_status(http, node.url, device) == 401


async def test_a_node_that_missed_a_revocation_catches_up_after_the_outage(
    start_nodes, make_user, redis_process
) -> None:
    assert redis_process is not None, "needs the tests' own redis-server"
    node_a, node_b = await start_nodes(2, broker_grace_s="300")
    alice = await make_user()
    async with aiohttp.ClientSession() as http:
        device = await sign_in_at(http, node_a.url, alice)
        sock_b = await open_socket(
            http, node_b, User(alice.id, alice.username, TEST_PASSWORD, device.access_token)
        )
        redis_process.stop()
        for node in (node_a, node_b):
            await wait_ready(node, timeout=20, status=503)
        # Node A ends the session while node B cannot hear it.
        async with http.post(
            node_a.url + "/auth/logout", json={"refresh_token": device.refresh_token}
        ) as resp:
            assert resp.status == 204
        assert await me_status(http, node_b.url, device) == 200  # B has not heard yet
        redis_process.start()
        for node in (node_a, node_b):
            await wait_ready(node, timeout=20)
        assert await sock_b.closed(timeout=20) == 4001
        assert await me_status(http, node_b.url, device) == 401


async def test_an_account_deleted_on_one_node_is_gone_on_another(start_nodes, make_user) -> None:
    node_a, node_b = await start_nodes(2)
    alice = await make_user()
    async with aiohttp.ClientSession() as http:
        device = await sign_in_at(http, node_b.url, alice)
        sock_b = await open_socket(
            http, node_b, User(alice.id, alice.username, TEST_PASSWORD, device.access_token)
        )
        async with http.delete(
            node_a.url + "/users/me", json={"password": TEST_PASSWORD}, headers=device.headers
        ) as resp:
            assert resp.status == 204
        assert await close_code_within(sock_b, CLOSE_WITHIN_S) == 4001
        assert await me_status(http, node_b.url, device) == 401
