"""``create_app(settings)``: the one place the application is wired."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from functools import partial

from aiohttp import web

from trustmess import appkeys
from trustmess.auth import PasswordQueue
from trustmess.cluster.redis_broker import RedisBroker
from trustmess.cluster.redis_presence import RedisPresenceDirectory
from trustmess.delivery.broker import Broker, MemoryBroker
from trustmess.delivery.hub import Hub
from trustmess.delivery.membership import MembershipCache
from trustmess.delivery.notifications import Notifier
from trustmess.delivery.presence import LocalDirectory, Presence, PresenceDirectory
from trustmess.delivery.readbuffer import ReadMarkerBuffer
from trustmess.delivery.sending import change_publisher, message_publisher
from trustmess.delivery.writer import MessageWriter
from trustmess.errors import CloseCode
from trustmess.gateway import control, endpoint
from trustmess.gateway.ratelimit import KeyedCap, KeyedRateLimiter, UserBudget
from trustmess.gateway.registry import Gateway
from trustmess.gateway.revocation import RevokedSessions
from trustmess.http import (
    accounts,
    admin,
    contacts,
    conversations,
    health,
    invitations,
    messages,
    openapi,
    prometheus,
    recovery,
    sessions,
    webclient,
)
from trustmess.http.accesslog import access_log
from trustmess.http.cors import cors
from trustmess.http.loginguard import LoginGuard
from trustmess.http.middleware import json_errors
from trustmess.mail.outbox import MailOutbox
from trustmess.mail.transport import LogTransport, SmtpServer, SmtpTransport, Transport
from trustmess.metrics import Metrics
from trustmess.runtime.pool import create_pool, create_writer_pool
from trustmess.settings import Settings
from trustmess.store.activeusers import ActiveUsers
from trustmess.store.batching import BatchedLookup
from trustmess.store.history import entries_in_range
from trustmess.store.joins import read_joins
from trustmess.wire import events

log = logging.getLogger(__name__)

# A shutdown step that has not finished after this long is logged by name and left behind:
# stopping must end (the writer's last batch and the marker flush take well under a second).
SHUTDOWN_STEP_S = 20.0


async def _stop(name: str, step: Awaitable[None]) -> None:
    """Run one shutdown step, bounded by SHUTDOWN_STEP_S."""
    try:
        await asyncio.wait_for(step, SHUTDOWN_STEP_S)
    except TimeoutError:
        log.error("shutdown: %s did not finish within %g s; going on", name, SHUTDOWN_STEP_S)


LINGER_S = 1.0
# How much clocks of the nodes may disagree: an ended session's access tokens are refused for
# this long beyond their lifetime.
CLOCK_SLACK_S = 60


def create_app(settings: Settings) -> web.Application:
    """Build the application for a resolved ``settings`` (database URL and JWT secret set)."""
    if settings.database_url is None or not settings.jwt_secret:
        raise ValueError("create_app needs settings with database_url and jwt_secret resolved")
    # cors outside json_errors: it adds its headers to the JSON errors json_errors makes; the
    # access log outside both, so it logs the final status.
    middlewares = [cors, json_errors]
    if settings.access_log:
        middlewares.insert(0, access_log)
    app = web.Application(
        middlewares=middlewares,
        client_max_size=64 * 1024,
        handler_args={
            # aiohttp's keep-alive timer runs from the connection's start and from each answer
            # while no complete request head has arrived: it is also the head timeout (a head
            # dripped in byte by byte is cut off). Bodies have their own (jsonio.py).
            "keepalive_timeout": settings.http_read_timeout_s,
            # After an answer to a request whose body was not read to its end (413, 408), how
            # long the rest may still come in before the connection is closed (default 10 s).
            "lingering_time": LINGER_S,
        },
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.METRICS] = Metrics()
    app[appkeys.LOGIN_GUARD] = LoginGuard(settings)
    app[appkeys.PASSWORDS] = PasswordQueue(
        queue_max=settings.bcrypt_queue_max, per_client=settings.bcrypt_per_address
    )
    app[appkeys.SEARCH_LIMIT_BY_USER] = KeyedRateLimiter(
        settings.search_rate_per_s, settings.search_burst
    )
    app[appkeys.SEND_BUDGET] = UserBudget(
        settings.ws_rate_per_s if settings.send_rate_per_s is None else settings.send_rate_per_s,
        settings.ws_burst if settings.send_burst is None else settings.send_burst,
    )
    app[appkeys.REVOKED_SESSIONS] = RevokedSessions(settings.access_token_ttl_s + CLOCK_SLACK_S)
    app[appkeys.AWAITING_AUTH] = KeyedCap(settings.ws_unauthenticated_per_address)
    # Per conversation: each change is one event to every online member (see notifications).
    app[appkeys.CONVERSATION_CHANGE_LIMIT] = KeyedRateLimiter(
        settings.conversation_change_rate_per_min / 60, settings.conversation_change_burst
    )
    app[appkeys.RESET_LIMIT_BY_ADDRESS] = KeyedRateLimiter(
        settings.auth_rate_per_s, settings.auth_burst
    )
    app[appkeys.MAILS_BY_RECIPIENT] = KeyedRateLimiter(
        settings.mails_per_recipient_per_hour / 3600, settings.mails_per_recipient_per_hour
    )
    app[appkeys.CONTACT_REQUEST_LIMIT] = KeyedRateLimiter(
        settings.contact_request_rate_per_hour / 3600, settings.contact_request_burst
    )
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_mail)
    app.cleanup_ctx.append(_realtime)
    app.on_shutdown.append(_close_sockets)
    routed = (
        health,
        prometheus,
        openapi,
        accounts,
        recovery,
        sessions,
        admin,
        conversations,
        messages,
        contacts,
        invitations,
        endpoint,
    )
    for module in routed:
        app.router.add_routes(module.routes)
    if settings.web:
        app.router.add_routes(webclient.routes)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    assert settings.database_url is not None
    pool = await create_pool(settings, settings.database_url)
    app[appkeys.POOL] = pool
    app[appkeys.ACTIVE_USERS] = ActiveUsers(pool)
    try:
        app[appkeys.WRITER_POOL] = await create_writer_pool(settings, settings.database_url)
    except BaseException:
        await pool.close()
        raise
    try:
        yield
    finally:
        # A pool whose close overran is terminated by asyncpg (close() cancelled).
        await _stop("the active-user reads", app[appkeys.ACTIVE_USERS].close())
        await _stop("closing the writer's connections", app[appkeys.WRITER_POOL].close())
        await _stop("closing the database pool", pool.close())


async def _mail(app: web.Application) -> AsyncIterator[None]:
    """The mail queue's sending task, from start-up to shutdown."""
    settings = app[appkeys.SETTINGS]
    transport: Transport
    if settings.smtp_url is None:
        transport = LogTransport(settings.mail_from)
    else:
        transport = SmtpTransport(SmtpServer.from_url(settings.smtp_url), settings.mail_from)
    outbox = app[appkeys.MAIL_OUTBOX] = MailOutbox(
        transport,
        queue_max=settings.mail_queue_max,
        attempts=settings.mail_attempts,
        retry_s=settings.mail_retry_s,
        outcomes=app[appkeys.METRICS].mails,
    )
    outbox.start()
    try:
        yield
    finally:
        await _stop("the mail queue", outbox.close())


