"""Command type → handler, and dispatch with uniform error answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from trustmess.appkeys import METRICS
from trustmess.errors import ApiError, ErrorCode
from trustmess.gateway import commands
from trustmess.gateway.connection import Connection
from trustmess.wire import frames

log = logging.getLogger(__name__)

Handler = Callable[[web.Application, Connection, Any], Awaitable[commands.Reply]]

HANDLERS: dict[type, Handler] = {
    frames.Join: commands.join,
    frames.Leave: commands.leave,
    frames.ChangeMessage: commands.change,
    frames.Ack: commands.ack,
    frames.Typing: commands.typing,
    frames.Ping: commands.ping,
    frames.Auth: commands.reauth,
    frames.PresenceSubscribe: commands.presence,
}


def dispatch_now(app: web.Application, conn: Connection, command: frames.Command) -> bool:
    """Run ``message`` (which only queues for the writer and answers later) without a
    coroutine, as it is most of the traffic; False for every other command."""
    if type(command) is not frames.SendMessage:
        return False
    try:
        commands.message(app, conn, command)
    except Exception as exc:
        _fail(app, conn, command, exc)
    return True


async def dispatch(app: web.Application, conn: Connection, command: frames.Command) -> None:
    """Run one command; answer with a reply (if it has a ref) or an error frame."""
    if dispatch_now(app, conn, command):
        return
    handler = HANDLERS[type(command)]
    try:
        data = await handler(app, conn, command)
    except Exception as exc:
        _fail(app, conn, command, exc)
        return
    if data is not None and command.ref is not None:
        conn.send(frames.reply(command.ref, data))


def _fail(app: web.Application, conn: Connection, command: frames.Command, exc: Exception) -> None:
    if isinstance(exc, ApiError):
        app[METRICS].errors[exc.code] += 1
        conn.send(frames.error(command.ref, exc.code, exc.message, exc.field))
        return
    log.error("command %s failed", type(command).__name__, exc_info=exc)
    app[METRICS].errors[ErrorCode.INTERNAL] += 1
    conn.send(frames.error(command.ref, ErrorCode.INTERNAL, "internal error"))
