"""``TRUSTMESS_ACCESS_LOG=true``: one line per HTTP request and socket open/close, with the
route template, status or close code, duration, user id and client, and never a secret."""

from __future__ import annotations

import logging
from ipaddress import ip_network

import orjson
import pytest

from tests.conftest import TEST_PASSWORD, SocketClient, eventually, login
from trustmess.logs import JsonFormatter

ACCESS = "trustmess.access"


@pytest.fixture
def access(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)

    def records() -> list[logging.LogRecord]:
        return [record for record in caplog.records if record.name == ACCESS]

    return records


async def test_one_line_per_request_with_template_status_user_and_client(
    make_client, make_user, chat, access
) -> None:
    client = await make_client(access_log=True)
    alice, _, cid = chat
    await client.get(f"/conversations/{cid}/messages?limit=5&before=3", headers=alice.headers)
    await client.get("/users/me")
    await client.get("/no/such/thing?secret=1")
    await client.put("/users/me")
    lines = [(r.method, r.path, r.status, r.user_id, r.client) for r in access()]
    assert lines == [
        ("GET", "/conversations/{id}/messages", 200, alice.id, "127.0.0.1"),
        ("GET", "/users/me", 401, None, "127.0.0.1"),
        ("GET", "/no/such/thing", 404, None, "127.0.0.1"),
        ("PUT", "/users/me", 405, None, "127.0.0.1"),
    ]
    assert all(r.duration_ms >= 0 for r in access())
    first = access()[0].getMessage()
    assert first.startswith("GET /conversations/{id}/messages 200 ")
    assert first.endswith(f"ms user={alice.id} client=127.0.0.1")


async def test_json_lines_carry_the_fields(make_client, make_user, access) -> None:
    client = await make_client(access_log=True)
    user = await make_user()
    await client.get("/users/me", headers=user.headers)
    fields = JsonFormatter().fields(access()[0])
    assert {k: fields[k] for k in ("event", "method", "path", "status", "user_id", "client")} == {
        "event": "http",
        "method": "GET",
        "path": "/users/me",
        "status": 200,
        "user_id": user.id,
        "client": "127.0.0.1",
    }
    assert isinstance(fields["duration_ms"], float)
    orjson.dumps(fields)  # serialisable as it is


async def test_nothing_secret_is_logged(make_client, make_user, access) -> None:
    client = await make_client(access_log=True)
    user = await make_user("secretive")
    resp = await login(client, "secretive", TEST_PASSWORD)
    session = await resp.json()
    await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    await client.get("/users?q=secretive&cursor=", headers=user.headers)
    text = "\n".join(JsonFormatter().format(record) + record.getMessage() for record in access())
    assert len(access()) == 3
    for secret in (TEST_PASSWORD, session["refresh_token"], session["access_token"], user.token):
        assert secret not in text
    assert "q=" not in text and "secretive" not in text  # no query strings


async def test_the_client_behind_a_trusted_proxy(make_client, access) -> None:
    client = await make_client(access_log=True, trusted_proxies=(ip_network("127.0.0.0/8"),))
    await client.get("/healthz", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert access()[0].client == "203.0.113.7"


async def test_sockets_log_open_and_close(make_client, make_user, access) -> None:
    client = await make_client(access_log=True)
    user = await make_user()
    ws = await client.ws_connect("/ws", headers=user.headers)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()

    # The close is logged once the server's handler has finished.
    def closed() -> list[logging.LogRecord]:
        return [r for r in access() if r.event == "ws_close"]

    (close,) = await eventually(closed, what="the socket's close line")
    (opened,) = [r for r in access() if r.event == "ws_open"]
    assert (opened.path, opened.user_id) == ("/ws", user.id)
    assert (close.close_code, close.user_id) == (1000, user.id)
    # No http line for the upgrade itself: the socket's two lines stand for it.
    assert [r.event for r in access()] == ["ws_open", "ws_close"]


async def test_a_socket_closed_for_a_big_frame_logs_1009(make_client, make_user, access) -> None:
    client = await make_client(access_log=True)
    user = await make_user()
    sock = SocketClient(await client.ws_connect("/ws", headers=user.headers))
    assert (await sock.recv())["type"] == "hello"
    await sock.ws.send_str("x" * 65537)
    assert await sock.closed() == 1009
    await eventually(
        lambda: [r for r in access() if getattr(r, "close_code", None) == 1009],
        what="a close line with 1009",
    )


async def test_a_failed_first_frame_auth_logs_its_close(make_client, access) -> None:
    client = await make_client(access_log=True)
    sock = SocketClient(await client.ws_connect("/ws"))
    await sock.send({"type": "auth", "token": "not a token"})
    assert await sock.closed() == 4001
    (close,) = await eventually(lambda: access(), what="the close line")
    assert (close.event, close.close_code, close.user_id) == ("ws_close", 4001, None)


async def test_off_by_default(client, make_user, access) -> None:
    await client.get("/healthz")
    assert access() == []