async def _realtime(app: web.Application) -> AsyncIterator[None]:
    settings, pool = app[appkeys.SETTINGS], app[appkeys.POOL]
    hub = app[appkeys.HUB] = Hub(_make_broker(app))
    hub.set_control_handler(lambda op: control.apply_control(app, op))
    membership = MembershipCache(pool)
    presence = app[appkeys.PRESENCE] = Presence(
        hub, pool, _make_presence_directory(app), grace_s=settings.presence_grace_s
    )
    # Fewer keys per batch than the default: each join may bring up to replay_limit entries,
    # all decoded in one step of the loop.
    joins = BatchedLookup(
        pool, partial(read_joins, replay_limit=settings.replay_limit), batch_max=64
    )
    gateway = app[appkeys.GATEWAY] = Gateway(settings, hub, membership, joins, presence)
    markers = app[appkeys.READ_MARKERS] = ReadMarkerBuffer(
        pool, membership, settings.read_flush_ms / 1000
    )
    app[appkeys.NOTIFIER] = Notifier(hub, pool, markers, presence)
    await control.rebuild_revocations(app)
    writer = MessageWriter(
        app[appkeys.WRITER_POOL],
        message_publisher(hub, markers),
        publish_change=change_publisher(hub, markers),
        edit_window_s=settings.edit_window_s,
        batch_max=settings.commit_batch_max if settings.group_commit else 1,
        window_s=settings.commit_window_ms / 1000,
    )
    app[appkeys.WRITER] = writer
    writer.start()
    gateway.heartbeat.start()
    await hub.start()
    await presence.start()
    try:
        yield
    finally:
        await _stop("the heartbeat", gateway.heartbeat.close())
        gateway.expiry.close()
        await _stop("the message writer", writer.close())
        await _stop("the read-marker flush", markers.close())
        await _stop("presence", presence.close())
        await _stop("the message bus", hub.close())
        await _stop("the join reads", joins.close())
        await _stop("the membership reads", membership.close())


def _make_presence_directory(app: web.Application) -> PresenceDirectory:
    settings = app[appkeys.SETTINGS]
    if settings.broker == "local":
        return LocalDirectory()
    return RedisPresenceDirectory(settings.broker, settings.presence_ttl_s)


def _make_broker(app: web.Application) -> Broker:
    settings = app[appkeys.SETTINGS]
    if settings.broker == "local":
        return MemoryBroker()

    async def fetch_range(cid: int, after: int, through: int) -> list[tuple[int, bytes]]:
        async with app[appkeys.POOL].acquire() as conn:
            found = await entries_in_range(conn, cid, after, through)
        return [(entry.seq, events.entry(entry)) for entry in found]

    async def on_outage() -> None:
        await app[appkeys.GATEWAY].close_all(
            CloseCode.GOING_AWAY, "message bus unavailable", flush_s=0.2
        )

    return RedisBroker(
        settings.broker,
        fetch_range,
        gap_timeout_s=settings.broker_gap_ms / 1000,
        grace_s=settings.broker_grace_s,
        on_outage=on_outage,
        on_reconnect=lambda: control.resync(app),
    )


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: refuse new sockets, commit and answer queued messages, then close with 1001."""
    gateway = app[appkeys.GATEWAY]
    gateway.accepting = False
    await app[appkeys.WRITER].close()
    await gateway.close_all(CloseCode.GOING_AWAY, "server shutting down")
