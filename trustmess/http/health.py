"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from trustmess.appkeys import HUB, POOL
from trustmess.http.jsonio import json_response

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers ``SELECT 1`` within two seconds."""
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("SELECT 1"), timeout=2.0)
    except Exception as exc:
        reason = f"database unavailable: {type(exc).__name__}"
        return json_response({"status": "unavailable", "checks": {"database": reason}}, 503)
    usable, broker = request.app[HUB].healthy()
    if not usable:
        return json_response(
            {"status": "unavailable", "checks": {"database": "ok", "broker": broker}}, 503
        )
    return json_response({"status": "ok", "checks": {"database": "ok", "broker": broker}})
