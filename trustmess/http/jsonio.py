"""JSON in and out of HTTP views: bounded, strict body parsing and orjson responses."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from aiohttp import web

from trustmess.appkeys import SETTINGS
from trustmess.errors import ApiError, ErrorCode, invalid
from trustmess.wire.validation import BIGINT_MAX

MAX_BODY_BYTES = 64 * 1024

# What an integer query parameter may look like: ASCII digits, an optional leading '-', and no
# more digits than a 64-bit integer has (so int() never parses a huge string). int() alone
# would also take " 5", "+5", "1_0" and non-ASCII digits (Arabic-Indic five, say).
_QUERY_INT = re.compile(r"-?[0-9]{1,19}")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object: 413 over 64 KiB, 400 if not JSON or not an object."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, ErrorCode.TOO_LARGE, f"body exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    timeout_s = request.app[SETTINGS].http_read_timeout_s
    try:
        # A body dripped in byte by byte must not hold the connection (and the handler) open.
        async with asyncio.timeout(timeout_s):
            # read(n) returns what has arrived so far: keep reading to the end or past the limit.
            while chunk := await request.content.read(MAX_BODY_BYTES + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise ApiError(413, ErrorCode.TOO_LARGE, f"body exceeds {MAX_BODY_BYTES} bytes")
    except TimeoutError:
        raise ApiError(
            408,
            ErrorCode.REQUEST_TIMEOUT,
            f"the body did not arrive within {timeout_s:g} s",
            headers={"Connection": "close"},
        ) from None
    raw = b"".join(chunks)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, ErrorCode.BAD_JSON, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, ErrorCode.BAD_REQUEST, "body must be a JSON object")
    return data


def path_id(request: web.Request, name: str) -> int:
    """A positive integer path parameter; anything else is 404 (no such resource)."""
    raw = request.match_info.get(name, "")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= BIGINT_MAX:
        raise ApiError(404, ErrorCode.NOT_FOUND, "not found")
    return int(raw)


def query_int(
    request: web.Request, name: str, *, lo: int, hi: int, default: int | None = None
) -> int | None:
    """An integer query parameter within [lo, hi], or 422 naming it.

    Only ASCII digits with an optional leading ``-`` are an integer; a negative one is then out
    of range unless ``lo`` is below zero.
    """
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _QUERY_INT.fullmatch(raw):
        if re.fullmatch(r"-?[0-9]+", raw):
            raise invalid(name, f"must be between {lo} and {hi}")
        raise invalid(name, "must be an integer (ASCII digits, no sign or spaces)")
    value = int(raw)
    if not lo <= value <= hi:
        raise invalid(name, f"must be between {lo} and {hi}")
    return value
