"""``GET /ws``: the only module that creates, upgrades and reads a WebSocketResponse.

Upgrade checks (Origin, header auth) happen before ``prepare`` so refusals are plain HTTP JSON
errors. Then: first-frame auth if needed, ``hello``, and one reader loop that decodes each
frame and hands it to the router; the connection's writer task does all sending.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import NamedTuple

from aiohttp import WebSocketError, WSMsgType, web

from trustmess.appkeys import (
    ACTIVE_USERS,
    AWAITING_AUTH,
    GATEWAY,
    HUB,
    METRICS,
    REVOKED_SESSIONS,
    SETTINGS,
)
from trustmess.auth import AccessClaims, decode_access_token
from trustmess.errors import ApiError, CloseCode, ErrorCode, rate_limited
from trustmess.gateway.connection import ABORT_AFTER_S, Connection
from trustmess.gateway.linger import LingeringWebSocketResponse
from trustmess.gateway.ratelimit import TokenBucket
from trustmess.gateway.router import dispatch, dispatch_now
from trustmess.http.accesslog import log_socket_close, log_socket_open, note_upgraded
from trustmess.http.authn import authenticate, check_session
from trustmess.http.clientaddr import client_key
from trustmess.http.cors import origin_allowed
from trustmess.settings import Settings
from trustmess.wire import events, frames

routes = web.RouteTableDef()


class Refused(NamedTuple):
    """A socket closed before it was authenticated, and the close code it ended with."""

    ws: LingeringWebSocketResponse
    code: int


async def _first_frame_auth(
    ws: web.WebSocketResponse, request: web.Request
) -> tuple[AccessClaims, frames.Ref] | int:
    """Wait for ``{"type":"auth"}``; close with 4001 on timeout or failure (return the code)."""
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout(settings.ws_auth_timeout_s):
            msg = await ws.receive()
            while msg.type in (WSMsgType.PING, WSMsgType.PONG):
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                msg = await ws.receive()
    except TimeoutError:
        await ws.close(code=CloseCode.AUTH_FAILED, message=b"auth timeout")
        return CloseCode.AUTH_FAILED
    if msg.type == WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
        return int(msg.data.code)  # a frame over the limit (1009): aiohttp has closed
    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return ws.close_code or CloseCode.ABNORMAL  # the peer closed or went away
    command = frames.decode(msg.data)
    if not isinstance(command, frames.Auth):
        await ws.close(code=CloseCode.AUTH_FAILED, message=b"first frame must be auth")
        return CloseCode.AUTH_FAILED
    try:
        assert settings.jwt_secret is not None
        async with request.app[GATEWAY].openings:
            claims = check_session(
                request.app, decode_access_token(settings.jwt_secret, command.token)
            )
            if not await request.app[ACTIVE_USERS].is_active(claims.user_id):
                raise ApiError(401, ErrorCode.UNAUTHENTICATED, "account disabled")
    except ApiError as error:
        await ws.close(code=CloseCode.AUTH_FAILED, message=error.message.encode())
        return CloseCode.AUTH_FAILED
    return claims, command.ref


RATE_LIMITED_EVERY_S = 0.5


def _note_rejected(conn: Connection, settings: Settings) -> bool:
    """The connection found no command token: close it when that has lasted too long.

    Returns whether to answer with ``rate_limited``: once per RATE_LIMITED_EVERY_S, not per
    refused frame (its ref is unknown anyway), so a flood does not make us write a flood of
    errors, which the peer would have to read through before it found our close frame."""
    now = time.monotonic()
    if conn.abuse_since is None or now - conn.last_rejected > 1.0:
        conn.abuse_since = now
    conn.last_rejected = now
    if now - conn.abuse_since >= settings.ws_abuse_s:
        conn.close_soon(CloseCode.RATE_LIMITED, "rate limit exceeded for too long")
        return False
    if now - conn.rejection_answered < RATE_LIMITED_EVERY_S:
        return False
    conn.rejection_answered = now
    return True


@routes.get("/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    """Upgrade to the TrustMess socket protocol (see protocol/README.md)."""
    started = time.perf_counter()
    app = request.app
    access_log = app[SETTINGS].access_log
    opened = await _open(request)
    if isinstance(opened, Refused):  # after the upgrade (first-frame auth)
        app[METRICS].closes[opened.code] += 1
        if access_log:
            log_socket_close(request, opened.code, time.perf_counter() - started, None)
        await opened.ws.lingered()
        return opened.ws
    # Everything the opening needed (headers, claims, the hello) died with _open's frame:
    # what this frame keeps for the connection's lifetime is all an idle socket costs us.
    conn, ws = opened
    if access_log:
        log_socket_open(request, conn.user_id)
    error_code: int | None = None
    try:
        error_code = await _read_loop(app, conn, ws, app[SETTINGS])
        if conn.closing:
            await conn.wait_closed(ABORT_AFTER_S + 1)
        await ws.lingered()
    finally:
        conn.detach()
        app[GATEWAY].unregister(conn)
        # Counted before the await below: a dropped connection cancels this handler there.
        # The code the server closed with: a protocol error's (a frame over the limit: 1009)
        # or the one Connection sent, not the peer's answer (or 1006 when none came), which is
        # all ws.close_code tells; else the peer's own close code.
        code = error_code or conn.sent_close_code or ws.close_code or CloseCode.ABNORMAL
        app[METRICS].closes[code] += 1
        if access_log:
            log_socket_close(request, code, time.perf_counter() - started, conn.user_id)
        await conn.stop_writer()
    return ws


async def _open(
    request: web.Request,
) -> tuple[Connection, LingeringWebSocketResponse] | Refused:
    """Checks, upgrade, authentication, registration and ``hello``."""
    app = request.app
    settings, gateway = app[SETTINGS], app[GATEWAY]
    if not gateway.accepting:
        raise ApiError(503, ErrorCode.UNAVAILABLE, "server is shutting down")
    usable, reason = app[HUB].healthy()
    if not usable:
        raise ApiError(503, ErrorCode.UNAVAILABLE, f"message bus unavailable ({reason})")
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, request, settings.allowed_origins):
        raise ApiError(403, ErrorCode.FORBIDDEN, "origin not allowed")
    claims: AccessClaims | None = None
    ref: frames.Ref = None
    ws = LingeringWebSocketResponse(
        # Pings and pongs are ours: one heartbeat sweep for all sockets (heartbeat.py).
        heartbeat=None,
        autoping=False,
        # aiohttp refuses a frame of exactly max_msg_size bytes.
        max_msg_size=settings.ws_max_frame_bytes + 1,
        compress=settings.ws_compression,
        decode_text=False,
        timeout=2.0,
    )
    if "Authorization" not in request.headers:
        awaiting, address = app[AWAITING_AUTH], client_key(request)
        if not awaiting.admit(address):
            raise rate_limited(settings.ws_auth_timeout_s)
        try:
            async with gateway.openings:
                await ws.prepare(request)
            note_upgraded()
            # Not while waiting for the client: that costs us nothing.
            authed = await _first_frame_auth(ws, request)
        finally:
            awaiting.release(address)
        if isinstance(authed, int):
            return Refused(ws, authed)
        claims, ref = authed
    else:
        async with gateway.openings:
            claims = await authenticate(request)
            await ws.prepare(request)
        note_upgraded()
    conn = Connection(
        ws,
        claims.user_id,
        uuid.uuid4().hex,
        queue_frames=settings.ws_queue_frames,
        queue_bytes=settings.ws_queue_bytes,
        rate=TokenBucket(settings.ws_rate_per_s, settings.ws_burst),
        transport=request.transport,
        # Frames are written straight to the transport unless aiohttp must compress them.
        batcher=None if settings.ws_compression else gateway.batcher,
        login_session_id=claims.session_id,
    )
    gateway.register(conn)
    if claims.session_id in app[REVOKED_SESSIONS]:
        # Ended while the upgrade was awaited, after the check: its sessions_ended operation
        # found no socket to close yet.
        conn.close_soon(CloseCode.AUTH_FAILED, "session ended")
    app[METRICS].connections_opened += 1
    conn.start_writer()
    gateway.expiry.watch(conn, claims.expires_at)
    hello = events.hello(
        conn.user_id,
        conn.session_id,
        settings.ws_heartbeat_s,
        settings.ws_max_frame_bytes,
        settings.replay_limit,
        ref,
    )
    conn.send(hello)
    return conn, ws


async def _read_loop(
    app: web.Application, conn: Connection, ws: web.WebSocketResponse, settings: Settings
) -> int | None:
    """Read until the socket closes; the close code of a protocol error that ended it, if any."""
    metrics = app[METRICS]
    receive = ws.receive  # not `async for`: one coroutine layer less per frame
    while True:
        msg = await receive()
        conn.heard = True
        if conn.closing:
            break
        if msg.type == WSMsgType.TEXT:
            # The token first: a flood costs us no JSON decoding (so its ref is not echoed).
            if not conn.rate.take():
                metrics.errors[ErrorCode.RATE_LIMITED] += 1
                if _note_rejected(conn, settings):
                    conn.send(frames.error(None, ErrorCode.RATE_LIMITED, "too many commands"))
                continue
            command = frames.decode(msg.data)
            if isinstance(command, frames.FrameError):
                metrics.errors[command.code] += 1
                conn.send(frames.error_from(command))
                continue
            if not dispatch_now(app, conn, command):
                conn.busy = True  # pongs wait unread meanwhile: not a silence (heartbeat.py)
                try:
                    await dispatch(app, conn, command)
                finally:
                    conn.busy = False
        elif msg.type == WSMsgType.PING:
            conn.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            pass
        elif msg.type == WSMsgType.BINARY:
            conn.send(frames.error(None, ErrorCode.BAD_FRAME, "binary frames are not supported"))
        elif msg.type == WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
            # A frame over the size limit (1009), or a broken frame (1002): aiohttp has sent
            # that code in its close frame and dropped the connection (which cancels this
            # handler at its next await: return without one).
            return int(msg.data.code)
        else:
            break  # CLOSE/CLOSING/CLOSED, or a transport ERROR
    await asyncio.sleep(0)
    return None
