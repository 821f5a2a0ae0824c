"""Command type → handler, and dispatch with uniform error answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from trustmess import commands, frames
from trustmess.appkeys import METRICS
from trustmess.connection import Connection
from trustmess.errors import ApiError, ErrorCode

log = logging.getLogger(__name__)

Handler = Callable[[web.Application, Connection, Any], Awaitable[commands.Reply]]

HANDLERS: dict[type, Handler] = {
    frames.Join: commands.join,
    frames.Leave: commands.leave,
    frames.SendMessage: commands.message,
    frames.Ack: commands.ack,
    frames.Typing: commands.typing,
    frames.Ping: commands.ping,
    frames.Auth: commands.reauth,
}


async def dispatch(app: web.Application, conn: Connection, command: frames.Command) -> None:
    """Run one command; answer with a reply (if it has a ref) or an error frame."""
    handler = HANDLERS[type(command)]
    try:
        data = await handler(app, conn, command)
    except ApiError as error:
        app[METRICS].errors[error.code] += 1
        conn.send(frames.error(command.ref, error.code, error.message, error.field))
        return
    except Exception:
        log.exception("command %s failed", type(command).__name__)
        app[METRICS].errors[ErrorCode.INTERNAL] += 1
        conn.send(frames.error(command.ref, ErrorCode.INTERNAL, "internal error"))
        return
    if data is not None and command.ref is not None:
        conn.send(frames.reply(command.ref, data))
