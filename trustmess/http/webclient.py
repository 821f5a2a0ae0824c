"""The web client: ``GET /`` (the page; also at ``/reset-password`` and ``/verify-email``,
where the mailed links lead), its script and style sheet, and the JavaScript SDK.

The files are package data in ``trustmess/web/`` (``sdk/trustmess.js`` is the SDK other web apps
can reuse), read once when this module is imported, so a missing file stops the server at
start-up rather than failing a request. ``TRUSTMESS_WEB=false`` leaves these routes out.

Every answer carries a strict Content-Security-Policy: scripts, styles and connections only from
this origin (no inline script or style, no CDN), no framing, no plugins. ``connect-src 'self'``
covers ``ws://`` and ``wss://`` to the same host (CSP Level 3).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.Response]]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the package: revalidate rather than run a stale client.
    "Cache-Control": "no-cache",
}

# URL path -> (file under trustmess/web/, content type). Keep in step with protocol/openapi.yaml.
FILES = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/ui.js": ("ui.js", "text/javascript"),
    "/people.js": ("people.js", "text/javascript"),
    "/settings.js": ("settings.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
    "/sdk/trustmess.js": ("sdk/trustmess.js", "text/javascript"),
}

# Paths that serve the page itself: where the mailed links lead (trustmess/mail/letters.py).
LINK_PAGES = ("/reset-password", "/verify-email")


def _read(name: str) -> bytes:
    return resources.files("trustmess").joinpath("web", *name.split("/")).read_bytes()


_CONTENT = {path: (_read(name), content_type) for path, (name, content_type) in FILES.items()}


def _serve(path: str) -> web.Response:
    body, content_type = _CONTENT[path]
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)


def _handler(path: str) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        return _serve(path)

    return serve


# One route per file, and the page again where the mailed links lead (its script reads the path
# and the ``#token=`` fragment, which never reaches the server or its logs).
for _path in FILES:
    routes.get(_path)(_handler(_path))
for _page in LINK_PAGES:
    routes.get(_page)(_handler("/"))
