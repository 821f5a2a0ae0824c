"""``GET /metrics``: Prometheus text with live connection, message and error counts."""

from __future__ import annotations

import re

import aiohttp

from tests.conftest import JWT_SECRET, eventually, message_frame
from tests.serverproc import start_server

METRICS_LISTENING = re.compile(r"metrics on http://([\d.]+):(\d+)/metrics")


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


async def test_metrics_follow_the_traffic(client, connect, chat) -> None:
    alice, _, cid = chat
    a = await connect(alice)
    await a.request({"type": "join", "conversation_id": cid})
    reply = await a.request(message_frame(cid, "m", "x"))
    assert reply["type"] == "reply"
    await a.request({"type": "teleport"})
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    assert value(text, "trustmess_connections") == 1
    assert value(text, "trustmess_subscriptions") == 1
    assert value(text, "trustmess_messages_persisted_total") == 1
    assert value(text, "trustmess_deliveries_total") == 1
    assert 'trustmess_errors_total{code="unknown_type"} 1' in text
    assert value(text, "process_resident_memory_bytes") > 1_000_000


async def test_a_frame_over_the_limit_is_counted_as_1009(client, connect, make_user) -> None:
    """aiohttp records 1006 when the peer does not answer its close frame; we sent 1009."""
    sock = await connect(await make_user())
    await sock.ws.send_str("x" * 65537)
    assert await sock.closed() == 1009

    async def counted() -> str | None:
        text = await (await client.get("/metrics")).text()
        return text if 'trustmess_closes_total{code="1009"} 1' in text else None

    text = await eventually(counted, what="the 1009 close in /metrics")
    assert 'code="1006"' not in text


async def test_metrics_token_is_required_when_set(make_client) -> None:
    token = "m" * 24
    client = await make_client(metrics_token=token)
    for headers in ({}, {"Authorization": "Bearer " + "x" * 24}, {"Authorization": token}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["error"]["code"] == "unauthenticated"
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    assert "trustmess_connections 0" in await resp.text()


async def test_metrics_on_a_listener_of_their_own(database_url, make_user) -> None:
    """With TRUSTMESS_METRICS_PORT the API's port has no /metrics; the metrics port has only it."""
    token = "t" * 20
    server = await start_server(
        {
            "TRUSTMESS_DATABASE_URL": database_url,
            "TRUSTMESS_JWT_SECRET": JWT_SECRET,
            "TRUSTMESS_METRICS_PORT": "0",
            "TRUSTMESS_METRICS_TOKEN": token,
        },
        "serve",
        "--no-migrate",
    )
    try:
        (line,) = await server.wait_for_log(METRICS_LISTENING)
        match = METRICS_LISTENING.search(line)
        assert match is not None
        metrics_url = f"http://{match.group(1)}:{match.group(2)}/metrics"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/metrics", headers=auth) as resp:
                assert resp.status == 404
            async with session.get(metrics_url, headers=auth) as resp:
                assert resp.status == 200
                assert "trustmess_messages_persisted_total 0" in await resp.text()
            async with session.get(metrics_url) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "unauthenticated"
            async with session.get(metrics_url.replace("/metrics", "/healthz")) as resp:
                assert resp.status == 404
    finally:
        assert await server.stop() == 0


async def test_closes_count_the_code_the_server_sent(make_client, make_user, connect) -> None:
    """aiohttp's client answers a close with 1000; the server's own code (4006) is counted."""
    client = await make_client(ws_max_per_user=1)
    user = await make_user()
    first = await connect(user, test_client=client)
    await connect(user, test_client=client)
    assert await first.closed() == 4006

    async def counted() -> bool:
        text = await (await client.get("/metrics")).text()
        return 'trustmess_closes_total{code="4006"} 1' in text

    await eventually(counted, what="the 4006 close in /metrics")
