"""Health and readiness probes, and the JSON error shape for 404/405/500."""

from __future__ import annotations

from aiohttp import web

from trustmess.app import create_app
from trustmess.appkeys import POOL


async def test_healthz(client) -> None:
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_ok(client) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_readyz_503_when_database_unreachable(client) -> None:
    # Closing the pool makes every query fail exactly as a dead database would.
    await client.app[POOL].close()
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert "database" in body["checks"]


async def test_unknown_route_is_json_404(client) -> None:
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_wrong_method_is_json_405(client) -> None:
    resp = await client.delete("/healthz")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


async def test_unhandled_exception_is_json_500_without_traceback(
    settings, aiohttp_client, caplog
) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app = create_app(settings)
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    assert resp.status == 500
    text = await resp.text()
    assert "secret internals" not in text and "Traceback" not in text
    assert (await resp.json())["error"]["code"] == "internal"
    assert "secret internals" in caplog.text
