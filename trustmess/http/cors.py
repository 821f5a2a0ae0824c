"""Which browser origins may use the server, and CORS for the HTTP API.

One policy for the HTTP API and ``/ws``: the server's own origin (the ``Origin`` host equals the
request's ``Host``) is always allowed, and ``TRUSTMESS_ALLOWED_ORIGINS`` adds to it (``*``: any).

CORS is a small middleware rather than aiohttp-cors, which (0.8) registers an OPTIONS route on
every resource, echoes the origin without ``Vary: Origin`` (a shared cache could then hand one
origin's answer to another), also for ``*``, and adds nothing to answers of unmatched routes
(404/405), so a browser could not read those JSON errors. No credentials mode: the API
authenticates with bearer tokens, not cookies.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from trustmess.appkeys import SETTINGS
from trustmess.errors import ApiError, ErrorCode
from trustmess.http.jsonio import error_response

# The request headers a page may send (beyond the CORS-safelisted ones).
ALLOWED_HEADERS = "Authorization, Content-Type"
# The response headers a page may read (beyond the CORS-safelisted ones): the rate limits' and
# the authentication challenge.
EXPOSED_HEADERS = "Retry-After, RateLimit, RateLimit-Policy, WWW-Authenticate"
# How long a browser may cache a preflight answer (Chromium caps it at 2 hours).
PREFLIGHT_MAX_AGE_S = 3600


def origin_allowed(origin: str, request: web.Request, allowed: Collection[str]) -> bool:
    """The server's own origin, or one on the allow-list (``*`` allows any)."""
    origin = origin.rstrip("/").lower()
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc == request.host.lower()


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflights; mark answers to allowed origins readable (``Access-Control-*``)."""
    allowed = request.app[SETTINGS].allowed_origins
    origin = request.headers.get("Origin")
    response: web.StreamResponse
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if origin is None or not origin_allowed(origin, request, allowed):
        if preflight and origin is not None:
            # Outside json_errors: answer the error here.
            response = error_response(ApiError(403, ErrorCode.FORBIDDEN, "origin not allowed"))
        else:
            response = await handler(request)
        _vary(response, allowed)
        return response
    exception = request.match_info.http_exception
    if preflight and isinstance(exception, web.HTTPMethodNotAllowed):
        return _preflight(origin, exception.allowed_methods, allowed)
    # Anything else, a preflight of an unknown path (404) included, is answered as usual.
    response = await handler(request)
    if not response.prepared:  # a WebSocket has long been sent; CORS does not apply to it
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        _vary(response, allowed)
    return response


def _preflight(origin: str, methods: Collection[str], allowed: Collection[str]) -> web.Response:
    """204 naming the methods the path has (the browser checks its method against them)."""
    response = web.Response(status=204)
    response.headers.update(
        {
            "Access-Control-Allow-Origin": "*" if "*" in allowed else origin,
            "Access-Control-Allow-Methods": ", ".join(sorted(methods)),
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        }
    )
    _vary(response, allowed)
    return response


def _vary(response: web.StreamResponse, allowed: Collection[str]) -> None:
    """Unless any origin is allowed, the answer depends on ``Origin``: say so to caches."""
    if "*" not in allowed and not response.prepared:
        vary = response.headers.get("Vary")
        response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
