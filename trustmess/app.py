"""``create_app(settings)``: the one place the application is wired."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from trustmess import appkeys
from trustmess.activeusers import ActiveUsers
from trustmess.db import create_pool
from trustmess.http import accounts, conversations, health, messages
from trustmess.http.errors import json_errors
from trustmess.ratelimit import KeyedRateLimiter
from trustmess.settings import Settings


def create_app(settings: Settings) -> web.Application:
    """Build the application for a resolved ``settings`` (database URL and JWT secret set)."""
    if settings.database_url is None or not settings.jwt_secret:
        raise ValueError("create_app needs settings with database_url and jwt_secret resolved")
    app = web.Application(middlewares=[json_errors], client_max_size=64 * 1024)
    app[appkeys.SETTINGS] = settings
    app[appkeys.AUTH_LIMIT_BY_ADDRESS] = KeyedRateLimiter(
        settings.auth_rate_per_s, settings.auth_burst
    )
    app[appkeys.AUTH_LIMIT_BY_USERNAME] = KeyedRateLimiter(
        settings.auth_rate_per_s, settings.auth_burst
    )
    app.cleanup_ctx.append(_database)
    for module in (health, accounts, conversations, messages):
        app.router.add_routes(module.routes)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    assert settings.database_url is not None
    pool = await create_pool(settings, settings.database_url)
    app[appkeys.POOL] = pool
    app[appkeys.ACTIVE_USERS] = ActiveUsers(pool)
    try:
        yield
    finally:
        await pool.close()
