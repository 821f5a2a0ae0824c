"""Socket authentication: header and first-frame auth, timeouts, expiry (4002), re-auth,
Origin checks and the per-user connection limit (4006)."""

from __future__ import annotations

import jwt
import pytest

from tests.conftest import JWT_SECRET, SocketClient
from trustmess.auth import issue_access_token

SID = "0" * 32  # a session id nothing ever ends
# A raw upgrade request, for checks made before the server accepts the WebSocket.
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_header_auth_gets_hello(make_user, client) -> None:
    alice = await make_user()
    ws = await client.ws_connect("/ws", headers=alice.headers)
    hello = await SocketClient(ws).recv()
    assert hello["type"] == "hello" and hello["user_id"] == alice.id
    assert hello["heartbeat_s"] == 30 and isinstance(hello["session_id"], str)
    assert hello["limits"] == {
        "max_frame_bytes": 65536,
        "max_body_chars": 4000,
        "replay_limit": 500,
    }
    assert "ref" not in hello


async def test_bad_header_token_is_401_before_upgrade(client) -> None:
    resp = await client.get(
        "/ws",
        headers={
            "Authorization": "Bearer nope",
            **UPGRADE,
        },
    )
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await resp.json())["error"]["code"] == "unauthenticated"


async def test_first_frame_auth_hello_carries_ref(make_user, client) -> None:
    alice = await make_user()
    sock = SocketClient(await client.ws_connect("/ws"))
    await sock.send({"type": "auth", "token": alice.token, "ref": "a1"})
    hello = await sock.recv()
    assert hello["type"] == "hello" and hello["ref"] == "a1" and hello["user_id"] == alice.id
    assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_first_frame_with_bad_token_closes_4001(client) -> None:
    sock = SocketClient(await client.ws_connect("/ws"))
    await sock.send({"type": "auth", "token": "garbage"})
    assert await sock.closed() == 4001


async def test_first_frame_not_auth_closes_4001(client) -> None:
    sock = SocketClient(await client.ws_connect("/ws"))
    await sock.send({"type": "ping"})
    assert await sock.closed() == 4001


async def test_auth_timeout_closes_4001(make_client) -> None:
    client = await make_client(ws_auth_timeout_s=0.3)
    sock = SocketClient(await client.ws_connect("/ws"))
    assert await sock.closed(timeout=5) == 4001


async def test_expired_token_closes_4002(make_user, client) -> None:
    alice = await make_user()
    token, _ = issue_access_token(JWT_SECRET, alice.id, ttl_s=1, session_id=SID)
    ws = await client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    sock = SocketClient(ws)
    assert (await sock.recv())["type"] == "hello"
    assert await sock.closed(timeout=5) == 4002


async def test_reauth_extends_the_session(make_user, client) -> None:
    alice = await make_user()
    short, _ = issue_access_token(JWT_SECRET, alice.id, ttl_s=1, session_id=SID)
    ws = await client.ws_connect("/ws", headers={"Authorization": f"Bearer {short}"})
    sock = SocketClient(ws)
    await sock.recv()
    fresh, _ = issue_access_token(JWT_SECRET, alice.id, ttl_s=600, session_id=SID)
    answer = await sock.request({"type": "auth", "token": fresh})
    assert answer["type"] == "reply" and answer["data"]["user_id"] == alice.id
    assert 590 <= answer["data"]["expires_in"] <= 600
    # Past the first token's expiry the socket is still open: no close frame arrives.
    with pytest.raises(TimeoutError):
        await sock.closed(timeout=2.0)
    assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_reauth_with_another_users_token_is_refused(make_user, connect) -> None:
    alice, bob = await make_user(), await make_user()
    sock = await connect(alice)
    answer = await sock.request({"type": "auth", "token": bob.token})
    assert answer["type"] == "error" and answer["code"] == "unauthenticated"
    assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_alg_none_token_refused(make_user, client) -> None:
    alice = await make_user()
    forged = jwt.encode(
        {
            "sub": str(alice.id),
            "iss": "trustmess",
            "typ": "access",
            "exp": 2**40,
            "iat": 1,
            "jti": "x",
        },
        key="",
        algorithm="none",
    )
    sock = SocketClient(await client.ws_connect("/ws"))
    await sock.send({"type": "auth", "token": forged})
    assert await sock.closed() == 4001


async def test_foreign_origin_refused_own_origin_allowed(make_user, client, make_client) -> None:
    alice = await make_user()
    headers = {**alice.headers, "Origin": "https://evil.example"}
    resp = await client.get(
        "/ws",
        headers={
            **headers,
            **UPGRADE,
        },
    )
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden"
    own = f"http://{client.host}:{client.port}"
    ws = await client.ws_connect("/ws", headers={**alice.headers, "Origin": own})
    assert (await SocketClient(ws).recv())["type"] == "hello"
    listed = await make_client(allowed_origins=("https://app.example",))
    ws = await listed.ws_connect("/ws", headers={**alice.headers, "Origin": "https://app.example"})
    assert (await SocketClient(ws).recv())["type"] == "hello"


async def test_connection_limit_closes_oldest_with_4006(make_user, make_client, connect) -> None:
    client = await make_client(ws_max_per_user=2)
    alice = await make_user()
    first = await connect(alice, test_client=client)
    second = await connect(alice, test_client=client)
    third = await connect(alice, test_client=client)
    assert await first.closed() == 4006
    for sock in (second, third):
        assert (await sock.request({"type": "ping"}))["type"] == "reply"


async def test_disabling_a_user_closes_its_sockets(make_user, connect, client) -> None:
    admin, alice = await make_user(is_admin=True), await make_user()
    sock = await connect(alice)
    resp = await client.patch(
        f"/admin/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )
    assert resp.status == 200
    assert await sock.closed() == 4001
