"""The access log (``TRUSTMESS_ACCESS_LOG=true``): one line per HTTP request, socket open and
socket close, on the ``trustmess.access`` logger, in the process's log format.

Each line has the method, the route's path template (``/conversations/{id}``: ids and the query
string are left out, and so are bodies, headers and tokens), the status or close code, the
duration, the caller's user id once authenticated, and the client address (``client_address``:
behind trusted proxies, the client they name). As JSON, these are the fields ``event``,
``method``, ``path``, ``status`` or ``close_code``, ``duration_ms``, ``user_id``, ``client``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from trustmess.http.clientaddr import client_address

log = logging.getLogger("trustmess.access")


@dataclass(slots=True)
class _Note:
    """What the view found out that the request line cannot show."""

    user_id: int | None = None
    upgraded: bool = False  # a WebSocket, which logs its own open and close


# The note of the request being handled: the middleware starts one, authenticate() and the
# socket endpoint fill it in. A context variable rather than request storage: a view runs in
# the middleware's task, so it sees the same note.
_NOTE: ContextVar[_Note | None] = ContextVar("trustmess_access_note", default=None)


def note_caller(user_id: int) -> None:
    """The request is authenticated as ``user_id`` (for its access log line)."""
    note = _NOTE.get()
    if note is not None:
        note.user_id = user_id


def note_upgraded() -> None:
    """The request became a WebSocket: its open and close lines replace the request's line."""
    note = _NOTE.get()
    if note is not None:
        note.upgraded = True


# A path no route matched is logged as sent, but never longer than this.
UNMATCHED_PATH_MAX = 200


def path_template(request: web.Request) -> str:
    """The matched route's template, else the raw path (no query string), cut short."""
    resource = request.match_info.route.resource
    if resource is not None:
        return resource.canonical
    return request.path[:UNMATCHED_PATH_MAX]


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log the request once it is answered (a WebSocket logs its own open and close)."""
    started = time.perf_counter()
    note = _Note()
    token = _NOTE.set(note)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away first (nginx's code for it)
        raise
    finally:
        if not note.upgraded:
            log_request(request, status, time.perf_counter() - started, note.user_id)
        _NOTE.reset(token)


def log_request(request: web.Request, status: int, duration_s: float, user_id: int | None) -> None:
    method, path, client = request.method, path_template(request), client_address(request)
    duration_ms = round(duration_s * 1000, 1)
    log.info(
        "%s %s %d %.1fms user=%s client=%s",
        method,
        path,
        status,
        duration_ms,
        "-" if user_id is None else user_id,
        client,
        extra={
            "event": "http",
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "user_id": user_id,
            "client": client,
        },
    )


def log_socket_open(request: web.Request, user_id: int) -> None:
    client = client_address(request)
    path = path_template(request)
    log.info(
        "WS open %s user=%s client=%s",
        path,
        user_id,
        client,
        extra={
            "event": "ws_open",
            "method": "GET",
            "path": path,
            "user_id": user_id,
            "client": client,
        },
    )


def log_socket_close(
    request: web.Request, close_code: int, duration_s: float, user_id: int | None
) -> None:
    client = client_address(request)
    duration_ms = round(duration_s * 1000, 1)
    path = path_template(request)
    log.info(
        "WS close %s %d %.1fms user=%s client=%s",
        path,
        close_code,
        duration_ms,
        "-" if user_id is None else user_id,
        client,
        extra={
            "event": "ws_close",
            "method": "GET",
            "path": path,
            "close_code": close_code,
            "duration_ms": duration_ms,
            "user_id": user_id,
            "client": client,
        },
    )
