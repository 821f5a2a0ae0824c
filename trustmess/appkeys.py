"""Typed keys for what ``create_app`` stores on the application."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from trustmess.settings import Settings

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
ACTIVE_USERS = web.AppKey["ActiveUsers"]("active_users")
HUB = web.AppKey["Hub"]("hub")
WRITER = web.AppKey["MessageWriter"]("writer")
GATEWAY = web.AppKey["Gateway"]("gateway")
AUTH_LIMIT_BY_ADDRESS = web.AppKey["KeyedRateLimiter"]("auth_limit_by_address")
AUTH_LIMIT_BY_USERNAME = web.AppKey["KeyedRateLimiter"]("auth_limit_by_username")
