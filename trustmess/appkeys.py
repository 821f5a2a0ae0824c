"""Typed keys for what ``create_app`` stores on the application."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from trustmess.auth import PasswordQueue
from trustmess.delivery.hub import Hub
from trustmess.delivery.notifications import Notifier
from trustmess.delivery.presence import Presence
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.delivery.writer import MessageWriter
from trustmess.gateway.ratelimit import KeyedCap, KeyedRateLimiter, UserBudget
from trustmess.gateway.registry import Gateway
from trustmess.gateway.revocation import RevokedSessions
from trustmess.http.loginguard import LoginGuard
from trustmess.mail.outbox import MailOutbox
from trustmess.metrics import Metrics
from trustmess.settings import Settings
from trustmess.store.activeusers import ActiveUsers

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
# The message writer's own connections (runtime/pool.py: create_writer_pool).
WRITER_POOL = web.AppKey("writer_pool", asyncpg.Pool)
ACTIVE_USERS = web.AppKey("active_users", ActiveUsers)
HUB = web.AppKey("hub", Hub)
WRITER = web.AppKey("writer", MessageWriter)
GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", Metrics)
READ_MARKERS = web.AppKey("read_markers", ReadMarkerBuffer)
NOTIFIER = web.AppKey("notifier", Notifier)
LOGIN_GUARD = web.AppKey("login_guard", LoginGuard)
PASSWORDS = web.AppKey("passwords", PasswordQueue)
SEARCH_LIMIT_BY_USER = web.AppKey("search_limit_by_user", KeyedRateLimiter)
SEND_BUDGET = web.AppKey("send_budget", UserBudget)
# Sockets upgraded without a token, still waiting for their first-frame auth, per address.
AWAITING_AUTH = web.AppKey("awaiting_auth", KeyedCap)
CONVERSATION_CHANGE_LIMIT = web.AppKey("conversation_change_limit", KeyedRateLimiter)
MAIL_OUTBOX = web.AppKey("mail_outbox", MailOutbox)
# Password-reset requests per client address; mails per recipient (its lower-cased address).
RESET_LIMIT_BY_ADDRESS = web.AppKey("reset_limit_by_address", KeyedRateLimiter)
MAILS_BY_RECIPIENT = web.AppKey("mails_by_recipient", KeyedRateLimiter)
# Sessions ended recently: their access tokens are refused (gateway/revocation.py).
REVOKED_SESSIONS = web.AppKey("revoked_sessions", RevokedSessions)
# Per user: contact requests and group invitations sent (http/contacts.py, conversations.py).
CONTACT_REQUEST_LIMIT = web.AppKey("contact_request_limit", KeyedRateLimiter)
PRESENCE = web.AppKey("presence", Presence)
