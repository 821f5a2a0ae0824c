"""Typed keys for what ``create_app`` stores on the application."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from trustmess.delivery.hub import Hub
from trustmess.delivery.notifications import Notifier
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.delivery.writer import MessageWriter
from trustmess.gateway.ratelimit import KeyedRateLimiter
from trustmess.gateway.registry import Gateway
from trustmess.metrics import Metrics
from trustmess.settings import Settings
from trustmess.store.activeusers import ActiveUsers

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
ACTIVE_USERS = web.AppKey("active_users", ActiveUsers)
HUB = web.AppKey("hub", Hub)
WRITER = web.AppKey("writer", MessageWriter)
GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", Metrics)
READ_MARKERS = web.AppKey("read_markers", ReadMarkerBuffer)
NOTIFIER = web.AppKey("notifier", Notifier)
AUTH_LIMIT_BY_ADDRESS = web.AppKey("auth_limit_by_address", KeyedRateLimiter)
AUTH_LIMIT_BY_USERNAME = web.AppKey("auth_limit_by_username", KeyedRateLimiter)
CONVERSATION_CHANGE_LIMIT = web.AppKey("conversation_change_limit", KeyedRateLimiter)
